"""Conversion of ONNX operators to IR nodes: one rule per operator, each returning the IR nodes and the constants it
creates.

Conversion is local (one ONNX node at a time) and literal: BatchNormalization and Mul/Add by a constant become
`scale`, Relu/Clip/... become `act`, Identity/Dropout/Flatten/... become `reshape`, Pad becomes the internal op
`pad`. Folding those into their neighbours is the job of `passes`, not of these rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from tasobuild import ir
from tasobuild.errors import UserError
from tasobuild.importer import shapes as sh
from tasobuild.importer.context import FLOAT_LOWEST, FLOAT_MAX, NodeContext
from tasobuild.importer.fold import StaticGraph
from tasobuild.importer.geometry import Window

PAD = "pad"  # internal op: zero padding of H and W, attrs pads=(t,l,b,r); passes fold it into the consumer


@dataclass(frozen=True)
class Converted:
    nodes: tuple[ir.Node, ...]
    constants: Mapping[str, np.ndarray] = field(default_factory=dict)
    shapes: Mapping[str, ir.Shape] = field(default_factory=dict)  # tensors made up by the rule (not in ONNX)
    # int8 tensors: those the rule writes (their Quant), and those it reads with the Quant the node declares for them
    quant_out: Mapping[str, ir.Quant] = field(default_factory=dict)
    quant_in: Mapping[str, ir.Quant] = field(default_factory=dict)


# IR ops that run on int8 data unchanged (reshapes are views; max pooling only compares), and their int8 op.
ON_INT8 = {"reshape": "reshape", "transpose": "transpose", "maxpool": "qmaxpool"}


def logical(onnx_shape: tuple[int, ...]) -> ir.Shape | None:
    """ONNX [1,C,H,W] -> (C,H,W), [1,A,B] -> (A,B,1), [1,K] -> (K,1,1); None when not a batch-1 rank 2..4 shape."""
    if not 2 <= len(onnx_shape) <= 4 or onnx_shape[0] != 1:
        return None
    dims = tuple(onnx_shape[1:]) + (1,) * (4 - len(onnx_shape))
    return ir.Shape(*dims)


def convert(sg: StaticGraph, rules: Mapping[str, Callable[[NodeContext], Converted]] | None = None) -> ir.Graph:
    """The IR graph of `sg` by `rules` (CONVERT_RULES unless given), with every int8 tensor's Quant."""
    rules = CONVERT_RULES if rules is None else rules
    model = sg.model
    nodes: list[ir.Node] = []
    constants: dict[str, np.ndarray] = {}
    shapes: dict[str, ir.Shape] = {}
    for name, onnx_shape in model.inputs:
        input_shape = logical(onnx_shape)
        if input_shape is None:
            raise UserError(f"{model.file}: input '{name}' has shape {list(onnx_shape)}; "
                            "only batch-1 inputs of rank 2 to 4 are supported")
        shapes[name] = input_shape
    (first_in, first_in_shape), (first_out, _) = model.inputs[0], model.outputs[0]
    quant: dict[str, ir.Quant] = {}
    # int8 tensors whose quantisation is not known yet: an int8 graph input, and what reshapes make of it, until the
    # first int8 node reads one of them and says how it is quantised
    pending: set[str] = {first_in} if model.input_dtype == "int8" else set()
    for node in sg.nodes:
        ctx = NodeContext(model.file, model.opset, node, sg.shapes, sg.consts)
        shapes[node.outputs[0]] = _logical(sg.shapes[node.outputs[0]], node.outputs[0], ctx)
        if node.op not in rules:
            raise ctx.unsupported(sorted(rules))
        out = rules[node.op](ctx)
        nodes += _typed(out, quant, ctx, pending)
        constants.update(out.constants)
        shapes.update(out.shapes)
        quant.update(out.quant_out)
    if pending:
        raise UserError(f"{model.file}: input '{first_in}' is int8 but no int8 node reads it, so its "
                        "quantisation is unknown; dequantize it with DequantizeLinear")
    if (model.output_dtype == "int8") != (first_out in quant):
        raise UserError(f"{model.file}: output '{first_out}' is declared {model.output_dtype}, but the "
                        "graph computes it in the other type")
    for name, _ in model.outputs[1:]:
        if name in quant:
            raise UserError(f"{model.file}: output '{name}' is computed in int8 but declared float32; only the first "
                            "output of a model may be int8 (dequantize the others with DequantizeLinear)")
    return ir.Graph(
        nodes=tuple(nodes),
        shapes=tuple(sorted(shapes.items())),
        constants=tuple(ir.Constant.of(k, v) for k, v in sorted(constants.items())),
        input=first_in, output=first_out, onnx_input_shape=first_in_shape, onnx_output_shape=sg.shapes[first_out],
        input_name=first_in, output_name=first_out,
        more_inputs=tuple(ir.Port(name, name, shape) for name, shape in model.inputs[1:]),
        more_outputs=tuple(ir.Port(name, name, sg.shapes[name]) for name, _ in model.outputs[1:]),
        dtypes=tuple(sorted((t, "int8") for t in quant)), quant=tuple(sorted(quant.items())),
    )


