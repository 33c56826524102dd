"""What a kind of fused tiling offers its callers (the package docstring tells how they fit together).

Every member is typed as a read-only property, so frozen dataclasses implement these protocols as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tasobuild.candidates import NodeCandidates
from tasobuild.costs.cache import Cost
from tasobuild.ir import Graph, Layout, Node
from tasobuild.primitives import KernelCall

if TYPE_CHECKING:  # lowering's types only: offering and costing groups needs neither the solver nor the emitter
    from tasobuild.emit.program import Step
    from tasobuild.memory import ArenaPlan
    from tasobuild.solve import Plan

# Node index -> per weight part of that member (WeightPart): role ("w0", ...) -> the C symbol of the weight array.
WeightSymbols = Mapping[int, Sequence[Mapping[str, str]]]


class MemberRun(Protocol):
    """One member of a group run by one primitive: its calls (None where it computes nothing, e.g. a band it has
    no rows in) and the largest workspace one of them needs."""

    @property
    def primitive(self) -> str: ...

    @property
    def calls(self) -> Sequence[KernelCall | None]: ...

    @property
    def workspace_bytes(self) -> int: ...


@dataclass(frozen=True)
class WeightPart:
    """A node (in a graph) whose weights a member's calls use, and the suffix of their C symbols: a row group's
    member uses its own node's weights (suffix ""), a channel group's one part per slice ("_s0", "_s1", ...)."""

    suffix: str
    node: Node
    graph: Graph


class Group(Protocol):
    """A fused group as the solver, the lock and lowering see it: each member's chosen run, times and workspace.
    The group runs at its last member's step, in `layout`, out of one workspace (`workspace_bytes`)."""

    @property
    def name(self) -> str:
        """Unique among the groups, as the lock's `tiling` column records it: "l3-l5 rows=4"."""
        ...

    @property
    def label(self) -> str:
        """The members' layer range, as the emitted C's comments name layers: "l3-l5"."""
        ...

    @property
    def members(self) -> tuple[int, ...]:
        """Node indices, consecutive in schedule order."""
        ...

    @property
    def layout(self) -> Layout: ...

    @property
    def chosen(self) -> Sequence[MemberRun]:
        """Per member."""
        ...

    @property
    def member_ms(self) -> tuple[float, ...]:
        """Per member: all its calls, plus whatever the group does for it (a row window's copies)."""
        ...

    @property
    def workspace_bytes(self) -> int: ...

    @property
    def kernel_sources(self) -> tuple[str, ...]:
        """Kernel sources the group's own calls need besides its members' primitives' (its copies')."""
        ...

    @property
    def output_lead(self) -> int:
        """How many bytes below its input's start the group's output may start and still overlap it (its writes
        never reach input bytes still to be read: memory.Overlap); 0: it may not overlap."""
        ...

    @property
    def output_rise(self) -> int:
        """Run the other way (bottom to top, as its steps do where the arena places the output so): how many bytes
        above its input's start the output may start and still overlap it (memory.Overlap.rise); 0: one way only."""
        ...

    def member_calls(self, j: int) -> tuple[KernelCall, ...]:
        """The calls member j makes (its chosen run's; not the group's own), whose costs the lock cites."""
        ...

    def weight_parts(self, graph: Graph, j: int) -> tuple[WeightPart, ...]:
        """Whose weights member j's calls need, in the order `steps` expects their symbols."""
        ...

    def steps(self, graph: Graph, plan: Plan, arena: ArenaPlan, weights: WeightSymbols) -> list[Step]:
        """The group's calls with their pointers: in its buffers, in the plan's arena, and in `weights` (every
        member's symbols, per its weight_parts)."""
        ...


class Option(Protocol):
    """A group before costs pick each member's primitive: its calls are costed, then it becomes a Group."""

    @property
    def kind(self) -> str:
        """The name of the TilingKind that offered it."""
        ...

    @property
    def name(self) -> str: ...

    @property
    def members(self) -> tuple[int, ...]: ...

    def calls(self) -> list[KernelCall]:
        """Every call any member (or the group itself) might make, to cost."""
        ...

    def group(self, graph: Graph, costs: Mapping[str, Cost]) -> Group:
        """The option with each member's fastest primitive, by `costs` (which cover every call of `calls`)."""
        ...


class TilingKind(Protocol):
    """A way to fuse a chain of layers: rows, channels, ..."""

    @property
    def name(self) -> str: ...

    def options(self, graph: Graph, nodes: tuple[NodeCandidates, ...], costs: Mapping[str, Cost]
                ) -> Sequence[Option]:
        """Every group of this kind the graph has, given the candidates' untiled costs."""
        ...

    def kept(self, groups: Sequence[Group]) -> Sequence[Group]:
        """Of the groups this kind's options became (in option order), those to offer the solver."""
        ...

    def runs(self, groups: Sequence[Group]) -> Sequence[KernelCall]:
        """Of the groups (every kind's), for each of this kind's that is timed as it runs, one call: all its calls
        in sequence (costs.profile.SequenceCall), whose cost its Option's `group` then takes for the whole group."""
        ...
