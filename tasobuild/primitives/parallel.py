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
* Slices (`SLICED`): an element-wise kernel over a flat vector (add, activation, in place or not), the fully
  connected layer (its outputs), a concat's copies (rows or channels), CHW pooling and global average pooling
  (channels), HWC LRN and the HWC <-> HCW layout transforms (rows) compute any contiguous range of items when its
  count parameter says how many and each buffer starts that many items further (`Sliced.strides`: floats per item
  of each role; the fully connected input is read whole). Slices start on multiples of `Sliced.quantum` items: 64
  floats keep the buffers 256-byte aligned and the vector loops' tails where the whole call has them; the fully
  connected layer's weights are panels of FC_PANEL outputs, so its slices start on panels.

A call on N threads (`KernelCall.parts` = N) is the whole call's parameters plus the part count: part k covers
items (rows or slice items) [bounds[k], bounds[k+1]) (as even as the quantum allows; the caller's thread runs part
0, the smaller one when they differ). A kernel of `WRAPPED` (CHW LRN, HWC global average pooling, the layout
transforms to and from CHW) runs its parts as calls of a split wrapper that takes the whole call's parameters and a
range of output channels or rows. Other kernels (HCW global average pooling, pooling onto one output row, softmax,
LRN in place) and fused tiling's band calls stay on one thread.
"""

from __future__ import annotations

import math
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
    floats per item (an int, or the names of the parameters whose product it is; a role numbered like `in2` falls
    back to its unnumbered name `in`), and what every slice starts on."""

    count: str
    strides: Mapping[str, int | str | tuple[str, ...]]
    quantum: int


_ELEMENTWISE = Sliced("n", {"in0": 1, "in1": 1, "out": 1}, 64)
# Copies, CHW pooling, global average pooling and HWC LRN compute each output element from its own inputs whatever
# its neighbours are (no vector tails in a sum): any item starts a slice. Concat copies by output rows (HWC, HCW: the
# slice is strided through the whole output) or channels (CHW: one block); pooling and GAP in CHW by channels; the
# HWC <-> HCW layout transforms by rows (the CHW ones index channels by the whole height: `WRAPPED`).
_POOL_CHANNELS = Sliced("c", {"in0": ("in_h", "in_w"), "out": ("out_h", "out_w")}, 1)
_ROW_TRANSPOSE = Sliced("h", {"in0": ("w", "c"), "out": ("c", "w")}, 1)
SLICED: Mapping[str, Sliced] = {
    "tb_add": _ELEMENTWISE, "tb_add_inplace": _ELEMENTWISE, "tb_act": _ELEMENTWISE, "tb_act_inplace": _ELEMENTWISE,
    # 4 panels: ops_fc.c's fast loop (TB_FC_STREAMS panels at once) runs whole in every part but the last
    "tb_fc_gemv": Sliced("out_n", {"in0": 0, "w0": "in_n", "w1": 1, "out": 1}, 4 * FC_PANEL),
    "tb_copy_channels_chw": Sliced("c", {"in": ("h", "w"), "out": ("h", "w")}, 1),
    "tb_copy_channels_hwc": Sliced("h", {"in": ("w", "c"), "out": ("w", "out_c")}, 1),
    "tb_copy_channels_hcw": Sliced("h", {"in": ("c", "w"), "out": ("out_c", "w")}, 1),
    "tb_maxpool_chw": _POOL_CHANNELS, "tb_avgpool_chw": _POOL_CHANNELS,
    "tb_gap_chw": Sliced("c", {"in0": ("h", "w"), "out": 1}, 1),
    "tb_lrn_hwc": Sliced("h", {"in0": ("w", "c"), "out": ("w", "c")}, 1),  # a pixel's channels are its own
    "tb_layout_hwc_to_hcw": _ROW_TRANSPOSE, "tb_layout_hcw_to_hwc": _ROW_TRANSPOSE,
}


