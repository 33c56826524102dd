"""Quantised ONNX: the QDQ form rewritten to the QOperator form, and the QOperator operators converted to int8 IR
nodes (`qconv`, `qfc`, `qadd`, `qavgpool`, `qgap`, `quantize`, `dequantize`; max pooling and reshapes of int8
tensors stay what they are, on int8).

QDQ (onnxruntime.quantization's QuantFormat.QDQ, tf2onnx from an int8 .tflite): a float operator whose activation
inputs come from DequantizeLinear, whose weights and bias are DequantizeLinear of int8/int32 constants, and whose one
consumer is a QuantizeLinear (a Relu or Clip in between becomes the output clamp) is the QOperator node of the same
meaning (Conv -> QLinearConv, Gemm -> QGemm, MatMul -> QLinearMatMul, Add -> QLinearAdd, AveragePool ->
QLinearAveragePool, GlobalAveragePool -> QLinearGlobalAveragePool); MaxPool and reshapes whose input and output
share their quantisation run on the int8 tensor directly. A pattern that does not match stays float, with the model's
own QuantizeLinear / DequantizeLinear around it: the graph then mixes float and int8 parts, as the model says.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import numpy as np

from tasobuild import ir
from tasobuild.importer.context import NodeContext
from tasobuild.importer.convert import Converted, _windows_2d, logical
from tasobuild.importer.fold import StaticGraph
from tasobuild.importer.reader import OnnxNode

INT8_MIN, INT8_MAX = -128, 127
ACT_ATTR = "tasobuild_activation"  # a Relu/Clip folded into a rewritten QDQ node: ("Relu",) or ("Clip", lo, hi)
# Float ops that run on int8 data unchanged when input and output share their quantisation.
SAME_QUANT_OPS = ("MaxPool", "GlobalMaxPool", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")


# ------------------------------------------------------------------------------------------- QDQ -> QOperator


def rewrite_qdq(sg: StaticGraph) -> StaticGraph:
    """The QDQ patterns of `sg` as QOperator nodes (see the module docstring); DequantizeLinear nodes of constants
    no node needs any more disappear, the others become float constants."""
    producer = {t: n for n in sg.nodes for t in n.outputs}
    consumers: dict[str, list[OnnxNode]] = defaultdict(list)
    for n in sg.nodes:
        for t in n.inputs:
            consumers[t].append(n)
    outputs = {name for name, _ in sg.model.outputs}

    def dq_of(tensor: str, const: bool) -> OnnxNode | None:
        p = producer.get(tensor)
        if p is None or p.op != "DequantizeLinear" or (p.inputs[0] in sg.consts) != const:
            return None
        return p

    def sole_q(tensor: str) -> tuple[OnnxNode, tuple[Any, ...]] | None:
        """The QuantizeLinear that is the one consumer of `tensor` (through a Relu or Clip), and that activation."""
        users = consumers.get(tensor, [])
        if tensor in outputs or len(users) != 1:
            return None
        user, act = users[0], ()
        if user.op in ("Relu", "Clip"):
            found = _activation_of(user, sg.consts)
            if found is None or user.outputs[0] in outputs or len(consumers.get(user.outputs[0], [])) != 1:
                return None
            user, act = consumers[user.outputs[0]][0], found
        return (user, act) if user.op == "QuantizeLinear" else None

    replaced: dict[str, OnnxNode] = {}  # node name -> its QOperator node
    gone: set[str] = set()  # names of the QuantizeLinear / activation nodes folded into one
    for n in sg.nodes:
        rule = QDQ_RULES.get(n.op)
        q = sole_q(n.outputs[0]) if rule is not None else None
        if rule is None or q is None:
            continue
        quant_node, act = q
        new = rule(n, quant_node, dq_of, sg.consts)
        if new is None:
            continue
        attrs = dict(new.attrs) | ({ACT_ATTR: act} if act else {})
        replaced[n.name] = replace(new, outputs=quant_node.outputs, attrs=MappingProxyType(attrs))
        gone.add(quant_node.name)
        gone.update(u.name for u in consumers[n.outputs[0]] if u.op in ("Relu", "Clip"))
    nodes = [replaced.get(n.name, n) for n in sg.nodes if n.name not in gone]
    return _drop_dead_dequantize(sg, nodes)


def _drop_dead_dequantize(sg: StaticGraph, nodes: list[OnnxNode]) -> StaticGraph:
    """DequantizeLinear of constants: gone when unused, else folded to the float constant (a float op reads it)."""
    used = {t for n in nodes for t in n.inputs} | {name for name, _ in sg.model.outputs}
    consts = dict(sg.consts)
    live = []
    for n in nodes:
        if n.op == "DequantizeLinear" and n.inputs[0] in consts:
            if n.outputs[0] in used:
                consts[n.outputs[0]] = _dequantized(n, consts)
            continue
        if n.op == "DequantizeLinear" and n.outputs[0] not in used:
            continue
        if n.op == "QuantizeLinear" and n.outputs[0] not in used:
            continue
        live.append(n)
    return replace(sg, nodes=tuple(live), consts=MappingProxyType(consts))


def _dequantized(n: OnnxNode, consts: Mapping[str, np.ndarray]) -> np.ndarray:
    x = np.asarray(consts[n.inputs[0]]).astype(np.float64)
    scale = np.asarray(consts[n.inputs[1]], dtype=np.float64)
    zp = np.asarray(consts[n.inputs[2]], dtype=np.float64) if len(n.inputs) > 2 and n.inputs[2] else 0.0
    if np.ndim(scale) == 1 and x.ndim > 1:
        axis = int(n.attr("axis", 1)) % x.ndim
        shape = [1] * x.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zp = np.asarray(zp).reshape(shape) if np.ndim(zp) == 1 else zp
    return ((x - zp) * scale).astype(np.float32)


def _activation_of(n: OnnxNode, consts: Mapping[str, np.ndarray]) -> tuple[Any, ...] | None:
    if n.op == "Relu":
        return ("Relu",)
    lo, hi = n.attr("min"), n.attr("max")
    for i in (1, 2):
        if len(n.inputs) > i and n.inputs[i]:
            if n.inputs[i] not in consts:
                return None
            value = float(np.asarray(consts[n.inputs[i]]).reshape(()))
            lo, hi = (value, hi) if i == 1 else (lo, value)
    return ("Clip", -np.inf if lo is None else float(lo), np.inf if hi is None else float(hi))


DqOf = Callable[[str, bool], "OnnxNode | None"]
Consts = Mapping[str, np.ndarray]
Rule = Callable[[OnnxNode, OnnxNode, DqOf, Consts], "OnnxNode | None"]


def _params(dq: OnnxNode) -> tuple[str, str, str]:
    """(int tensor, scale, zero point) of a DequantizeLinear; QuantizeLinear has the same input order."""
    inputs = dq.inputs + ("",) * (3 - len(dq.inputs))
    return inputs[0], inputs[1], inputs[2]


def _linear(kind: str) -> Rule:
    """Conv / Gemm / MatMul between DequantizeLinear inputs and a QuantizeLinear output."""
    def rule(n: OnnxNode, q: OnnxNode, dq_of: DqOf, consts: Consts) -> OnnxNode | None:
        x, w = dq_of(n.inputs[0], False), dq_of(n.inputs[1], True)
        b = dq_of(n.inputs[2], True) if len(n.inputs) > 2 and n.inputs[2] else None
        if x is None or w is None or (len(n.inputs) > 2 and n.inputs[2] and b is None):
            return None
        _, ys, yzp = _params(q)
        inputs: tuple[str, ...]
        if kind == "QLinearMatMul":
            inputs = _params(x) + _params(w) + (ys, yzp)
        elif kind == "QGemm":
            inputs = _params(x) + _params(w) + ((b.inputs[0],) if b else ("",)) + (ys, yzp)
        else:
            inputs = _params(x) + _params(w) + (ys, yzp) + ((b.inputs[0],) if b else ())
        attrs = dict(n.attrs) | {"tasobuild_weight_axis": int(w.attr("axis", 1))}
        return replace(n, op=kind, inputs=inputs, attrs=MappingProxyType(attrs))

    return rule


def _add(n: OnnxNode, q: OnnxNode, dq_of: DqOf, consts: Consts) -> OnnxNode | None:
    a, b = dq_of(n.inputs[0], False), dq_of(n.inputs[1], False)
    if a is None or b is None:
        return None
    return replace(n, op="QLinearAdd", inputs=_params(a) + _params(b) + _params(q)[1:])


def _unary(kind: str) -> Rule:
    def rule(n: OnnxNode, q: OnnxNode, dq_of: DqOf, consts: Consts) -> OnnxNode | None:
        x = dq_of(n.inputs[0], False)
        return None if x is None else replace(n, op=kind, inputs=_params(x) + _params(q)[1:])

    return rule


def _same_quant(n: OnnxNode, q: OnnxNode, dq_of: DqOf, consts: Consts) -> OnnxNode | None:
    """MaxPool, reshapes: on the int8 tensor itself, when the output is quantised exactly as the input."""
    x = dq_of(n.inputs[0], False)
    if x is None or any(not np.array_equal(_value(a, consts), _value(b, consts))
                        for a, b in zip(_params(x)[1:], _params(q)[1:], strict=True)):
        return None
    return replace(n, inputs=(x.inputs[0],) + n.inputs[1:])


def _value(tensor: str, consts: Consts) -> np.ndarray:
    return np.asarray(consts[tensor]) if tensor in consts else np.zeros(0)


QDQ_RULES: dict[str, Rule] = {
    "Conv": _linear("QLinearConv"), "Gemm": _linear("QGemm"), "MatMul": _linear("QLinearMatMul"),
    "Add": _add, "AveragePool": _unary("QLinearAveragePool"),
    "GlobalAveragePool": _unary("QLinearGlobalAveragePool"),
    **{op: _same_quant for op in SAME_QUANT_OPS},
}


# ----------------------------------------------------------------------------------------- QOperator -> IR


def _quant(c: NodeContext, scale_at: int, zp_at: int, what: str) -> ir.Quant:
    """A per-tensor int8 quantisation from the node's (scale, zero point) inputs."""
    scale = np.asarray(c.const(scale_at, f"{what} scale"))
    zp = np.asarray(c.const(zp_at, f"{what} zero point")) if c.has(zp_at) else np.zeros((), np.uint8)
    if zp.dtype != np.int8:
        raise c.error(f"{what} is {zp.dtype.name if zp.dtype != np.uint8 or c.has(zp_at) else 'uint8'}; only int8 "
                      "activations are supported (quantize with activation_type=QInt8)")
    if scale.size != 1 or zp.size != 1:
        raise c.error(f"{what} has {scale.size} scales; activations take one scale and zero point (per tensor)")
    value = float(np.float32(scale.reshape(())))
    if not (np.isfinite(value) and value > 0):
        raise c.error(f"{what} scale is {value}; it must be positive and finite")
    return ir.Quant(value, int(zp.reshape(())))


