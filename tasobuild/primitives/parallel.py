"""Multi-threaded calls: one call split into parts that run at once, one per thread.

Two ways to split, each keeping every output element's arithmetic what the whole call's is, so N parts reproduce the
one-thread call bit for bit:

* Rows: a convolution (struct tb_conv) computes any view of output rows [oh_begin, oh_end) with the whole call's
  summation order per element (kernels_pyx/tb_conv.h). Rows, not channels: a channel range may move
  depthwise_direct_hwc's vector/scalar boundary and round differently. GEMM-based kernels need their workspace for
  each part at once: the call's `ws` role keeps the whole call's size (one part's), and the parts use N slices of
  it, each starting ARENA_ALIGN-aligned as the arena's buffers do (`workspace_bytes`: exact, and what the arena
  plans and places).
* Pooling rows (`POOL_ROWS`, the HWC and HCW pooling kernels, whose rows are contiguous): part k's output rows
  [r0, r1) read input rows from d = r0*stride_h - pad_top on (the first part: from row 0, padded as the whole call
  is); the part is a whole pooling call on in_h - d input rows and r1 - r0 output rows, its buffers starting d
  input rows and r0 output rows further, no top padding but the first part's. Each window then covers the same
  input rows and is clipped (and, with count_include_pad, divided) as in the whole call.
* Slices (`SLICED`): an element-wise kernel over a flat vector (add, activation, in place or not) or the fully
  connected layer (its outputs) computes any contiguous range of items when its count parameter says how many and
  each buffer starts that many items further (`Sliced.strides`: floats per item of each role; the fully connected
  input is read whole). Slices start on multiples of `Sliced.quantum` items: 64 floats keep the buffers 256-byte
  aligned and the vector loops' tails where the whole call has them; the fully connected layer's weights are panels
  of FC_PANEL outputs, so its slices start on panels.

A call on N threads (`KernelCall.parts` = N) is the whole call's parameters plus the part count: part k covers
items (rows or slice items) [bounds[k], bounds[k+1]) (as even as the quantum allows; the caller's thread runs part
0, the smaller one when they differ). Other kernels (CHW pooling, global average pooling, softmax, concat copies,
layout transforms) and fused tiling's band calls stay on one thread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from tasobuild.memory import ARENA_ALIGN
from tasobuild.primitives import KernelCall
from tasobuild.primitives.ops import FC_PANEL

SPLIT_STRUCT = "tb_conv"  # the parameter struct whose kernels honour row views
THREAD_SOURCES = ("tb_threads.c", "tb_threads.h")  # the emitted thread pool (kernels folder), POSIX threads
_WINOGRAD = re.compile(r"^tb_conv_winograd_f(\d+)x\d+_")  # tb_conv_winograd_f<m>x<m>_<r>x<r>_...: m-row tiles


@dataclass(frozen=True)
class Sliced:
    """How a kernel's call splits into ranges of items: the parameter holding the item count, each buffer role's
    floats per item (an int, or the name of the parameter that holds it), and what every slice starts on."""

    count: str
    strides: Mapping[str, int | str]
    quantum: int


_ELEMENTWISE = Sliced("n", {"in0": 1, "in1": 1, "out": 1}, 64)
SLICED: Mapping[str, Sliced] = {
    "tb_add": _ELEMENTWISE, "tb_add_inplace": _ELEMENTWISE, "tb_act": _ELEMENTWISE, "tb_act_inplace": _ELEMENTWISE,
    # 4 panels: ops_fc.c's fast loop (TB_FC_STREAMS panels at once) runs whole in every part but the last
    "tb_fc_gemv": Sliced("out_n", {"in0": 0, "w0": "in_n", "w1": 1, "out": 1}, 4 * FC_PANEL),
}


POOL_ROWS = frozenset(f"tb_{kind}_{layout}" for kind in ("maxpool", "avgpool") for layout in ("hwc", "hcw"))


def sliced(call: KernelCall) -> Sliced | None:
    """How `call` splits into slices (None: by rows, or not at all)."""
    return SLICED.get(call.function)


def _count(call: KernelCall) -> int:
    """The items the whole call covers: output rows, or slice items."""
    how = sliced(call)
    return int(dict(call.params)[how.count if how else "out_h"])


def row_quantum(call: KernelCall) -> int:
    """What every part's first item is a multiple of: a slicing's quantum, a Winograd kernel's tile height, else 1."""
    how = sliced(call)
    if how is not None:
        return how.quantum
    match = _WINOGRAD.match(call.function)
    return int(match.group(1)) if match else 1