def _typed(out: Converted, quant: dict[str, ir.Quant], c: NodeContext, pending: set[str]) -> tuple[ir.Node, ...]:
    """The rule's nodes, checked against the int8 tensors known so far: an int8 node reads int8 tensors quantised
    as it declares; a float node reads float tensors, except the ops that run on int8 data unchanged (ON_INT8),
    which become their int8 op and pass the input's Quant on (or, from a `pending` tensor, stay pending)."""
    for tensor, expected in out.quant_in.items():
        if tensor in pending:  # the first int8 reader: every pending tensor is quantised as it says
            quant.update((t, expected) for t in pending)
            pending.clear()
        if tensor not in quant:
            raise c.error(f"input '{tensor}' is float32, the node expects int8; quantize it with QuantizeLinear")
        if quant[tensor] != expected:
            raise c.error(f"input '{tensor}' is quantised with {quant[tensor]} where it is made, the node reads it "
                          f"with {expected}; requantising between them is not supported")
    typed = []
    for n in out.nodes:
        from_pending = [t for t in n.inputs if t in pending]
        if from_pending:
            if n.op not in ON_INT8:
                raise _float_only(c, n, from_pending[0])
            typed.append(n.with_(op=ON_INT8[n.op]))
            pending.add(n.output)
            continue
        int8_inputs = [t for t in n.inputs if t in quant and t not in out.quant_in]
        if int8_inputs and n.output not in out.quant_out:
            if n.op not in ON_INT8:
                raise _float_only(c, n, int8_inputs[0])
            n = n.with_(op=ON_INT8[n.op])
            quant[n.output] = quant[int8_inputs[0]]
        typed.append(n)
    return tuple(typed)


def _float_only(c: NodeContext, n: ir.Node, tensor: str) -> UserError:
    return c.error(f"reads the int8 tensor '{tensor}'; a {n.op} node runs on float32 only: dequantize its input "
                   "with DequantizeLinear")


def _logical(onnx_shape: tuple[int, ...], tensor: str, c: NodeContext) -> ir.Shape:
    shape = logical(onnx_shape)
    if shape is None:
        raise c.error(f"tensor '{tensor}' has shape {list(onnx_shape)}; only batch-1 tensors of rank 2 to 4 "
                      "are supported")
    return shape


# --- helpers ------------------------------------------------------------------------------------------------------

def _activation_input(c: NodeContext, i: int = 0) -> str:
    if c.is_const(i):
        raise c.error(f"input {i} ('{c.node.inputs[i]}') is a constant; {c.node.op} of constants is not supported")
    return c.node.inputs[i]


def _node(c: NodeContext, op: str, inputs: tuple[str, ...], weights: tuple[str, ...] = (),
          act: ir.Activation = ir.NO_ACTIVATION, **attrs: Any) -> ir.Node:
    return ir.Node(name=c.node.name, op=op, inputs=inputs, output=c.node.outputs[0], weights=weights,
                   attrs=ir.attrs(**attrs), act=act)


def _spatial_2d(c: NodeContext, values: tuple[int, ...], fill: int) -> tuple[int, int]:
    """1-D convs/pools run as 2-D ones over (L, 1): logical (C, L, 1)."""
    if len(values) == 1:
        return values[0], fill
    if len(values) == 2:
        return values[0], values[1]
    raise c.error(f"{len(values)} spatial dims are not supported (1 or 2)")


def _windows_2d(c: NodeContext, kernel: tuple[int, ...],
                ceil: bool) -> tuple[dict[str, Any], tuple[Window, ...]]:
    """The IR's 2-D geometry attributes (kernel, stride, dilation, explicit pads) and the per-axis windows."""
    wins = sh.spatial_windows(c, c.shape(0), kernel, ceil)
    n = len(wins)
    strides = tuple(c.attr("strides", (1,) * n))
    dilations = tuple(c.attr("dilations", (1,) * n))
    begin = _spatial_2d(c, tuple(w.pad_begin for w in wins), 0)
    end = _spatial_2d(c, tuple(w.pad_end for w in wins), 0)
    return dict(kernel=_spatial_2d(c, kernel, 1), stride=_spatial_2d(c, strides, 1),
                dilation=_spatial_2d(c, dilations, 1), pads=(begin[0], begin[1], end[0], end[1])), wins


