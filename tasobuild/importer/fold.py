"""Constant folding and static shape inference, one pass over the ONNX nodes in their (topological) order.

A node whose inputs are all constants (and `Shape` of any tensor, since every shape is static) is evaluated with
NumPy and disappears; every other node is *live* and gets its output shape from `shapes.SHAPE_RULES`. The result
is the live graph with every tensor's static shape, cross-checked against onnx's own shape inference.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NoReturn

import numpy as np
import onnx

from tasobuild.errors import UserError
from tasobuild.importer import shapes as sh
from tasobuild.importer.context import NodeContext, too_big
from tasobuild.importer.reader import OnnxModel, OnnxNode


@dataclass(frozen=True)
class StaticGraph:
    model: OnnxModel
    nodes: tuple[OnnxNode, ...]  # the live nodes, in ONNX order
    shapes: Mapping[str, tuple[int, ...]] = field(repr=False)  # every tensor, constants included
    consts: Mapping[str, np.ndarray] = field(repr=False)  # every constant (initializers and folded values)


def fold(model: OnnxModel, supported: Collection[str]) -> StaticGraph:
    """Constants folded and every tensor's static shape inferred; an operator with no shape rule is refused, the
    error naming the `supported` operators (those the conversion to IR has a rule for)."""
    consts: dict[str, np.ndarray] = dict(model.initializers)
    shapes: dict[str, tuple[int, ...]] = {k: tuple(v.shape) for k, v in consts.items()}
    for name, shape in model.inputs:
        shapes[name] = shape
        if reason := too_big(f"input '{name}'", shape):
            raise UserError(f"{model.file}: {reason}")
    uncheckable: set[str] = set()  # tensors where onnx's inference is known to differ from ORT's (ceil-mode rule)
    live: list[OnnxNode] = []
    secondary: dict[str, NodeContext] = {}  # outputs 1.. of live nodes (Dropout's mask, ...): nothing may use them
    for node in model.nodes:
        ctx = NodeContext(model.file, model.opset, node, shapes, consts)
        for t in node.inputs:
            if t and t not in shapes:
                _missing(t, secondary, ctx.error(f"input '{t}' is produced by no node (or by a later one: a cycle)"))
        if _foldable(ctx):
            try:
                values = FOLD_RULES[node.op](ctx)
            except UserError:
                raise
            except Exception as e:  # numpy's complaint about malformed constant inputs
                raise ctx.error(f"cannot evaluate on constants: {e}") from None
            for name, value in zip(node.outputs, values):
                consts[name] = np.asarray(value)
                shapes[name] = tuple(np.shape(value))
            continue
        if node.op not in sh.SHAPE_RULES:
            raise ctx.unsupported(supported)
        shapes[node.outputs[0]] = ctx.check_output(sh.SHAPE_RULES[node.op](ctx))
        secondary.update({t: ctx for t in node.outputs[1:] if t})
        if _drops_ceil_window(ctx) or any(t in uncheckable for t in node.inputs):
            uncheckable.add(node.outputs[0])
        live.append(node)
    for name, _ in model.outputs:
        if name not in shapes:
            _missing(name, secondary, UserError(f"{model.file}: graph output '{name}' is produced by no node"))
    graph = StaticGraph(model, tuple(live), MappingProxyType(shapes), MappingProxyType(consts))
    _check_output(graph, uncheckable)
    cross_check(graph, uncheckable)
    return graph


def _check_output(graph: StaticGraph, uncheckable: set[str]) -> None:
    model = graph.model
    inputs = {name for name, _ in model.inputs}
    seen: set[str] = set()
    for name, declared in model.outputs:
        if name in graph.consts:
            raise UserError(f"{model.file}: graph output '{name}' is a constant; nothing to compute")
        if name in inputs:
            raise UserError(f"{model.file}: graph output '{name}' is a graph input; nothing to compute")
        if name in seen:
            raise UserError(f"{model.file}: graph output '{name}' is listed twice; list each output once")
        seen.add(name)
        ours = graph.shapes[name]
        if declared is not None and name not in uncheckable and (
                len(declared) != len(ours) or any(d is not None and d != o for d, o in zip(declared, ours))):
            raise UserError(f"{model.file}: graph output '{name}' is declared {list(declared)} "
                            f"but computes to {list(ours)}: inconsistent graph")


def _missing(tensor: str, secondary: Mapping[str, NodeContext], otherwise: UserError) -> NoReturn:
    """A tensor without a shape: a secondary output (which the IR has no place for) or produced by nothing."""
    if tensor in secondary:
        k = secondary[tensor].node.outputs.index(tensor)
        raise secondary[tensor].error(f"output {k} ('{tensor}') is used; only the first output is supported")
    raise otherwise


def _foldable(c: NodeContext) -> bool:
    if c.node.op not in FOLD_RULES:
        return False
    if c.node.op == "Shape":
        return True
    return all(t in c.consts for t in c.node.inputs if t)


def _drops_ceil_window(c: NodeContext) -> bool:
    if c.node.op not in ("MaxPool", "AveragePool") or not c.attr("ceil_mode", 0):
        return False
    return any(w.dropped for w in sh.spatial_windows(c, c.shape(0), tuple(c.attr("kernel_shape")), ceil=True))


def cross_check(graph: StaticGraph, uncheckable: set[str]) -> None:
    """Every static shape onnx infers must equal ours; a disagreement means the graph is inconsistent."""
    model = graph.model
    try:
        inferred = onnx.shape_inference.infer_shapes(_without_weights(model.proto), check_type=True,
                                                     strict_mode=True, data_prop=True)
    except Exception as e:
        raise UserError(f"{model.file}: inconsistent graph ({' '.join(str(e).split())[:300]})") from None
    producer = {t: n for n in model.nodes for t in n.outputs}
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        t = value.type.tensor_type
        if value.name in uncheckable or value.name not in graph.shapes or not t.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        ours = graph.shapes[value.name]
        if len(dims) != len(ours) or any(d is not None and d != o for d, o in zip(dims, ours)):
            node = producer.get(value.name)
            where = f"node '{node.name}' ({node.op})" if node else f"tensor '{value.name}'"
            raise UserError(f"{model.file}: {where}: inconsistent graph: output '{value.name}' has shape "
                            f"{list(ours)} but onnx infers {dims}")


def _without_weights(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its big initializers turned into typed graph inputs: the same shapes to infer, without
    copying hundreds of megabytes of weights into onnx's C++ inference (small ones may hold shape data)."""
    g = proto.graph
    small = [t for t in g.initializer if int(np.prod(t.dims)) <= 1024]
    declared = {i.name for i in g.input}
    typed = [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
             for t in g.initializer if int(np.prod(t.dims)) > 1024 and t.name not in declared]
    graph = onnx.helper.make_graph(list(g.node), g.name, list(g.input) + typed, list(g.output), small,
                                   value_info=list(g.value_info))
    light = onnx.helper.make_model(graph, opset_imports=list(proto.opset_import))
    light.ir_version = proto.ir_version
    return light


