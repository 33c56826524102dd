"""Lowering: the decided plan becomes a straight-line Program — every call with its arena pointers and weights."""

from __future__ import annotations


from tasobuild.candidates import Candidate, NodeCandidates, TransformCandidate
from tasobuild.emit.program import Program, Step, Toolchain, WeightArray
from tasobuild.ir import Graph, Node
from tasobuild.memory import ArenaPlan
from tasobuild.solve import Plan


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
          arena: ArenaPlan, name: str, banner: tuple[str, ...], toolchain: Toolchain) -> Program:
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

    for index, nc in enumerate(nodes):
        transform_steps(index)
        choice = plan.choice(nc.node.name)
        cand = next(c for c in nc.options if c.primitive.name == choice.primitive)
        node = nc.node
        roles = {f"in{k}": pointer(arena, plan.buffer_of(t, choice.layout_in)) for k, t in enumerate(node.inputs)}
        roles["out"] = pointer(arena, plan.buffer_of(node.output, choice.layout_out))
        if cand.workspace_bytes:
            roles["ws"] = pointer(arena, f"{node.name}:workspace")
        for k, array in enumerate(cand.primitive.weights(node, graph)):
            symbol = f"{name}_l{index}_w{k}"  # layer index: the step comment names the ONNX node
            weights.append(WeightArray(symbol, array, f"{node.name}: {cand.primitive.name} weight {k}, "
                                                      f"shape {'x'.join(map(str, array.shape))}"))
            roles[f"w{k}"] = symbol
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