def _channel_vector(c: NodeContext, value: np.ndarray, x: tuple[int, ...]) -> np.ndarray:
    """A constant that broadcasts onto x per channel (axis 1) or as a scalar, as a [C] vector."""
    if sh.broadcast(x, value.shape, c) != x:
        raise c.error(f"constant of shape {list(value.shape)} would broadcast the activation {list(x)} "
                      "to a larger shape")
    padded = value.reshape((1,) * (len(x) - value.ndim) + value.shape)
    if any(d != 1 for i, d in enumerate(padded.shape) if i != 1):
        raise c.error(f"constant of shape {list(value.shape)} on an activation of shape {list(x)} varies along an "
                      "axis other than the channel axis 1; only per-channel or scalar constants are supported")
    return np.broadcast_to(padded.reshape(-1).astype(np.float64), (x[1],)).copy()


# --- rules --------------------------------------------------------------------------------------------------------

def _conv(c: NodeContext) -> Converted:
    x = _activation_input(c)
    w = np.asarray(c.const(1, "weights"), dtype=np.float32)
    b = np.asarray(c.const(2, "bias"), dtype=np.float32) if c.has(2) else np.zeros(w.shape[0], np.float32)
    geometry, _ = _windows_2d(c, tuple(w.shape[2:]), ceil=False)
    w = w.reshape(w.shape[:2] + geometry["kernel"])
    name = c.node.name
    node = _node(c, "conv", (x,), (f"{name}.W", f"{name}.b"), groups=int(c.attr("group", 1)), **geometry)
    return Converted((node,), {f"{name}.W": w, f"{name}.b": b})


def _pool(c: NodeContext) -> Converted:
    x = _activation_input(c)
    kernel = tuple(c.attr("kernel_shape"))
    if any(d != 1 for d in c.attr("dilations", ())):
        raise c.error("dilations > 1 on pooling are not supported")
    geometry, wins = _windows_2d(c, kernel, ceil=bool(c.attr("ceil_mode", 0)))
    geometry.pop("dilation")
    if c.node.op == "MaxPool":
        return Converted((_node(c, "maxpool", (x,), **geometry),))
    include = int(c.attr("count_include_pad", 0))
    if include and any(w.overhang for w in wins):
        # ORT divides the ceil-mode overhang windows by the part inside input + declared pads: without declared
        # pads that is exactly count_include_pad=0; with them, the IR cannot say it.
        if any(w.pad_begin or w.pad_end - w.overhang for w in wins):
            raise c.error("AveragePool with ceil_mode=1, count_include_pad=1 and padding whose last window "
                          "overhangs the padding is not supported")
        include = 0
    return Converted((_node(c, "avgpool", (x,), count_include_pad=include, **geometry),))


def _global_pool(c: NodeContext) -> Converted:
    x = _activation_input(c)
    if c.node.op == "GlobalAveragePool":
        return Converted((_node(c, "gap", (x,)),))
    s = logical(c.shape(0))
    assert s is not None
    return Converted((_node(c, "maxpool", (x,), kernel=(s.h, s.w), stride=(1, 1), pads=(0, 0, 0, 0)),))


def _reduce_mean(c: NodeContext) -> Converted:
    x = c.shape(0)
    axes = {sh.norm_axis(a, len(x), c) for a in (c.ints(1, "axes", "axes") or range(len(x)))}
    if len(x) != 4 or axes != {2, 3}:
        raise c.error(f"ReduceMean over axes {sorted(axes)} of {list(x)} is not supported (only over H and W of NCHW)")
    return Converted((_node(c, "gap", (_activation_input(c),)),))


def _fc(c: NodeContext, w: np.ndarray, b: np.ndarray) -> Converted:
    x = _activation_input(c)
    if len(c.shape(0)) != 2:
        raise c.error(f"{c.node.op} on an input of shape {list(c.shape(0))} is not supported (only [1, K])")
    name = c.node.name
    node = _node(c, "fc", (x,), (f"{name}.W", f"{name}.b"))
    return Converted((node,), {f"{name}.W": np.ascontiguousarray(w, np.float32), f"{name}.b": b.astype(np.float32)})


