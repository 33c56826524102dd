"""`build --frozen`: the decision taken from taso.lock — no profiling, no solving — so any machine, even one with
an empty cost cache, emits exactly the locked tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from tasobuild.candidates import NodeCandidates, TransformCandidate
from tasobuild.costs.cache import Cost
from tasobuild.costs.stage import Costed
from tasobuild.errors import UserError
from tasobuild.incremental import FROZEN_INPUTS, changed_inputs
from tasobuild.ir import Graph
from tasobuild.optimize import Decision, place, to_problem
from tasobuild.solve import evaluate
from tasobuild.spec import Spec
from tasobuild.target import Target


def planned_from_lock(spec: Spec, target: Target, graph: Graph, lock: Mapping[str, Any] | None,
                      inputs: Mapping[str, str], lock_path: Path, nodes: tuple[NodeCandidates, ...],
                      transforms: tuple[TransformCandidate, ...]):
    from tasobuild.build import Planned, fused, tiling_options

    if lock is None:
        raise UserError(f"{lock_path}: --frozen needs a lock; run `tasobuild build` first and commit taso.lock")
    changed = changed_inputs(lock, inputs, FROZEN_INPUTS)
    if changed:
        raise UserError(f"{lock_path}: --frozen, but {', '.join('inputs.' + k for k in changed)} changed since the "
                        f"lock was written; run `tasobuild build` to update it")
    costs = {row["call"]: Cost(row["median_ms"], row["spread_ms"], 1, row["source"]) for row in lock["cost"]}
    try:
        groups = fused(graph, tiling_options(spec, graph, nodes, costs), costs)
        problem = to_problem(graph, nodes, transforms, costs, groups)
    except KeyError as missing:
        raise UserError(f"{lock_path}: --frozen, but the lock has no cost for {missing}; "
                        f"run `tasobuild build` to update it") from None
    locked = {row["name"]: row for row in lock["node"]}
    picks = []
    for node in problem.nodes:
        row = locked.get(node.name)
        pick = next((c for c in node.choices if row and (c.primitive, c.layout_in, c.layout_out, c.group or "none")
                     == (row["primitive"], row["layout_in"], row["layout_out"], row["tiling"])), None)
        if pick is None:
            raise UserError(f"{lock_path}: --frozen, but node {node.name!r} has no locked choice this "
                            f"tasobuild can run; run `tasobuild build` to update the lock")
        picks.append(pick)
    table = lock["plan"]
    plan = evaluate(problem, picks, objective=table["objective"], status=table["solver_status"])
    baselines = {name: {"predicted_ms": table[f"{name}_predicted_ms"], "arena_bytes": table[f"{name}_arena_bytes"]}
                 for name in ("greedy", "time_only")}
    decision = Decision(plan, place(plan), baselines, table["lower_bound_bytes"])
    return Planned(spec, target, graph, nodes, transforms, Costed(costs, 0), decision, groups)
