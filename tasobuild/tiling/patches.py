"""Patch-based inference (FFMT with halo recomputation, as MCUNetV2 runs a network's first, largest stages): the
output of a chain's last convolution is cut into a grid of spatial patches, and each patch is computed on its own
through the whole chain from the input region it needs (its receptive field, clipped at the borders).

Neighbouring patches read overlapping regions (the halos), which each computes again: no line buffer persists from
one patch to the next, and every intermediate tensor only ever exists one patch at a time. The price is the
recomputation, which the group's costs carry: a member's patch calls cover more output pixels than its whole
output has (`PatchGrid.computed`), and they are costed (profiled or predicted) like any other call.

Every patch call is an ordinary convolution on a tensor of its own (`patch_conv`): output region [r0, r1) x [c0, c1)
of a member reads input rows and columns `RowGeometry.reads` gives, clipped to the input; the padding left is the
image border's (top, left, and what the output size implies at the bottom and right), zero inside the image, since
the region holds every pixel the patch needs. So each output element is computed by the same kernel code over the
same terms as untiled (the kernels' summation order per element does not depend on where the tensor starts).

The kernels take whole tensors (row views only), so a patch narrower than the tensor is copied: the first member's
input region from the chain's input into a patch buffer, and the last member's output patch from a patch buffer into
the chain's output (`tb_copy_patch`, a strided copy of rows). A patch as wide as its tensor is read or written in
place (a row offset). Copying is exact (values move unchanged) and keeps the kernels as they are; a column view in
every kernel family would save the copies but touch them all. The copies' costs are in the members' times.

Patch by patch in row-major order, the chain is done with its input's first rows and columns before it writes its
output's: the output may overlap the input, starting `output_lead` bytes below it, as a row chain's does.

The workspace (at the start of the last member's, as for every group) holds the input patch buffer, a buffer per
intermediate tensor (the largest patch of it) and the output patch buffer, in two halves that take turns (a member
reads from one and writes into the other; what it read is dead once it ran), then the largest scratch a call needs.

int8 chains (`qconv`) run in patches as float ones do, as row tiling runs them in bands: a patch of an int8
convolution is an int8 convolution of its own with the node's quantisation, so each output element is requantised
as untiled; where the patch meets the image's border its padding is the kernel's, which pads with the input zero
point as the whole layer does, and inside the image there is none. Buffers, copies, offsets and the output's lead
are in bytes of each tensor's data type; an int8 patch is copied by `tb_q8_copy_patch`, byte by byte.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tasobuild.candidates import Candidate, NodeCandidates, fastest_in
from tasobuild.costs.cache import Cost
from tasobuild.emit.program import Step
from tasobuild.ir import Graph, Node, Shape
from tasobuild.primitives import KernelCall
from tasobuild.primitives.q8 import Q8_SOURCES_OPS
from tasobuild.tiling.base import (
    PICKS,
    Kind,
    Workspace,
    calls_ms,
    layer_range,
    leanest_in,
    pick_option,
    single_call,
)
from tasobuild.tiling.protocol import WeightSymbols
from tasobuild.tiling.rows import (
    LAYOUT,
    Body,
    HwcChainGroup,
    MemberOption,
    RowGeometry,
    chains,
    element_bytes,
    looped_steps,
    non_dominated,
)

if TYPE_CHECKING:
    from tasobuild.memory import ArenaPlan
    from tasobuild.solve import Plan

NAME = "patches"
GRIDS = ((2, 2), (3, 3), (4, 4))  # patch grids (rows x columns of the last member's output) offered to the solver
MAX_MEMBERS = 4  # MCUNetV2 runs a few blocks per patch; longer chains recompute more than they save
MIN_PATCH_SIDE = 4  # output pixels per patch side, at least: smaller patches are mostly halo
PRIMITIVES_PER_MEMBER = 2  # as for row tiling: each member's fastest HWC primitives (untiled), and its leanest
PATCH_COPY_SOURCES = ("ops_patch.c",)  # tb_copy_patch; an int8 patch's copy, tb_q8_copy_patch: Q8_SOURCES_OPS
FLOAT_BYTES = 4


def axes(node: Node, graph: Graph) -> tuple[RowGeometry, RowGeometry]:
    """A convolution's geometry along its rows and along its columns (RowGeometry is the geometry of one axis)."""
    src, dst = graph.shape(node.inputs[0]), graph.shape(node.output)
    k, stride, pads = node.attr("kernel"), node.attr("stride"), node.attr("pads")
    dilation = node.attr("dilation", (1, 1))
    return (RowGeometry(k[0], stride[0], pads[0], dilation[0], src.h, dst.h),
            RowGeometry(k[1], stride[1], pads[1], dilation[1], src.w, dst.w))