def _weight_scales(c: NodeContext, scale_at: int, zp_at: int, channels: int) -> np.ndarray:
    scale = np.asarray(c.const(scale_at, "weight scale"), dtype=np.float32).reshape(-1)
    if c.has(zp_at):
        zp = np.asarray(c.const(zp_at, "weight zero point"))
        if zp.dtype != np.int8 or np.any(zp != 0):
            raise c.error("weights must be symmetric int8 (zero point 0), as TensorFlow Lite's are; quantize with "
                          "weight_type=QInt8 and symmetric weights")
    if scale.size not in (1, channels) or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise c.error(f"weight scales must be one or {channels} positive finite values, got {scale.size}")
    return np.broadcast_to(scale, (channels,)).astype(np.float32)


def _int8_weight(c: NodeContext, at: int) -> np.ndarray:
    w = np.asarray(c.const(at, "weights"))
    if w.dtype != np.int8:
        raise c.error(f"weights are {w.dtype.name}; only int8 weights are supported")
    return w


def _int32_bias(c: NodeContext, at: int, channels: int) -> np.ndarray:
    if not c.has(at):
        return np.zeros(channels, np.int32)
    b = np.asarray(c.const(at, "bias"))
    if b.dtype != np.int32 or b.size != channels:
        raise c.error(f"bias must be {channels} int32 values, got {b.size} {b.dtype.name}")
    return b.reshape(-1).astype(np.int32)


