"""`build --frozen`: the Decider that takes costs and the decision from taso.lock — no profiling, no solving — so any
machine, even one with an empty cost cache, emits exactly the locked tree."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tasobuild.costs.stage import Costed
from tasobuild.decide import Decision, place
from tasobuild.errors import UserError
from tasobuild.incremental.lock import lock_costs
from tasobuild.incremental.state import FROZEN_INPUTS, changed_inputs
from tasobuild.ir import Graph
from tasobuild.primitives import KernelCall
from tasobuild.schedule import in_order
from tasobuild.solve import Choice, Problem, evaluate


class FromLock:
    """The lock's costs and its choice for every node, checked against what this tasobuild can run."""

    def __init__(self, lock: Mapping[str, Any] | None, inputs: Mapping[str, str], lock_path: Path) -> None:
        if lock is None:
            raise UserError(f"{lock_path}: --frozen needs a lock; run `tasobuild build` first and commit taso.lock")
        changed = changed_inputs(lock, inputs, FROZEN_INPUTS)
        if changed:
            raise UserError(f"{lock_path}: --frozen, but {', '.join('inputs.' + k for k in changed)} changed since "
                            f"the lock was written; run `tasobuild build` to update it")
        self.lock, self.lock_path = lock, lock_path
        self.locked_costs = lock_costs(lock)

    def costs(self, calls: Sequence[KernelCall]) -> Costed:
        missing = next((c.key() for c in calls if c.key() not in self.locked_costs), None)
        if missing is not None:
            raise UserError(f"{self.lock_path}: --frozen, but the lock has no cost for {missing!r}; "
                            f"run `tasobuild build` to update it")
        costs = {c.key(): self.locked_costs[c.key()] for c in calls}
        return Costed(costs, 0, frozenset(costs))

    def fixed_order(self, graph: Graph) -> tuple[Graph, str]:
        """The lock's execution order (its [[node]] rows are in it) and how it was chosen; the graph as it is when
        the lock names other nodes (decide says which)."""
        ordered = in_order(graph, [row["name"] for row in self.lock["node"]])
        return ordered or graph, self.lock["plan"].get("order", "tensors")

    def decide(self, problem: Problem) -> Decision:
        locked = {row["name"]: row for row in self.lock["node"]}
        picks: list[Choice] = []
        for node in problem.nodes:
            row = locked.get(node.name)
            pick = next((c for c in node.choices if row and (c.primitive, c.layout_in, c.layout_out, c.group or "none")
                         == (row["primitive"], row["layout_in"], row["layout_out"], row["tiling"])), None)
            if pick is None:
                raise UserError(f"{self.lock_path}: --frozen, but node {node.name!r} has no locked choice this "
                                f"tasobuild can run; run `tasobuild build` to update the lock")
            picks.append(pick)
        table = self.lock["plan"]
        plan = evaluate(problem, picks, objective=table["objective"], status=table["solver_status"])
        baselines = {name: {"predicted_ms": table[f"{name}_predicted_ms"],
                            "arena_bytes": table[f"{name}_arena_bytes"]} for name in ("greedy", "time_only")}
        return Decision(plan, place(plan), baselines, table["lower_bound_bytes"])