def _gemm(c: NodeContext) -> Converted:
    if c.attr("transA", 0):
        raise c.error("Gemm with transA=1 is not supported")
    # float32 throughout: one IEEE multiply rounds exactly as float64-then-round would, and the weights are big
    b = np.asarray(c.const(1, "weights"), dtype=np.float32)
    w = b if c.attr("transB", 0) else b.T
    alpha = np.float32(c.attr("alpha", 1.0))
    w = w * alpha if alpha != 1 else w
    bias = np.zeros(w.shape[0], np.float32)
    if c.has(2):
        bias = np.broadcast_to(np.asarray(c.const(2, "bias"), dtype=np.float32), (1, w.shape[0]))[0]
        bias = bias * np.float32(c.attr("beta", 1.0))
    return _fc(c, w, bias)


def _matmul(c: NodeContext) -> Converted:
    b = np.asarray(c.const(1, "weights"), dtype=np.float32)
    if b.ndim != 2:
        raise c.error(f"MatMul with weights of shape {list(b.shape)} is not supported (only 2-D)")
    return _fc(c, b.T, np.zeros(b.shape[1], np.float32))


def _scale(c: NodeContext, s: np.ndarray, t: np.ndarray) -> Converted:
    name = c.node.name
    node = _node(c, "scale", (_activation_input(c, _live_index(c)),), (f"{name}.s", f"{name}.t"))
    return Converted((node,), {f"{name}.s": s.astype(np.float32), f"{name}.t": t.astype(np.float32)})


def _live_index(c: NodeContext) -> int:
    return 0 if not c.is_const(0) else 1