def _clamp(c: NodeContext, q: ir.Quant) -> dict[str, int]:
    """The output clamp of a folded Relu / Clip, as TFLite's CalculateActivationRangeQuantized computes it."""
    act = c.attr(ACT_ATTR, ())
    lo, hi = INT8_MIN, INT8_MAX
    bounds = (0.0, np.inf) if act[:1] == ("Relu",) else (act[1], act[2]) if act else (-np.inf, np.inf)
    if np.isfinite(bounds[0]):
        lo = max(lo, q.zero_point + int(_round_half_away(bounds[0] / q.scale)))
    if np.isfinite(bounds[1]):
        hi = min(hi, q.zero_point + int(_round_half_away(bounds[1] / q.scale)))
    return {"act_min": lo, "act_max": max(lo, hi)}


def _round_half_away(x: float) -> float:
    return float(np.sign(x) * np.floor(abs(x) + 0.5))


# The largest requantisation multiplier the kernels take: a shift above 30 would overflow TFLite's left shift.
MAX_MULTIPLIER = 2.0 ** 30


def _int8_node(c: NodeContext, op: str, inputs: tuple[str, ...], quant_in: Mapping[str, ir.Quant], q_out: ir.Quant,
               weights: Mapping[str, np.ndarray] | None = None, **attrs: Any) -> Converted:
    """The int8 IR node, its constants and the quantisation it reads and writes; refused when a requantisation
    multiplier (input scale x weight scale / output scale) is beyond what the kernels' fixed point holds."""
    scales = weights["s"].astype(np.float64) if weights else np.ones(1)
    largest = max(q.scale for q in quant_in.values()) * float(np.max(scales)) / q_out.scale
    if not largest < MAX_MULTIPLIER:
        raise c.error(f"requantisation multiplier {largest:.3g} (input scale x weight scale / output scale) is "
                      "2^30 or more; the output scale is too small for its inputs")
    name = c.node.name
    node = ir.Node(name=name, op=op, inputs=inputs, output=c.node.outputs[0],
                   weights=tuple(f"{name}.{k}" for k in (weights or {})), attrs=ir.attrs(**attrs, **_clamp(c, q_out)))
    return Converted((node,), {f"{name}.{k}": v for k, v in (weights or {}).items()},
                     quant_out={c.node.outputs[0]: q_out}, quant_in=quant_in)


