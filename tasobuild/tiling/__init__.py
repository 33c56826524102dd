"""Fused tiling: a chain of layers runs a part at a time, so the tensors between them never exist whole.

Kinds (KINDS, in the order their groups reach the solver):
  rows      row bands of HWC convolutions, a line buffer per intermediate tensor (tiling.rows)
  channels  channel slices of conv -> per-channel operators -> conv, partial sums added into the output (FDT,
            tiling.channels)
  patches   a grid of spatial patches of a chain's output, each computed from its receptive field, halos recomputed
            (patch-based inference as in MCUNetV2, tiling.patches)

How a build uses them, without knowing which kinds there are:
  1. `options(graph, nodes, costs)`: every kind's Options for the graph, given the candidates' untiled costs;
  2. `calls(options)`: every call those options might make, to cost (profile or predict) next;
  3. `groups(graph, options, costs)`: each option as a Group (each member's fastest primitive by those costs), the
     ones each kind keeps; the optimiser turns a group into one all-or-none choice per member, the lock records
     its name and cites the costs of `member_calls`, and lowering asks it for `weight_parts`, `kernel_sources` and
     `steps` (the group's calls with their pointers);
  4. where every cost is measured here, `runs(groups)`: per group of a kind that times its groups as they run, all
     its calls in sequence as one call (costs.profile.SequenceCall); costed, then `groups` again with those costs.

The protocol (tasobuild.tiling.protocol), in short:
  TilingKind  name; options(graph, nodes, costs) -> Options; kept(groups) -> the Groups to offer the solver;
              runs(groups) -> a call per group of its own timed as it runs
  Option      kind, name, members; calls() -> KernelCalls to cost; group(graph, costs) -> Group
  Group       name, label, members, layout, chosen (per member a MemberRun: primitive, calls, workspace_bytes),
              member_ms, workspace_bytes, kernel_sources; member_calls(j); weight_parts(graph, j);
              steps(graph, plan, arena, weights) -> Steps
What the kinds share (tasobuild.tiling.base): which tensors a group may keep to itself (`feeds_next`), how a
member's primitive is picked (`fastest_option`), the workspace layout (`Workspace`: a buffer per intermediate
tensor, end to end on cache lines, then the largest scratch a call needs), what a group derives alike from those
(`GroupBase`: label, workspace_bytes, member_calls) and a TilingKind made of functions (`Kind`).

A new kind is a module with its Option and Group (frozen dataclasses) and `KIND = Kind(NAME, its_options)`, plus its
line in KINDS below; mypy checks there that they implement the protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tasobuild.candidates import NodeCandidates
from tasobuild.costs.cache import Cost
from tasobuild.ir import Graph
from tasobuild.primitives import KernelCall
from tasobuild.tiling import channels, patches, rows
from tasobuild.tiling.protocol import Group, MemberRun, Option, TilingKind, WeightPart, WeightSymbols

KINDS: tuple[TilingKind, ...] = (rows.KIND, channels.KIND, patches.KIND)


def options(graph: Graph, nodes: tuple[NodeCandidates, ...], costs: Mapping[str, Cost]) -> tuple[Option, ...]:
    """Every kind's options for the graph, kind by kind, given the candidates' (untiled) costs."""
    return tuple(option for kind in KINDS for option in kind.options(graph, nodes, costs))


def calls(options: Sequence[Option]) -> list[KernelCall]:
    """Every call of the options, to cost."""
    return [call for option in options for call in option.calls()]


def groups(graph: Graph, options: Sequence[Option], costs: Mapping[str, Cost]) -> tuple[Group, ...]:
    """The groups the solver sees: each option with its members' fastest primitives, those its kind keeps."""
    return tuple(group for kind in KINDS
                 for group in kind.kept([option.group(graph, costs) for option in options if option.kind == kind.name]))


def runs(groups: Sequence[Group]) -> list[KernelCall]:
    """Per group whose kind times it as it runs (its calls in sequence, one cost), that call, to cost."""
    return [call for kind in KINDS for call in kind.runs(groups)]


__all__ = ["KINDS", "Group", "MemberRun", "Option", "TilingKind", "WeightPart", "WeightSymbols", "calls", "groups",
           "options", "runs"]
