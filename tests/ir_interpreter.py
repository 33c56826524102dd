"""A float64 NumPy interpreter of the IR: obviously-correct, slow, the oracle for the importer and the kernels.

`run(graph, x)` takes the input in ONNX layout (graph.onnx_input_shape) and returns the output in ONNX layout.
Every tensor is a (C, H, W) float64 array: ONNX's row-major order, i.e. layout CHW.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from tasobuild import ir

Tensor = np.ndarray


def run(graph: ir.Graph, x: np.ndarray) -> np.ndarray:
    env = run_all(graph, x)
    return env[graph.output].reshape(graph.onnx_output_shape)


def run_all(graph: ir.Graph, x: np.ndarray) -> dict[str, Tensor]:
    """Every tensor's value (logical shape), for debugging a mismatch node by node."""
    s = graph.shape(graph.input)
    env = {graph.input: np.asarray(x, dtype=np.float64).reshape(s.c, s.h, s.w)}
    for n in graph.nodes:
        w = [graph.const(k).astype(np.float64) for k in n.weights]
        want = graph.shape(n.output)
        xs = [env[t] for t in n.inputs]
        # reshape is the one op whose result depends on the output shape: a row-major reinterpretation
        y = xs[0].reshape(want.c, want.h, want.w) if n.op == "reshape" else OPS[n.op](n, xs, w)
        assert y.shape == (want.c, want.h, want.w), f"{n.name}: computed {y.shape}, graph says {want}"
        env[n.output] = activate(n.act, y)
    return env


def activate(act: ir.Activation, y: Tensor) -> Tensor:
    if act.kind == "relu":
        return np.maximum(y, 0.0)
    if act.kind == "clip":
        return np.clip(y, act.a, act.b)
    if act.kind == "leaky_relu":
        return np.where(y >= 0, y, act.a * y)
    if act.kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-y))
    return y


def _pad(x: Tensor, pads: tuple[int, int, int, int], value: float) -> Tensor:
    t, l, b, r = pads
    return np.pad(x, ((0, 0), (t, b), (l, r)), constant_values=value)


def _windows(x: Tensor, kernel: tuple[int, int], stride: tuple[int, int],
             dilation: tuple[int, int]) -> Iterator[tuple[int, int, Tensor]]:
    """Yield (i, j, view) for every kernel tap: view[c, oh, ow] = x[c, oh*sh + i*dh, ow*sw + j*dw]."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    oh = (x.shape[1] - (dh * (kh - 1) + 1)) // sh + 1
    ow = (x.shape[2] - (dw * (kw - 1) + 1)) // sw + 1
    for i in range(kh):
        for j in range(kw):
            yield i, j, x[:, i * dh: i * dh + (oh - 1) * sh + 1: sh, j * dw: j * dw + (ow - 1) * sw + 1: sw]


def conv(n: ir.Node, xs: list[Tensor], w: list[Tensor]) -> Tensor:
    weight, bias = w
    g = n.attr("groups")
    m, cg = weight.shape[:2]
    xp = _pad(xs[0], n.attr("pads"), 0.0)
    out = None
    for i, j, view in _windows(xp, n.attr("kernel"), n.attr("stride"), n.attr("dilation")):
        # per group: [m/g, C/g] @ [C/g, OH*OW]
        tap = np.matmul(weight[:, :, i, j].reshape(g, m // g, cg), view.reshape(g, cg, -1))
        out = tap if out is None else out + tap
        shape = view.shape[1:]
    assert out is not None
    return out.reshape(m, *shape) + bias[:, None, None]


def fc(n: ir.Node, xs: list[Tensor], w: list[Tensor]) -> Tensor:
    return (w[0] @ xs[0].reshape(-1) + w[1]).reshape(-1, 1, 1)


def maxpool(n: ir.Node, xs: list[Tensor], w: list[Tensor]) -> Tensor:
    xp = _pad(xs[0], n.attr("pads"), -np.inf)
    return np.max([v for _, _, v in _windows(xp, n.attr("kernel"), n.attr("stride"), (1, 1))], axis=0)


def avgpool(n: ir.Node, xs: list[Tensor], w: list[Tensor]) -> Tensor:
    pads, kernel, stride = n.attr("pads"), n.attr("kernel"), n.attr("stride")
    total = np.sum([v for _, _, v in _windows(_pad(xs[0], pads, 0.0), kernel, stride, (1, 1))], axis=0)
    # the divisor counts the window's input elements, and its padding elements too with count_include_pad
    ones = _pad(np.ones((1,) + xs[0].shape[1:]), pads, float(n.attr("count_include_pad")))
    count = np.sum([v for _, _, v in _windows(ones, kernel, stride, (1, 1))], axis=0)
    return total / count


def gap(n: ir.Node, xs: list[Tensor], w: list[Tensor]) -> Tensor:
    return xs[0].mean(axis=(1, 2), keepdims=True)


def softmax(n: ir.Node, xs: list[Tensor], w: list[Tensor]) -> Tensor:
    e = np.exp(xs[0] - xs[0].max())
    return e / e.sum()


def lrn(n: ir.Node, xs: list[Tensor], w: list[Tensor]) -> Tensor:
    x, size = xs[0], n.attr("size")
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2  # ONNX: [c - floor((s-1)/2), c + ceil((s-1)/2)]
    sq = np.pad(x * x, ((before, after), (0, 0), (0, 0)))
    window = sum(sq[k: k + x.shape[0]] for k in range(size))
    return x / (n.attr("bias") + n.attr("alpha") / size * window) ** n.attr("beta")


OPS: dict[str, Callable[[ir.Node, list[Tensor], list[Tensor]], Tensor]] = {
    "conv": conv,
    "fc": fc,
    "maxpool": maxpool,
    "avgpool": avgpool,
    "gap": gap,
    "add": lambda n, xs, w: xs[0] + xs[1],
    "scale": lambda n, xs, w: xs[0] * w[0][:, None, None] + w[1][:, None, None],
    "act": lambda n, xs, w: xs[0],  # the activation itself is applied after every op
    "concat": lambda n, xs, w: np.concatenate(xs, axis=0),
    "transpose": lambda n, xs, w: np.transpose(xs[0], n.attr("perm")),
    "softmax": softmax,
    "lrn": lrn,
}
