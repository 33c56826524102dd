"""Static ONNX shape inference: one rule per operator, computing the output shape from the input shapes.

Each rule takes a NodeContext and returns the shape of output 0 (the only output later stages may use). The
structural helpers (reshape, squeeze, ...) are shared with the constant folder so both agree by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from tasobuild.importer.context import NodeContext
from tasobuild.importer.geometry import Window, window

Shape = tuple[int, ...]


def norm_axis(axis: int, rank: int, ctx: NodeContext) -> int:
    if not -rank <= axis < rank:
        raise ctx.error(f"axis {axis} out of range for rank {rank}")
    return axis % rank


def reshape_target(shape: Shape, spec: tuple[int, ...], allowzero: bool, ctx: NodeContext) -> Shape:
    dims = [shape[i] if d == 0 and not allowzero and i < len(shape) else d for i, d in enumerate(spec)]
    count = int(np.prod(shape, dtype=np.int64))
    if dims.count(-1) > 1:
        raise ctx.error(f"Reshape target {list(spec)} has more than one -1")
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1], dtype=np.int64))
        if known == 0 or count % known:
            raise ctx.error(f"cannot reshape {list(shape)} to {list(spec)}")
        dims[dims.index(-1)] = count // known
    if int(np.prod(dims, dtype=np.int64)) != count:
        raise ctx.error(f"cannot reshape {list(shape)} ({count} elements) to {dims}")
    return tuple(dims)


def squeeze(shape: Shape, axes: tuple[int, ...] | None, ctx: NodeContext) -> Shape:
    if axes is None:
        return tuple(d for d in shape if d != 1)
    drop = {norm_axis(a, len(shape), ctx) for a in axes}
    if any(shape[a] != 1 for a in drop):
        raise ctx.error(f"Squeeze axes {list(axes)} of shape {list(shape)} are not all 1")
    return tuple(d for i, d in enumerate(shape) if i not in drop)


def unsqueeze(shape: Shape, axes: tuple[int, ...], ctx: NodeContext) -> Shape:
    rank = len(shape) + len(axes)
    where = sorted(norm_axis(a, rank, ctx) for a in axes)
    out, rest = [], iter(shape)
    for i in range(rank):
        out.append(1 if i in where else next(rest))
    return tuple(out)


def flatten(shape: Shape, axis: int, ctx: NodeContext) -> Shape:
    if not -len(shape) <= axis <= len(shape):
        raise ctx.error(f"Flatten axis {axis} out of range for rank {len(shape)}")
    axis = axis + len(shape) if axis < 0 else axis
    return int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64))


def transpose(shape: Shape, perm: tuple[int, ...] | None) -> Shape:
    perm = tuple(reversed(range(len(shape)))) if perm is None else perm
    return tuple(shape[p] for p in perm)


def broadcast(a: Shape, b: Shape, ctx: NodeContext) -> Shape:
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        raise ctx.error(f"shapes {list(a)} and {list(b)} do not broadcast") from None


# --- per-operator rules -------------------------------------------------------------------------------------------

def _same(c: NodeContext) -> Shape:
    return c.shape(0)


def _binary(c: NodeContext) -> Shape:
    return broadcast(c.shape(0), c.shape(1), c)


def _conv(c: NodeContext) -> Shape:
    x, w = c.shape(0), c.shape(1)
    groups = int(c.attr("group", 1))
    if groups < 1:
        raise c.error(f"group={groups}: must be at least 1")
    if len(x) < 3 or len(w) != len(x):
        raise c.error(f"input {list(x)} and weights {list(w)}: expected N,C,spatial... and M,C/group,kernel...")
    if x[1] % groups or w[1] != x[1] // groups or w[0] % groups:
        raise c.error(f"weights of shape {list(w)} do not fit input channels {x[1]} with group={groups}")
    kernel = tuple(c.attr("kernel_shape", w[2:]))
    if kernel != tuple(w[2:]):
        raise c.error(f"kernel_shape {list(kernel)} disagrees with weights of shape {list(w)}")
    if c.has(2) and c.shape(2) != (w[0],):
        raise c.error(f"bias of shape {list(c.shape(2))}, expected [{w[0]}]")
    return (x[0], w[0]) + tuple(win.out for win in spatial_windows(c, x, kernel, ceil=False))


def spatial_windows(c: NodeContext, x: Shape, kernel: tuple[int, ...], ceil: bool) -> tuple[Window, ...]:
    """Per spatial axis of x: output extent and explicit pads, from strides/dilations/pads/auto_pad."""
    n = len(x) - 2
    strides = tuple(c.attr("strides", (1,) * n))
    dilations = tuple(c.attr("dilations", (1,) * n))
    pads = tuple(c.attr("pads", (0,) * (2 * n)))
    auto_pad = c.attr("auto_pad", "NOTSET")
    if len(kernel) != n or len(strides) != n or len(dilations) != n or len(pads) != 2 * n:
        raise c.error(f"kernel/strides/dilations/pads do not match the {n} spatial dims of {list(x)}")
    if min(pads) < 0 or min(strides) < 1 or min(dilations) < 1 or min(kernel) < 1:
        raise c.error(f"negative pads or non-positive kernel/strides/dilations: pads {list(pads)}, "
                      f"kernel {list(kernel)}, strides {list(strides)}, dilations {list(dilations)}")
    try:
        return tuple(window(x[2 + i], kernel[i], strides[i], dilations[i], pads[i], pads[n + i], auto_pad, ceil)
                     for i in range(n))
    except ValueError as e:
        raise c.error(str(e)) from None


def _pool(c: NodeContext) -> Shape:
    x = c.shape(0)
    kernel = tuple(c.attr("kernel_shape", ()))
    if len(x) < 3 or not kernel:
        raise c.error(f"expected an N,C,spatial... input and kernel_shape, got {list(x)}")
    return x[:2] + tuple(w.out for w in spatial_windows(c, x, kernel, ceil=bool(c.attr("ceil_mode", 0))))


def _global_pool(c: NodeContext) -> Shape:
    x = c.shape(0)
    return x[:2] + (1,) * (len(x) - 2)


def _gemm(c: NodeContext) -> Shape:
    a, b = c.shape(0), c.shape(1)
    if len(a) != 2 or len(b) != 2:
        raise c.error(f"Gemm operands must be 2-D, got {list(a)} and {list(b)}")
    m, k = a[::-1] if c.attr("transA", 0) else a
    k2, n = b[::-1] if c.attr("transB", 0) else b
    if k != k2:
        raise c.error(f"operands of shapes {list(a)} and {list(b)} do not multiply")
    if c.has(2):
        broadcast((m, n), c.shape(2), c)
    return m, n


def _matmul(c: NodeContext) -> Shape:
    a, b = c.shape(0), c.shape(1)
    if len(a) < 1 or len(b) < 1:
        raise c.error("MatMul of scalars")
    a2, b2 = (a if len(a) > 1 else (1,) + a), (b if len(b) > 1 else b + (1,))
    if a2[-1] != b2[-2]:
        raise c.error(f"operands of shapes {list(a)} and {list(b)} do not multiply")
    batch = broadcast(a2[:-2], b2[:-2], c)
    out = batch + (a2[-2], b2[-1])
    return out[:-2] + out[-2:-1] * (len(a) > 1) + out[-1:] * (len(b) > 1)


def _concat(c: NodeContext) -> Shape:
    shapes = [c.shapes[t] for t in c.node.inputs if t]
    axis = norm_axis(int(c.attr("axis", 0)), len(shapes[0]), c)
    for s in shapes:
        if len(s) != len(shapes[0]) or any(s[i] != shapes[0][i] for i in range(len(s)) if i != axis):
            raise c.error(f"inputs of shapes {[list(s) for s in shapes]} cannot be concatenated on axis {axis}")
    return shapes[0][:axis] + (sum(s[axis] for s in shapes),) + shapes[0][axis + 1:]


def _flatten(c: NodeContext) -> Shape:
    return flatten(c.shape(0), int(c.attr("axis", 1)), c)


def _reshape(c: NodeContext) -> Shape:
    spec = c.ints(1, "shape", "target shape")
    return reshape_target(c.shape(0), spec or (), bool(c.attr("allowzero", 0)), c)


def _squeeze(c: NodeContext) -> Shape:
    return squeeze(c.shape(0), c.ints(1, "axes", "axes"), c)


def _unsqueeze(c: NodeContext) -> Shape:
    return unsqueeze(c.shape(0), c.ints(1, "axes", "axes") or (), c)


def _transpose(c: NodeContext) -> Shape:
    x = c.shape(0)
    perm = c.attr("perm")
    if perm is not None and sorted(perm) != list(range(len(x))):
        raise c.error(f"perm {list(perm)} is not a permutation of the {len(x)} axes")
    return transpose(x, None if perm is None else tuple(perm))


def full_pads(c: NodeContext, x: Shape) -> list[int]:
    """Pad's amounts as [begin per axis..., end per axis...] over all axes (opset 18 may name a subset)."""
    pads = c.ints(1, "pads", "pads") or ()
    axes = c.ints(3, "axes", "axes") if c.opset >= 18 else None
    axes = tuple(range(len(x))) if axes is None else tuple(norm_axis(a, len(x), c) for a in axes)
    if len(pads) != 2 * len(axes):
        raise c.error(f"pads {list(pads)} do not match the axes {list(axes)}")
    full = [0] * (2 * len(x))
    for k, a in enumerate(axes):
        full[a], full[len(x) + a] = pads[k], pads[len(axes) + k]
    return full


