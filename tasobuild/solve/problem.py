"""The optimisation problem the solver receives: nodes in schedule order, their candidate choices, tensor sizes,
layout-transform costs. Pure data, no ONNX. Also: validation, dominated-choice pruning and the derived topology."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from tasobuild.errors import UserError
from tasobuild.memory import ARENA_ALIGN, Overlap

Layout = str  # "CHW" | "HWC" | "HCW"
LAYOUTS: tuple[Layout, ...] = ("CHW", "HCW", "HWC")  # sorted: iteration order everywhere

K = TypeVar("K")
V = TypeVar("V")


class FrozenMap(Mapping[K, V]):
    """An immutable, hashable mapping (items kept sorted by key), so that a Problem is a value."""

    __slots__ = ("_dict", "_items")

    def __init__(self, items: Mapping[K, V]) -> None:
        self._items = tuple(sorted(items.items()))
        self._dict = dict(self._items)

    def __getitem__(self, key: K) -> V:
        return self._dict[key]

    def __iter__(self) -> Iterator[K]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._items) == dict(other.items())

    def __repr__(self) -> str:
        return f"FrozenMap({dict(self._items)!r})"


@dataclass(frozen=True)
class Choice:
    """One way to run a node."""
    primitive: str
    layout_in: Layout  # the layout ALL its activation inputs must be in
    layout_out: Layout
    time_ms: float
    workspace_bytes: int
    aliases_input: bool = False  # a view (reshape/flatten/...): the output IS the input's memory
    group: str = ""  # a fused group (tasobuild.tiling): every member picks its choice of the group, or none does
    deferred: bool = False  # a group member whose output never exists whole: it runs inside its group's last member
    # In place: the output is written over input `in_place`'s buffer (the kernel reads each element before writing
    # it; that input is read by no later step and is not the graph input). -1: the output has a buffer of its own.
    in_place: int = -1
    # Zero-copy gather (concat): the inputs' versions in layout_in are slices of the output's buffer, end to end in
    # input order, so their producers write straight into it and the node copies nothing.
    gathers: bool = False
    # An interleaved gather (HWC): the output is `interleave` pixels, each the inputs' runs end to end in input
    # order, so input k's slice starts at its runs' offset and strides by the output's bytes per pixel. 0: the
    # slices are contiguous blocks (CHW). Every producer must pick a `strided_out` choice.
    interleave: int = 0
    # Writes its output as a slice of the interleaved gather that reads it (its one reader): only with that gather.
    strided_out: bool = False
    # A fused group's last member whose output may overlap the group's input (memory.Overlap): at this step the
    # output may start this many bytes below the input's buffer. 0: they are disjoint. Offered only where the
    # input's buffer is read by the group alone (decide.to_problem), so it dies at this step whatever else is chosen.
    output_lead: int = 0
    # With an output lead: the group may also run bottom to top, its output starting this many bytes or more above
    # the input's start (memory.Overlap.rise); the placement picks the way. 0: top to bottom only.
    output_rise: int = 0

    @property
    def no_buffer(self) -> bool:
        """The output has no buffer of its own (a view, a deferred group member, or written in place): it weighs
        nothing, and the input it takes over stays live as long as the output would."""
        return self.aliases_input or self.deferred or self.in_place >= 0

    @property
    def shares_data(self) -> bool:
        """The output is the input's data, read-only (a view, a deferred member): a step that overwrites the
        input would change it."""
        return self.aliases_input or self.deferred

    @property
    def source(self) -> int:
        """Which input's buffer a no_buffer output takes over (views and deferred members have one input)."""
        return max(self.in_place, 0)

    @property
    def ident(self) -> str:
        """What tells this choice from the node's others: its primitive, and its group if it has one."""
        return f"{self.primitive} in {self.group}" if self.group else self.primitive

    @property
    def kind(self) -> tuple[str, str, bool, str, int, bool, bool]:
        """Choices of one kind affect every other step identically: among them, speed and workspace decide."""
        return (self.layout_in, self.layout_out, self.no_buffer, self.group, self.in_place, self.gathers,
                self.strided_out)


@dataclass(frozen=True)
class ProblemTensor:
    name: str
    bytes: int