# --- NumPy evaluation of shape-computing subgraphs ----------------------------------------------------------------

def _in(c: NodeContext, i: int) -> np.ndarray:
    return c.consts[c.node.inputs[i]]


def _constant(c: NodeContext) -> list[np.ndarray]:
    for key, conv in (("value", np.asarray), ("value_float", np.float32), ("value_floats", _f32),
                      ("value_int", np.int64), ("value_ints", _i64)):
        if key in c.node.attrs:
            return [np.asarray(conv(c.node.attrs[key]))]
    raise c.error("Constant without a supported value attribute")


def _f32(v: object) -> np.ndarray:
    return np.asarray(v, dtype=np.float32)


def _i64(v: object) -> np.ndarray:
    return np.asarray(v, dtype=np.int64)


def _shape(c: NodeContext) -> list[np.ndarray]:
    s = c.shape(0)
    start, end = int(c.attr("start", 0)), c.attr("end")
    return [np.asarray(s[start:None if end is None else int(end)], dtype=np.int64)]


def _cast(c: NodeContext) -> list[np.ndarray]:
    return [_in(c, 0).astype(onnx.helper.tensor_dtype_to_np_dtype(int(c.attr("to"))))]


def _gather(c: NodeContext) -> list[np.ndarray]:
    data = _in(c, 0)
    axis = sh.norm_axis(int(c.attr("axis", 0)), data.ndim, c)
    return [np.take(data, _in(c, 1).astype(np.int64), axis=axis)]


