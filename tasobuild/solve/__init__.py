"""The optimiser: per node, one (primitive, layout) choice, so that total time (nodes + layout transforms) is
minimal and the memory live at every step fits a budget (or: peak minimal, optionally under a time budget).
Pure: knows nothing of ONNX. Stages: prune dominated choices -> encode (encode.py) -> search with Z3 (search.py)
-> Plan (plan.py, where the cost semantics are defined once, in `evaluate`). session.py asks the questions and
reuses the encoding and every proven answer across them."""

from __future__ import annotations

from tasobuild.solve.plan import Plan, Transform, evaluate, version_name
from tasobuild.solve.problem import (
    LAYOUTS,
    Choice,
    FrozenMap,
    Layout,
    Problem,
    ProblemNode,
    ProblemTensor,
    Topology,
    prune,
    topology,
)
from tasobuild.solve.session import NO_TRANSFORM, OBJECTIVES, Session, pruned

__all__ = ["LAYOUTS", "NO_TRANSFORM", "OBJECTIVES", "Choice", "FrozenMap", "Layout", "Plan", "Problem",
           "ProblemNode", "ProblemTensor", "Session", "Topology", "Transform", "evaluate", "greedy",
           "min_peak_bytes", "pareto", "prune", "pruned", "solve", "topology", "version_name"]


def solve(problem: Problem, budget_bytes: int | None, objective: str = "latency",
          latency_budget_ms: float | None = None, time_limit_s: float = 10.0, tie_break: bool = True) -> Plan:
    """The best plan whose peak fits `budget_bytes` (None: no memory limit).
    "latency": minimal total time; then (tie_break) the smallest peak among plans of that time.
    "memory": minimal peak, with total time at most `latency_budget_ms` if given; then the fastest such plan.
    `status` is about the first objective: "optimal" when proven, else "feasible" (time limit hit: the best plan
    found, `bound` the proven lower bound in ms or bytes); `tie_break` likewise about the second objective, which
    gets whatever time the first left ("skipped" when not asked for or the first was not proven).
    Raises UserError when no plan fits, naming the smallest budget that has one.
    To ask several questions of one problem, use a Session: it encodes once and reuses proven answers."""
    return Session(problem).solve(budget_bytes, objective, latency_budget_ms, time_limit_s, tie_break)


def min_peak_bytes(problem: Problem, latency_budget_ms: float | None = None, time_limit_s: float = 10.0) -> int:
    """The smallest peak (aligned bytes) of any plan (of any plan within the latency budget): the smallest memory
    budget that has a plan. Raises UserError if it cannot be proven in time, or no plan meets the latency budget."""
    return Session(problem).min_peak_bytes(latency_budget_ms, time_limit_s)


def pareto(problem: Problem, points: int = 10, time_limit_s: float = 10.0) -> list[Plan]:
    """The memory-latency frontier, sorted by increasing memory (so decreasing time), no point dominating another,
    every point proven optimal unless the time limit (per point) ran out. When the frontier has at most `points`
    points, all of them (found by walking down from the fastest plan within one time limit, counted in Z3 work so
    that the answer does not depend on the machine's load: Session.walk); else (or when the walk runs out of work)
    the smallest-peak plan,
    the fastest plan, and the fastest plan under evenly spaced budgets in between (each then at its smallest
    peak), duplicates removed."""
    return Session(problem).pareto(points, time_limit_s)


def greedy(problem: Problem) -> Plan:
    """The per-layer baseline: every node's fastest choice in isolation (ties: smaller workspace, then name),
    then transforms wherever layouts disagree; untiled (fused groups are not per layer, nor are an interleaved
    gather and its strided producers, unless an allow-list left a concat nothing else). No memory limit. ValueError
    if a needed transform is missing."""
    def per_layer(n: ProblemNode) -> list[Choice]:
        alone = [c for c in n.choices if not c.group]
        return [c for c in alone if not c.interleave and not c.strided_out] or alone

    def fastest(choices: list[Choice]) -> Choice:
        return min(choices, key=lambda c: (c.time_ms, c.workspace_bytes, c.primitive))

    picks = [fastest(per_layer(n)) for n in problem.nodes]
    producer = topology(problem).producer_step
    for n, pick in zip(problem.nodes, picks):  # a gather left as the only choice: its producers write strided
        if pick.interleave:
            for name in n.inputs:
                if name not in problem.graph_inputs:
                    q = producer[name]
                    picks[q] = fastest([c for c in problem.nodes[q].choices if c.strided_out and not c.group])
    return evaluate(problem, picks, objective="latency", status="greedy")
