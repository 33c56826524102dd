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
