"""Fused channel tiling (FDT, Stahl, Mueller-Gritschneder and Schlichtmann, TinyML 2023): a chain conv -> depthwise
-> conv runs slice by slice of the channels between its convolutions.

For each slice [c0, c1) of the first convolution's output channels: the first convolution computes those channels
only (its weights' rows c0..c1), the depthwise convolutions follow the slice (each channel reads its own channel
only), and the last convolution reads the slice as input channels c0..c1 of its weights and adds its partial sums
into its whole output: the first slice writes (with the bias), the others accumulate (the kernels' accumulate flag,
which adds the raw convolution). The intermediate tensors only ever exist one slice at a time, and nothing is
recomputed. The last convolution must have no activation: it would have to wait for the last slice.

A slice is a tensor of its own with fewer channels, in any layout, and each slice's call is an ordinary kernel call
on it (`sliced_conv`), with the weights of its channels: costed, profiled and emitted like any other call. A chain
runs in one layout; each member tries its fastest primitives (by untiled cost) for that layout. Lowering makes a step
per slice (`sliced_steps`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tasobuild.candidates import Candidate, NodeCandidates, fastest_in
from tasobuild.costs.cache import Cost
from tasobuild.emit.program import Step
from tasobuild.ir import LAYOUTS, Constant, Graph, Layout, Node, Shape
from tasobuild.primitives import KernelCall
from tasobuild.tiling.base import (
    GroupBase,
    Kind,
    Workspace,
    arena_floats,
    calls_ms,
    fastest_option,
    feeds_next,
    layer_range,
    single_call,
)
from tasobuild.tiling.protocol import WeightPart, WeightSymbols

if TYPE_CHECKING:
    from tasobuild.memory import ArenaPlan
    from tasobuild.solve import Plan

NAME = "channels"
WIDTHS = (16, 32, 64)  # slice widths (channels) offered to the solver: whole vectors of the widest SIMD
PRIMITIVES_PER_MEMBER = 2  # as for row tiling: each member's fastest primitives (untiled) in the chain's layout


def _is_depthwise(node: Node, graph: Graph) -> bool:
    c, m = graph.shape(node.inputs[0]).c, graph.shape(node.output).c
    return node.op == "conv" and node.attr("groups", 1) == c == m


def _is_dense(node: Node) -> bool:
    return node.op == "conv" and node.attr("groups", 1) == 1


def chains(graph: Graph) -> list[tuple[int, ...]]:
    """conv -> depthwise (one, or none) -> conv, consecutive in schedule order, each intermediate tensor read by the
    next node only, the last conv without an activation."""
    feeds = feeds_next(graph)
    out: list[tuple[int, ...]] = []
    nodes = graph.nodes
    for i in range(len(nodes) - 1):
        if not _is_dense(nodes[i]) or not feeds[i]:
            continue
        for mid in (0, 1):
            last = i + 1 + mid
            if last >= len(nodes) or (mid and (not _is_depthwise(nodes[i + 1], graph) or not feeds[i + 1])):
                continue
            if _is_dense(nodes[last]) and nodes[last].act.kind == "none":
                out.append(tuple(range(i, last + 1)))
    return out


def sliced_conv(node: Node, graph: Graph, role: str, c0: int, c1: int) -> tuple[Node, Graph]:
    """The member's part of slice [c0, c1): role "first" (output channels c0..c1), "depthwise" (channels c0..c1 in
    and out) or "last" (input channels c0..c1, whole output). A node with its own weights, in a graph of its own."""
    src, dst = graph.shape(node.inputs[0]), graph.shape(node.output)
    w, b = graph.const(node.weights[0]), graph.const(node.weights[1])
    tag = f"{node.name}[{c0}:{c1}]"  # its own name: weight transforms are cached by node name
    if role == "first":
        weights, shapes = (w[c0:c1], b[c0:c1]), (src, Shape(c1 - c0, dst.h, dst.w))
    elif role == "depthwise":
        weights, shapes = (w[c0:c1], b[c0:c1]), (Shape(c1 - c0, src.h, src.w), Shape(c1 - c0, dst.h, dst.w))
    else:
        weights, shapes = (w[:, c0:c1], b), (Shape(c1 - c0, src.h, src.w), dst)
    constants = tuple(Constant.of(f"{tag}.{k}", a) for k, a in enumerate(weights))
    changes: dict[str, Any] = {"name": tag, "weights": tuple(c.name for c in constants)}
    if role == "depthwise":
        changes["attrs"] = {**dict(node.attrs), "groups": c1 - c0}
    sliced = node.with_(**changes)
    sub = Graph((sliced,), tuple(sorted(zip((node.inputs[0], node.output), shapes))),
                tuple(sorted(constants, key=lambda c: c.name)), node.inputs[0], node.output, (), ())
    return sliced, sub


def accumulating(call: KernelCall) -> KernelCall:
    """The call, adding its raw convolution to what its output holds (no bias, no activation)."""
    assert "accumulate" in dict(call.params), f"{call.function} has no accumulate flag"
    params = tuple((k, 1 if k == "accumulate" else v) for k, v in call.params)
    return KernelCall(call.function, call.struct, params, call.args, call.buffer_bytes)


def _roles(n: int) -> list[str]:
    return ["first"] + ["depthwise"] * (n - 2) + ["last"]


@dataclass(frozen=True)
class SliceMember:
    """One member run by one primitive over every slice: its part (a node with that slice's weights, in a graph of
    its own) and its call, per slice."""

    primitive: str
    parts: tuple[tuple[Node, Graph], ...]
    calls: tuple[KernelCall, ...]
    workspace_bytes: int


@dataclass(frozen=True)
class ChannelOption:
    name: str
    members: tuple[int, ...]
    layout: Layout
    slices: tuple[tuple[int, int], ...]
    options: tuple[tuple[SliceMember, ...], ...]  # per member

    @property
    def kind(self) -> str:
        return NAME

    def calls(self) -> list[KernelCall]:
        return [c for opts in self.options for o in opts for c in o.calls]

    def group(self, graph: Graph, costs: Mapping[str, Cost]) -> ChannelGroup:
        """Every member's fastest primitive (summed over the slices; then the smaller workspace, then the name)."""
        chosen = tuple(fastest_option(opts, costs) for opts in self.options)
        width = max(c1 - c0 for c0, c1 in self.slices)
        sizes = tuple(width * graph.shape(graph.nodes[i].output).h * graph.shape(graph.nodes[i].output).w * 4
                      for i in self.members[:-1])
        return ChannelGroup(self.name, self.members, self.layout, self.slices, chosen,
                            tuple(calls_ms(o.calls, costs) for o in chosen), Workspace.of(sizes, chosen))


