"""Lowering: the decided plan becomes a Program — every call with its arena pointers and weights; a fused group's
calls as its kind of tiling renders them (tasobuild.tiling: loops over bands of rows, a step per slice of channels)."""

from __future__ import annotations

from dataclasses import replace

from tasobuild.candidates import Candidate, NodeCandidates, TransformCandidate
from tasobuild.emit.program import Boundary, Layer, Program, Step, Toolchain, WeightArray
from tasobuild.ir import Graph, Node, Port
from tasobuild.memory import ArenaPlan
from tasobuild.primitives import KernelCall, Primitive
from tasobuild.primitives.parallel import THREAD_SOURCES
from tasobuild.solve import Plan
from tasobuild.tiling import Group


def pointer(arena: ArenaPlan, buffer: str) -> str:
    offset = arena.offset(buffer)
    assert offset % 4 == 0, buffer
    return f"A + {offset // 4}"


def typed(expression: str, call: KernelCall, role: str) -> str:
    """An arena pointer (`A + n`, a float pointer) as the element type the kernel takes there; weight symbols are
    arrays of that type already."""
    c_type = call.arg_type(role)
    return expression if c_type == "float" or not expression.startswith("A + ") else f"({c_type} *)({expression})"


def _provenance(node: Node, graph: Graph, cand: Candidate) -> str:
    origin = " + ".join((node.name,) + node.fused)
    act = f" +{node.act}" if node.act.kind != "none" else ""
    ins = ", ".join(str(graph.shape(t)) for t in node.inputs)
    ws = f", workspace {cand.workspace_bytes} B" if cand.workspace_bytes else ""
    # an int8 output: its quantisation (float outputs' comments stay as they were)
    q8 = f", int8 out {graph.quant_of(node.output)}" if graph.dtype(node.output) == "int8" else ""
    return (f"{origin} ({node.op}{act}) {ins} -> {graph.shape(node.output)}: {cand.primitive.name} "
            f"{cand.primitive.layout_in}->{cand.primitive.layout_out}{ws}{q8}")


def _sharing_note(node: Node, primitive: Primitive) -> str:
    """Why a step writes over its input, or makes no call at all."""
    if primitive.in_place >= 0:
        return f"; in place: the output is written over {node.inputs[primitive.in_place]}, read by no later layer"
    if primitive.gathers:
        return ("; no copy: each input's producer wrote it straight into its channel slice of the output "
                "(zero-copy concat)")
    return ""


