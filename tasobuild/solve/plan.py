"""The Plan (a choice per node plus everything that follows from it) and `evaluate`, the one definition of the
cost semantics: which transforms run when, what is live at each step, total time, peak. The Z3 encoding
(encode.py) states the same rules as constraints; every solver result is checked against `evaluate`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tasobuild.memory import Buffer
from tasobuild.solve.problem import Choice, Layout, Problem, group_members, topology


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


def evaluate(problem: Problem, picks: Sequence[Choice], **meta: object) -> Plan:
    """The plan that running node i with picks[i] gives. Raises ValueError when a needed transform is missing."""
    if len(picks) != len(problem.nodes):
        raise ValueError("one choice per node is needed")
    for name, members in group_members(problem).items():
        picked = [picks[s] == problem.nodes[s].choices[k] for s, k in members]
        if any(picked) and not all(picked):
            raise ValueError(f"fused group {name!r} is picked by some of its members only")
    topo = topology(problem)
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

    # Views: the output version of an aliasing node is the buffer of the input version it consumed.
    root: dict[tuple[str, Layout], tuple[str, Layout]] = {v: v for v in spans}
    for node, pick in zip(problem.nodes, picks):
        if pick.no_buffer:  # a deferred output is never written: its name stands for the input's buffer
            root[(node.output, pick.layout_out)] = root[(node.inputs[0], pick.layout_in)]
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
        buffer_names=tuple(sorted((v, version_name(*r)) for v, r in root.items())),
        alignment=problem.alignment,
        **meta,  # type: ignore[arg-type]
    )
