"""What every kind of fused tiling shares: which tensors a group may keep to itself, how a member's primitive is
picked, and how a group's workspace is laid out (a buffer per intermediate tensor, then the scratch of its calls)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from tasobuild.candidates import Candidate, NodeCandidates, fastest_in
from tasobuild.costs.cache import Cost
from tasobuild.ir import Graph, Layout
from tasobuild.memory import ARENA_ALIGN
from tasobuild.primitives import KernelCall
from tasobuild.tiling.protocol import Group, MemberRun, Option

if TYPE_CHECKING:
    from tasobuild.memory import ArenaPlan



def feeds_next(graph: Graph) -> list[bool]:
    """Per node but the last: the next node is its output's only reader (and reads nothing else), and the output
    is not the graph's: a tensor a fused group may keep to itself."""
    readers: dict[str, int] = {}
    for n in graph.nodes:
        for t in set(n.inputs):
            readers[t] = readers.get(t, 0) + 1
    return [b.inputs == (a.output,) and readers[a.output] == 1 and a.output not in graph.output_tensors
            for a, b in zip(graph.nodes, graph.nodes[1:])]


def single_call(calls: tuple[KernelCall, ...]) -> KernelCall:
    assert len(calls) == 1, "a convolution primitive makes one call"
    return calls[0]


def calls_ms(calls: Sequence[KernelCall | None], costs: Mapping[str, Cost]) -> float:
    """The summed cost of the calls (None: a band where a member computes nothing)."""
    return sum(costs[c.key()].median_ms for c in calls if c is not None)


def run_shares(member_ms: Sequence[float], run: Cost) -> tuple[float, ...]:
    """A group timed as it runs (its calls in sequence, one cost): each member's share of that time, as its calls'
    share of their summed costs (equal shares if those are all 0)."""
    total = sum(member_ms)
    return tuple(run.median_ms * ms / total if total > 0 else run.median_ms / len(member_ms) for ms in member_ms)


Run = TypeVar("Run", bound=MemberRun)


def fastest_option(options: Sequence[Run], costs: Mapping[str, Cost]) -> Run:
    """A member's fastest primitive over all its calls; then the smaller workspace, then the name."""
    return min(options, key=lambda o: (calls_ms(o.calls, costs), o.workspace_bytes, o.primitive))


def leanest_in(nc: NodeCandidates, layout: Layout, costs: Mapping[str, Cost]) -> tuple[Candidate, ...]:
    """The node's candidate in `layout` needing the least workspace (then the fastest, then by name), if it has one:
    besides its fastest ones, what a lean group tries."""
    every = fastest_in(nc, layout, costs, len(nc.options))
    return tuple(sorted(every, key=lambda c: c.workspace_bytes)[:1])


def leanest_option(options: Sequence[Run], costs: Mapping[str, Cost]) -> Run:
    """A member's primitive whose calls need the least workspace; then the fastest, then the name."""
    return min(options, key=lambda o: (o.workspace_bytes, calls_ms(o.calls, costs), o.primitive))


PICKS = ("fastest", "lean")  # a member's primitive: the fastest, or the one whose calls need least workspace


def pick_option(pick: str, options: Sequence[Run], costs: Mapping[str, Cost]) -> Run:
    return fastest_option(options, costs) if pick == "fastest" else leanest_option(options, costs)


def layer_range(members: Sequence[int]) -> str:
    """The members' layer range, as the emitted C's comments name layers: "l3-l5"."""
    return f"l{members[0]}-l{members[-1]}"


def end_to_end(sizes: Sequence[int]) -> tuple[int, ...]:
    """Where buffers of these sizes start, laid end to end from 0 each on a cache line; then where the last ends."""
    starts = [0]
    for size in sizes:
        starts.append(starts[-1] + -(-size // ARENA_ALIGN) * ARENA_ALIGN)  # each on a cache line
    return tuple(starts)


@dataclass(frozen=True)
class Workspace:
    """A group's workspace, at the start of its last member's: a buffer per intermediate tensor (the part of it that
    exists at a time: a window of rows, a slice of channels), end to end, then the largest scratch a call needs."""

    buffer_bytes: tuple[int, ...]  # per member but the last: the buffer of its output
    scratch_bytes: int

    @staticmethod
    def of(buffer_bytes: tuple[int, ...], chosen: Sequence[MemberRun]) -> Workspace:
        return Workspace(buffer_bytes, max(o.workspace_bytes for o in chosen))

    def offset(self, j: int) -> int:
        """Where member j's output buffer starts (bytes)."""
        return end_to_end(self.buffer_bytes)[j]

    @property
    def scratch_offset(self) -> int:
        return end_to_end(self.buffer_bytes)[-1]

    @property
    def total_bytes(self) -> int:
        return self.scratch_offset + self.scratch_bytes


def arena_floats(arena: ArenaPlan, buffer: str) -> int:
    """A buffer's offset in the arena, in floats (the emitted code's pointers are `A + floats`)."""
    offset = arena.offset(buffer)
    assert offset % 4 == 0, buffer
    return offset // 4


class GroupBase:
    """What every kind's group computes alike from its members, its chosen runs and its Workspace (a mixin for the
    frozen dataclasses that implement protocol.Group)."""

    members: tuple[int, ...]
    chosen: Sequence[MemberRun]
    workspace: Workspace

    @property
    def label(self) -> str:
        return layer_range(self.members)

    @property
    def workspace_bytes(self) -> int:
        return self.workspace.total_bytes

    @property
    def output_lead(self) -> int:
        """0: the output never overlaps the input (a kind that can says how far below it may start)."""
        return 0

    @property
    def output_rise(self) -> int:
        """0: the group runs one way only (a kind that can run the other says how far above it may start)."""
        return 0

    def member_calls(self, j: int) -> tuple[KernelCall, ...]:
        """The calls member j's run makes (not the Nones where it computes nothing)."""
        return tuple(c for c in self.chosen[j].calls if c is not None)


def every_group(groups: Sequence[Group]) -> tuple[Group, ...]:
    return tuple(groups)


def no_runs(groups: Sequence[Group]) -> tuple[KernelCall, ...]:
    """A kind whose groups are costed as the sum of their calls."""
    return ()


@dataclass(frozen=True)
class Kind:
    """A kind of fused tiling (protocol.TilingKind) made of its functions: what it offers, and which of the groups its
    options become it keeps (all, unless it says otherwise)."""

    name: str
    options: Callable[[Graph, tuple[NodeCandidates, ...], Mapping[str, Cost]], Sequence[Option]]
    kept: Callable[[Sequence[Group]], Sequence[Group]] = every_group
    runs: Callable[[Sequence[Group]], Sequence[KernelCall]] = no_runs
