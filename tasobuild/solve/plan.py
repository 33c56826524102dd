"""The Plan (a choice per node plus everything that follows from it) and `evaluate`, the one definition of the
cost semantics: which transforms run when, what is live at each step, total time, peak. The Z3 encoding
(encode.py) states the same rules as constraints; every solver result is checked against `evaluate`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tasobuild.memory import Buffer, Overlap, Region
from tasobuild.solve.problem import (
    Choice,
    Layout,
    Problem,
    group_input,
    group_members,
    overlap_of,
    overlap_saving,
    slice_extent,
    slice_offsets,
    topology,
)


@dataclass(frozen=True)
class Transform:
    tensor: str
    from_layout: Layout
    to_layout: Layout
    step: int  # runs right before the node at this step (or in the epilogue step)
    time_ms: float


@dataclass(frozen=True)
class Plan:
    choices: tuple[tuple[str, Choice], ...]  # (node name, choice) in schedule order
    transforms: tuple[Transform, ...]  # sorted by (step, tensor, to_layout)
    predicted_ms: float  # nodes + transforms
    peak_bytes: int  # max over steps of the aligned bytes live (= memory.lower_bound(buffers()))
    step_bytes: tuple[int, ...]  # aligned bytes live at each step (last entry: the epilogue)
    layouts: tuple[tuple[str, Layout], ...]  # tensor -> layout it is produced in, sorted by tensor
    buffer_table: tuple[Buffer, ...]  # sorted by name
    buffer_names: tuple[tuple[tuple[str, Layout], str], ...]  # (tensor, layout) -> buffer name, sorted
    alignment: int
    # The versions that live inside another version's buffer: in place (at its offset 0) and the slices of a
    # zero-copy gather (at theirs). Their names are buffer names (buffer_of) with offsets of their own.
    regions: tuple[Region, ...] = ()
    # A fused group's output that overlaps its input at the group's step (Choice.output_lead), by buffer names.
    overlaps: tuple[Overlap, ...] = ()
    objective: str = "none"  # "latency" | "memory" | "none" (greedy / evaluated)
    status: str = "evaluated"  # "optimal" | "feasible" (timeout: best found) | "greedy" | "evaluated"
    tie_break: str = field(default="skipped", compare=False)  # the second objective: "optimal" | "feasible" | "skipped"
    bound: float | None = field(default=None, compare=False)  # proven lower bound on the objective (ms or bytes)
    solver_seconds: float = field(default=0.0, compare=False)

    @property
    def chosen(self) -> Mapping[str, Choice]:
        return dict(self.choices)

    def choice(self, node: str) -> Choice:
        return self.chosen[node]

    def buffers(self) -> tuple[Buffer, ...]:
        """Every tensor version and workspace with its live steps (inclusive); a view shares its source's buffer."""
        return self.buffer_table

    def buffer_of(self, tensor: str, layout: Layout) -> str:
        return dict(self.buffer_names)[(tensor, layout)]

    def layout_of(self, tensor: str) -> Layout:
        return dict(self.layouts)[tensor]

    @property
    def time_ns(self) -> int:
        """Total time in the solver's integer units (each cost rounded to ns, then summed)."""
        return sum(to_ns(c.time_ms) for _, c in self.choices) + sum(to_ns(t.time_ms) for t in self.transforms)


def to_ns(ms: float) -> int:
    return round(ms * 1_000_000)


def version_name(tensor: str, layout: Layout) -> str:
    return f"{tensor}:{layout}"


def _writes_own(pick: Choice) -> bool:
    """The node writes its output into a buffer of its own: what a slice's producer must do."""
    return not pick.no_buffer and not pick.gathers


def _check_shared_source(problem: Problem, picks: Sequence[Choice], node: str, tensor: str, pick: Choice) -> None:
    """An in-place output or a gathered slice takes over its input's memory: that input's producer must write a
    buffer of its own (not be a read-only view of another tensor, whose readers would see the change; a slice's
    not be in place or a gather either), and no other reader may be a view of it (read later, through the view)."""
    if pick.shares_data or tensor in problem.graph_inputs:
        return
    for step, node_ in enumerate(problem.nodes):
        if node_.output == tensor and (picks[step].shares_data or (pick.gathers and not _writes_own(picks[step]))):
            raise ValueError(f"node {node!r}: {pick.primitive!r} shares {tensor!r}, a view of another tensor")
        if node_.output == tensor and bool(pick.interleave) != picks[step].strided_out:
            raise ValueError(f"node {node!r}: {pick.primitive!r} and {tensor!r}'s producer disagree on its stride")
        if tensor in node_.inputs and node_.name != node and picks[step].shares_data:
            raise ValueError(f"node {node!r}: {pick.primitive!r} overwrites {tensor!r}, which {node_.name!r} views")