def _qlinear_conv(c: NodeContext) -> Converted:
    x, q_x, q_y = c.node.inputs[0], _quant(c, 1, 2, "input"), _quant(c, 6, 7, "output")
    w = _int8_weight(c, 3)
    geometry, _ = _windows_2d(_renamed(c, (x, c.node.inputs[3])), tuple(w.shape[2:]), ceil=False)
    w = w.reshape(w.shape[:2] + geometry["kernel"])
    weights = {"W": w, "b": _int32_bias(c, 8, w.shape[0]), "s": _weight_scales(c, 4, 5, w.shape[0])}
    return _int8_node(c, "qconv", (x,), {x: q_x}, q_y, weights, groups=int(c.attr("group", 1)), **geometry)


def _renamed(c: NodeContext, inputs: tuple[str, ...]) -> NodeContext:
    return replace(c, node=replace(c.node, inputs=inputs))


def _qfc(c: NodeContext, w: np.ndarray, bias_at: int | None, scales: np.ndarray, q_y: ir.Quant) -> Converted:
    x = c.node.inputs[0]
    if len(c.shape(0)) != 2:
        raise c.error(f"{c.node.op} on an input of shape {list(c.shape(0))} is not supported (only [1, K])")
    bias = _int32_bias(c, bias_at, w.shape[0]) if bias_at is not None else np.zeros(w.shape[0], np.int32)
    weights = {"W": np.ascontiguousarray(w), "b": bias, "s": scales}
    return _int8_node(c, "qfc", (x,), {x: _quant(c, 1, 2, "input")}, q_y, weights)


def _qlinear_matmul(c: NodeContext) -> Converted:
    b = _int8_weight(c, 3)
    if b.ndim != 2:
        raise c.error(f"QLinearMatMul with weights of shape {list(b.shape)} is not supported (only 2-D)")
    return _qfc(c, b.T, None, _weight_scales(c, 4, 5, b.shape[1]), _quant(c, 6, 7, "output"))


def _qgemm(c: NodeContext) -> Converted:
    if c.attr("transA", 0) or float(c.attr("alpha", 1.0)) != 1.0:
        raise c.error("QGemm with transA=1 or alpha != 1 is not supported")
    if not c.has(7):
        raise c.error("QGemm with a float output (no y_scale) is not supported; quantize its output")
    b = _int8_weight(c, 3)
    w = b if c.attr("transB", 0) else b.T
    return _qfc(c, w, 6, _weight_scales(c, 4, 5, w.shape[0]), _quant(c, 7, 8, "output"))


