"""Layouts as axis orders, and the layout-transform kernels the solver may insert between two layouts of a tensor.

A layout is the memory order of the logical (C, H, W) axes: HWC stores the logical array transposed by (1, 2, 0).
"""

from __future__ import annotations

import numpy as np

from tasobuild.ir import LAYOUTS, NO_ACTIVATION, Layout, Shape
from tasobuild.primitives import KernelCall, activation_fields

# The kernel files every transform call needs (relative to the kernels folder); those of an int8 tensor's.
TRANSFORM_SOURCES: tuple[str, ...] = ("ops_transforms.c", "tb_ops.h")
Q8_TRANSFORM_SOURCES: tuple[str, ...] = ("q8_ops.c", "tb_q8.h", "tb_q8_dot.h")

# Logical axes (0 = C, 1 = H, 2 = W) in memory order, outermost first.
LAYOUT_AXES: dict[Layout, tuple[int, int, int]] = {"CHW": (0, 1, 2), "HWC": (1, 2, 0), "HCW": (1, 0, 2)}


def memory_order(extents: tuple[int, int, int], layout: Layout) -> tuple[int, ...]:
    """The logical axes of extent > 1 in memory order: two layouts whose orders are equal store identical bytes."""
    return tuple(a for a in LAYOUT_AXES[layout] if extents[a] > 1)


def same_memory(shape: Shape, a: Layout, b: Layout) -> bool:
    """True when a tensor of `shape` has the same bytes in layouts a and b (e.g. every layout of a (C,1,1) vector):
    the transform between them is then a plain copy."""
    extents = (shape.c, shape.h, shape.w)
    return memory_order(extents, a) == memory_order(extents, b)


def to_layout(logical: np.ndarray, layout: Layout) -> np.ndarray:
    """A logical (C, H, W) array as the C-contiguous array of its memory in `layout`."""
    return np.ascontiguousarray(np.transpose(logical, LAYOUT_AXES[layout]))


def from_layout(memory: np.ndarray, shape: Shape, layout: Layout) -> np.ndarray:
    """The logical (C, H, W) array stored in `memory` (any shape, row-major) in `layout`."""
    axes = LAYOUT_AXES[layout]
    extents = (shape.c, shape.h, shape.w)
    stored = np.asarray(memory).reshape(-1)[: shape.count].reshape(tuple(extents[a] for a in axes))
    return np.transpose(stored, np.argsort(axes))


def transform_function(src: Layout, dst: Layout) -> str:
    return f"tb_layout_{src.lower()}_to_{dst.lower()}"


def transform_sources(call: KernelCall) -> tuple[str, ...]:
    return Q8_TRANSFORM_SOURCES if call.function.startswith("tb_q8_") else TRANSFORM_SOURCES


def transform_call(shape: Shape, src: Layout, dst: Layout, dtype: str = "float32") -> KernelCall:
    """The call that rewrites a tensor of `shape` (of `dtype`: float32 or int8) from layout `src` into layout `dst`
    (a separate buffer)."""
    if src == dst or src not in LAYOUTS or dst not in LAYOUTS:
        raise ValueError(f"no layout transform from {src} to {dst}")
    if dtype == "int8":
        return KernelCall(
            function=f"tb_q8_layout_{src.lower()}_to_{dst.lower()}", struct="tb_tensor",
            params=(("c", shape.c), ("h", shape.h), ("w", shape.w)) + activation_fields(NO_ACTIVATION),
            args=("in0", "out"), buffer_bytes=(("in0", shape.count), ("out", shape.count)),
            arg_types=("int8_t", "int8_t"))
    return KernelCall(
        function=transform_function(src, dst),
        struct="tb_tensor",
        params=(("c", shape.c), ("h", shape.h), ("w", shape.w)) + activation_fields(NO_ACTIVATION),
        args=("in0", "out"),
        buffer_bytes=(("in0", shape.bytes), ("out", shape.bytes)),
    )
