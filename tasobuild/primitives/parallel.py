"""Multi-threaded calls: one convolution call split into row views that run at once, one per thread.

The conv kernels compute any view of output rows [oh_begin, oh_end) with the whole call's summation order per
element (kernels_pyx/tb_conv.h), so N views that tile the output reproduce the one-thread call bit for bit. Rows,
not channels: a channel range may move depthwise_direct_hwc's vector/scalar boundary and round differently.

A call on N threads (`KernelCall.parts` = N) is the whole call's parameters plus the part count: part k computes
rows [row_bounds[k], row_bounds[k+1]) (k*out_h // N, as even as integers allow; the caller's thread runs part 0,
the smaller one when they differ). GEMM-based kernels need their workspace for each part at once: the call's `ws`
role keeps the whole call's size (one part's), and the parts use N slices of it, each starting ARENA_ALIGN-aligned
as the arena's buffers do (`workspace_bytes`: exact, and what the arena plans and places). Calls of other kernels
(pooling, element-wise, fully connected, layout transforms) and fused tiling's band calls stay on one thread.
"""

from __future__ import annotations

import re
from dataclasses import replace

from tasobuild.memory import ARENA_ALIGN
from tasobuild.primitives import KernelCall

SPLIT_STRUCT = "tb_conv"  # the parameter struct whose kernels honour row views
THREAD_SOURCES = ("tb_threads.c", "tb_threads.h")  # the emitted thread pool (kernels folder), POSIX threads
_WINOGRAD = re.compile(r"^tb_conv_winograd_f(\d+)x\d+_")  # tb_conv_winograd_f<m>x<m>_<r>x<r>_...: m-row tiles


def row_quantum(call: KernelCall) -> int:
    """What every part's first row is a multiple of: a Winograd kernel's tile height, else 1."""
    match = _WINOGRAD.match(call.function)
    return int(match.group(1)) if match else 1


def parallel_call(call: KernelCall, threads: int) -> KernelCall | None:
    """`call` split over min(threads, out_h) threads, or None when it is not a whole-output conv call or would run
    on one thread anyway."""
    if call.struct != SPLIT_STRUCT or call.parts != 1 or threads < 2:
        return None
    p = dict(call.params)
    if (p["oh_begin"], p["oh_end"], p["accumulate"]) != (0, p["out_h"], 0):
        return None  # already a view (fused tiling): its group decides how it runs
    parts = min(threads, -(-int(p["out_h"]) // row_quantum(call)))
    if parts < 2:
        return None
    return replace(call, parts=parts)


def row_bounds(call: KernelCall) -> tuple[int, ...]:
    """The parts' output rows: part k computes [bounds[k], bounds[k+1]), as even as the row quantum allows."""
    out_h, quantum = int(dict(call.params)["out_h"]), row_quantum(call)
    steps = -(-out_h // quantum)
    return tuple(min(out_h, (k * steps // call.parts) * quantum) for k in range(call.parts + 1))


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
    """Part `part` of a split call as the one-thread view call it makes (on its workspace slice)."""
    bounds = row_bounds(call)
    views = {"oh_begin": bounds[part], "oh_end": bounds[part + 1]}
    return replace(call, params=tuple((k, views.get(k, v)) for k, v in call.params), parts=1)


def largest_share(call: KernelCall) -> float:
    """The largest part's fraction of the output rows (1.0 for a one-thread call)."""
    if call.parts == 1:
        return 1.0
    bounds = row_bounds(call)
    return max(b - a for a, b in zip(bounds, bounds[1:])) / (bounds[-1] - bounds[0])


def whole_call(call: KernelCall) -> KernelCall:
    """The one-thread call a split call divides."""
    return replace(call, parts=1)