# Output-channel views (tb_conv's oc_begin/oc_end) that compute each element as the whole call does when they start
# on the quantum: the blocked direct kernel's 32-channel weight panels (each panel's vector blocks and tail then fall
# where the whole call's do), the shared GEMM's two 16-column panels of B (tb_gemm sums every element k by k from
# zero whatever its tile). Used where rows split unevenly (`by_channels`). The HWC 3x3 Winograd kernels too: their
# batched products are that GEMM and their transforms work lane by lane; a channel part also reads half the
# transformed weights, which dominate at 13x13 (SqueezeNet's 13-row maps split 2/3 tile rows by rows).
CHANNEL_VIEWS: Mapping[str, int] = {
    **{f"tb_conv_direct_blocked_{layouts}": 32 for layouts in ("hwc", "chw_to_hwc", "hcw_to_hwc")},
    "tb_conv_1x1_gemm_hwc": 32,
    **{f"tb_conv_winograd_f{m}x{m}_3x3{low}_hwc": 32 for m in (2, 3, 4) for low in ("", "_lowmem")},
}
@dataclass(frozen=True)
class Wrapped:
    """A kernel whose parts are calls of a split wrapper: the wrapper (same buffers) and its struct, the whole
    call's parameters plus a range [begin, end) of the `count` parameter's items."""

    function: str
    struct: str
    count: str
    begin: str
    end: str


# CHW LRN by output channels: a channel reads its neighbours from the whole input, so any range is exact; in place
# (a ring of the channels it overwrote) it stays whole. The layout transforms to and from CHW by rows: they index
# channels by the whole height.
WRAPPED: Mapping[str, Wrapped] = {
    "tb_lrn_chw": Wrapped("tb_lrn_chw_channels", "tb_lrn_view", "c", "c_begin", "c_end"),
    # HWC global average pooling by channels: a channel's stride is the whole channel count
    "tb_gap_hwc": Wrapped("tb_gap_hwc_channels", "tb_tensor_channels", "c", "c_begin", "c_end"),
    **{f"tb_layout_{name}": Wrapped(f"tb_layout_{name}_rows", "tb_tensor_rows", "h", "h_begin", "h_end")
       for name in ("chw_to_hwc", "hwc_to_chw", "chw_to_hcw", "hcw_to_chw")},
}
POOL_ROWS = frozenset(f"tb_{kind}_{layout}" for kind in ("maxpool", "avgpool") for layout in ("hwc", "hcw"))


def sliced(call: KernelCall) -> Sliced | None:
    """How `call` splits into slices (None: by rows, or not at all)."""
    return SLICED.get(call.function)


def _count(call: KernelCall) -> int:
    """The items the whole call covers: output rows or channels, or slice items."""
    how, wrapped = sliced(call), WRAPPED.get(call.function)
    count = how.count if how else wrapped.count if wrapped else "out_c" if by_channels(call) else "out_h"
    return int(dict(call.params)[count])


def _row_quantum(call: KernelCall) -> int:
    match = _WINOGRAD.match(call.function)
    return int(match.group(1)) if match else 1


def row_quantum(call: KernelCall) -> int:
    """What every part's first item is a multiple of: a slicing's quantum, a channel view's panel, a Winograd
    kernel's tile height, else 1."""
    how = sliced(call)
    if how is not None:
        return how.quantum
    return CHANNEL_VIEWS[call.function] if by_channels(call) else _row_quantum(call)


