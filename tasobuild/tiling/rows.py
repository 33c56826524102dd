"""Fused row tiling: a chain of convolutions runs band by band, so its intermediate tensors only exist a few rows at
a time (FFMT, feature-map tiling as in MCUNetV2, but without recomputing halos: a line buffer keeps the rows one
band shares with the next).

A chain is a run of consecutive convolutions in schedule order where each one's output is read by the next one only.
Its members run in HWC, where a band of rows is a dense sub-tensor. Band by band, top to bottom, the last member
computes `rows` more of its output rows, straight into its (whole) output tensor; every earlier member computes just
the rows its successor needs that it has not computed yet, into a *window*: a buffer of a few rows of its output.
Rows a window must keep for the next band (the halo of a 3x3 kernel) are copied to its top first.

int8 chains (`qconv`) tile as float ones do: a band of an int8 convolution is an int8 convolution of its own, with
the node's quantisation (each output element requantised exactly as untiled), buffers sized by each tensor's data
type, and the pointers byte offsets cast to the kernel's element types.

Every band call is an ordinary kernel call on a sub-tensor: output rows [a, b) of a convolution read input rows
[max(0, a*s - pad_top), (b-1)*s - pad_top + dil*(k-1) + 1) clipped to the input, which is itself a convolution with
the top padding that is left (`band_conv`). So band calls are costed, profiled and emitted like any other call, and
each output element is computed by the same kernel code in the same order as the untiled call would.

Top to bottom, the chain is done with its input's first rows before it writes its output's: the output may overlap
the input, starting `output_lead` bytes below it (the most, over bands, of the output written by a band's end less
the input done with at its start), so its writes never reach input rows still to be read (memory.Overlap).
A chain also runs bottom to top, mirrored: its band schedule is that of the chain upside down (`flipped`: the
bottom padding on top; the last member's bands the same rows as top to bottom, so each output element is computed
by the same call), its windows filled from their ends (a window holds its rows in order, the carried halo moves to
its end), and its output may then start `output_rise` bytes above its input (the most, over bands, of the input
bytes up to the last row the band or a later one reads less the output bytes before the band's first row). Which
way it runs is the arena's choice (memory.Overlap.upward of the placed offsets): chained groups can alternate down
and up, so their arena can reach their peak. The way up is costed as the way down (the last member's calls are the
same, the others' the mirror ones).

`band_schedule` is the pure geometry; `fusable` lists the chains and their band calls for every applicable HWC
primitive; `GroupOption.group` picks, after costing, each member's fastest primitive, and `non_dominated` keeps the
band heights worth offering. The solver sees a group as one choice per member (solve.problem.Choice.group): all of
them or none. Lowering renders a group's bands as loops where consecutive bands make the same calls (`fused_steps`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tasobuild.candidates import Candidate, NodeCandidates, fastest_in
from tasobuild.costs.cache import Cost
from tasobuild.costs.profile import SequenceCall
from tasobuild.emit.program import LOOP_VARIABLE, Step
from tasobuild.ir import DTYPE_BYTES, Graph, Layout, Node, Shape
from tasobuild.primitives import KernelCall
from tasobuild.primitives.transforms import transform_call, transform_sources
from tasobuild.tiling.base import (
    GroupBase,
    Kind,
    Workspace,
    calls_ms,
    feeds_next,
    layer_range,
    leanest_in,
    pick_option,
    run_shares,
    single_call,
)
from tasobuild.tiling.protocol import Group, WeightPart, WeightSymbols

if TYPE_CHECKING:
    from tasobuild.memory import ArenaPlan
    from tasobuild.solve import Plan

NAME = "rows"
CHAIN_OPS = ("conv", "qconv")
LAYOUT: Layout = "HWC"  # each row of an HWC tensor is contiguous: a band of rows is a dense sub-tensor
HEIGHTS = (2, 4, 8)  # band heights (rows of the chain's last output per band) offered to the solver
PRIMITIVES_PER_MEMBER = 2  # a member's band calls are costed for its fastest HWC primitives (untiled) only
MAX_MEMBERS = 3  # an inverted residual block: expand, depthwise, project


@dataclass(frozen=True)
class RowGeometry:
    """What row tiling needs of one convolution: its vertical kernel, stride, top padding, dilation and extents."""

    k: int
    stride: int
    pad_top: int
    dilation: int
    in_h: int
    out_h: int

    @staticmethod
    def of(node: Node, graph: Graph) -> RowGeometry:
        return RowGeometry(node.attr("kernel")[0], node.attr("stride")[0], node.attr("pads")[0],
                           node.attr("dilation", (1, 1))[0], graph.shape(node.inputs[0]).h, graph.shape(node.output).h)

    def reads(self, a: int, b: int) -> tuple[int, int]:
        """The input rows [lo, hi) that output rows [a, b) read (padding rows excluded)."""
        return (max(0, a * self.stride - self.pad_top),
                min(self.in_h, (b - 1) * self.stride - self.pad_top + self.dilation * (self.k - 1) + 1))


@dataclass(frozen=True)
class MemberBand:
    """What one member does in one band."""

    rows: tuple[int, int]  # output rows [a, b) it computes (a == b: none)
    in_lo: int  # the first input row its input buffer holds (0 for the first member: the whole tensor)
    out_lo: int  # the first output row its output buffer holds after the band (0 for the last member)
    carry: tuple[int, int]  # (from, count): before computing, window rows [from, from+count) move to its top


@dataclass(frozen=True)
class BandSchedule:
    rows: int  # band height: output rows of the last member per band
    bands: tuple[tuple[MemberBand, ...], ...]  # per band, per member
    window_rows: tuple[int, ...]  # rows each window must hold (every member but the last)


def band_schedule(members: Sequence[RowGeometry], rows: int, first_rows: int = 0) -> BandSchedule | None:
    """The bands of a chain for a band height (the first band `first_rows` high where given), or None when a
    window's carried rows would overlap the rows they move to (the band advances fewer rows than it keeps)."""
    n = len(members)
    done, held = [0] * n, [0] * n  # rows computed so far; first row each window holds
    capacity = [0] * (n - 1)
    bands: list[tuple[MemberBand, ...]] = []
    last_h = members[-1].out_h
    starts = [0, *range(first_rows, last_h, rows)] if first_rows else range(0, last_h, rows)
    for a in starts:
        end = [0] * n
        need = [0] * n  # first row of member j's output that member j+1 reads in this band
        end[-1] = min(a + (first_rows or rows) if a == 0 else a + rows, last_h)
        for j in range(n - 1, 0, -1):
            if end[j] > done[j]:
                lo, hi = members[j].reads(done[j], end[j])
                end[j - 1], need[j - 1] = max(hi, done[j - 1]), lo
            else:
                end[j - 1], need[j - 1] = done[j - 1], held[j - 1]
        band = []
        for j in range(n):
            window_lo = min(need[j], done[j]) if j < n - 1 else 0
            carry = (0, 0)
            if j < n - 1:
                source, count = window_lo - held[j], done[j] - window_lo
                if source > 0 and count > 0:
                    if source < count:
                        return None
                    carry = (source, count)
                capacity[j] = max(capacity[j], end[j] - window_lo)
            in_lo = held[j - 1] if j > 0 else 0  # held[j-1] was updated in this band already
            band.append(MemberBand((done[j], end[j]), in_lo, window_lo, carry))
            done[j] = end[j]
            if j < n - 1:
                held[j] = window_lo
        bands.append(tuple(band))
    return BandSchedule(rows, tuple(bands), tuple(capacity))


