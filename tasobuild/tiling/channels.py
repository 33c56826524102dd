"""Fused channel tiling (FDT, Stahl, Mueller-Gritschneder and Schlichtmann, TinyML 2023): a path from one dense
convolution to the next, through operators that work channel by channel, runs slice by slice of the channels
between its two convolutions.

The paths are found over the graph (`paths`): a dense convolution, then any number of per-channel operators
(depthwise convolutions, standalone activations, the per-channel scale, max and average pooling), then a dense
convolution, consecutive in schedule order, each tensor between them read by the next node only. For each slice
[c0, c1) of the first convolution's output channels: the first convolution computes those channels only (its
weights' rows c0..c1), every per-channel member follows the slice (each channel reads its own channel only: a
depthwise convolution or a scale takes that slice of its weights), and the last convolution reads the slice as input
channels c0..c1 of its weights and adds its partial sums into its whole output: the first slice writes (with the
bias), the others accumulate (the kernels' accumulate flag, which adds the raw convolution, no bias, no activation).
The intermediate tensors only ever exist one slice at a time, and nothing is recomputed.

A last convolution with an activation (MobileNetV1's and DS-CNN's pointwise ones, with their ReLU) cannot apply it
per slice: the sum is not complete before the last slice. Its slices run without it, and one in-place element-wise
pass (`tb_act_inplace` over the whole output, `finishing`) applies it after the last slice: a call of the member,
costed like its slices (the bias is already in, from the first slice).

A path may end on its last convolution's residual add (`residual_of`: the next node adds the conv's output, read by
it alone, to another tensor of the same shape: MobileNetV2's projection + the block input, ResNet's second conv + the
shortcut). The add then runs no slices: the last convolution's slices sum into the add's output, and after the last
slice (and the activation pass, if the conv has one) one in-place add of the other tensor finishes it: the add's own
in-place primitive over the conv's output (`adding_residual`: tb_add_inplace, with the add's activation), the same
floats as untiled. The other tensor is the add's input, so the solver keeps it live to the group's step (the group
runs at its last member's). The add is member of the group (its choice is the in-place primitive) but has no parts
(`SliceMember.parts` empty; `ChannelGroup.sliced` counts the members that run per slice).

A slice is a tensor of its own with fewer channels, in any layout, and each slice's call is an ordinary kernel call
on it (`sliced_node`), with the weights of its channels: costed, profiled and emitted like any other call. A path
runs in one layout; each member tries its fastest primitives (by untiled cost) for that layout. Lowering makes a step
per slice (`sliced_steps`) from the group's calls in program order (`sequence`).

Its calls timed alone and warm miss what running them in turn costs (each slice re-reads the path's input, the
partial sums go in and out of the output, the loops are short), so where costs are measured here each group is also
timed as it runs (`runs`: the whole `sequence` as one costs.profile.SequenceCall), and that time is the group's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tasobuild.candidates import Candidate, NodeCandidates, fastest_in
from tasobuild.costs.cache import Cost
from tasobuild.costs.profile import SequenceCall
from tasobuild.emit.program import Step
from tasobuild.ir import LAYOUTS, NO_ACTIVATION, Constant, Graph, Layout, Node, Shape
from tasobuild.primitives import KernelCall, activation_fields
from tasobuild.primitives.ops import ACT_HEADERS
from tasobuild.tiling.base import (
    GroupBase,
    Kind,
    Workspace,
    arena_floats,
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

NAME = "channels"
WIDTHS = (8, 16, 32, 64)  # slice widths (channels) offered to the solver: whole vectors of the SIMD widths
WIDTH_STEP = 8  # a half of the channels is offered too, rounded up to this: two slices, the fewest steps
FINISH_SOURCES = ("ops_eltwise.c", *ACT_HEADERS)  # tb_act_inplace, the pass of `finishing`
PRIMITIVES_PER_MEMBER = 2  # as for row tiling: each member's fastest primitives (untiled) in the chain's layout


# Per-channel operators a slice runs through: output channel c reads input channel c only.
PER_CHANNEL_OPS = ("act", "scale", "maxpool", "avgpool")
MAX_PATH = 8  # members of a path, its two convolutions included: longer per-channel runs are not in real networks


def _is_depthwise(node: Node, graph: Graph) -> bool:
    c, m = graph.shape(node.inputs[0]).c, graph.shape(node.output).c
    return node.op == "conv" and node.attr("groups", 1) == c == m


def _is_dense(node: Node) -> bool:
    return node.op == "conv" and node.attr("groups", 1) == 1


def _per_channel(node: Node, graph: Graph) -> bool:
    """The node's output channel c is a function of its input channel c alone (and the channel counts agree)."""
    if _is_depthwise(node, graph):
        return True
    return (node.op in PER_CHANNEL_OPS and len(node.inputs) == 1
            and graph.shape(node.inputs[0]).c == graph.shape(node.output).c)