def _pad(c: NodeContext) -> Shape:
    x = c.shape(0)
    full = full_pads(c, x)
    return tuple(d + full[i] + full[len(x) + i] for i, d in enumerate(x))


def _reduce(c: NodeContext) -> Shape:
    x = c.shape(0)
    axes = c.ints(1, "axes", "axes")
    keep = bool(c.attr("keepdims", 1))
    picked = set(range(len(x))) if not axes else {norm_axis(a, len(x), c) for a in axes}
    return tuple(1 if i in picked else d for i, d in enumerate(x) if keep or i not in picked)


# --- the quantised operators (QOperator form): the float operator's rule on their data inputs ---------------


def _renamed(c: NodeContext, inputs: tuple[str, ...]) -> NodeContext:
    return replace(c, node=replace(c.node, inputs=inputs))


def _at(*indices: int) -> Callable[[NodeContext], tuple[str, ...]]:
    return lambda c: tuple(c.node.inputs[i] if i < len(c.node.inputs) else "" for i in indices)


def _shape_via(rule: Callable[[NodeContext], tuple[int, ...]],
               inputs: Callable[[NodeContext], tuple[str, ...]]) -> Callable[[NodeContext], tuple[int, ...]]:
    """The float operator's shape rule on the QOperator node's data inputs."""
    return lambda c: rule(_renamed(c, inputs(c)))