def fusable(graph: Graph, nodes: tuple[NodeCandidates, ...], costs: Mapping[str, Cost],
            widths: Sequence[int] = WIDTHS, per_member: int = PRIMITIVES_PER_MEMBER) -> tuple[ChannelOption, ...]:
    """Every chain, slice width (narrower than the sliced channels) and layout in which each member has a primitive
    (among its `per_member` fastest untiled ones in that layout) that runs every slice."""
    fastest = {layout: [fastest_in(nc, layout, costs, per_member) for nc in nodes] for layout in LAYOUTS}
    out: list[ChannelOption] = []
    for members in chains(graph):
        channels = graph.shape(graph.nodes[members[0]].output).c
        for width in widths:
            if width >= channels:
                continue
            slices = tuple((c0, min(c0 + width, channels)) for c0 in range(0, channels, width))
            parts = [tuple(sliced_conv(graph.nodes[i], graph, role, c0, c1) for c0, c1 in slices)
                     for role, i in zip(_roles(len(members)), members)]
            for layout in LAYOUTS:
                option = _option(fastest[layout], members, layout, slices, parts)
                if option is not None:
                    out.append(option)
    return tuple(out)


def _option(candidates: list[tuple[Candidate, ...]], members: tuple[int, ...], layout: Layout,
            slices: tuple[tuple[int, int], ...], member_parts: list[tuple[tuple[Node, Graph], ...]]
            ) -> ChannelOption | None:
    per: list[tuple[SliceMember, ...]] = []
    for role, i, parts in zip(_roles(len(members)), members, member_parts):
        opts: list[SliceMember] = []
        for cand in candidates[i]:
            p = cand.primitive
            if not all(p.applies(n, g) for n, g in parts):
                continue
            calls = [single_call(p.call(n, g)) for n, g in parts]
            if role == "last":
                calls = calls[:1] + [accumulating(c) for c in calls[1:]]
            opts.append(SliceMember(p.name, parts, tuple(calls), max(p.workspace(n, g) for n, g in parts)))
        if not opts:
            return None
        per.append(tuple(opts))
    width = slices[0][1] - slices[0][0]
    name = f"{layer_range(members)} channels={width} {layout}"
    return ChannelOption(name, tuple(members), layout, slices, tuple(per))