def _slice(c: NodeContext) -> list[np.ndarray]:
    data = _in(c, 0)
    starts, ends = c.ints(1, "starts", "starts"), c.ints(2, "ends", "ends")
    axes = c.ints(3, "axes", "axes") or tuple(range(len(starts or ())))
    steps = c.ints(4, "steps", "steps") or (1,) * len(axes)
    index = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts or (), ends or (), axes, steps):
        index[sh.norm_axis(a, data.ndim, c)] = slice(s, e, st)
    return [data[tuple(index)]]


def _div(c: NodeContext) -> list[np.ndarray]:
    a, b = _in(c, 0), _in(c, 1)
    if np.issubdtype(a.dtype, np.integer):  # ONNX integer division truncates toward zero
        return [(np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))).astype(a.dtype)]
    return [(a / b).astype(a.dtype)]


def _same_type(f: Callable[..., np.ndarray]) -> Callable[[NodeContext], list[np.ndarray]]:
    def rule(c: NodeContext) -> list[np.ndarray]:
        args = [_in(c, i) for i in range(len(c.node.inputs))]
        return [np.asarray(f(*args)).astype(args[0].dtype)]
    return rule


def _constant_of_shape(c: NodeContext) -> list[np.ndarray]:
    value = c.attr("value")
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return [np.full(tuple(int(d) for d in _in(c, 0)), fill[0], dtype=fill.dtype)]


def _range(c: NodeContext) -> list[np.ndarray]:
    start, limit, delta = (_in(c, i) for i in range(3))
    return [np.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)]


def _expand(c: NodeContext) -> list[np.ndarray]:
    data = _in(c, 0)
    target = sh.broadcast(data.shape, tuple(int(d) for d in _in(c, 1)), c)
    return [np.broadcast_to(data, target).copy()]


def _structural(shape_rule: Callable[[NodeContext], tuple[int, ...]]) -> Callable[[NodeContext], list[np.ndarray]]:
    """Reshape-like ops: the shared shape rule gives the target, row-major order gives the values."""
    return lambda c: [_in(c, 0).reshape(shape_rule(c))]


def _concat(c: NodeContext) -> list[np.ndarray]:
    parts = [c.consts[t] for t in c.node.inputs if t]
    return [np.concatenate(parts, axis=sh.norm_axis(int(c.attr("axis", 0)), parts[0].ndim, c))]


def _transpose(c: NodeContext) -> list[np.ndarray]:
    perm = c.attr("perm")
    return [np.transpose(_in(c, 0), None if perm is None else tuple(perm))]


FOLD_RULES: dict[str, Callable[[NodeContext], list[np.ndarray]]] = {
    "Constant": _constant,
    "Identity": lambda c: [_in(c, 0)],
    "Shape": _shape,
    "Size": lambda c: [np.asarray(int(np.prod(c.shape(0))), dtype=np.int64)],
    "Cast": _cast,
    "Gather": _gather,
    "Slice": _slice,
    "Concat": _concat,
    "Reshape": _structural(sh.SHAPE_RULES["Reshape"]),
    "Flatten": _structural(sh.SHAPE_RULES["Flatten"]),
    "Squeeze": _structural(sh.SHAPE_RULES["Squeeze"]),
    "Unsqueeze": _structural(sh.SHAPE_RULES["Unsqueeze"]),
    "Transpose": _transpose,
    "Add": _same_type(np.add), "Sub": _same_type(np.subtract), "Mul": _same_type(np.multiply), "Div": _div,
    "Neg": _same_type(np.negative), "Sqrt": _same_type(np.sqrt), "Reciprocal": _same_type(np.reciprocal),
    "Pow": _same_type(np.power), "Floor": _same_type(np.floor), "Ceil": _same_type(np.ceil),
    "Min": _same_type(np.minimum), "Max": _same_type(np.maximum),
    "Equal": lambda c: [np.equal(_in(c, 0), _in(c, 1))],
    "Where": lambda c: [np.where(_in(c, 0), _in(c, 1), _in(c, 2))],
    "ConstantOfShape": _constant_of_shape,
    "Range": _range,
    "Expand": _expand,
}