Span = tuple[int, int]  # [a, b) along one axis


def pixel_bytes(graph: Graph, tensor: str) -> int:
    """Bytes per pixel of an HWC tensor: its channels, each in its data type."""
    return graph.shape(tensor).c * element_bytes(graph, tensor)


@dataclass(frozen=True)
class MemberPatch:
    """What one member computes for one patch: output rows and columns, and the input rows and columns it reads."""

    rows: Span
    cols: Span
    in_rows: Span
    in_cols: Span

    @property
    def pixels(self) -> int:
        return (self.rows[1] - self.rows[0]) * (self.cols[1] - self.cols[0])

    @property
    def in_pixels(self) -> int:
        return (self.in_rows[1] - self.in_rows[0]) * (self.in_cols[1] - self.in_cols[0])


def split(n: int, parts: int) -> tuple[Span, ...]:
    """[0, n) cut into `parts` spans as equal as can be, the longer ones last."""
    return tuple((i * n // parts, (i + 1) * n // parts) for i in range(parts))


@dataclass(frozen=True)
class PatchGrid:
    grid: tuple[int, int]  # patches down and across the last member's output
    patches: tuple[tuple[MemberPatch, ...], ...]  # row-major over the grid, per member

    def computed(self, j: int) -> int:
        """Output pixels member j computes over all patches (its whole output's, plus the halos computed again)."""
        return sum(p[j].pixels for p in self.patches)


def patch_grid(members: Sequence[tuple[RowGeometry, RowGeometry]], grid: tuple[int, int]) -> PatchGrid:
    """Each patch's region in every member, from the last member's back to the chain's input."""
    last_h, last_w = members[-1]
    patches = []
    for patch_rows in split(last_h.out_h, grid[0]):
        for patch_cols in split(last_w.out_h, grid[1]):
            per: list[MemberPatch] = []
            rows, cols = patch_rows, patch_cols
            for geo_h, geo_w in reversed(members):
                in_rows, in_cols = geo_h.reads(*rows), geo_w.reads(*cols)
                per.append(MemberPatch(rows, cols, in_rows, in_cols))
                rows, cols = in_rows, in_cols  # what this member reads, the previous one computes
            patches.append(tuple(reversed(per)))
    return PatchGrid(grid, tuple(patches))


def output_lead(grid: PatchGrid, in_shape: Shape, out_shape: Shape, in_element: int = FLOAT_BYTES,
                out_element: int = FLOAT_BYTES) -> int:
    """How far below the chain's input its output must start so that no patch writes over input a later patch
    reads (memory.Overlap): the most, over patches in order, of the output bytes written by its end less the first
    input byte a later patch reads. A patch's own input is read by its first member (or copied) before its last
    member writes, so only later patches count. `in_element`, `out_element`: bytes per value of each tensor."""
    in_pixel, out_pixel = in_shape.c * in_element, out_shape.c * out_element
    starts = [(p[0].in_rows[0] * in_shape.w + p[0].in_cols[0]) * in_pixel for p in grid.patches]
    lead = written = 0
    for k, patch in enumerate(grid.patches):
        (_, r1), (_, c1) = patch[-1].rows, patch[-1].cols
        written = max(written, ((r1 - 1) * out_shape.w + c1) * out_pixel)
        lead = max(lead, written - min(starts[k + 1:], default=in_shape.h * in_shape.w * in_pixel))
    return lead


def _axis_pads(geo: RowGeometry, span: Span) -> tuple[int, int, int, int]:
    """Output [a, b) along an axis as a convolution of its own: (pad before, pad after, first, last input index)."""
    a, b = span
    first, last = geo.reads(a, b)
    before = geo.pad_top - a * geo.stride + first
    after = (b - a - 1) * geo.stride + geo.dilation * (geo.k - 1) + 1 - (last - first) - before
    return before, after, first, last


def patch_conv(node: Node, graph: Graph, rows: Span, cols: Span) -> tuple[Node, Graph]:
    """Output rows x cols of a convolution as a convolution of its own on the input region it reads (padding only
    where that region meets the image's border): the node and a graph holding it."""
    geo_h, geo_w = axes(node, graph)
    top, bottom, r0, r1 = _axis_pads(geo_h, rows)
    left, right, c0, c1 = _axis_pads(geo_w, cols)
    src, dst = graph.shape(node.inputs[0]), graph.shape(node.output)
    patch = node.with_(attrs={**dict(node.attrs), "pads": (top, left, bottom, right)})
    shapes = ((node.inputs[0], Shape(src.c, r1 - r0, c1 - c0)),
              (node.output, Shape(dst.c, rows[1] - rows[0], cols[1] - cols[0])))
    tensors = {node.inputs[0], node.output}
    sub = Graph((patch,), tuple(sorted(shapes)), graph.constants, node.inputs[0], node.output, (), (),
                dtypes=tuple(d for d in graph.dtypes if d[0] in tensors),
                quant=tuple(q for q in graph.quant if q[0] in tensors))
    return patch, sub


def patch_copy_call(rows: int, row_values: int, in_stride: int, out_stride: int, dtype: str = "float32"
                    ) -> KernelCall:
    """Copy `rows` runs of `row_values` values from rows `in_stride` values apart to rows `out_stride` apart:
    floats (tb_copy_patch) or, for `dtype` int8, bytes (tb_q8_copy_patch)."""
    if dtype == "int8":
        params = (("rows", rows), ("row_bytes", row_values), ("in_stride", in_stride), ("out_stride", out_stride))
        return KernelCall("tb_q8_copy_patch", "tb_q8_patch_copy", params, ("in0", "out"),
                          (("in0", (rows - 1) * in_stride + row_values),
                           ("out", (rows - 1) * out_stride + row_values)), ("int8_t", "int8_t"))
    params = (("rows", rows), ("row_floats", row_values), ("in_stride", in_stride), ("out_stride", out_stride))
    return KernelCall("tb_copy_patch", "tb_patch_copy", params, ("in0", "out"),
                      (("in0", ((rows - 1) * in_stride + row_values) * FLOAT_BYTES),
                       ("out", ((rows - 1) * out_stride + row_values) * FLOAT_BYTES)))


def _copy_in(patch: MemberPatch, whole: Shape, dtype: str) -> KernelCall | None:
    """The first member's input region into the input patch buffer, unless it is as wide as the input."""
    (r0, r1), (c0, c1) = patch.in_rows, patch.in_cols
    if c1 - c0 == whole.w:
        return None
    return patch_copy_call(r1 - r0, (c1 - c0) * whole.c, whole.w * whole.c, (c1 - c0) * whole.c, dtype)


def _copy_out(patch: MemberPatch, whole: Shape, dtype: str) -> KernelCall | None:
    """The last member's output patch from the output patch buffer into the output, unless it is as wide."""
    (r0, r1), (c0, c1) = patch.rows, patch.cols
    if c1 - c0 == whole.w:
        return None
    return patch_copy_call(r1 - r0, (c1 - c0) * whole.c, (c1 - c0) * whole.c, whole.w * whole.c, dtype)


@dataclass(frozen=True)
class PatchOption:
    """A chain and a patch grid, before costs pick each member's primitive (`pick`, one of base.PICKS)."""

    name: str
    members: tuple[int, ...]
    grid: PatchGrid
    options: tuple[tuple[MemberOption, ...], ...]  # per member, sorted by primitive; a call per patch
    copies_in: tuple[KernelCall | None, ...]  # per patch
    copies_out: tuple[KernelCall | None, ...]  # per patch
    pick: str = "fastest"

    @property
    def kind(self) -> str:
        return NAME

    def calls(self) -> list[KernelCall]:
        return [c for opts in self.options for o in opts for c in o.calls if c is not None] + \
               [c for c in (*self.copies_in, *self.copies_out) if c is not None]

    def group(self, graph: Graph, costs: Mapping[str, Cost]) -> PatchGroup:
        """Each member's fastest (or, picked lean, least-workspace) primitive over all its patch calls; the first
        member's time includes the copies in, the last's the copies out."""
        chosen = tuple(pick_option(self.pick, opts, costs) for opts in self.options)
        member_ms = [calls_ms(o.calls, costs) for o in chosen]
        member_ms[0] += calls_ms(self.copies_in, costs)
        member_ms[-1] += calls_ms(self.copies_out, costs)
        nodes = [graph.nodes[i] for i in self.members]
        n = len(nodes)
        first_in = graph.shape(nodes[0].inputs[0])
        # bytes per pixel of the chain's input, then of each member's output, in its data type
        pixel = [pixel_bytes(graph, nodes[0].inputs[0])] + [pixel_bytes(graph, m.output) for m in nodes]
        input_patch = max((p[0].in_pixels * pixel[0]
                           for p, c in zip(self.grid.patches, self.copies_in) if c is not None), default=0)
        between = tuple(max(p[j].pixels for p in self.grid.patches) * pixel[j + 1] for j in range(n - 1))
        output_patch = max((p[-1].pixels * pixel[n]
                            for p, c in zip(self.grid.patches, self.copies_out) if c is not None), default=0)
        buffers = (input_patch, *between, output_patch)  # buffer k: written by member k-1, read by member k
        # member k reads buffer k and writes k+1, after which k is dead: even and odd buffers take turns in two
        workspace = Workspace.of((max(buffers[0::2]), max(buffers[1::2])), chosen)
        lead = output_lead(self.grid, first_in, graph.shape(nodes[-1].output),
                           element_bytes(graph, nodes[0].inputs[0]), element_bytes(graph, nodes[-1].output))
        return PatchGroup(self.name, self.members, self.grid, chosen, self.copies_in, self.copies_out,
                          tuple(member_ms), workspace, lead)


@dataclass(frozen=True)
class PatchGroup(HwcChainGroup):
    """A patch group as the solver sees it: each member's primitive, its time (recomputation and copies included)
    and the workspace: the input patch, each intermediate tensor's patch and the output patch in two halves that take
    turns, then the scratch."""

    name: str
    members: tuple[int, ...]
    grid: PatchGrid
    chosen: tuple[MemberOption, ...]
    copies_in: tuple[KernelCall | None, ...]
    copies_out: tuple[KernelCall | None, ...]
    member_ms: tuple[float, ...]
    workspace: Workspace
    lead_bytes: int  # output_lead: how far below the input the output may start

    @property
    def kernel_sources(self) -> tuple[str, ...]:
        copies = [c for c in (*self.copies_in, *self.copies_out) if c is not None]
        return tuple(sorted({s for c in copies
                             for s in (Q8_SOURCES_OPS if c.function.startswith("tb_q8_") else PATCH_COPY_SOURCES)}))

    def steps(self, graph: Graph, plan: Plan, arena: ArenaPlan, weights: WeightSymbols) -> list[Step]:
        return patch_steps(self, graph, plan, arena, weights)


def fusable(graph: Graph, nodes: tuple[NodeCandidates, ...], costs: Mapping[str, Cost],
            grids: Sequence[tuple[int, int]] = GRIDS, max_members: int = MAX_MEMBERS,
            per_member: int = PRIMITIVES_PER_MEMBER) -> tuple[PatchOption, ...]:
    """Every sub-chain of 2..max_members convolutions (float or int8) and grid whose patches are at least MIN_PATCH_SIDE
    pixels a side, where each member has an HWC primitive (its `per_member` fastest untiled, or its leanest) that
    runs every patch; each offered picking the fastest and the leanest primitives (base.PICKS)."""
    fastest = [tuple({c.primitive.name: c for c in (*fastest_in(nc, LAYOUT, costs, per_member),
                                                    *leanest_in(nc, LAYOUT, costs))}.values()) for nc in nodes]
    out: list[PatchOption] = []
    for run in chains(graph):
        for length in range(2, max_members + 1):
            for start in range(len(run) - length + 1):
                members = run[start:start + length]
                geos = [axes(graph.nodes[i], graph) for i in members]
                for grid in grids:
                    if geos[-1][0].out_h < grid[0] * MIN_PATCH_SIDE or geos[-1][1].out_h < grid[1] * MIN_PATCH_SIDE:
                        continue
                    option = _patch_option(graph, fastest, members, patch_grid(geos, grid))
                    if option is not None:
                        out += [option] + [replace(option, name=f"{option.name} {pick}", pick=pick)
                                           for pick in PICKS[1:]]
    return tuple(out)


def _patch_option(graph: Graph, candidates: list[tuple[Candidate, ...]], members: tuple[int, ...],
                  grid: PatchGrid) -> PatchOption | None:
    per_member: list[tuple[MemberOption, ...]] = []
    for j, i in enumerate(members):
        node = graph.nodes[i]
        parts = [patch_conv(node, graph, p[j].rows, p[j].cols) for p in grid.patches]
        opts = [MemberOption(c.primitive.name, tuple(single_call(c.primitive.call(n, g)) for n, g in parts),
                             max(c.primitive.workspace(n, g) for n, g in parts))
                for c in candidates[i] if all(c.primitive.applies(n, g) for n, g in parts)]
        if not opts:
            return None
        per_member.append(tuple(sorted(opts, key=lambda o: o.primitive)))
    first_in = graph.shape(graph.nodes[members[0]].inputs[0])
    last_out = graph.shape(graph.nodes[members[-1]].output)
    name = f"{layer_range(members)} patches {grid.grid[0]}x{grid.grid[1]}"
    in_dtype = graph.dtype(graph.nodes[members[0]].inputs[0])
    out_dtype = graph.dtype(graph.nodes[members[-1]].output)
    return PatchOption(name, members, grid, tuple(per_member),
                       tuple(_copy_in(p[0], first_in, in_dtype) for p in grid.patches),
                       tuple(_copy_out(p[-1], last_out, out_dtype) for p in grid.patches))


KIND = Kind(NAME, fusable, non_dominated)


def patch_bodies(group: PatchGroup, graph: Graph, in_base: int, out_base: int, ws_base: int,
                 weights: WeightSymbols) -> list[Body]:
    """Every patch's calls in order: the copy of its input region, each member's patch, the copy of its output."""
    nodes = [graph.nodes[i] for i in group.members]
    n = len(nodes)
    first_in, last_out = graph.shape(nodes[0].inputs[0]), graph.shape(nodes[-1].output)
    in_pixel, out_pixel = pixel_bytes(graph, nodes[0].inputs[0]), pixel_bytes(graph, nodes[-1].output)
    # the input patch, the intermediate tensors' patches, the output patch: even ones in the first half, odd ones
    # in the second (PatchOption.group)
    buffer = [ws_base + group.workspace.offset(k % 2) for k in range(n + 1)]
    scratch = ws_base + group.workspace.scratch_offset
    bodies: list[Body] = []
    for k, (patch, copy_in, copy_out) in enumerate(zip(group.grid.patches, group.copies_in, group.copies_out)):
        body: list[tuple[KernelCall, tuple[tuple[str, int | str], ...]]] = []
        r0, c0 = patch[0].in_rows[0], patch[0].in_cols[0]
        at_input = in_base + (r0 * first_in.w + c0) * in_pixel
        if copy_in is not None:
            body.append((copy_in, (("in0", at_input), ("out", buffer[0]))))
        r0, c0 = patch[-1].rows[0], patch[-1].cols[0]
        at_output = out_base + (r0 * last_out.w + c0) * out_pixel
        for j, call in enumerate(o.calls[k] for o in group.chosen):
            assert call is not None
            source = (buffer[0] if copy_in is not None else at_input) if j == 0 else buffer[j]
            target = (buffer[n] if copy_out is not None else at_output) if j == n - 1 else buffer[j + 1]
            roles: dict[str, int | str] = {"in0": source, "out": target, "ws": scratch,
                                           **weights[group.members[j]][0]}
            body.append((call, tuple((r, roles[r]) for r in call.args)))
        if copy_out is not None:
            body.append((copy_out, (("in0", buffer[n]), ("out", at_output))))
        bodies.append(tuple(body))
    return bodies


def patch_steps(group: PatchGroup, graph: Graph, plan: Plan, arena: ArenaPlan, weights: WeightSymbols
                ) -> list[Step]:
    """A patch group's patches: a step per run of patches that make the same calls (rows.looped_steps)."""
    first, last = graph.nodes[group.members[0]], graph.nodes[group.members[-1]]
    in_base = arena.offset(plan.buffer_of(first.inputs[0], LAYOUT))
    out_base = arena.offset(plan.buffer_of(last.output, LAYOUT))
    ws_base = arena.offset(f"{last.name}:workspace")
    bodies = patch_bodies(group, graph, in_base, out_base, ws_base, weights)
    members = ", ".join(f"l{i} {o.primitive}" for i, o in zip(group.members, group.chosen))
    whole = [graph.shape(graph.nodes[i].output) for i in group.members]
    again = ", ".join(f"l{i} {group.grid.computed(j) / (s.h * s.w):.2f}x"
                      for j, (i, s) in enumerate(zip(group.members, whole)))
    rows, cols = group.grid.grid
    head = (f"[{group.label}] patch-based inference of {members}: {rows}x{cols} patches of l{group.members[-1]}'s "
            f"output, each computed through the chain from its receptive field, so the halos are recomputed "
            f"(output pixels computed over the whole: {again}). Patch buffers at the start of "
            f"l{group.members[-1]}'s workspace.")
    return looped_steps(bodies, group.label, head, ("Patch", "Patches"))
