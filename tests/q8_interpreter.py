"""TensorFlow Lite's int8 arithmetic run on an imported int8 graph, in NumPy: the reference for networks that have no
.tflite (the onnxruntime-quantised ones), so that they too can be held to TFLite's arithmetic bit for bit.

`run(graph, x)` takes the float input in ONNX layout and returns the graph's output (float after a dequantize).
Every int8 node runs the port of TFLite's reference kernel in tests/q8_reference.py (requantisation, add, mean,
average pooling, quantize); the float nodes of a graph that mixes float and int8 parts (a float stem, a final
softmax, a transpose) run tests/ir_interpreter.py's float64 operators, rounded to float32. The one liberty is
speed: a convolution's and a fully connected layer's int32 accumulators are summed as float64 matrix products,
which are exact (int8 x int8 products summed over fewer than 2^38 terms stay below 2^53), then requantised by the
port. Tensors are (C, H, W) arrays, as in tests/ir_interpreter.py. An int8 node TFLite has no kernel for (ORT's
QLinearAveragePool with another output quantisation than its input's) raises NotImplementedError.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tasobuild import ir
from tests import ir_interpreter as floats
from tests import q8_reference as ref

Tensor = np.ndarray


def run(graph: ir.Graph, x: np.ndarray) -> np.ndarray:
    s = graph.shape(graph.input)
    env: dict[str, Tensor] = {graph.input: np.asarray(x).reshape(s.c, s.h, s.w)}
    for n in graph.nodes:
        want = graph.shape(n.output)
        xs = [env[t] for t in n.inputs]
        if n.op == "reshape" or n.op == "transpose":  # moves elements, of either type
            y = xs[0].reshape(want.c, want.h, want.w) if n.op == "reshape" else np.transpose(xs[0], n.attr("perm"))
        elif n.op in OPS:
            y = OPS[n.op](graph, n, xs)
        elif n.op in floats.OPS and graph.dtype(n.output) == "float32":
            w = [graph.const(k).astype(np.float64) for k in n.weights]
            y = floats.activate(n.act, floats.OPS[n.op](n, [t.astype(np.float64) for t in xs], w)).astype(np.float32)
        else:
            raise NotImplementedError(f"{n.name}: no TFLite reference for {n.op}")
        assert y.shape == (want.c, want.h, want.w), f"{n.name}: computed {y.shape}, graph says {want}"
        env[n.output] = y
    return env[graph.output].reshape(graph.onnx_output_shape)


def _multipliers(graph: ir.Graph, n: ir.Node, channels: int) -> tuple[np.ndarray, np.ndarray]:
    q_in, q_out = graph.quant_of(n.inputs[0]), graph.quant_of(n.output)
    scales = np.broadcast_to(graph.const(n.weights[2]).reshape(-1), (channels,))
    return ref.channel_multipliers(q_in.scale, scales, q_out.scale)


def _clamp(n: ir.Node) -> tuple[int, int]:
    return n.attr("act_min"), n.attr("act_max")


def qconv(graph: ir.Graph, n: ir.Node, xs: list[Tensor]) -> Tensor:
    x, (w, b) = xs[0], (graph.const(n.weights[0]), graph.const(n.weights[1]))
    q_in, q_out = graph.quant_of(n.inputs[0]), graph.quant_of(n.output)
    m, cg, kh, kw = w.shape
    groups, (sh, sw), (dh, dw) = n.attr("groups"), n.attr("stride"), n.attr("dilation")
    top, left, bottom, right = n.attr("pads")
    out = graph.shape(n.output)
    # the padding holds the zero point: minus the zero point it adds nothing, as TFLite's skipped taps add nothing
    xp = np.pad(x.astype(np.float64) - q_in.zero_point, ((0, 0), (top, bottom), (left, right)))
    acc = np.zeros((m, out.h, out.w))
    mg = m // groups
    for i in range(kh):
        for j in range(kw):
            tap = xp[:, i * dh: i * dh + (out.h - 1) * sh + 1: sh, j * dw: j * dw + (out.w - 1) * sw + 1: sw]
            if groups == 1:
                acc += np.tensordot(w[:, :, i, j].astype(np.float64), tap, axes=(1, 0))
            elif cg == 1 and mg == 1:  # depthwise
                acc += w[:, 0, i, j].astype(np.float64)[:, None, None] * tap
            else:
                for g in range(groups):
                    acc[g * mg:(g + 1) * mg] += np.tensordot(w[g * mg:(g + 1) * mg, :, i, j].astype(np.float64),
                                                             tap[g * cg:(g + 1) * cg], axes=(1, 0))
    total = acc.astype(np.int64) + b.astype(np.int64)[:, None, None]
    mult, shift = _multipliers(graph, n, m)
    return ref._finish(total, mult[:, None, None], shift[:, None, None], q_out.zero_point, *_clamp(n))


def qfc(graph: ir.Graph, n: ir.Node, xs: list[Tensor]) -> Tensor:
    w, b = graph.const(n.weights[0]), graph.const(n.weights[1])
    q_in, q_out = graph.quant_of(n.inputs[0]), graph.quant_of(n.output)
    acc = (w.astype(np.float64) @ (xs[0].reshape(-1).astype(np.float64) - q_in.zero_point)).astype(np.int64)
    mult, shift = _multipliers(graph, n, w.shape[0])
    y = ref._finish(acc + b.astype(np.int64), mult, shift, q_out.zero_point, *_clamp(n))
    return y.reshape(-1, 1, 1)


def qadd(graph: ir.Graph, n: ir.Node, xs: list[Tensor]) -> Tensor:
    qa, qb, qo = (graph.quant_of(t) for t in (*n.inputs, n.output))
    return ref.add(xs[0], qa.zero_point, qa.scale, xs[1], qb.zero_point, qb.scale, qo.zero_point, qo.scale,
                   *_clamp(n))


def qgap(graph: ir.Graph, n: ir.Node, xs: list[Tensor]) -> Tensor:
    x = xs[0]
    q_in, q_out = graph.quant_of(n.inputs[0]), graph.quant_of(n.output)
    if q_in == q_out:  # TFLite's AveragePool over the whole plane
        y = ref.average_pool(x, x.shape[1:], (1, 1), (0, 0, 0, 0), (1, 1), *_clamp(n))
    else:  # TFLite's Mean, with its own output quantisation
        y = np.clip(ref.mean(x, q_in.zero_point, q_in.scale, q_out.zero_point, q_out.scale), *_clamp(n))
    return y.reshape(-1, 1, 1).astype(np.int8)


def qavgpool(graph: ir.Graph, n: ir.Node, xs: list[Tensor]) -> Tensor:
    if graph.quant_of(n.inputs[0]) != graph.quant_of(n.output) or n.attr("count_include_pad"):
        raise NotImplementedError(f"{n.name}: TFLite's AveragePool keeps its input's quantisation and skips padding")
    out = graph.shape(n.output)
    return ref.average_pool(xs[0], n.attr("kernel"), n.attr("stride"), n.attr("pads"), (out.h, out.w), *_clamp(n))


def qmaxpool(graph: ir.Graph, n: ir.Node, xs: list[Tensor]) -> Tensor:
    (kh, kw), (sh, sw), (top, left, bottom, right) = n.attr("kernel"), n.attr("stride"), n.attr("pads")
    out = graph.shape(n.output)
    xp = np.pad(xs[0].astype(np.int64), ((0, 0), (top, bottom), (left, right)), constant_values=-(1 << 40))
    taps = [xp[:, i: i + (out.h - 1) * sh + 1: sh, j: j + (out.w - 1) * sw + 1: sw]
            for i in range(kh) for j in range(kw)]
    return np.max(taps, axis=0).astype(np.int8)


def quantize(graph: ir.Graph, n: ir.Node, xs: list[Tensor]) -> Tensor:
    q = graph.quant_of(n.output)
    return ref.quantize(xs[0], q.scale, q.zero_point)


def dequantize(graph: ir.Graph, n: ir.Node, xs: list[Tensor]) -> Tensor:
    q = graph.quant_of(n.inputs[0])
    return ((xs[0].astype(np.float32) - np.float32(q.zero_point)) * np.float32(q.scale)).astype(np.float32)


OPS: dict[str, Callable[[ir.Graph, ir.Node, list[Tensor]], Tensor]] = {
    "qconv": qconv, "qfc": qfc, "qadd": qadd, "qgap": qgap, "qavgpool": qavgpool, "qmaxpool": qmaxpool,
    "quantize": quantize,
    "dequantize": dequantize,
}