def residual_of(graph: Graph, index: int) -> str | None:
    """The tensor node `index` (a path's last conv) is added to when the next node is an element-wise add of the
    two (an inverted-residual block's projection + its input), the conv's output read by that add alone and no
    graph output: the add may end the path; else None."""
    if index + 1 >= len(graph.nodes):
        return None
    conv, add = graph.nodes[index], graph.nodes[index + 1]
    others = [t for t in add.inputs if t != conv.output]
    readers = [n for n in graph.nodes if conv.output in n.inputs]
    if (add.op != "add" or len(add.inputs) != 2 or len(others) != 1 or readers != [add]
            or conv.output in graph.output_tensors or graph.dtype(others[0]) != "float32"
            or graph.shape(others[0]) != graph.shape(conv.output) != graph.shape(add.output)):
        return None
    return others[0]


def paths(graph: Graph) -> list[tuple[int, ...]]:
    """Every dense conv -> per-channel operators (any number, up to MAX_PATH members in all) -> dense conv,
    consecutive in schedule order, each tensor between them read by the next node only, float32 throughout; where
    the last conv's output is added to another tensor next (`residual_of`), the path with that add too."""
    feeds = feeds_next(graph)
    nodes = graph.nodes
    out: list[tuple[int, ...]] = []
    for i, first in enumerate(nodes[:-1]):
        if not _is_dense(first) or {graph.dtype(first.inputs[0]), graph.dtype(first.output)} != {"float32"}:
            continue
        j = i
        while j + 1 < len(nodes) and j - i + 2 <= MAX_PATH and feeds[j]:
            nxt = nodes[j + 1]
            if graph.dtype(nxt.output) != "float32":
                break
            if _is_dense(nxt):
                out.append(tuple(range(i, j + 2)))
                if j - i + 3 <= MAX_PATH and residual_of(graph, j + 1) is not None:
                    out.append(tuple(range(i, j + 3)))
                break
            if not _per_channel(nxt, graph):
                break
            j += 1
    return out


def ends_on_add(members: Sequence[int], graph: Graph) -> bool:
    """The path ends on its last conv's residual add (`residual_of`): the add runs once, after the last slice."""
    return graph.nodes[members[-1]].op == "add"


def sliced_node(node: Node, graph: Graph, role: str, c0: int, c1: int) -> tuple[Node, Graph]:
    """The member's part of slice [c0, c1): role "first" (output channels c0..c1), "through" (channels c0..c1 in
    and out: a per-channel operator) or "last" (input channels c0..c1, whole output). A node with its own weights,
    in a graph of its own."""
    src, dst = graph.shape(node.inputs[0]), graph.shape(node.output)
    consts = [graph.const(w) for w in node.weights]
    tag = f"{node.name}[{c0}:{c1}]"  # its own name: weight transforms are cached by node name
    if role == "first":
        weights, shapes = [w[c0:c1] for w in consts], (src, Shape(c1 - c0, dst.h, dst.w))
    elif role == "through":  # a depthwise conv's [C][1][kh][kw] and [C], a scale's s[C] and t[C]
        weights = [(w.reshape(-1) if node.op == "scale" else w)[c0:c1] for w in consts]
        shapes = (Shape(c1 - c0, src.h, src.w), Shape(c1 - c0, dst.h, dst.w))
    else:
        weights, shapes = [consts[0][:, c0:c1], *consts[1:]], (Shape(c1 - c0, src.h, src.w), dst)
    constants = tuple(Constant.of(f"{tag}.{k}", a) for k, a in enumerate(weights))
    changes: dict[str, Any] = {"name": tag, "weights": tuple(c.name for c in constants)}
    if role == "through" and node.op == "conv":
        changes["attrs"] = {**dict(node.attrs), "groups": c1 - c0}
    if role == "last":  # its activation waits for the whole sum (`finishing`)
        changes["act"] = NO_ACTIVATION
    sliced = node.with_(**changes)
    sub = Graph((sliced,), tuple(sorted(zip((node.inputs[0], node.output), shapes))),
                tuple(sorted(constants, key=lambda c: c.name)), node.inputs[0], node.output, (), ())
    return sliced, sub


