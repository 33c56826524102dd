"""Candidates: for every node, each primitive of the library (tasobuild.primitives.registry) that can run it, with
its calls and workspace; the optimizer.primitives allow-list that restricts them.

Also every layout transform the solver might insert: one per activation tensor and ordered pair of layouts.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tasobuild.errors import UserError
from tasobuild.importer.context import MAX_TENSOR_BYTES
from tasobuild.ir import LAYOUTS, Graph, Layout, Node
from tasobuild.primitives import KernelCall, Primitive
from tasobuild.primitives.registry import library

if TYPE_CHECKING:
    from tasobuild.costs.cache import Cost


@dataclass(frozen=True)
class Candidate:
    primitive: Primitive
    calls: tuple[KernelCall, ...]
    workspace_bytes: int
    parts: int = 1  # > 1: its call runs split over this many threads (with_threads)


@dataclass(frozen=True)
class NodeCandidates:
    node: Node
    options: tuple[Candidate, ...]  # sorted by primitive name


@dataclass(frozen=True)
class TransformCandidate:
    tensor: str
    src: Layout
    dst: Layout
    call: KernelCall
    split: KernelCall | None = None  # the same transform on the target's threads (with_threads), costed beside it


def check_allow_list(allow: Iterable[str]) -> frozenset[str]:
    known = {p.name for p in library()}
    for name in sorted(allow):
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "; `tasobuild primitives` lists them"
            raise UserError(f"optimizer.primitives: unknown primitive {name!r}{hint}")
    return frozenset(allow)


def node_candidates(graph: Graph, allow: frozenset[str] = frozenset()) -> tuple[NodeCandidates, ...]:
    """The options of every node; an allow-list (empty = all) restricts primitives of ops it names any of."""
    prims = library()
    allowed_ops = {p.op for p in prims if p.name in allow}
    result = []
    for node in graph.nodes:
        applicable = (Candidate(p, p.call(node, graph), p.workspace(node, graph))
                      for p in prims
                      if p.op == node.op and (p.op not in allowed_ops or p.name in allow) and p.applies(node, graph))
        # The kernels index a workspace as they index tensors (32-bit int counts, long offsets): a primitive whose
        # workspace would overflow that is no candidate, as for tensors (importer.context.MAX_TENSOR_BYTES).
        options = tuple(c for c in applicable if c.workspace_bytes <= MAX_TENSOR_BYTES)
        if not options:
            restricted = " within optimizer.primitives" if node.op in allowed_ops else ""
            raise UserError(f"node {node.name!r} ({node.op}): no primitive{restricted} can run it "
                            f"({_describe(node, graph)})")
        result.append(NodeCandidates(node, options))
    return tuple(result)


def fastest_in(nc: NodeCandidates, layout: Layout, costs: Mapping[str, Cost], count: int) -> tuple[Candidate, ...]:
    """The node's `count` fastest candidates that read and write `layout` (views aside), by their calls' costs (then
    by name): the primitives fused tiling tries for it."""
    def ms(c: Candidate) -> float:
        return sum(costs[call.key()].median_ms for call in c.calls)

    same = [c for c in nc.options if (c.primitive.layout_in, c.primitive.layout_out) == (layout, layout)
            and not c.primitive.aliases_input and c.primitive.in_place < 0 and not c.primitive.gathers
            and not c.primitive.strided_out
            and c.parts == 1]  # a group's bands run on one thread
    return tuple(sorted(same, key=lambda c: (ms(c), c.primitive.name))[:count])


# What node_candidates found, as plain data (primitive names, calls, workspace) for the stage cache: Primitives hold
# functions, which do not pickle.
Listing = tuple[tuple[tuple[str, tuple[KernelCall, ...], int], ...], ...]


def listing(nodes: tuple[NodeCandidates, ...]) -> Listing:
    return tuple(tuple((c.primitive.name, c.calls, c.workspace_bytes) for c in nc.options) for nc in nodes)


def from_listing(graph: Graph, listed: Listing) -> tuple[NodeCandidates, ...]:
    """node_candidates' result again, from `listing` of it for the same graph."""
    by_name = {p.name: p for p in library()}
    return tuple(NodeCandidates(node, tuple(Candidate(by_name[name], calls, ws) for name, calls, ws in options))
                 for node, options in zip(graph.nodes, listed, strict=True))


def with_threads(nodes: tuple[NodeCandidates, ...], threads: int) -> tuple[NodeCandidates, ...]:
    """The candidates plus, for every one whose call can be split by rows or into slices (primitives.parallel), the same
    primitive on `threads` threads, named "<primitive>@<parts>", with a workspace slice per part. Both stay on offer:
    a small layer may run faster on one thread (waking the others costs time), a tight budget may need the smaller
    workspace."""
    from tasobuild.primitives.parallel import parallel_call, workspace_bytes

    if threads < 2:
        return nodes

    def split(c: Candidate) -> Candidate | None:
        # a node of several calls (a concat's copies) splits each call that splits; they run one after another
        calls = tuple(parallel_call(call, threads) or call for call in c.calls)
        parts = max((call.parts for call in calls), default=1)  # no calls (a view, a zero-copy concat): no split
        if parts < 2 or (len(calls) > 1 and any(workspace_bytes(call) for call in calls)):
            return None  # one thread anyway; several calls' workspace is the node's, not sliced per call here
        return Candidate(replace(c.primitive, name=f"{c.primitive.name}@{parts}"), calls,
                         max(workspace_bytes(call) for call in calls), parts)

    def options(nc: NodeCandidates) -> tuple[Candidate, ...]:
        split_ones = [s for s in map(split, nc.options) if s is not None]
        return tuple(sorted(nc.options + tuple(split_ones), key=lambda c: c.primitive.name))

    return tuple(NodeCandidates(nc.node, options(nc)) for nc in nodes)


def transform_candidates(graph: Graph, threads: int = 1) -> tuple[TransformCandidate, ...]:
    """Every tensor's layout transforms; with `threads` > 1, each also split by rows (primitives.parallel), for
    `faster_transforms` to pick from once both are costed."""
    from tasobuild.primitives.parallel import parallel_call
    from tasobuild.primitives.transforms import transform_call

    tensors = sorted(set(graph.input_tensors) | {n.output for n in graph.nodes})
    calls = ((t, src, dst, transform_call(graph.shape(t), src, dst, graph.dtype(t)))
             for t in tensors for src in LAYOUTS for dst in LAYOUTS if src != dst)
    return tuple(TransformCandidate(t, src, dst, call, parallel_call(call, threads)) for t, src, dst, call in calls)


def faster_transforms(transforms: tuple[TransformCandidate, ...], costs: Mapping[str, Cost]
                      ) -> tuple[TransformCandidate, ...]:
    """Each transform as its faster call runs, whole or split (a tie stays whole): the solver weighs a transform by
    one time, and lowering renders the call it was weighed by."""
    def faster(t: TransformCandidate) -> TransformCandidate:
        if t.split is None or costs[t.split.key()].median_ms >= costs[t.call.key()].median_ms:
            return replace(t, split=None)
        return replace(t, call=t.split, split=None)

    return tuple(map(faster, transforms))


def _describe(node: Node, graph: Graph) -> str:
    shapes = ", ".join(str(graph.shape(t)) for t in node.inputs)
    return f"inputs {shapes}; " + ", ".join(f"{k}={v}" for k, v in node.attrs)
