"""Lowering: the decided plan becomes a Program — every call with its arena pointers and weights; a fused group's
calls as loops over its bands (rows) or a step per slice (channels)."""

from __future__ import annotations


from tasobuild.candidates import Candidate, NodeCandidates, TransformCandidate
from tasobuild.channel_tiling import ChannelGroup
from tasobuild.emit.program import LOOP_VARIABLE, Program, Step, Toolchain, WeightArray
from tasobuild.ir import Graph, Node
from tasobuild.memory import ArenaPlan
from tasobuild.primitives import Primitive
from tasobuild.solve import Plan
from tasobuild.tiling import CARRY_SOURCES, LAYOUT, Body, FusedGroup, band_bodies


def pointer(arena: ArenaPlan, buffer: str) -> str:
    offset = arena.offset(buffer)
    assert offset % 4 == 0, buffer
    return f"A + {offset // 4}"


def _provenance(node: Node, graph: Graph, cand: Candidate) -> str:
    origin = " + ".join((node.name,) + node.fused)
    act = f" +{node.act}" if node.act.kind != "none" else ""
    ins = ", ".join(str(graph.shape(t)) for t in node.inputs)
    ws = f", workspace {cand.workspace_bytes} B" if cand.workspace_bytes else ""
    return (f"{origin} ({node.op}{act}) {ins} -> {graph.shape(node.output)}: {cand.primitive.name} "
            f"{cand.primitive.layout_in}->{cand.primitive.layout_out}{ws}")


def lower(graph: Graph, nodes: tuple[NodeCandidates, ...], transforms: tuple[TransformCandidate, ...], plan: Plan,
          arena: ArenaPlan, name: str, banner: tuple[str, ...], toolchain: Toolchain,
          groups: tuple[FusedGroup | ChannelGroup, ...] = ()) -> Program:
    transform_calls = {(t.tensor, t.src, t.dst): t.call for t in transforms}
    steps: list[Step] = []
    weights: list[WeightArray] = []
    sources: set[str] = set()

    def transform_steps(step_index: int) -> None:
        from tasobuild.primitives.transforms import TRANSFORM_SOURCES

        for t in plan.transforms:
            if t.step != step_index:
                continue
            call = transform_calls[(t.tensor, t.from_layout, t.to_layout)]
            ptrs = (("in0", pointer(arena, plan.buffer_of(t.tensor, t.from_layout))),
                    ("out", pointer(arena, plan.buffer_of(t.tensor, t.to_layout))))
            steps.append(Step(f"layout transform of {t.tensor} {graph.shape(t.tensor)}: "
                              f"{t.from_layout}->{t.to_layout}", ((call, ptrs),)))
            sources.update(TRANSFORM_SOURCES)

    def weight_roles(primitive: Primitive, node: Node, part_graph: Graph, symbol: str) -> dict[str, str]:
        """The node's weights as `primitive` transforms them, added to the program: role -> C symbol."""
        roles = {}
        for k, array in enumerate(primitive.weights(node, part_graph)):
            weights.append(WeightArray(f"{symbol}_w{k}", array, f"{node.name}: {primitive.name} weight {k}, "
                                                                f"shape {'x'.join(map(str, array.shape))}"))
            roles[f"w{k}"] = f"{symbol}_w{k}"
        return roles

    by_group = {g.name: g for g in groups}
    weight_symbols: dict[int, dict[str, str]] = {}  # node index -> role -> symbol, for row groups' calls
    slice_symbols: dict[tuple[int, int], dict[str, str]] = {}  # (node index, slice) -> ..., for channel groups'
    for index, nc in enumerate(nodes):
        transform_steps(index)
        choice = plan.choice(nc.node.name)
        cand = next(c for c in nc.options if c.primitive.name == choice.primitive)
        node = nc.node
        group = by_group.get(choice.group)
        if group is not None:
            sources.update(cand.primitive.sources)
            if isinstance(group, ChannelGroup):  # every slice has weights of its own
                parts = group.chosen[group.members.index(index)].parts
                for s, (part, part_graph) in enumerate(parts):
                    slice_symbols[(index, s)] = weight_roles(cand.primitive, part, part_graph,
                                                             f"{name}_l{index}_s{s}")
            else:  # layer index: the step comment names the ONNX node
                weight_symbols[index] = weight_roles(cand.primitive, node, graph, f"{name}_l{index}")
            if choice.deferred:
                steps.append(Step(f"[l{index}] {_provenance(node, graph, cand)}: runs in the fused group "
                                  f"[{group.label}] below", ()))
            elif isinstance(group, ChannelGroup):
                steps += sliced_steps(group, graph, plan, arena, slice_symbols)
            else:
                steps += fused_steps(group, graph, plan, arena, weight_symbols)
                if any(c is not None for per_band in group.carries for c in per_band):
                    sources.update(CARRY_SOURCES)
            continue
        roles = weight_roles(cand.primitive, node, graph, f"{name}_l{index}")
        roles.update({f"in{k}": pointer(arena, plan.buffer_of(t, choice.layout_in)) for k, t in enumerate(node.inputs)})
        roles["out"] = pointer(arena, plan.buffer_of(node.output, choice.layout_out))
        if cand.workspace_bytes:
            roles["ws"] = pointer(arena, f"{node.name}:workspace")
        calls = tuple((call, tuple((r, roles[r]) for r in call.args)) for call in cand.calls)
        steps.append(Step(f"[l{index}] {_provenance(node, graph, cand)}", calls))
        if calls:
            sources.update(cand.primitive.sources)
    transform_steps(len(nodes))

    in_buffer = plan.buffer_of(graph.input, "CHW")
    out_buffer = plan.buffer_of(graph.output, "CHW")
    sizes = {b.name: b.size for b in plan.buffers()}
    arena_map = tuple(sorted((arena.offset(b), sizes[b], b) for b in sizes))
    return Program(
        name=name,
        banner=banner,
        arena_bytes=arena.arena_bytes,
        arena_map=arena_map,
        input_offset=arena.offset(in_buffer),
        input_count=graph.shape(graph.input).count,
        input_desc=f"{graph.input_name or graph.input} {list(graph.onnx_input_shape)}",
        output_offset=arena.offset(out_buffer),
        output_count=graph.shape(graph.output).count,
        output_desc=f"{graph.output_name or graph.output} {list(graph.onnx_output_shape)}",
        steps=tuple(steps),
        weights=tuple(weights),
        kernel_sources=tuple(sorted(sources)),
        toolchain=toolchain,
    )