@dataclass(frozen=True)
class ProblemNode:
    name: str
    inputs: tuple[str, ...]  # tensor names (activations only)
    output: str
    choices: tuple[Choice, ...]

    def __post_init__(self) -> None:  # accept lists, store tuples: a node is a hashable value
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "choices", tuple(self.choices))


@dataclass(frozen=True)
class Problem:
    """Step i runs nodes[i]; one extra final step len(nodes) (the epilogue) converts the graph output to
    output_layout if needed and holds it. Every buffer is counted at its size rounded up to `alignment`."""
    nodes: tuple[ProblemNode, ...]  # in schedule order (a topological order)
    tensors: Mapping[str, ProblemTensor]
    graph_input: str
    input_layout: Layout  # the input is in the arena from step 0, in this layout
    graph_output: str
    output_layout: Layout  # the output must end in this layout and stay live to the end
    transform_ms: Mapping[tuple[str, Layout, Layout], float]  # (tensor, from, to) -> ms; missing = not possible
    alignment: int = ARENA_ALIGN
    more_inputs: tuple[str, ...] = ()  # a network's other inputs (from step 0, in input_layout) and outputs (held
    more_outputs: tuple[str, ...] = ()  # to the epilogue, in output_layout)

    @property
    def graph_inputs(self) -> tuple[str, ...]:
        return (self.graph_input, *self.more_inputs)

    @property
    def graph_outputs(self) -> tuple[str, ...]:
        return (self.graph_output, *self.more_outputs)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "tensors", FrozenMap(self.tensors))
        object.__setattr__(self, "transform_ms", FrozenMap(self.transform_ms))
        _validate(self)

    @property
    def epilogue_step(self) -> int:
        return len(self.nodes)

    def aligned(self, size: int) -> int:
        return -(-size // self.alignment) * self.alignment


def _validate(p: Problem) -> None:
    if p.alignment < 1:
        raise ValueError(f"alignment must be >= 1, got {p.alignment}")
    for layout in (p.input_layout, p.output_layout):
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    for key, t in p.tensors.items():
        if key != t.name or t.bytes < 0:
            raise ValueError(f"tensor {key!r}: name mismatch or negative size")
    available = set(p.graph_inputs)
    for name in p.graph_inputs:
        if name not in p.tensors:
            raise ValueError(f"graph input {name!r} is not in tensors")
    if len(available) != len(p.graph_inputs) or len(set(p.graph_outputs)) != len(p.graph_outputs):
        raise ValueError("a graph input or output is listed twice")
    readers: dict[str, list[int]] = {}
    for step, node in enumerate(p.nodes):
        for name in set(node.inputs):
            readers.setdefault(name, []).append(step)
    for step, node in enumerate(p.nodes):
        if not node.choices:
            raise UserError(f"node {node.name!r}: no primitive can run it on this target")
        for name in node.inputs:
            if name not in available:
                raise ValueError(f"node {node.name!r} reads {name!r} before it is produced (not in schedule order)")
        if node.output in available or node.output not in p.tensors:
            raise ValueError(f"node {node.name!r}: output {node.output!r} is produced twice or not in tensors")
        available.add(node.output)
        for c in node.choices:
            if c.layout_in not in LAYOUTS or c.layout_out not in LAYOUTS:
                raise ValueError(f"node {node.name!r} choice {c.primitive!r}: unknown layout")
            if c.output_lead < 0 or c.output_rise < 0 or (c.output_rise and not c.output_lead) \
                    or (c.output_lead and (not c.group or c.deferred)):
                raise ValueError(f"node {node.name!r} choice {c.primitive!r}: an output lead needs a group's last")
            if c.time_ms < 0 or c.workspace_bytes < 0:
                raise ValueError(f"node {node.name!r} choice {c.primitive!r}: negative time or workspace")
            if c.aliases_input and (len(set(node.inputs)) != 1
                                    or p.tensors[node.output].bytes > p.tensors[node.inputs[0]].bytes):
                raise ValueError(f"node {node.name!r}: a view (aliases_input) needs exactly one input tensor, "
                                 f"no smaller than its output")
            if c.deferred and (len(set(node.inputs)) != 1 or not c.group or c.aliases_input):
                raise ValueError(f"node {node.name!r}: a deferred choice needs one input tensor and a group")
            if c.in_place >= 0 or c.gathers:
                _validate_sharing(p, step, c, readers)
            if c.strided_out:
                _validate_strided(p, step, c, readers)
    for name in p.graph_outputs:
        if name not in available or name in p.graph_inputs:
            raise ValueError(f"graph output {name!r} is never produced")
    for name, members in group_members(p).items():
        steps = [step for step, _ in members]
        if len(set(steps)) != len(steps) or steps != list(range(steps[0], steps[0] + len(steps))):
            raise ValueError(f"group {name!r}: one choice per node, on consecutive steps")
        if [p.nodes[s].choices[k].deferred for s, k in members] != [True] * (len(members) - 1) + [False]:
            raise ValueError(f"group {name!r}: every member but the last must be deferred")
    if len({n.name for n in p.nodes}) != len(p.nodes):
        raise ValueError("two nodes share a name")


def _validate_sharing(p: Problem, step: int, c: Choice, readers: Mapping[str, list[int]]) -> None:
    """What makes an in-place or gathering choice safe whatever else is chosen: what it overwrites (in place) is
    read by no later step, the slices it gathers are read by this step only, and the graph input is the caller's
    (never overwritten: a second run on the same input must see it). What depends on the other choices (no view
    of it, plan._check_shared_source) the solver states as constraints."""
    node = p.nodes[step]
    shared = node.inputs if c.gathers else node.inputs[c.in_place:c.in_place + 1]
    if not shared or c.layout_in != c.layout_out or (c.in_place >= 0 and c.gathers) or c.aliases_input or c.deferred:
        raise ValueError(f"node {node.name!r} choice {c.primitive!r}: in place needs an input index and one layout")
    if c.gathers and len(set(node.inputs)) != len(node.inputs):
        raise ValueError(f"node {node.name!r}: a gather's inputs must be distinct tensors")
    for name in shared:
        later = [s for s in readers.get(name, []) if s != step and (s > step or c.gathers)]
        if name in p.graph_inputs or name in p.graph_outputs or later:
            raise ValueError(f"node {node.name!r} choice {c.primitive!r}: input {name!r} is the graph's, or is read "
                             f"by another step (steps {later}): it cannot be shared")
    if c.in_place >= 0 and p.tensors[node.output].bytes > p.tensors[shared[0]].bytes:
        raise ValueError(f"node {node.name!r}: an in-place output must fit in its input")
    if c.gathers:
        if c.interleave < 0 or any(p.tensors[t].bytes % max(c.interleave, 1) for t in (*node.inputs, node.output)):
            raise ValueError(f"node {node.name!r}: an interleaved gather's tensors are whole pixels")
        for name, offset in zip(node.inputs, slice_offsets(p, node, c.interleave)):
            if offset % p.alignment:
                raise ValueError(f"node {node.name!r}: slice {name!r} at byte {offset} is not aligned")
        if sum(p.tensors[t].bytes for t in node.inputs) != p.tensors[node.output].bytes:
            raise ValueError(f"node {node.name!r}: the gathered inputs do not fill the output")


def _validate_strided(p: Problem, step: int, c: Choice, readers: Mapping[str, list[int]]) -> None:
    """A strided output is a slice of the interleaved gather of its one reader, in that gather's layout."""
    node = p.nodes[step]
    reads = readers.get(node.output, [])
    if (len(reads) != 1 or node.output in p.graph_outputs or c.no_buffer or c.gathers or c.group
            or not any(d.gathers and d.interleave and d.layout_in == c.layout_out for d in p.nodes[reads[0]].choices)):
        raise ValueError(f"node {node.name!r} choice {c.primitive!r}: a strided output needs one reader that may "
                         f"gather it")


def slice_offsets(p: Problem, node: ProblemNode, interleave: int = 0) -> tuple[int, ...]:
    """Where each input of a gathering node starts in its output's buffer, in bytes: end to end, in input order;
    interleaved (`interleave` pixels): the input's run within the first pixel."""
    offsets, at = [], 0
    for name in node.inputs:
        offsets.append(at)
        at += p.tensors[name].bytes // max(interleave, 1)
    return tuple(offsets)


def slice_extent(p: Problem, node: ProblemNode, name: str, interleave: int = 0) -> tuple[int, int, int]:
    """(bytes from the slice's first byte to its last, run, stride) of input `name` of a gathering node: one block
    (run = the bytes, stride 0), or `interleave` runs, one per pixel of the output."""
    size = p.tensors[name].bytes
    if not interleave:
        return size, size, 0
    run, stride = size // interleave, p.tensors[node.output].bytes // interleave
    return (interleave - 1) * stride + run, run, stride


def prune(choices: tuple[Choice, ...]) -> tuple[Choice, ...]:
    """Drop dominated choices: another choice of the same kind (Choice.kind) that is no slower and needs no
    more workspace. Of exact ties the first in (time, workspace, primitive) order survives. Result in that order."""
    ranked = sorted(choices, key=lambda c: (c.time_ms, c.workspace_bytes, c.primitive))
    kept: list[Choice] = []
    for c in ranked:
        # any earlier-ranked choice of the same kind is no slower; it dominates c if its workspace is no larger
        if not any(k.kind == c.kind and k.workspace_bytes <= c.workspace_bytes for k in kept):
            kept.append(c)
    return tuple(kept)


def group_input(p: Problem, step: int, group: str) -> str:
    """The tensor a fused group whose last member runs at `step` reads: its first member's input (members are on
    consecutive steps)."""
    while step > 0 and any(c.group == group for c in p.nodes[step - 1].choices):
        step -= 1
    return p.nodes[step].inputs[0]


def overlap_saving(p: Problem, step: int, choice: Choice) -> int:
    """The aligned bytes a choice's output overlapping its group's input (Choice.output_lead) saves at its step."""
    if choice.output_lead <= 0:
        return 0
    size_in = p.aligned(p.tensors[group_input(p, step, choice.group)].bytes)
    size_out = p.aligned(p.tensors[p.nodes[step].output].bytes)
    return size_in + size_out - overlap_of(p, "", "", step, choice).span(size_in, size_out)


def overlap_of(p: Problem, input_name: str, output_name: str, step: int, choice: Choice) -> Overlap:
    """The overlap pair a choice's output and its group's input make at its step, leads aligned."""
    return Overlap(input_name, output_name, step, p.aligned(choice.output_lead), p.aligned(choice.output_rise))


def group_members(p: Problem) -> dict[str, list[tuple[int, int]]]:
    """Each fused group's (step, choice index) per member, in step order; groups sorted by name."""
    out: dict[str, list[tuple[int, int]]] = {}
    for step, node in enumerate(p.nodes):
        for k, c in enumerate(node.choices):
            if c.group:
                out.setdefault(c.group, []).append((step, k))
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class Topology:
    """Facts about the dataflow that do not depend on the choices."""
    producer_step: Mapping[str, int]  # tensor -> step that produces it (graph input: 0)
    consumer_steps: Mapping[str, tuple[int, ...]]  # tensor -> sorted steps that read it (epilogue for the output)
    reach: Mapping[str, int]  # tensor -> last step it can possibly be live (views extend their source)
    view_capable: frozenset[int] = field(default_factory=frozenset)  # steps whose node has an aliasing choice


def topology(p: Problem) -> Topology:
    producer = dict.fromkeys(p.graph_inputs, 0)
    consumers: dict[str, set[int]] = {name: set() for name in p.tensors}
    for step, node in enumerate(p.nodes):
        producer[node.output] = step
        for name in node.inputs:
            consumers[name].add(step)
    for name in p.graph_outputs:
        consumers[name].add(p.epilogue_step)
    view_capable = frozenset(i for i, n in enumerate(p.nodes) if any(c.no_buffer for c in n.choices))
    reach: dict[str, int] = {}
    for name in reversed([*p.graph_inputs, *(n.output for n in p.nodes)]):  # consumers' outputs before their inputs
        last = max([producer[name], *consumers[name]])
        for step in consumers[name]:
            if step in view_capable:
                last = max(last, reach[p.nodes[step].output])
        reach[name] = last
    return Topology(
        producer_step=FrozenMap(producer),
        consumer_steps=FrozenMap({t: tuple(sorted(s)) for t, s in consumers.items() if t in producer}),
        reach=FrozenMap(reach),
        view_capable=view_capable,
    )