def parallel_call(call: KernelCall, threads: int) -> KernelCall | None:
    """`call` split over min(threads, its quanta) threads, or None when it is not a whole conv call or a sliced
    kernel's, or would run on one thread anyway."""
    if call.parts != 1 or threads < 2:
        return None
    p = dict(call.params)
    if call.function in POOL_ROWS:
        pass
    elif sliced(call) is None:
        if call.struct != SPLIT_STRUCT:
            return None
        if (p["oh_begin"], p["oh_end"], p["accumulate"]) != (0, p["out_h"], 0):
            return None  # already a view (fused tiling): its group decides how it runs
    parts = min(threads, -(-_count(call) // row_quantum(call)))
    if parts < 2:
        return None
    split = replace(call, parts=parts)
    if call.function in POOL_ROWS and min(row_bounds(split)[1:-1]) * p["stride_h"] < p["pad_top"]:
        return None  # a later part's first window would start in the top padding: one thread
    return split


def row_bounds(call: KernelCall) -> tuple[int, ...]:
    """The parts' items (output rows or slice items): part k covers [bounds[k], bounds[k+1]), as even as the
    quantum allows."""
    count, quantum = _count(call), row_quantum(call)
    steps = -(-count // quantum)
    return tuple(min(count, (k * steps // call.parts) * quantum) for k in range(call.parts + 1))


def workspace_stride_bytes(call: KernelCall) -> int:
    """How far apart the parts' workspace slices are: one part's workspace rounded up to ARENA_ALIGN."""
    return -(-dict(call.buffer_bytes).get("ws", 0) // ARENA_ALIGN) * ARENA_ALIGN


def workspace_bytes(call: KernelCall) -> int:
    """The workspace the call uses, all parts' slices (0: none)."""
    one = dict(call.buffer_bytes).get("ws", 0)
    return (call.parts - 1) * workspace_stride_bytes(call) + one if one else 0


def buffer_bytes(call: KernelCall) -> dict[str, int]:
    """Role -> bytes the call uses there, every part's workspace slice included."""
    sizes = dict(call.buffer_bytes)
    if "ws" in sizes:
        sizes["ws"] = workspace_bytes(call)
    return sizes


def part_call(call: KernelCall, part: int) -> KernelCall:
    """Part `part` of a split call as the one-thread call it makes (a row view, or a slice's count), on buffers
    `part_offsets` further."""
    bounds, how = row_bounds(call), sliced(call)
    if how is not None:
        views = {how.count: bounds[part + 1] - bounds[part]}
    elif call.function in POOL_ROWS:
        p, skip = dict(call.params), _pool_skip(call, part)
        views = {"in_h": int(p["in_h"]) - skip, "out_h": bounds[part + 1] - bounds[part],
                 "pad_top": int(p["pad_top"]) if part == 0 else 0}
    else:
        views = {"oh_begin": bounds[part], "oh_end": bounds[part + 1]}
    return replace(call, params=tuple((k, views.get(k, v)) for k, v in call.params), parts=1)


def role_strides(call: KernelCall) -> dict[str, int]:
    """A sliced call's floats per item of each of its roles (empty for a call split by rows)."""
    how = sliced(call)
    if how is None:
        return {}
    params = dict(call.params)
    return {role: int(params[s]) if isinstance(s, str) else s for role, s in how.strides.items()
            if role in call.args}


def _pool_skip(call: KernelCall, part: int) -> int:
    """The input rows before part `part`'s first window (0 for the first part: it keeps the top padding)."""
    p = dict(call.params)
    return 0 if part == 0 else row_bounds(call)[part] * int(p["stride_h"]) - int(p["pad_top"])


def part_offsets(call: KernelCall, part: int) -> tuple[int, ...]:
    """How many floats further than the whole call's each of part `part`'s buffers starts, in `call.args` order:
    its workspace slice (conv rows), its first item (slices), its first input and output rows (pooling rows)."""
    if call.function in POOL_ROWS:
        p = dict(call.params)
        rows = {"in0": _pool_skip(call, part) * int(p["in_w"]) * int(p["c"]),
                "out": row_bounds(call)[part] * int(p["out_w"]) * int(p.get("out_ps") or p["c"])}  # a slice's stride
        return tuple(rows[role] for role in call.args)
    strides = role_strides(call)
    if strides:
        first = row_bounds(call)[part]
        return tuple(first * strides[role] for role in call.args)
    step = workspace_stride_bytes(call) // 4
    return tuple(part * step if role == "ws" else 0 for role in call.args)


def largest_share(call: KernelCall) -> float:
    """The largest part's fraction of the items (1.0 for a one-thread call)."""
    if call.parts == 1:
        return 1.0
    bounds = row_bounds(call)
    return max(b - a for a, b in zip(bounds, bounds[1:])) / (bounds[-1] - bounds[0])


def whole_call(call: KernelCall) -> KernelCall:
    """The one-thread call a split call divides."""
    return replace(call, parts=1)