def _qlinear_add(c: NodeContext) -> Converted:
    a, b = c.node.inputs[0], c.node.inputs[3]
    if c.is_const(0) or c.is_const(3):
        raise c.error("QLinearAdd of a constant is not supported (only of two activations)")
    if c.shape(0) != c.shape(3):
        raise c.error(f"QLinearAdd of different shapes {list(c.shape(0))} and {list(c.shape(3))} is not supported")
    q_a, q_b = _quant(c, 1, 2, "input A"), _quant(c, 4, 5, "input B")
    quant_in = {a: q_a} if a == b else {a: q_a, b: q_b}
    if a == b and q_a != q_b:
        raise c.error("QLinearAdd reads one tensor with two quantisations")
    return _int8_node(c, "qadd", (a, b), quant_in, _quant(c, 6, 7, "output"))


def _qlinear_pool(c: NodeContext) -> Converted:
    x = c.node.inputs[0]
    if c.attr("channels_last", 0):
        raise c.error("channels_last=1 is not supported (export NCHW)")
    q_x, q_y = _quant(c, 1, 2, "input"), _quant(c, 3, 4, "output")
    if c.node.op == "QLinearGlobalAveragePool":
        return _int8_node(c, "qgap", (x,), {x: q_x}, q_y)
    kernel = tuple(c.attr("kernel_shape"))
    geometry, wins = _windows_2d(c, kernel, ceil=bool(c.attr("ceil_mode", 0)))
    geometry.pop("dilation")
    include = int(c.attr("count_include_pad", 0))
    if include and any(w.overhang for w in wins):
        raise c.error("QLinearAveragePool with ceil_mode=1 and count_include_pad=1 is not supported")
    return _int8_node(c, "qavgpool", (x,), {x: q_x}, q_y, count_include_pad=include, **geometry)


def _quantize_linear(c: NodeContext) -> Converted:
    if c.shape(1) not in ((), (1,)):
        raise c.error("per-channel QuantizeLinear of an activation is not supported (one scale per tensor)")
    node = ir.Node(c.node.name, "quantize", (_live(c),), c.node.outputs[0])
    return Converted((node,), quant_out={c.node.outputs[0]: _quant(c, 1, 2, "output")})


def _dequantize_linear(c: NodeContext) -> Converted:
    x = _live(c)
    if c.shape(1) not in ((), (1,)):
        raise c.error("per-channel DequantizeLinear of an activation is not supported (one scale per tensor)")
    return Converted((ir.Node(c.node.name, "dequantize", (x,), c.node.outputs[0]),),
                     quant_in={x: _quant(c, 1, 2, "input")})


def _qlinear_softmax(c: NodeContext) -> Converted:
    """com.microsoft's QLinearSoftmax (what onnxruntime's QOperator form makes of a final Softmax): the softmax runs
    in float between a dequantize and a quantize, as the QDQ form of the same network runs it."""
    x, out, name = _live(c), c.node.outputs[0], c.node.name
    vector = ir.Shape(int(np.prod(c.shape(0))), 1, 1)
    if logical(tuple(c.shape(0))) != vector:
        raise c.error(f"QLinearSoftmax of a {list(c.shape(0))} tensor is not supported (only of a vector)")
    real_in, real_out = f"{out}:dequantized", f"{out}:softmax"
    return Converted((ir.Node(f"{name}:dequantize", "dequantize", (x,), real_in),
                      ir.Node(name, "softmax", (real_in,), real_out),
                      ir.Node(f"{name}:quantize", "quantize", (real_out,), out)),
                     shapes={real_in: vector, real_out: vector}, quant_in={x: _quant(c, 1, 2, "input")},
                     quant_out={out: _quant(c, 3, 4, "output")})


def _live(c: NodeContext) -> str:
    if c.is_const(0):
        raise c.error("of a constant was not folded")
    return c.node.inputs[0]


Q_CONVERT_RULES: dict[str, Callable[[NodeContext], Converted]] = {
    "QLinearConv": _qlinear_conv, "QLinearMatMul": _qlinear_matmul, "QGemm": _qgemm, "QLinearAdd": _qlinear_add,
    "QLinearAveragePool": _qlinear_pool, "QLinearGlobalAveragePool": _qlinear_pool,
    "QuantizeLinear": _quantize_linear, "DequantizeLinear": _dequantize_linear, "QLinearSoftmax": _qlinear_softmax,
}
