"""In-place and zero-copy variants of the element-wise and concat primitives: the output shares memory with an
input.

In place (`Primitive.in_place = k`): the output is written over input k, by a kernel of its own (ops_eltwise.c:
tb_add_inplace acc += x, tb_act_inplace, tb_scale_*_inplace, each reading element i, then writing element i, with
the same parameters as the copying kernel; its buffers stay restrict: the output is one of them, the others are
distinct). Add, a standalone activation and the per-channel scale qualify; pooling, softmax, transposes and layout
transforms do not (they read neighbours or write elsewhere). LRN in CHW does, with a workspace: it reads
neighbouring channels, so tb_lrn_chw_inplace keeps the originals of the (size - 1) / 2 channels it overwrote last
and an accumulation plane (GoogLeNet's stem peaks at an LRN holding its input and output). Its time is measured or
predicted like any call's.
Input k must be dead after the node in the graph's order (the order is fixed before the solve, schedule.py), and
never the graph input: the caller owns it (a second `run()` on the same input must see it, as in TFLite Micro),
nor the graph output.

Zero-copy concat (`Primitive.gathers`): the inputs are slices of the output and their producers write straight
into them; the node makes no call. In CHW a channel slice is one contiguous block, end to end, so any producer
writes it. In HWC a slice is strided: pixel p of input k is the run of its c_k channels at p * out_c + offset_k,
so its producer must write with an output pixel stride: the strided variant of its primitive (`strided_out`,
`<name>_strided`: the same call with tb_conv's or tb_pool's `out_ps` = the concat's channels, `out` pointing at
the slice's first channel), offered for the kernels that honour out_ps at their stores (`STRIDED_OUT`). The solver
lets an HWC concat gather only when every producer picks its strided variant, and a strided variant only with the
gather (solve.encode). HCW keeps the copy. Every slice must start at a multiple of the arena's alignment (kernels
may assume aligned buffers; in HWC its first channel, so every pixel's run is aligned too), and every input must be
read by the concat alone (its bytes are the output's from the moment they are written).

These are choices of the optimiser, beside the copying ones, not rewrites after it: sharing ties a buffer to
another's lifetime (a gathered output is reserved from its first slice's producer on), forbids a view or a fused
group that would read the input later, and an in-place kernel has its own time, so whether it pays is the solver's
question (solve.encode). A build then keeps it only where it wins (pipeline.Solve.decide).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tasobuild.ir import Graph, Node
from tasobuild.memory import ARENA_ALIGN
from tasobuild.primitives import KernelCall, Primitive
from tasobuild.primitives.conv import PRIMITIVES as CONV_PRIMITIVES
from tasobuild.primitives.conv_direct_blocked import PRIMITIVES as BLOCKED
from tasobuild.primitives.conv_kn2row import PRIMITIVES as KN2ROW
from tasobuild.primitives.conv_variants import PRIMITIVES as VARIANTS
from tasobuild.primitives.conv_winograd import PRIMITIVES as WINOGRAD
from tasobuild.primitives.ops import PRIMITIVES as OPS_PRIMITIVES

IN_PLACE_OPS = ("act", "add", "scale")  # their kernels read element i, then write element i
# The HWC primitives whose kernels' stores honour an output pixel stride (out_ps, the last field of tb_conv and
# tb_pool): the GEMM-backed 1x1 and im2row (tb_gemm's C leading dimension), kn2col (its shift-add), Winograd (its
# output transform's pixel stride), the blocked direct kernel (its vector stores) and pooling.
STRIDED_OUT = frozenset({
    "conv_1x1_gemm_hwc", "conv_im2row_gemm_hwc", "conv_im2row_gemm_chw_to_hwc", "conv_im2row_gemm_hcw_to_hwc",
    "conv_direct_blocked_hwc", "conv_direct_blocked_chw_to_hwc", "conv_direct_blocked_hcw_to_hwc",
    "conv_kn2col_hwc", "conv_kn2col_acc_hwc",
    "conv_im2row_scan_hwc", "conv_im2row_scan_chw_to_hwc", "conv_im2row_scan_hcw_to_hwc", "maxpool_direct_hwc",
    "avgpool_direct_hwc",
    *(f"conv_winograd_{v}{mem}_hwc" for v in ("f2x2_3x3", "f3x3_3x3", "f4x4_3x3", "f2x2_5x5", "f3x3_5x5")
      for mem in ("", "_lowmem"))})
Applies = Callable[[Node, Graph], bool]
CallFn = Callable[[Node, Graph], tuple[KernelCall, ...]]


def dead_after(node: Node, graph: Graph, tensor: str) -> bool:
    """No node after `node` (in the graph's order) reads `tensor`, and it is none of the graph's inputs or outputs."""
    if tensor in (*graph.input_tensors, *graph.output_tensors):
        return False
    after = graph.nodes[graph.nodes.index(node) + 1:]
    return not any(tensor in n.inputs for n in after)


def _in_place_applies(base: Applies, k: int) -> Applies:
    def applies(node: Node, graph: Graph) -> bool:  # x + x has no second buffer to read: it copies
        if not base(node, graph) or k >= len(node.inputs) or len(set(node.inputs)) != len(node.inputs):
            return False
        return graph.shape(node.inputs[k]) == graph.shape(node.output) and dead_after(node, graph, node.inputs[k])

    return applies


def _gather_applies(base: Applies, interleaved: bool = False) -> Applies:
    """Distinct inputs read by the concat alone, none the caller's, each slice aligned: its bytes end to end (CHW),
    or its first channel (HWC, `interleaved`)."""
    def applies(node: Node, graph: Graph) -> bool:
        if not base(node, graph) or len(set(node.inputs)) != len(node.inputs):
            return False
        offset = 0
        for name in node.inputs:
            caller_owned = name in (*graph.input_tensors, *graph.output_tensors)
            if offset % ARENA_ALIGN or caller_owned or graph.consumers(name) != (node,):
                return False
            shape = graph.shape(name)
            offset += graph.tensor_bytes(name) // shape.count * shape.c if interleaved else shape.bytes
        return True

    return applies


def hwc_slice(node: Node, graph: Graph) -> tuple[int, int] | None:
    """(channel offset, the concat's channels) of `node`'s output in the HWC concat that may gather it (its one
    reader, whose zero-copy variant applies), else None."""
    readers = graph.consumers(node.output)
    if len(readers) != 1 or readers[0].op != "concat" or not _HWC_GATHER_APPLIES(readers[0], graph):
        return None
    concat = readers[0]
    before = concat.inputs[:concat.inputs.index(node.output)]
    return sum(graph.shape(t).c for t in before), graph.shape(concat.output).c


def _strided_applies(base: Applies) -> Applies:
    def applies(node: Node, graph: Graph) -> bool:
        return base(node, graph) and graph.dtype(node.output) == "float32" and hwc_slice(node, graph) is not None

    return applies


def _strided_call(dense: CallFn) -> CallFn:
    """The dense call writing its output as the concat's slice: out_ps = the concat's channels, and `out` spans
    from the slice's first channel to its last pixel's last channel."""
    def call(node: Node, graph: Graph) -> tuple[KernelCall, ...]:
        (c,) = dense(node, graph)
        where = hwc_slice(node, graph)
        assert where is not None, node.name
        shape = graph.shape(node.output)
        span = ((shape.h * shape.w - 1) * where[1] + shape.c) * 4
        sizes = tuple((r, span if r == "out" else b) for r, b in c.buffer_bytes)
        return (replace(c, params=c.params + (("out_ps", where[1]),), buffer_bytes=sizes),)

    return call


def _no_call(node: Node, graph: Graph) -> tuple[()]:
    return ()


def _in_place_call(copying: CallFn, k: int) -> CallFn:
    """The copying kernel's call as its in-place twin: `<function>_inplace`, the same parameters, the output first
    (it is input k too), then the other buffers in their order."""
    def call(node: Node, graph: Graph) -> tuple[KernelCall, ...]:
        (c,) = copying(node, graph)
        roles = ("out",) + tuple(r for r in c.args if r not in ("out", f"in{k}"))
        sizes = dict(c.buffer_bytes)
        return (KernelCall(f"{c.function}_inplace", c.struct, c.params, roles, tuple((r, sizes[r]) for r in roles)),)

    return call


def _lrn_workspace(node: Node, graph: Graph) -> int:
    """The saved channels and the accumulation plane of tb_lrn_chw_inplace, in bytes."""
    shape = graph.shape(node.inputs[0])
    return ((int(node.attr("size")) - 1) // 2 + 1) * shape.h * shape.w * 4


def _lrn_in_place_call(copying: CallFn) -> CallFn:
    def call(node: Node, graph: Graph) -> tuple[KernelCall, ...]:
        (c,) = copying(node, graph)
        roles = (("out", dict(c.buffer_bytes)["out"]), ("ws", _lrn_workspace(node, graph)))
        return (KernelCall(f"{c.function}_inplace", c.struct, c.params, tuple(r for r, _ in roles), roles),)

    return call


def _variants() -> tuple[Primitive, ...]:
    out: list[Primitive] = []
    for p in OPS_PRIMITIVES:
        if p.op == "lrn" and p.layout_in == p.layout_out == "CHW":
            out.append(replace(p, name=f"{p.name}_inplace0", in_place=0, call=_lrn_in_place_call(p.call),
                               applies=_in_place_applies(p.applies, 0), workspace=_lrn_workspace))
        elif p.op in IN_PLACE_OPS:
            assert p.layout_in == p.layout_out, p.name
            for k in range(2 if p.op == "add" else 1):
                out.append(replace(p, name=f"{p.name}_inplace{k}", in_place=k, call=_in_place_call(p.call, k),
                                   applies=_in_place_applies(p.applies, k)))
        elif p.op == "concat" and p.layout_in == p.layout_out == "CHW":
            out.append(replace(p, name="concat_zerocopy_chw", family="zerocopy", sources=(), call=_no_call,
                               applies=_gather_applies(p.applies), gathers=True))
        elif p.op == "concat" and p.layout_in == p.layout_out == "HWC":
            out.append(replace(p, name="concat_zerocopy_hwc", family="zerocopy", sources=(), call=_no_call,
                               applies=_HWC_GATHER_APPLIES, gathers=True))
    return tuple(sorted(out, key=lambda p: p.name))


def dense_call(call: KernelCall) -> KernelCall:
    """A strided call as its dense twin (out_ps dropped, `out` the output's own bytes): the same arithmetic and
    stores, so the performance model predicts a strided call from it (measuring times the call itself)."""
    p = dict(call.params)
    if "out_ps" not in p:
        return call
    channels = p["out_c"] if call.struct == "tb_conv" else p["c"]
    dense = int(channels * p["out_h"] * p["out_w"]) * 4
    return replace(call, params=tuple(kv for kv in call.params if kv[0] != "out_ps"),
                   buffer_bytes=tuple((r, dense if r == "out" else b) for r, b in call.buffer_bytes))


def _strided_variants(library: tuple[Primitive, ...]) -> tuple[Primitive, ...]:
    """`<name>_strided` for every primitive of `library` in STRIDED_OUT (each is one)."""
    assert STRIDED_OUT <= {p.name for p in library}, sorted(STRIDED_OUT - {p.name for p in library})
    return tuple(replace(p, name=f"{p.name}_strided", applies=_strided_applies(p.applies),
                         call=_strided_call(p.call), strided_out=True)
                 for p in library if p.name in STRIDED_OUT)


_HWC_CONCAT = next(p for p in OPS_PRIMITIVES if p.op == "concat" and p.layout_in == p.layout_out == "HWC")
_HWC_GATHER_APPLIES = _gather_applies(_HWC_CONCAT.applies, interleaved=True)
PRIMITIVES: tuple[Primitive, ...] = _variants() + _strided_variants(
    OPS_PRIMITIVES + CONV_PRIMITIVES + BLOCKED + VARIANTS + KN2ROW + WINOGRAD)