def output_lead(schedule: BandSchedule, first: RowGeometry, in_row_bytes: int, out_row_bytes: int) -> int:
    """How far below the chain's input its output must start so that no band writes over input rows that band or a
    later one reads: the most, over bands, of the output bytes written by the band's end less the input bytes
    before the first row the band or a later one reads. The first member reads its rows before the last writes."""
    lead, needed = 0, first.in_h
    for band in reversed(schedule.bands):
        a, b = band[0].rows
        if b > a:
            needed = min(needed, first.reads(a, b)[0])
        lead = max(lead, band[-1].rows[1] * out_row_bytes - needed * in_row_bytes)
    return lead


def flipped(g: RowGeometry) -> RowGeometry:
    """The convolution upside down, its rows counted from the bottom: its bottom padding (the rows its last window
    reaches below the input, negative where it leaves input rows unread) becomes its top."""
    pad_bottom = (g.out_h - 1) * g.stride + g.dilation * (g.k - 1) + 1 - g.in_h - g.pad_top
    return RowGeometry(g.k, g.stride, pad_bottom, g.dilation, g.in_h, g.out_h)


def upward_schedule(members: Sequence[RowGeometry], rows: int) -> BandSchedule | None:
    """The bands bottom to top: the schedule of the chain upside down, its first band the top-to-bottom last one
    (so the last member's bands are the same rows), in flipped rows (`flipped`); None as band_schedule."""
    last_h = members[-1].out_h
    return band_schedule([flipped(g) for g in members], rows, last_h - (last_h - 1) // rows * rows)


def real_rows(flip: tuple[int, int], height: int) -> tuple[int, int]:
    """Rows [a, b) counted from the bottom of a tensor `height` rows high, counted from the top."""
    return height - flip[1], height - flip[0]


def output_rise(schedule: BandSchedule, first: RowGeometry, out_h: int, in_row_bytes: int, out_row_bytes: int
                ) -> int:
    """How far above the chain's input its output must start when it runs bottom to top (`schedule`, from
    upward_schedule), so that no band writes over input rows that band or a later one reads: the most, over bands,
    of the input bytes up to the last row the band or a later one reads less the output bytes before the band's
    first row. The mirror of output_lead."""
    rise, needed = 0, 0
    for band in reversed(schedule.bands):
        if band[0].rows[1] > band[0].rows[0]:
            needed = max(needed, first.reads(*real_rows(band[0].rows, first.out_h))[1])
        rise = max(rise, needed * in_row_bytes - real_rows(band[-1].rows, out_h)[0] * out_row_bytes)
    return rise


def band_conv(node: Node, graph: Graph, a: int, b: int) -> tuple[Node, Graph, int]:
    """Output rows [a, b) of a convolution as a convolution of its own, on the input rows it reads: (that node,
    a graph holding it, the first input row it reads)."""
    g = RowGeometry.of(node, graph)
    first, last = g.reads(a, b)
    top = g.pad_top - a * g.stride + first
    span = g.dilation * (g.k - 1) + 1
    bottom = (b - a - 1) * g.stride + span - (last - first) - top
    _, left, _, right = node.attr("pads")
    src, dst = graph.shape(node.inputs[0]), graph.shape(node.output)
    band = node.with_(attrs={**dict(node.attrs), "pads": (top, left, bottom, right)})
    shapes = ((node.inputs[0], Shape(src.c, last - first, src.w)), (node.output, Shape(dst.c, b - a, dst.w)))
    tensors = {node.inputs[0], node.output}
    sub = Graph((band,), tuple(sorted(shapes)), graph.constants, node.inputs[0], node.output, (), (),
                dtypes=tuple(d for d in graph.dtypes if d[0] in tensors),
                quant=tuple(q for q in graph.quant if q[0] in tensors))
    return band, sub, first


def element_bytes(graph: Graph, tensor: str) -> int:
    """Bytes per element of a tensor: 4 for float32, 1 for int8."""
    return DTYPE_BYTES[graph.dtype(tensor)]


def carry_call(shape: Shape, count: int, dtype: str = "float32") -> KernelCall:
    """Copy `count` rows of an HWC window of `shape`'s width and channels (source and target never overlap). An
    int8 window's rows are copied as one channel of `count` x (width * channels) values, whose HWC to CHW transform
    is the identity: the int8 copy the kernels have."""
    if dtype == "int8":
        return transform_call(Shape(1, count, shape.w * shape.c), "HWC", "CHW", "int8")
    params = (("c", shape.c), ("h", count), ("w", shape.w), ("out_c", shape.c), ("c_offset", 0))
    size = shape.c * count * shape.w * 4
    return KernelCall("tb_copy_channels_hwc", "tb_channels", params, ("in0", "out"), (("in0", size), ("out", size)))


CARRY_SOURCES = ("ops_concat.c",)  # a float window's copy; an int8 one's: transforms.transform_sources


@dataclass(frozen=True)
class MemberOption:
    """One member run by one primitive: its call in every band (None where it computes no rows)."""

    primitive: str
    calls: tuple[KernelCall | None, ...]
    workspace_bytes: int  # the largest of its band calls' (both ways)
    up_calls: tuple[KernelCall | None, ...] = ()  # its calls bottom to top, per band of that run; () if it cannot


@dataclass(frozen=True)
class GroupOption:
    """A chain and a band height, before costs pick each member's primitive (`pick`, one of base.PICKS)."""

    name: str
    members: tuple[int, ...]  # node indices, consecutive
    schedule: BandSchedule
    options: tuple[tuple[MemberOption, ...], ...]  # per member, sorted by primitive
    carries: tuple[tuple[KernelCall | None, ...], ...]  # per member but the last, per band
    pick: str = "fastest"
    upward: BandSchedule | None = None  # the bands bottom to top (upward_schedule), if its windows hold them
    up_carries: tuple[tuple[KernelCall | None, ...], ...] = ()  # the copies of that run

    @property
    def kind(self) -> str:
        return NAME

    def calls(self) -> list[KernelCall]:
        return [c for opts in self.options for o in opts for c in o.calls if c is not None] + \
               [c for per_band in self.carries for c in per_band if c is not None]

    def group(self, graph: Graph, costs: Mapping[str, Cost]) -> FusedGroup:
        """Every member's fastest primitive, by its band calls' summed cost (then the smaller workspace, then the
        name), or for a lean pick the one with the least workspace (then the fastest); a member's time includes the
        copies into its window."""
        chosen = tuple(pick_option(self.pick, opts, costs) for opts in self.options)
        carry_ms = [calls_ms(per_band, costs) for per_band in self.carries] + [0.0]  # the last member keeps no window
        member_ms = tuple(calls_ms(o.calls, costs) + carry_ms[j] for j, o in enumerate(chosen))
        windows = tuple(rows * row_bytes(graph, graph.nodes[i].output)
                        for rows, i in zip(self.schedule.window_rows, self.members))
        first, last = graph.nodes[self.members[0]], graph.nodes[self.members[-1]]
        first_geometry = RowGeometry.of(first, graph)
        in_row, out_row = row_bytes(graph, first.inputs[0]), row_bytes(graph, last.output)
        lead = output_lead(self.schedule, first_geometry, in_row, out_row)
        upward = self.upward if all(o.up_calls for o in chosen) else None
        rise = 0 if upward is None else output_rise(upward, first_geometry, graph.shape(last.output).h, in_row,
                                                       out_row)
        group = FusedGroup(self.name, self.members, self.schedule, chosen, self.carries, member_ms,
                           Workspace.of(windows, chosen), lead, upward=upward,
                           up_carries=self.up_carries if upward is not None else (), rise_bytes=rise)
        run = run_call(group, graph)
        timed = costs.get(run.key()) if run is not None else None
        # timed as it runs: the members share the pass's time as they share the sum of their calls' times
        return replace(group, run=run, member_ms=member_ms if timed is None else run_shares(member_ms, timed))


def row_bytes(graph: Graph, tensor: str) -> int:
    """Bytes per row of an HWC tensor."""
    shape = graph.shape(tensor)
    return shape.w * shape.c * element_bytes(graph, tensor)


def chains(graph: Graph) -> list[tuple[int, ...]]:
    """Maximal runs of consecutive convolutions where each output is read by the next node only."""
    feeds = feeds_next(graph)
    runs: list[tuple[int, ...]] = []
    run = [0]
    for i in range(1, len(graph.nodes) + 1):
        linked = i < len(graph.nodes) and feeds[i - 1] and graph.nodes[i - 1].op in CHAIN_OPS \
            and graph.nodes[i].op in CHAIN_OPS
        if linked:
            run.append(i)
        else:
            if len(run) > 1:
                runs.append(tuple(run))
            run = [i]
    return runs


def fusable(graph: Graph, nodes: tuple[NodeCandidates, ...], costs: Mapping[str, Cost],
            heights: Sequence[int] = HEIGHTS, max_members: int = MAX_MEMBERS,
            per_member: int = PRIMITIVES_PER_MEMBER) -> tuple[GroupOption, ...]:
    """Every sub-chain of 2..max_members members and band height whose members each have an HWC primitive that
    runs all their bands; a member tries its `per_member` fastest HWC primitives by their untiled `costs` (every
    candidate's): on VGG-16, costing the bands of all of them would take a quarter of an hour. Besides them, the
    one needing the least workspace untiled, for a lean group (base.PICKS) where a fast primitive's scratch outweighs
    what fusing saves (ResNet-8's Winograd)."""
    fastest = [tuple({c.primitive.name: c for c in (*fastest_in(nc, LAYOUT, costs, per_member),
                                                    *leanest_in(nc, LAYOUT, costs))}.values()) for nc in nodes]
    out: list[GroupOption] = []
    for run in chains(graph):
        for length in range(2, max_members + 1):
            for start in range(len(run) - length + 1):
                members = run[start:start + length]
                geos = [RowGeometry.of(graph.nodes[i], graph) for i in members]
                for rows in heights:
                    if rows >= geos[-1].out_h:
                        continue
                    option = _group_option(graph, fastest, members, rows, geos)
                    if option is not None:
                        out += [option, replace(option, name=f"{option.name} lean", pick="lean")]
    return tuple(out)


def _group_option(graph: Graph, candidates: list[tuple[Candidate, ...]], members: tuple[int, ...], rows: int,
                  geos: list[RowGeometry]) -> GroupOption | None:
    schedule = band_schedule(geos, rows)
    if schedule is None:
        return None
    upward = upward_schedule(geos, rows)
    if upward is not None and any(u > d for u, d in zip(upward.window_rows, schedule.window_rows)):
        upward = None  # its windows would need more rows than the way down's: it runs down only
    per_member: list[tuple[MemberOption, ...]] = []
    for j, i in enumerate(members):
        node = graph.nodes[i]
        height = graph.shape(node.output).h
        bands = [band_conv(node, graph, *b[j].rows) if b[j].rows[1] > b[j].rows[0] else None
                 for b in schedule.bands]
        up_bands = [band_conv(node, graph, *real_rows(b[j].rows, height)) if b[j].rows[1] > b[j].rows[0] else None
                    for b in (upward.bands if upward is not None else ())]
        opts: list[MemberOption] = []
        for cand in candidates[i]:
            p = cand.primitive
            if not all(sub is None or p.applies(sub[0], sub[1]) for sub in bands):
                continue
            calls = tuple(None if sub is None else single_call(p.call(sub[0], sub[1])) for sub in bands)
            ws = max((p.workspace(sub[0], sub[1]) for sub in bands if sub is not None), default=0)
            up_calls: tuple[KernelCall | None, ...] = ()
            if up_bands and all(sub is None or p.applies(sub[0], sub[1]) for sub in up_bands):
                up_calls = tuple(None if sub is None else single_call(p.call(sub[0], sub[1])) for sub in up_bands)
                ws = max(ws, *(p.workspace(sub[0], sub[1]) for sub in up_bands if sub is not None))
            opts.append(MemberOption(p.name, calls, ws, up_calls))
        if not opts:
            return None
        per_member.append(tuple(sorted(opts, key=lambda o: o.primitive)))
    name = f"{layer_range(members)} rows={rows}"
    return GroupOption(name, members, schedule, tuple(per_member), _carries(graph, members, schedule), upward=upward,
                       up_carries=_carries(graph, members, upward) if upward is not None else ())


def _carries(graph: Graph, members: tuple[int, ...], schedule: BandSchedule) -> tuple[tuple[KernelCall | None, ...],
                                                                                         ...]:
    """Per member but the last, per band: the copy that keeps its window's halo (None where it keeps none)."""
    return tuple(
        tuple(carry_call(graph.shape(graph.nodes[i].output), b[j].carry[1], graph.dtype(graph.nodes[i].output))
              if b[j].carry[1] else None
              for b in schedule.bands)
        for j, i in enumerate(members[:-1]))


class HwcChainGroup(GroupBase):
    """What a group of HWC convolutions that run part by part (row bands here, patches in tiling.patches) shares:
    its layout, its output's lead over its input, and each member's calls using its node's weights."""

    lead_bytes: int  # output_lead: how far below the input the output may start

    @property
    def layout(self) -> Layout:
        return LAYOUT

    @property
    def output_lead(self) -> int:
        return self.lead_bytes

    def weight_parts(self, graph: Graph, j: int) -> tuple[WeightPart, ...]:
        """A member's calls all use its node's weights (its layer index: the step comment names the node)."""
        return (WeightPart("", graph.nodes[self.members[j]], graph),)


@dataclass(frozen=True)
class FusedGroup(HwcChainGroup):
    """A group as the solver sees it: each member's fastest primitive, its time and the group's workspace."""

    name: str
    members: tuple[int, ...]
    schedule: BandSchedule
    chosen: tuple[MemberOption, ...]  # per member
    carries: tuple[tuple[KernelCall | None, ...], ...]
    member_ms: tuple[float, ...]  # each member's band calls, plus the copies into its window
    workspace: Workspace  # a window per member but the last, then the largest band call's scratch
    lead_bytes: int  # output_lead: how far below the input the output may start
    run: SequenceCall | None = None  # its bands' calls in sequence, to time as it runs (run_call)
    upward: BandSchedule | None = None  # its bands bottom to top, where every chosen primitive runs them
    up_carries: tuple[tuple[KernelCall | None, ...], ...] = ()
    rise_bytes: int = 0  # output_rise: how far above the input the output may start, run bottom to top

    @property
    def output_rise(self) -> int:
        return self.rise_bytes

    @property
    def kernel_sources(self) -> tuple[str, ...]:
        return tuple(sorted({source for per_band in (*self.carries, *self.up_carries) for c in per_band if c is not None
                             for source in (transform_sources(c) if c.function.startswith("tb_q8_")
                                            else CARRY_SOURCES)}))

    def steps(self, graph: Graph, plan: Plan, arena: ArenaPlan, weights: WeightSymbols) -> list[Step]:
        return fused_steps(self, graph, plan, arena, weights)


def non_dominated(groups: Sequence[Group]) -> tuple[Group, ...]:
    """Of the band heights of one chain, only those no other beats in both time and workspace: a plan could swap a
    dominated group for the one dominating it."""
    def rank(g: Group) -> tuple[float, int, str]:
        return sum(g.member_ms), g.workspace_bytes, g.name

    def dominates(h: Group, g: Group) -> bool:
        return (h.members == g.members and rank(h) < rank(g) and rank(h)[0] <= rank(g)[0]
                and h.workspace_bytes <= g.workspace_bytes)

    return tuple(g for g in groups if not any(dominates(h, g) for h in groups))


def runs(groups: Sequence[Group]) -> tuple[KernelCall, ...]:
    """A row group is timed as it runs: its band calls, each costed alone and warm, run otherwise in sequence (each
    band reads its input rows from memory and writes its output rows there, the windows stay in cache)."""
    return tuple(g.run for g in groups if isinstance(g, FusedGroup) and g.run is not None)


KIND = Kind(NAME, fusable, non_dominated, runs)


# A band's calls with their buffers: an int is an offset in bytes from the arena's start, a str a weight symbol.
Body = tuple[tuple[KernelCall, tuple[tuple[str, int | str], ...]], ...]
# A band's calls with their buffers as places: (buffer, byte offset in it), the buffers "in" and "out" (the chain's
# whole input and output), "win<j>" (member j's window), "ws" (the scratch) and "w<j>.<role>" (member j's weights).
Places = tuple[tuple[KernelCall, tuple[tuple[str, tuple[str, int]], ...]], ...]


def band_places(group: FusedGroup, graph: Graph, upward: bool = False) -> list[Places]:
    """Every band's calls in order, each role at its place: per member, the copy that keeps its window's halo, then
    its own rows. What the program runs (`band_bodies`) and what the profiler times (`run_call`). `upward`: the
    bands bottom to top (group.upward, in flipped rows): a window holds its rows in order, filled from its end, its
    halo carried to its end."""
    members = [graph.nodes[i] for i in group.members]
    last = len(members) - 1
    row = [row_bytes(graph, m.output) for m in members]  # bytes per output row
    src_row = row_bytes(graph, members[0].inputs[0])
    heights = [graph.shape(m.output).h for m in members]
    capacity = group.schedule.window_rows  # the windows are the way down's (the way up's fit in them)
    schedule, carries, chosen = ((group.upward, group.up_carries, [o.up_calls for o in group.chosen])
                                 if upward and group.upward is not None
                                 else (group.schedule, group.carries, [o.calls for o in group.chosen]))

    def window_row(j: int, lo: int, r: int) -> int:
        """Where row r (counted from the top) of member j's output is in its window, which holds from row `lo`
        (counted from the bottom when upward: its row lo is the window's last)."""
        return r - (heights[j] - capacity[j] - lo if upward else lo)

    bodies = []
    for b, band in enumerate(schedule.bands):
        body: list[tuple[KernelCall, tuple[tuple[str, tuple[str, int]], ...]]] = []
        for j, mb in enumerate(band):
            carry = carries[j][b] if j < last else None
            if carry is not None:
                source, count = mb.carry
                to = capacity[j] - count if upward else 0
                body.append((carry, (("in0", (f"win{j}", (to - source if upward else source) * row[j])),
                                     ("out", (f"win{j}", to * row[j])))))
            call = chosen[j][b]
            if call is None:
                continue
            a, z = real_rows(mb.rows, heights[j]) if upward else mb.rows
            first = RowGeometry.of(members[j], graph).reads(a, z)[0]
            places = {
                "in0": ("in", first * src_row) if j == 0 else
                       (f"win{j - 1}", window_row(j - 1, mb.in_lo, first) * row[j - 1]),
                "out": ("out", a * row[j]) if j == last else (f"win{j}", window_row(j, mb.out_lo, a) * row[j]),
                "ws": ("ws", 0)}
            body.append((call, tuple((r, places.get(r, (f"w{j}.{r}", 0))) for r in call.args)))
        bodies.append(tuple(body))
    return bodies


def band_bodies(group: FusedGroup, graph: Graph, in_base: int, out_base: int, ws_base: int,
                weights: WeightSymbols, upward: bool = False) -> list[Body]:
    """Every band's calls in order (`band_places`), their buffers in the arena and the weights' symbols."""
    bases = {"in": in_base, "out": out_base, "ws": ws_base + group.workspace.scratch_offset,
             **{f"win{j}": ws_base + group.workspace.offset(j) for j in range(len(group.members) - 1)}}
    symbols = {f"w{j}.{role}": symbol for j, i in enumerate(group.members) for role, symbol in weights[i][0].items()}
    return [tuple((call, tuple((role, symbols[buffer] if buffer in symbols else bases[buffer] + offset)
                               for role, (buffer, offset) in roles))
                  for call, roles in places)
            for places in band_places(group, graph, upward)]


def run_call(group: FusedGroup, graph: Graph) -> SequenceCall | None:
    """The group as the program runs it, to time as one call: every band's calls in turn on buffers shared as in the
    arena (the input read and the output written band by band down the whole tensors, the windows reused), or
    None where the profiler cannot run it so (int8 buffers, calls split over threads)."""
    places = band_places(group, graph)
    calls = [call for body in places for call, _ in body]
    if any(c.parts > 1 or (c.arg_types and set(c.arg_types) != {"float"}) for c in calls):
        return None
    return SequenceCall.of([(call, {role: f"{buffer}@{offset}" for role, (buffer, offset) in roles})
                            for body in places for call, roles in body])


def _same_calls(x: Body, y: Body) -> bool:
    return [(c, [(r, v if isinstance(v, str) else None) for r, v in roles]) for c, roles in x] == \
           [(c, [(r, v if isinstance(v, str) else None) for r, v in roles]) for c, roles in y]


def _advance(x: Body, y: Body) -> list[int]:
    return [v2 - v1 for (_, r1), (_, r2) in zip(x, y) for (_, v1), (_, v2) in zip(r1, r2)
            if isinstance(v1, int) and isinstance(v2, int)]


def band_runs(bodies: Sequence[Body]) -> list[tuple[int, int]]:
    """(first band, count) of each maximal run of bands that make the same calls on buffers that advance by the
    same offsets from one band to the next: a run becomes one loop. A band that would only pair up with the next
    stays alone when the next starts a longer run (the first band usually differs: it holds the top padding)."""
    def run_from(k: int) -> int:
        m = k + 1
        if m < len(bodies) and _same_calls(bodies[k], bodies[m]):
            step = _advance(bodies[k], bodies[m])
            while m < len(bodies) and _same_calls(bodies[k], bodies[m]) and _advance(bodies[m - 1], bodies[m]) == step:
                m += 1
        return m - k

    runs, k = [], 0
    while k < len(bodies):
        count = run_from(k)
        if count == 2 and k + 1 < len(bodies) and run_from(k + 1) > 2:
            count = 1
        runs.append((k, count))
        k += count
    return runs


def arena_pointer(offset: int, delta: int, c_type: str) -> str:
    """The C pointer `offset` bytes into the arena, advancing `delta` bytes per loop iteration: `A + floats` (A is
    the arena as floats) for a float buffer, else a byte offset cast to the kernel's element type."""
    if c_type == "float":
        assert offset % 4 == 0 and delta % 4 == 0, (offset, delta)
        return f"A + {offset // 4}" + _advancing(delta // 4)
    return f"({c_type} *)((char *)A + {offset}" + _advancing(delta) + ")"


def _advancing(delta: int) -> str:
    """The part of a pointer that moves `delta` per loop iteration (a band loop run bottom to top moves down)."""
    if not delta:
        return ""
    return f" {'+' if delta > 0 else '-'} {abs(delta)} * {LOOP_VARIABLE}"


def fused_steps(group: FusedGroup, graph: Graph, plan: Plan, arena: ArenaPlan, weights: WeightSymbols) -> list[Step]:
    """A row group's bands: a step per run of bands that band_runs finds (a loop when it has more than one)."""
    first, last = graph.nodes[group.members[0]], graph.nodes[group.members[-1]]
    in_buffer, out_buffer = plan.buffer_of(first.inputs[0], LAYOUT), plan.buffer_of(last.output, LAYOUT)
    in_base, out_base = arena.offset(in_buffer), arena.offset(out_buffer)
    ws_base = arena.offset(f"{last.name}:workspace")
    in_size = next(b.size for b in plan.buffers() if b.name == in_buffer)
    upward = any(o.upward(in_base, out_base, in_size) for o in plan.overlaps
                 if (o.input, o.output) == (in_buffer, out_buffer))
    bodies = band_bodies(group, graph, in_base, out_base, ws_base, weights, upward)
    label = group.label
    members = ", ".join(f"l{i} {o.primitive}" for i, o in zip(group.members, group.chosen))
    windows = " and ".join(str(r) for r in group.schedule.window_rows)
    way = ", bottom to top (its output starts above its input and overwrites it from the end)" if upward else ""
    head = (f"[{label}] fused row tiling of {members}: {len(bodies)} bands of {group.schedule.rows} output rows"
            f"{way}. Windows of {windows} rows at the start of l{group.members[-1]}'s workspace keep the rows one "
            f"band shares with the next, so nothing is recomputed.")
    return looped_steps(bodies, label, head, ("Band", "Bands"))


def looped_steps(bodies: Sequence[Body], label: str, head: str, unit: tuple[str, str]) -> list[Step]:
    """A step per run of bodies band_runs finds (a loop when it has more than one), its pointers into the arena;
    the first step's comment is `head`, each names its bodies by `unit` (singular, plural)."""
    steps = []
    for k, count in band_runs(bodies):
        body = bodies[k]
        step = _advance(body, bodies[k + 1]) if count > 1 else []
        moves = iter(step)
        calls = []
        for call, roles in body:
            ptrs = []
            for role, value in roles:
                if isinstance(value, str):
                    ptrs.append((role, value))
                    continue
                delta = next(moves) if count > 1 else 0
                ptrs.append((role, arena_pointer(value, delta, call.arg_type(role))))
            calls.append((call, tuple(ptrs)))
        what = f"{unit[0]} {k}:" if count == 1 else f"{unit[1]} {k}-{k + count - 1}:"
        steps.append(Step(f"{head if k == 0 else f'[{label}]'} {what}", tuple(calls), count))
    return steps