def _batch_norm(c: NodeContext) -> Converted:
    if c.attr("training_mode", 0):
        raise c.error("BatchNormalization with training_mode=1 is not supported; export in eval mode")
    x = c.shape(0)
    params = [np.asarray(c.const(i, what), dtype=np.float64)
              for i, what in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance"))]
    for p, what in zip(params, ("scale", "bias", "mean", "variance")):
        if p.shape != (x[1],):
            raise c.error(f"{what} has shape {list(p.shape)}, expected [{x[1]}]")
    gamma, beta, mean, var = params
    s = gamma / np.sqrt(var + float(c.attr("epsilon", 1e-5)))
    return _scale(c, s, beta - mean * s)


def _elementwise(c: NodeContext) -> Converted:
    op = c.node.op
    live = [i for i in (0, 1) if not c.is_const(i)]
    if len(live) == 2:
        a, b = c.shape(0), c.shape(1)
        if op != "Add":
            raise c.error(f"{op} of two activations is not supported (only Add)")
        if a != b:
            raise c.error(f"Add of activations of different shapes {list(a)} and {list(b)} is not supported")
        return Converted((_node(c, "add", tuple(c.node.inputs[:2])),))
    if not live:
        raise c.error(f"{op} of two constants was not folded")
    i = live[0]
    x = c.shape(i)
    v = _channel_vector(c, np.asarray(c.const(1 - i)), x)
    one, zero = np.ones_like(v), np.zeros_like(v)
    if op == "Add":
        return _scale(c, one, v)
    if op == "Mul":
        return _scale(c, v, zero)
    if op == "Sub":
        return _scale(c, one, -v) if i == 0 else _scale(c, -one, v)
    if i == 1:
        raise c.error("division of a constant by an activation is not supported")
    return _scale(c, 1.0 / v, zero)


def _activation(c: NodeContext) -> ir.Activation:
    op = c.node.op
    if op == "Relu":
        return ir.Activation("relu")
    if op == "Sigmoid":
        return ir.Activation("sigmoid")
    if op == "LeakyRelu":
        return ir.Activation("leaky_relu", a=float(c.attr("alpha", 0.01)))
    lo, hi = c.attr("min"), c.attr("max")  # Clip before opset 11: attributes; after: optional inputs
    if c.has(1):
        lo = float(np.asarray(c.const(1, "min")).reshape(()))
    if c.has(2):
        hi = float(np.asarray(c.const(2, "max")).reshape(()))
    if lo == 0.0 and hi is None:
        return ir.Activation("relu")
    return ir.Activation("clip", a=FLOAT_LOWEST if lo is None else float(lo), b=FLOAT_MAX if hi is None else float(hi))


def _act(c: NodeContext) -> Converted:
    return Converted((_node(c, "act", (_activation_input(c),), act=_activation(c)),))


def _concat(c: NodeContext) -> Converted:
    inputs = tuple(_activation_input(c, i) for i in range(len(c.node.inputs)))
    rank = len(c.shape(0))
    if sh.norm_axis(int(c.attr("axis", 0)), rank, c) != 1:
        raise c.error(f"Concat on axis {c.attr('axis', 0)} of rank {rank} is not supported (only the channel axis 1)")
    return Converted((_node(c, "concat", inputs),))


def _reshape(c: NodeContext) -> Converted:
    if c.node.op == "Cast" and int(c.attr("to")) != onnx.TensorProto.FLOAT:
        raise c.error("Cast of an activation to a type other than float32 is not supported")
    return Converted((_node(c, "reshape", (_activation_input(c),)),))


def _transpose(c: NodeContext) -> Converted:
    x = c.shape(0)
    perm = tuple(c.attr("perm", tuple(reversed(range(len(x))))))
    if perm[0] != 0:
        raise c.error(f"Transpose with perm {list(perm)} moves the batch axis; it must stay first")
    moved = [p for p in perm[1:] if x[p] != 1]
    if moved == sorted(moved):  # only unit axes move: the row-major order of the data is unchanged
        return _reshape(c)
    logical_perm = tuple(p - 1 for p in perm[1:]) + tuple(range(len(x) - 1, 3))
    return Converted((_node(c, "transpose", (_activation_input(c),), perm=logical_perm),))


def _softmax(c: NodeContext) -> Converted:
    x = c.shape(0)
    default = 1 if c.opset < 13 else -1
    axis = sh.norm_axis(int(c.attr("axis", default)), len(x), c)
    group = int(np.prod(x[axis:])) if c.opset < 13 else x[axis]
    if group != int(np.prod(x)):
        raise c.error(f"Softmax over axis {axis} of {list(x)} is not supported (only over all features of a vector)")
    src, out = _activation_input(c), c.node.outputs[0]
    vector = ir.Shape(int(np.prod(x)), 1, 1)
    if logical(x) == vector:
        return Converted((_node(c, "softmax", (src,)),))
    flat, soft = f"{out}:flat", f"{out}:softmax"
    name = c.node.name
    return Converted((ir.Node(f"{name}:flat", "reshape", (src,), flat),
                    ir.Node(name, "softmax", (flat,), soft),
                    ir.Node(f"{name}:unflat", "reshape", (soft,), out)),
                   shapes={flat: vector, soft: vector})


def _lrn(c: NodeContext) -> Converted:
    if len(c.shape(0)) != 4:
        raise c.error(f"LRN on a rank-{len(c.shape(0))} tensor is not supported (only NCHW)")
    return Converted((_node(c, "lrn", (_activation_input(c),), size=int(c.attr("size")),
                          alpha=float(c.attr("alpha", 1e-4)), beta=float(c.attr("beta", 0.75)),
                          bias=float(c.attr("bias", 1.0))),))


def _pad(c: NodeContext) -> Converted:
    x = c.shape(0)
    mode = c.attr("mode", "constant")
    value = float(np.asarray(c.const(2, "pad value")).reshape(-1)[0]) if c.has(2) else float(c.attr("value", 0.0))
    if mode != "constant" or value != 0.0:
        raise c.error(f"Pad with mode '{mode}' and value {value:g} is not supported (only constant 0)")
    full = sh.full_pads(c, x)
    n = len(x)
    if n not in (3, 4) or full[0] or full[1] or full[n] or full[n + 1] or min(full) < 0:
        raise c.error(f"Pad {full} of {list(x)} is not supported (only non-negative padding of H and W)")
    begin = _spatial_2d(c, tuple(full[2:n]), 0)
    end = _spatial_2d(c, tuple(full[n + 2:]), 0)
    return Converted((_node(c, PAD, (_activation_input(c),), pads=(begin[0], begin[1], end[0], end[1])),))


CONVERT_RULES: dict[str, Callable[[NodeContext], Converted]] = {
    "Conv": _conv,
    "MaxPool": _pool, "AveragePool": _pool,
    "GlobalAveragePool": _global_pool, "GlobalMaxPool": _global_pool, "ReduceMean": _reduce_mean,
    "Gemm": _gemm, "MatMul": _matmul,
    "BatchNormalization": _batch_norm,
    "Add": _elementwise, "Sub": _elementwise, "Mul": _elementwise, "Div": _elementwise,
    "Relu": _act, "Clip": _act, "LeakyRelu": _act, "Sigmoid": _act,
    "Concat": _concat,
    **{op: _reshape for op in ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Cast")},
    "Transpose": _transpose,
    "Softmax": _softmax,
    "LRN": _lrn,
    "Pad": _pad,
}

SUPPORTED_OPS = tuple(sorted(CONVERT_RULES))