Q_SHAPE_RULES: dict[str, Callable[[NodeContext], tuple[int, ...]]] = {
    "QuantizeLinear": _shape_via(_same, _at(0)),
    "DequantizeLinear": _shape_via(_same, _at(0)),
    "QLinearConv": _shape_via(_conv, _at(0, 3)),
    "QLinearMatMul": _shape_via(_matmul, _at(0, 3)),
    "QGemm": _shape_via(_gemm, _at(0, 3)),
    "QLinearAdd": _shape_via(_binary, _at(0, 3)),
    "QLinearAveragePool": _shape_via(_pool, _at(0)),
    "QLinearGlobalAveragePool": _shape_via(_global_pool, _at(0)),
    "QLinearSoftmax": _shape_via(_same, _at(0)),
}


SHAPE_RULES: dict[str, Callable[[NodeContext], Shape]] = {
    **{op: _same for op in ("Relu", "Clip", "LeakyRelu", "Sigmoid", "Dropout", "Identity", "LRN", "Softmax",
                            "BatchNormalization", "Cast")},
    **{op: _binary for op in ("Add", "Sub", "Mul", "Div")},
    "Conv": _conv,
    "MaxPool": _pool, "AveragePool": _pool,
    "GlobalAveragePool": _global_pool, "GlobalMaxPool": _global_pool,
    "Gemm": _gemm, "MatMul": _matmul,
    "Concat": _concat, "Flatten": _flatten, "Reshape": _reshape, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Transpose": _transpose, "Pad": _pad, "ReduceMean": _reduce,
    **Q_SHAPE_RULES,
}