def _same_calls(x: Body, y: Body) -> bool:
    return [(c, [(r, v if isinstance(v, str) else None) for r, v in roles]) for c, roles in x] == \
           [(c, [(r, v if isinstance(v, str) else None) for r, v in roles]) for c, roles in y]


def _advance(x: Body, y: Body) -> list[int]:
    return [v2 - v1 for (_, r1), (_, r2) in zip(x, y) for (_, v1), (_, v2) in zip(r1, r2) if isinstance(v1, int)]


def band_runs(bodies: list[Body]) -> list[tuple[int, int]]:
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


def fused_steps(group: FusedGroup, graph: Graph, plan: Plan, arena: ArenaPlan,
                weight_symbols: dict[int, dict[str, str]]) -> list[Step]:
    """A row group's bands: a step per run of bands that band_runs finds (a loop when it has more than one)."""
    first, last = graph.nodes[group.members[0]], graph.nodes[group.members[-1]]
    in_base = arena.offset(plan.buffer_of(first.inputs[0], LAYOUT)) // 4
    out_base = arena.offset(plan.buffer_of(last.output, LAYOUT)) // 4
    ws_base = arena.offset(f"{last.name}:workspace") // 4
    bodies = band_bodies(group, graph, in_base, out_base, ws_base, weight_symbols)
    label = group.label
    members = ", ".join(f"l{i} {o.primitive}" for i, o in zip(group.members, group.chosen))
    windows = " and ".join(str(r) for r in group.schedule.window_rows)
    head = (f"[{label}] fused row tiling of {members}: {len(bodies)} bands of {group.schedule.rows} output rows. "
            f"Windows of {windows} rows at the start of l{group.members[-1]}'s workspace keep the rows one band "
            f"shares with the next, so nothing is recomputed.")
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
                ptrs.append((role, f"A + {value}" + (f" + {delta} * {LOOP_VARIABLE}" if delta else "")))
            calls.append((call, tuple(ptrs)))
        what = f"Band {k}:" if count == 1 else f"Bands {k}-{k + count - 1}:"
        steps.append(Step(f"{head if k == 0 else f'[{label}]'} {what}", tuple(calls), count))
    return steps


def sliced_steps(group: ChannelGroup, graph: Graph, plan: Plan, arena: ArenaPlan,
                 slice_symbols: dict[tuple[int, int], dict[str, str]]) -> list[Step]:
    """A step per slice: each member's call on its channels, the last one writing (first slice) or adding to the
    whole output."""
    first, last = graph.nodes[group.members[0]], graph.nodes[group.members[-1]]
    whole_in = pointer(arena, plan.buffer_of(first.inputs[0], group.layout))
    whole_out = pointer(arena, plan.buffer_of(last.output, group.layout))
    ws = arena.offset(f"{last.name}:workspace") // 4
    n = len(group.members)
    slice_buffer = [f"A + {ws + group.slice_offset(j) // 4}" for j in range(n - 1)]
    scratch = f"A + {ws + group.slices_end // 4}"
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
                     "out": whole_out if j == n - 1 else slice_buffer[j], "ws": scratch, **slice_symbols[(index, s)]}
            call = option.calls[s]
            calls.append((call, tuple((r, roles[r]) for r in call.args)))
        what = f"Channels {c0}-{c1 - 1}, " + ("written with the bias:" if s == 0 else "added:")
        steps.append(Step(f"{head} {what}" if s == 0 else f"[{group.label}] {what}", tuple(calls)))
    return steps