def finishing(node: Node, graph: Graph) -> KernelCall | None:
    """The pass that applies the last convolution's activation over its whole output after the last slice, in place
    (element-wise: any layout); None when it has none."""
    if node.act.kind == "none":
        return None
    shape = graph.shape(node.output)
    return KernelCall("tb_act_inplace", "tb_flat", (("n", shape.count),) + activation_fields(node.act), ("out",),
                      (("out", shape.bytes),))


def adding_residual(add: Candidate, node: Node, conv: Node) -> KernelCall | None:
    """The residual add's pass after the last slice, if `add` is the add's in-place primitive over the conv's output
    (tb_add_inplace: the whole sum += the residual, then the add's activation): what the untiled in-place add does,
    so the same floats; None for any other primitive."""
    if add.primitive.in_place < 0 or node.inputs[add.primitive.in_place] != conv.output:
        return None
    return single_call(add.calls)


def accumulating(call: KernelCall) -> KernelCall:
    """The call, adding its raw convolution to what its output holds (no bias, no activation)."""
    assert "accumulate" in dict(call.params), f"{call.function} has no accumulate flag"
    params = tuple((k, 1 if k == "accumulate" else v) for k, v in call.params)
    return KernelCall(call.function, call.struct, params, call.args, call.buffer_bytes)


def _roles(n: int) -> list[str]:
    return ["first"] + ["through"] * (n - 2) + ["last"]


@dataclass(frozen=True)
class SliceMember:
    """One member run by one primitive over every slice: its part (a node with that slice's weights, in a graph of
    its own) and its call, per slice; a last convolution with an activation, then the pass that applies it. A
    residual add ending the path has no parts: one call, after the last slice."""

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
    pick: str = "fastest"  # one of base.PICKS

    @property
    def kind(self) -> str:
        return NAME

    def calls(self) -> list[KernelCall]:
        return [c for opts in self.options for o in opts for c in o.calls]

    def group(self, graph: Graph, costs: Mapping[str, Cost]) -> ChannelGroup:
        """Every member's fastest primitive (summed over the slices; then the smaller workspace, then the name), or
        for a lean pick the one needing the least workspace (then the fastest)."""
        chosen = tuple(pick_option(self.pick, opts, costs) for opts in self.options)
        width = max(c1 - c0 for c0, c1 in self.slices)
        sliced = self.members[:sum(1 for opts in self.options if opts[0].parts)]  # the residual add runs whole
        sizes = tuple(width * graph.shape(graph.nodes[i].output).h * graph.shape(graph.nodes[i].output).w * 4
                      for i in sliced[:-1])
        group = ChannelGroup(self.name, self.members, self.layout, self.slices, chosen,
                             tuple(calls_ms(o.calls, costs) for o in chosen), Workspace.of(sizes, chosen))
        run = costs.get(run_call(group).key())
        if run is None:
            return group
        # timed as it runs: the members share the pass's time as they share the sum of their calls' times
        return replace(group, member_ms=run_shares(group.member_ms, run))


def fusable(graph: Graph, nodes: tuple[NodeCandidates, ...], costs: Mapping[str, Cost],
            widths: Sequence[int] | None = None, per_member: int = PRIMITIVES_PER_MEMBER
            ) -> tuple[ChannelOption, ...]:
    """Every path, slice width (narrower than the sliced channels) and layout in which each member has a primitive
    (among its `per_member` fastest untiled ones in that layout, and the one needing the least workspace) that runs
    every slice; each as a fastest and a lean option (base.PICKS: a fast primitive's scratch may outweigh the
    slices' saving)."""
    fastest = {layout: [tuple({c.primitive.name: c for c in (*fastest_in(nc, layout, costs, per_member),
                                                               *leanest_in(nc, layout, costs))}.values())
                        for nc in nodes] for layout in LAYOUTS}
    out: list[ChannelOption] = []
    for members in paths(graph):
        sliced = members[:-1] if ends_on_add(members, graph) else members
        channels = graph.shape(graph.nodes[members[0]].output).c
        for width in slice_widths(channels) if widths is None else widths:
            if width >= channels:
                continue
            slices = tuple((c0, min(c0 + width, channels)) for c0 in range(0, channels, width))
            parts = [tuple(sliced_node(graph.nodes[i], graph, role, c0, c1) for c0, c1 in slices)
                     for role, i in zip(_roles(len(sliced)), sliced)]
            for layout in LAYOUTS:
                option = _option(fastest[layout], sliced, layout, slices, parts,
                                 finishing(graph.nodes[sliced[-1]], graph))
                if option is not None and len(sliced) < len(members):
                    option = _with_add(option, members[-1], nodes[members[-1]], graph.nodes[sliced[-1]])
                if option is not None:
                    out += [option, replace(option, name=f"{option.name} lean", pick="lean")]
    return tuple(out)