def lower(graph: Graph, nodes: tuple[NodeCandidates, ...], transforms: tuple[TransformCandidate, ...], plan: Plan,
          arena: ArenaPlan, name: str, banner: tuple[str, ...], toolchain: Toolchain,
          groups: tuple[Group, ...] = ()) -> Program:
    transform_calls: dict[tuple[str, str, str], KernelCall] = {(t.tensor, t.src, t.dst): t.call for t in transforms}
    steps: list[Step] = []
    weights: list[WeightArray] = []
    sources: set[str] = set()

    def transform_steps(step_index: int) -> None:
        from tasobuild.primitives.transforms import transform_sources

        for k, t in enumerate(plan.transforms):
            if t.step != step_index:
                continue
            call = transform_calls[(t.tensor, t.from_layout, t.to_layout)]
            ptrs = (("in0", typed(pointer(arena, plan.buffer_of(t.tensor, t.from_layout)), call, "in0")),
                    ("out", typed(pointer(arena, plan.buffer_of(t.tensor, t.to_layout)), call, "out")))
            steps.append(Step(f"layout transform of {t.tensor} {graph.shape(t.tensor)}: "
                              f"{t.from_layout}->{t.to_layout}", ((call, ptrs),),
                              layer=Layer(f"layout transform of {t.tensor} {t.from_layout}->{t.to_layout}",
                                          transforms=(k,))))
            sources.update(transform_sources(call))

    def weight_roles(primitive: Primitive, node: Node, part_graph: Graph, symbol: str) -> dict[str, str]:
        """The node's weights as `primitive` transforms them, added to the program: role -> C symbol."""
        roles = {}
        for k, array in enumerate(primitive.weights(node, part_graph)):
            weights.append(WeightArray(f"{symbol}_w{k}", array, f"{node.name}: {primitive.name} weight {k}, "
                                                                f"shape {'x'.join(map(str, array.shape))}"))
            roles[f"w{k}"] = f"{symbol}_w{k}"
        return roles

    by_group = {g.name: g for g in groups}
    member_weights: dict[int, tuple[dict[str, str], ...]] = {}  # node index -> per weight part: role -> symbol
    for index, nc in enumerate(nodes):
        transform_steps(index)
        choice = plan.choice(nc.node.name)
        cand = next(c for c in nc.options if c.primitive.name == choice.primitive)
        node = nc.node
        group = by_group.get(choice.group)
        if group is not None:
            sources.update(cand.primitive.sources)
            # symbols by layer index (and part): the step comments name the ONNX nodes
            member_weights[index] = tuple(
                weight_roles(cand.primitive, part.node, part.graph, f"{name}_l{index}{part.suffix}")
                for part in group.weight_parts(graph, group.members.index(index)))
            if choice.deferred:
                steps.append(Step(f"[l{index}] {_provenance(node, graph, cand)}: runs in the fused group "
                                  f"[{group.label}] below", ()))
            else:  # the last member: every member's weights are known by now
                timed_as = Layer(f"fused group {group.label}", nodes=tuple(group.members))
                steps += [replace(step, layer=timed_as) for step in group.steps(graph, plan, arena, member_weights)]
                sources.update(group.kernel_sources)
            continue
        roles = weight_roles(cand.primitive, node, graph, f"{name}_l{index}")
        roles.update({f"in{k}": pointer(arena, plan.buffer_of(t, choice.layout_in)) for k, t in enumerate(node.inputs)})
        roles["out"] = pointer(arena, plan.buffer_of(node.output, choice.layout_out))
        if cand.workspace_bytes:
            roles["ws"] = pointer(arena, f"{node.name}:workspace")
        calls = tuple((call, tuple((r, typed(roles[r], call, r)) for r in call.args)) for call in cand.calls)
        comment = f"[l{index}] {_provenance(node, graph, cand)}{_sharing_note(node, cand.primitive)}"
        steps.append(Step(comment, calls, layer=Layer(node.name, (index,))))
        if calls:
            sources.update(cand.primitive.sources)
    transform_steps(len(nodes))
    if any(call.parts > 1 for step in steps for call, _ in step.calls):  # the thread pool and POSIX threads
        sources.update(THREAD_SOURCES)
        toolchain = replace(toolchain, cflags=toolchain.cflags + ("-pthread",),
                            ldflags=toolchain.ldflags + ("-pthread",))

    if "int8" in (graph.dtype(graph.input), graph.dtype(graph.output)):
        from tasobuild.primitives.q8 import Q8_SOURCES_OPS

        sources.update(Q8_SOURCES_OPS)  # the API's float helpers quantise and dequantise with its kernels

    def boundary(port: Port) -> Boundary:
        return Boundary(arena.offset(plan.buffer_of(port.tensor, "CHW")), graph.shape(port.tensor).count,
                        f"{port.onnx_name} {list(port.onnx_shape)}")

    sizes = {b.name: b.size for b in plan.buffers()}
    slices = tuple((arena.offset(r.name), r.size,
                    f"{r.name}: slice of {r.buffer}" + (f", {r.run} B every {r.stride} B" if r.stride else ""))
                   for r in plan.regions if r.kind == "slice")
    arena_map = tuple(sorted((arena.offset(b), sizes[b], b) for b in sizes)) + tuple(sorted(slices))
    return Program(
        name=name,
        banner=banner,
        arena_bytes=arena.arena_bytes,
        arena_map=arena_map,
        inputs=tuple(boundary(port) for port in graph.input_ports),
        outputs=tuple(boundary(port) for port in graph.output_ports),
        steps=tuple(steps),
        weights=tuple(weights),
        kernel_sources=tuple(sorted(sources)),
        toolchain=toolchain,
        input_quant=_io_quant(graph, graph.input), output_quant=_io_quant(graph, graph.output),
    )


def _io_quant(graph: Graph, tensor: str) -> tuple[float, int] | None:
    if graph.dtype(tensor) != "int8":
        return None
    q = graph.quant_of(tensor)
    return q.scale, q.zero_point
