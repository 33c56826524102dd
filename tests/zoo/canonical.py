"""Make tf2onnx's output a function of the model alone (tf2onnx is not needed to import this)."""

from __future__ import annotations

import re

import onnx

_COUNTER = re.compile(r"__(\d+)")


def canonical_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Renumber tf2onnx's generated counters (`const_fold_opt__96`) in order of first use; sort the initializers.

    tf2onnx's optimiser visits nodes in an order that changes from run to run, so the counters it appends (and the
    initializer order) differ between two exports of the same model, while values and graph structure do not.
    Every occurrence of one counter maps to the same new number, so `X__7` and `X__7:0` stay paired and distinct
    names stay distinct. Mutates and returns `model`.
    """
    numbers: dict[str, str] = {}

    def canon(name: str) -> str:
        return _COUNTER.sub(lambda m: "__" + numbers.setdefault(m.group(1), str(len(numbers))), name)

    graph = model.graph
    for node in graph.node:
        node.name = canon(node.name)
        node.input[:] = [canon(n) for n in node.input]
        node.output[:] = [canon(n) for n in node.output]
    for value in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        value.name = canon(value.name)
    inits = sorted(graph.initializer, key=lambda t: t.name)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    return model


def stable_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rename every node and every tensor but the graph's inputs and outputs by position: `<op>_<n>` for the n-th
    node and its outputs, `const_<n>` for the n-th initializer in order of first use.

    For graphs where renumbering the counters is not enough: on int8 graphs tf2onnx's transpose optimiser names the
    tensors it rewires after whichever node it happened to visit first (`...prequant__188_DequantizeLinear__189` in
    one run, `Transpose__188_DequantizeLinear__189` in the next), and writes an empty `domain` on some of them,
    while nodes, order and values stay the same.
    Mutates and returns `model`.
    """
    graph = model.graph
    kept = {v.name for v in [*graph.input, *graph.output]}
    inits = {t.name for t in graph.initializer}
    names: dict[str, str] = {name: name for name in kept}
    consts = 0
    for i, node in enumerate(graph.node):
        for name in node.input:
            if name and name not in names and name in inits:
                names[name], consts = f"const_{consts}", consts + 1
        for j, name in enumerate(node.output):
            if name and name not in names:
                names[name] = f"{node.op_type.lower()}_{i}" + (f"_{j}" if j else "")
        node.name = f"{node.op_type}_{i}"
        if not node.domain:
            node.ClearField("domain")  # tf2onnx sets the default domain explicitly on some runs, not on others
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    for init in graph.initializer:
        init.name = names.get(init.name, init.name)
    del graph.value_info[:]  # named after the old tensors; shape inference recomputes them
    inits_sorted = sorted(graph.initializer, key=lambda t: t.name)
    del graph.initializer[:]
    graph.initializer.extend(inits_sorted)
    return model