def _bounds(count: int, quantum: int, parts: int) -> tuple[int, ...]:
    steps = -(-count // quantum)
    return tuple(min(count, (k * steps // parts) * quantum) for k in range(parts + 1))


def _share(bounds: tuple[int, ...]) -> float:
    return max(b - a for a, b in zip(bounds, bounds[1:])) / (bounds[-1] - bounds[0])


def by_channels(call: KernelCall) -> bool:
    """Whether a split conv call divides its output channels rather than its rows: its kernel honours channel views
    bit for bit (`CHANNEL_VIEWS`) and they balance the parts better than its rows do (a 7-row map on 2 threads
    splits 3/4 rows, its 512 channels 256/256). Rows win a tie: a part then reads only its input rows. But for a
    Winograd kernel, whose row parts each read all the transformed weights and whose channel parts each transform
    all the input tiles, the larger of the two decides a tie: channels where out_c exceeds the tiles (SqueezeNet's
    13x13 F4 layers: 16 tiles, 256 channels), rows where the tiles do (its 55x55 ones: 196 tiles, 64 channels)."""
    quantum = CHANNEL_VIEWS.get(call.function)
    if quantum is None or call.parts < 2:
        return False
    p = dict(call.params)
    if p["groups"] != 1:
        return False
    tile = _row_quantum(call)  # a Winograd row split's share counts its tiles, as largest_share does
    rows = _share(tuple(-(-b // tile) for b in _bounds(int(p["out_h"]), tile, call.parts)))
    channels = _share(_bounds(int(p["out_c"]), quantum, call.parts))
    if channels == rows and tile > 1:  # Winograd: each part reads all the weights, or transforms all the input
        return int(p["out_c"]) > -(-int(p["out_h"]) // tile) * -(-int(p["out_w"]) // tile)
    return channels < rows


def parallel_call(call: KernelCall, threads: int) -> KernelCall | None:
    """`call` split over min(threads, its quanta) threads, or None when it is not a whole conv call or a sliced
    kernel's, or would run on one thread anyway."""
    if call.parts != 1 or threads < 2:
        return None
    p = dict(call.params)
    if call.function in POOL_ROWS or call.function in WRAPPED:
        pass
    elif sliced(call) is None:
        if call.struct != SPLIT_STRUCT:
            return None
        if (p["oh_begin"], p["oh_end"], p["accumulate"]) != (0, p["out_h"], 0):
            return None  # already a view (fused tiling): its group decides how it runs
    quanta = -(-int(p["out_c"]) // CHANNEL_VIEWS[call.function]) if call.function in CHANNEL_VIEWS else 0
    parts = min(threads, max(-(-_count(call) // row_quantum(call)), quanta if p.get("groups") == 1 else 0))
    if parts < 2:
        return None
    split = replace(call, parts=parts)
    if call.function in POOL_ROWS and min(row_bounds(split)[1:-1]) * p["stride_h"] < p["pad_top"]:
        return None  # a later part's first window would start in the top padding: one thread
    return split


def row_bounds(call: KernelCall) -> tuple[int, ...]:
    """The parts' items (output rows or slice items): part k covers [bounds[k], bounds[k+1]), as even as the
    quantum allows."""
    return _bounds(_count(call), row_quantum(call), call.parts)


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
    bounds, how, wrapped = row_bounds(call), sliced(call), WRAPPED.get(call.function)
    if wrapped is not None:
        items = ((wrapped.begin, bounds[part]), (wrapped.end, bounds[part + 1]))
        return replace(call, function=wrapped.function, struct=wrapped.struct, params=call.params + items, parts=1)
    if how is not None:
        views = {how.count: bounds[part + 1] - bounds[part]}
    elif call.function in POOL_ROWS:
        p, skip = dict(call.params), _pool_skip(call, part)
        views = {"in_h": int(p["in_h"]) - skip, "out_h": bounds[part + 1] - bounds[part],
                 "pad_top": int(p["pad_top"]) if part == 0 else 0}
    else:
        begin, end = view_fields(call)
        views = {begin: bounds[part], end: bounds[part + 1]}
    return replace(call, params=tuple((k, views.get(k, v)) for k, v in call.params), parts=1)


def view_fields(call: KernelCall) -> tuple[str, str]:
    """The fields a part's view sets: a conv call's rows or channels, a wrapped kernel's range."""
    wrapped = WRAPPED.get(call.function)
    if wrapped is not None:
        return wrapped.begin, wrapped.end
    return ("oc_begin", "oc_end") if by_channels(call) else ("oh_begin", "oh_end")


def role_strides(call: KernelCall) -> dict[str, int]:
    """A sliced call's floats per item of each of its roles (empty for a call split by rows)."""
    how = sliced(call)
    if how is None:
        return {}
    params = dict(call.params)

    def floats(stride: int | str | tuple[str, ...]) -> int:
        if isinstance(stride, int):
            return stride
        return math.prod(int(params[name]) for name in ((stride,) if isinstance(stride, str) else stride))

    return {role: floats(how.strides[role] if role in how.strides else how.strides[role.rstrip("0123456789")])
            for role in call.args}


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
    """The largest part's fraction of the work (1.0 for a one-thread call): of the items, but of a Winograd row
    split's tiles, which cost the same whether the map's last rows fill them or not (14 rows of F4 tiles: 8 and 6
    rows, 2 and 2 tiles)."""
    if call.parts == 1:
        return 1.0
    if _WINOGRAD.match(call.function) and not by_channels(call):
        quantum = _row_quantum(call)
        return _share(tuple(-(-b // quantum) for b in row_bounds(call)))
    return _share(row_bounds(call))


def whole_call(call: KernelCall) -> KernelCall:
    """The one-thread call a split call divides."""
    return replace(call, parts=1)