def evaluate(problem: Problem, picks: Sequence[Choice], **meta: object) -> Plan:
    """The plan that running node i with picks[i] gives. Raises ValueError when a needed transform is missing."""
    if len(picks) != len(problem.nodes):
        raise ValueError("one choice per node is needed")
    for name, members in group_members(problem).items():
        picked = [picks[s] == problem.nodes[s].choices[k] for s, k in members]
        if any(picked) and not all(picked):
            raise ValueError(f"fused group {name!r} is picked by some of its members only")
    topo = topology(problem)
    for node, pick in zip(problem.nodes, picks):
        if pick.strided_out and not any(picks[r].interleave for r in topo.consumer_steps[node.output]):
            raise ValueError(f"node {node.name!r}: {pick.primitive!r} writes a slice no gather reads")
    n_steps = problem.epilogue_step + 1
    produced: dict[str, Layout] = dict.fromkeys(problem.graph_inputs, problem.input_layout)
    wants: dict[str, dict[Layout, list[int]]] = {t: {} for t in topo.producer_step}
    for step, (node, pick) in enumerate(zip(problem.nodes, picks)):
        produced[node.output] = pick.layout_out
        for name in sorted(set(node.inputs)):
            wants[name].setdefault(pick.layout_in, []).append(step)
    for name in problem.graph_outputs:
        wants[name].setdefault(problem.output_layout, []).append(problem.epilogue_step)

    # Lifetimes of tensor versions, before views merge them.
    spans: dict[tuple[str, Layout], tuple[int, int]] = {}
    transforms: list[Transform] = []
    for tensor in sorted(wants):
        own, start = produced[tensor], topo.producer_step[tensor]
        orig_last = start
        for layout, steps in sorted(wants[tensor].items()):
            if layout == own:
                orig_last = max(orig_last, steps[-1])
                continue
            key = (tensor, own, layout)
            if key not in problem.transform_ms:
                raise ValueError(f"no transform of {tensor!r} from {own} to {layout}")
            transforms.append(Transform(tensor, own, layout, steps[0], problem.transform_ms[key]))
            orig_last = max(orig_last, steps[0])  # the transform reads the original
            spans[(tensor, layout)] = (steps[0], steps[-1])
        spans[(tensor, own)] = (start, orig_last)

    # Views and in-place outputs: the output version is the buffer of the input version it consumed (a deferred
    # output is never written: its name stands for the input's buffer). A gather's inputs are slices of its output.
    root: dict[tuple[str, Layout], tuple[str, Layout]] = {v: v for v in spans}
    at: dict[tuple[str, Layout], int] = {}  # a slice's byte offset in its root's buffer
    regions: list[Region] = []
    for node, pick in zip(problem.nodes, picks):
        if pick.no_buffer:
            source = (node.inputs[pick.source], pick.layout_in)
            _check_shared_source(problem, picks, node.name, source[0], pick)
            root[(node.output, pick.layout_out)] = root[source]
            if pick.in_place >= 0:
                span = spans[(node.output, pick.layout_out)]
                regions.append(Region(version_name(node.output, pick.layout_out), version_name(*root[source]),
                                      at.get(source, 0), problem.tensors[node.output].bytes, *span, "in_place",
                                      version_name(*source)))
        elif pick.gathers:
            out = (node.output, pick.layout_out)
            for name, offset in zip(node.inputs, slice_offsets(problem, node, pick.interleave)):
                _check_shared_source(problem, picks, node.name, name, pick)
                root[(name, pick.layout_in)], at[(name, pick.layout_in)] = out, offset
                size, run, stride = slice_extent(problem, node, name, pick.interleave)
                regions.append(Region(version_name(name, pick.layout_in), version_name(*out), offset, size,
                                      *spans[(name, pick.layout_in)], "slice", run=run, stride=stride))
    owners = {r for r in root.values() if version_name(*r) in {g.buffer for g in regions}}
    regions += [Region(version_name(*r), version_name(*r), 0, problem.tensors[r[0]].bytes, *spans[r], "owner")
                for r in sorted(owners)]
    shared: dict[tuple[str, Layout], list[tuple[int, int]]] = {}  # a buffer's versions' lifetimes
    for version in sorted(spans):
        shared.setdefault(root[version], []).append(spans[version])

    buffers = [Buffer(version_name(*r), problem.tensors[r[0]].bytes, min(s for s, _ in ivs), max(e for _, e in ivs))
               for r, ivs in shared.items()]
    buffers += [Buffer(f"{node.name}:workspace", pick.workspace_bytes, step, step)
                for step, (node, pick) in enumerate(zip(problem.nodes, picks)) if pick.workspace_bytes > 0]
    step_bytes = [0] * n_steps
    for b in buffers:
        for s in range(b.first_step, b.last_step + 1):
            step_bytes[s] += problem.aligned(b.size)
    lives = {b.name: b for b in buffers}
    overlaps = []
    for step, (node, pick) in enumerate(zip(problem.nodes, picks)):
        if pick.output_lead > 0:
            read = version_name(*root[(group_input(problem, step, pick.group), pick.layout_in)])
            out = (node.output, pick.layout_out)
            if root[out] != out or lives[read].last_step != step:
                raise ValueError(f"node {node.name!r}: its output overlaps {read!r}, which lives on")
            overlaps.append(overlap_of(problem, read, version_name(*out), step, pick))
            step_bytes[step] -= overlap_saving(problem, step, pick)

    transforms.sort(key=lambda t: (t.step, t.tensor, t.to_layout))
    time = 0.0
    for pick in picks:
        time += pick.time_ms
    for t in transforms:
        time += t.time_ms
    return Plan(
        choices=tuple((n.name, c) for n, c in zip(problem.nodes, picks)),
        transforms=tuple(transforms),
        predicted_ms=time,
        peak_bytes=max(step_bytes),
        step_bytes=tuple(step_bytes),
        layouts=tuple(sorted(produced.items())),
        buffer_table=tuple(sorted(buffers, key=lambda b: b.name)),
        buffer_names=tuple(sorted((v, version_name(*(v if v in at else r))) for v, r in root.items())),
        alignment=problem.alignment,
        regions=tuple(sorted(regions, key=lambda r: r.name)),
        overlaps=tuple(overlaps),
        **meta,  # type: ignore[arg-type]
    )