def _with_add(option: ChannelOption, index: int, add: NodeCandidates, conv: Node) -> ChannelOption | None:
    """The option with the residual add as its last member: its in-place primitives over the conv's output in the
    option's layout (one thread: the group runs on one), each a pass after the last slice; None without one."""
    runs = tuple(SliceMember(c.primitive.name, (), (call,), 0) for c in add.options
                 if c.primitive.layout_in == c.primitive.layout_out == option.layout and c.parts == 1
                 and (call := adding_residual(c, add.node, conv)) is not None)
    if not runs:
        return None
    members = (*option.members, index)
    return replace(option, name=f"{layer_range(members)} {option.name.split(' ', 1)[1]}", members=members,
                   options=(*option.options, runs))


def distinct(groups: Sequence[Group]) -> tuple[Group, ...]:
    """The groups but a lean one that picked what its fastest twin did (the same calls: the same choice)."""
    seen: set[tuple[str, tuple[str, ...]]] = set()
    out = []
    for group in groups:
        key = (group.name.removesuffix(" lean"), tuple(o.primitive for o in group.chosen))
        if key not in seen:
            seen.add(key)
            out.append(group)
    return tuple(out)


def slice_widths(channels: int) -> tuple[int, ...]:
    """The slice widths offered for a path of this many channels: WIDTHS, and half of them (two slices), each
    narrower than the channels."""
    half = -(-channels // (2 * WIDTH_STEP)) * WIDTH_STEP
    return tuple(sorted(w for w in {*WIDTHS, half} if w < channels))


def _option(candidates: list[tuple[Candidate, ...]], members: tuple[int, ...], layout: Layout,
            slices: tuple[tuple[int, int], ...], member_parts: list[tuple[tuple[Node, Graph], ...]],
            finish: KernelCall | None) -> ChannelOption | None:
    per: list[tuple[SliceMember, ...]] = []
    for role, i, parts in zip(_roles(len(members)), members, member_parts):
        opts: list[SliceMember] = []
        for cand in candidates[i]:
            p = cand.primitive
            if not all(p.applies(n, g) for n, g in parts):
                continue
            calls = [single_call(p.call(n, g)) for n, g in parts]
            if role == "last":
                calls = calls[:1] + [accumulating(c) for c in calls[1:]] + ([finish] if finish else [])
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
    workspace: Workspace  # the widest slice of each intermediate tensor (every sliced member but the last), scratch

    @property
    def sliced(self) -> int:
        """How many members run per slice: all but a residual add ending the path."""
        return sum(1 for o in self.chosen if o.parts)

    @property
    def kernel_sources(self) -> tuple[str, ...]:
        return FINISH_SOURCES if len(self.chosen[self.sliced - 1].calls) > len(self.slices) else ()

    def weight_parts(self, graph: Graph, j: int) -> tuple[WeightPart, ...]:
        """Every slice has weights of its own."""
        parts = self.chosen[j].parts
        return tuple(WeightPart(f"_s{s}", part, part_graph) for s, (part, part_graph) in enumerate(parts))

    def steps(self, graph: Graph, plan: Plan, arena: ArenaPlan, weights: WeightSymbols) -> list[Step]:
        return sliced_steps(self, graph, plan, arena, weights)


def run_call(group: ChannelGroup) -> SequenceCall:
    """The group as the program runs it, to time as one call: every slice's calls in turn, then the activation
    pass, on buffers shared as in the arena (each slice re-reads the input, the last conv adds into the output)."""
    return SequenceCall.of([named for step in sequence(group) for named in step])


def runs(groups: Sequence[Group]) -> tuple[KernelCall, ...]:
    """A channel group is timed as it runs: its slices' calls, each costed alone and warm, run slower in sequence
    (each slice re-reads the path's input, partial sums go in and out of the output, the loops are short)."""
    return tuple(run_call(g) for g in groups if isinstance(g, ChannelGroup))


KIND = Kind(NAME, fusable, distinct, runs)  # keeps every slice width's group


def sequence(group: ChannelGroup) -> list[list[tuple[KernelCall, dict[str, str]]]]:
    """The group's calls in the order the program makes them (per slice, then the finishing passes: the last
    conv's activation, the residual add), each with its roles' buffers named: "in" and "out" (the path's whole
    input and output), "slice<j>" (member j's output slice), "ws" (the scratch), "w<j>.<s>.<role>" (member j's
    weights for slice s), "res" (what the residual add adds)."""
    n = group.sliced
    out: list[list[tuple[KernelCall, dict[str, str]]]] = []
    for s in range(len(group.slices)):
        calls = []
        for j, option in enumerate(group.chosen[:n]):
            call = option.calls[s]
            names = {"in0": "in" if j == 0 else f"slice{j - 1}", "out": "out" if j == n - 1 else f"slice{j}",
                     "ws": "ws"}
            calls.append((call, {r: names.get(r, f"w{j}.{s}.{r}") for r in call.args}))
        out.append(calls)
    out += [[(finish, {"out": "out"})] for finish in group.chosen[n - 1].calls[len(group.slices):]]
    out += [[(add, {r: "out" if r == "out" else "res" for r in add.args})] for o in group.chosen[n:] for add in o.calls]
    return out


def sliced_steps(group: ChannelGroup, graph: Graph, plan: Plan, arena: ArenaPlan, weights: WeightSymbols
                 ) -> list[Step]:
    """A step per slice: each member's call on its channels, the last one writing (first slice) or adding to the
    whole output; then the last convolution's activation over its whole output, if it has one."""
    first, last = graph.nodes[group.members[0]], graph.nodes[group.members[-1]]
    residual = residual_of(graph, group.members[group.sliced - 1]) if group.sliced < len(group.members) else None
    ws = arena_floats(arena, f"{last.name}:workspace")
    pointers = {"in": f"A + {arena_floats(arena, plan.buffer_of(first.inputs[0], group.layout))}",
                "out": f"A + {arena_floats(arena, plan.buffer_of(last.output, group.layout))}",
                **({"res": f"A + {arena_floats(arena, plan.buffer_of(residual, group.layout))}"} if residual else {}),
                "ws": f"A + {ws + group.workspace.scratch_offset // 4}",
                **{f"slice{j}": f"A + {ws + group.workspace.offset(j) // 4}" for j in range(len(group.members) - 1)},
                **{f"w{j}.{s}.{role}": symbol for j, index in enumerate(group.members)
                   for s, symbols in enumerate(weights[index]) for role, symbol in symbols.items()}}
    members = ", ".join(f"l{i} {o.primitive}" for i, o in zip(group.members, group.chosen))
    sums = f"l{group.members[group.sliced - 1]}"
    head = (f"[{group.label}] fused channel tiling (FDT) of {members}, in {group.layout}: {len(group.slices)} "
            f"slices of {group.slices[0][1]} channels. A slice's intermediate tensors live at the start of "
            f"l{group.members[-1]}'s workspace, and {sums} adds each slice's partial sums into "
            f"{'its' if residual is None else 'the whole'} output, so nothing is recomputed.")
    steps = []
    for s, calls in enumerate(sequence(group)):
        with_pointers = tuple((call, tuple((r, pointers[names[r]]) for r in call.args)) for call, names in calls)
        if s < len(group.slices):
            c0, c1 = group.slices[s]
            what = f"Channels {c0}-{c1 - 1}, " + ("written with the bias:" if s == 0 else "added:")
            steps.append(Step(f"{head} {what}" if s == 0 else f"[{group.label}] {what}", with_pointers))
        elif "res" in calls[0][1].values():
            steps.append(Step(f"[{group.label}] l{group.members[-1]}, {sums}'s residual add, once its sum is whole "
                              f"(in place):", with_pointers))
        else:
            steps.append(Step(f"[{group.label}] {sums}'s activation, once its sum is whole:", with_pointers))
    return steps