@dataclass(frozen=True)
class ChannelGroup(GroupBase):
    """A channel-tiled group as the solver sees it: each member's fastest primitive, times and the workspace."""

    name: str
    members: tuple[int, ...]
    layout: Layout
    slices: tuple[tuple[int, int], ...]
    chosen: tuple[SliceMember, ...]  # per member
    member_ms: tuple[float, ...]
    workspace: Workspace  # the widest slice of each intermediate tensor (every member but the last), then scratch

    @property
    def kernel_sources(self) -> tuple[str, ...]:
        return ()

    def weight_parts(self, graph: Graph, j: int) -> tuple[WeightPart, ...]:
        """Every slice has weights of its own."""
        parts = self.chosen[j].parts
        return tuple(WeightPart(f"_s{s}", part, part_graph) for s, (part, part_graph) in enumerate(parts))

    def steps(self, graph: Graph, plan: Plan, arena: ArenaPlan, weights: WeightSymbols) -> list[Step]:
        return sliced_steps(self, graph, plan, arena, weights)


KIND = Kind(NAME, fusable)  # keeps every slice width's group


def sliced_steps(group: ChannelGroup, graph: Graph, plan: Plan, arena: ArenaPlan, weights: WeightSymbols
                 ) -> list[Step]:
    """A step per slice: each member's call on its channels, the last one writing (first slice) or adding to the
    whole output."""
    first, last = graph.nodes[group.members[0]], graph.nodes[group.members[-1]]
    whole_in = f"A + {arena_floats(arena, plan.buffer_of(first.inputs[0], group.layout))}"
    whole_out = f"A + {arena_floats(arena, plan.buffer_of(last.output, group.layout))}"
    ws = arena_floats(arena, f"{last.name}:workspace")
    n = len(group.members)
    slice_buffer = [f"A + {ws + group.workspace.offset(j) // 4}" for j in range(n - 1)]
    scratch = f"A + {ws + group.workspace.scratch_offset // 4}"
    members = ", ".join(f"l{i} {o.primitive}" for i, o in zip(group.members, group.chosen))
    head = (f"[{group.label}] fused channel tiling (FDT) of {members}, in {group.layout}: {len(group.slices)} "
            f"slices of {group.slices[0][1]} channels. A slice's intermediate tensors live at the start of "
            f"l{group.members[-1]}'s workspace, and l{group.members[-1]} adds each slice's partial sums into its "
            f"output, so nothing is recomputed.")
    steps = []
    for s, (c0, c1) in enumerate(group.slices):
        calls = []
        for j, (index, option) in enumerate(zip(group.members, group.chosen)):
            roles = {"in0": whole_in if j == 0 else slice_buffer[j - 1],
                     "out": whole_out if j == n - 1 else slice_buffer[j], "ws": scratch, **weights[index][s]}
            call = option.calls[s]
            calls.append((call, tuple((r, roles[r]) for r in call.args)))
        what = f"Channels {c0}-{c1 - 1}, " + ("written with the bias:" if s == 0 else "added:")
        steps.append(Step(f"{head} {what}" if s == 0 else f"[{group.label}] {what}", tuple(calls)))
    return steps
