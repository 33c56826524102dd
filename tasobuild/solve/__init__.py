"""The optimiser: per node, one (primitive, layout) choice, so that total time (nodes + layout transforms) is
minimal and the memory live at every step fits a budget (or: peak minimal, optionally under a time budget).
Pure: knows nothing of ONNX. Stages: prune dominated choices -> encode (encode.py) -> search with Z3 (search.py)
-> Plan (plan.py, where the cost semantics are defined once, in `evaluate`)."""

from __future__ import annotations

from dataclasses import replace

from tasobuild.errors import UserError
from tasobuild.solve.encode import Encoding, encode
from tasobuild.solve.plan import Plan, Transform, evaluate, to_ns, version_name
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
from tasobuild.solve.search import Clock, Outcome, min_peak, min_time

__all__ = ["LAYOUTS", "Choice", "FrozenMap", "Layout", "Plan", "Problem", "ProblemNode", "ProblemTensor",
           "Topology", "Transform", "evaluate", "greedy", "min_peak_bytes", "pareto", "prune", "pruned", "solve",
           "topology", "version_name"]

OBJECTIVES = ("latency", "memory")
NO_TRANSFORM = "no plan exists: the layouts cannot be reconciled because a needed layout transform is missing"


def pruned(problem: Problem) -> Problem:
    """The same problem with dominated choices removed from every node."""
    return replace(problem, nodes=tuple(replace(n, choices=prune(n.choices)) for n in problem.nodes))


def solve(problem: Problem, budget_bytes: int | None, objective: str = "latency",
          latency_budget_ms: float | None = None, time_limit_s: float = 10.0, tie_break: bool = True) -> Plan:
    """The best plan whose peak fits `budget_bytes` (None: no memory limit).
    "latency": minimal total time; then (tie_break) the smallest peak among plans of that time.
    "memory": minimal peak, with total time at most `latency_budget_ms` if given; then the fastest such plan.
    `status` is about the first objective: "optimal" when proven, else "feasible" (time limit hit: the best plan
    found, `bound` the proven lower bound in ms or bytes); `tie_break` likewise about the second objective, which
    gets whatever time the first left ("skipped" when not asked for or the first was not proven).
    Raises UserError when no plan fits, naming the smallest budget that has one."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if latency_budget_ms is not None and objective != "memory":
        raise ValueError("latency_budget_ms applies to the 'memory' objective only")
    clock = Clock(time_limit_s)
    enc = encode(pruned(problem))
    mem_cap = [] if budget_bytes is None else enc.memory_at_most(budget_bytes)
    time_cap = [] if latency_budget_ms is None else enc.time_at_most(to_ns(latency_budget_ms))
    if objective == "latency":
        if budget_bytes is None:  # no memory limit: a choice slower than another of its kind is never fastest
            first = min_time(enc, enc.slower_than_kind(), clock, known=_greedy_picks(enc))
        else:
            first = min_time(enc, mem_cap, clock)
        if first.picks is None:
            _no_plan(problem, first, budget_bytes, None, time_limit_s)
        assert first.picks is not None
        picks, second = first.picks, "skipped"
        if tie_break and first.proven:
            picks, second_proven = _smallest_peak_at_same_time(enc, picks, clock)
            second = "optimal" if second_proven else "feasible"
        bound: float = first.bound / 1e6
    else:
        first = min_peak(enc, mem_cap + time_cap, clock)
        if first.picks is None:
            _no_plan(problem, first, budget_bytes, latency_budget_ms, time_limit_s)
        assert first.picks is not None
        picks, second = first.picks, "skipped"
        if tie_break and first.proven:
            cap = enc.memory_at_most(evaluate(enc.problem, picks).peak_bytes)
            tie = min_time(enc, cap + time_cap, clock, known=picks)
            picks, second = tie.picks or picks, "optimal" if tie.proven else "feasible"
        bound = first.bound
    return evaluate(enc.problem, picks, objective=objective, status="optimal" if first.proven else "feasible",
                    tie_break=second, bound=bound, solver_seconds=clock.used)


def _smallest_peak_at_same_time(enc: Encoding, picks: tuple[Choice, ...], clock: Clock) -> tuple[tuple[Choice, ...], bool]:
    """Among plans as fast as `picks`, one with the smallest peak: ask for the fastest plan with a smaller peak
    until it is slower (or there is none). Usually the fastest plan is unique and one question settles it."""
    while True:
        plan = evaluate(enc.problem, picks)
        better = min_time(enc, enc.memory_at_most(plan.peak_bytes - 1), clock)
        if not better.proven:
            if better.picks is not None and evaluate(enc.problem, better.picks).time_ns <= plan.time_ns:
                picks = better.picks  # as fast and smaller, though maybe not the smallest
            return picks, False
        if better.picks is None or evaluate(enc.problem, better.picks).time_ns > plan.time_ns:
            return picks, True
        picks = better.picks


def min_peak_bytes(problem: Problem, latency_budget_ms: float | None = None, time_limit_s: float = 10.0) -> int:
    """The smallest peak (aligned bytes) of any plan (of any plan within the latency budget): the smallest memory
    budget that has a plan. Raises UserError if it cannot be proven in time, or no plan meets the latency budget."""
    enc = encode(pruned(problem))
    time_cap = [] if latency_budget_ms is None else enc.time_at_most(to_ns(latency_budget_ms))
    found = min_peak(enc, time_cap, Clock(time_limit_s))
    if not found.proven:
        raise UserError(f"the solver could not find the smallest memory budget within {time_limit_s:g} s; "
                        f"raise its time limit")
    if found.picks is None:
        raise UserError(NO_TRANSFORM if latency_budget_ms is None else
                        f"no plan meets the latency budget of {latency_budget_ms:g} ms")
    return evaluate(enc.problem, found.picks).peak_bytes


def greedy(problem: Problem) -> Plan:
    """The per-layer baseline: every node's fastest choice in isolation (ties: smaller workspace, then name),
    then transforms wherever layouts disagree. No memory limit. ValueError if a needed transform is missing."""
    picks = [min(n.choices, key=lambda c: (c.time_ms, c.workspace_bytes, c.primitive)) for n in problem.nodes]
    return evaluate(problem, picks, objective="latency", status="greedy")


def _greedy_picks(enc: Encoding) -> tuple[Choice, ...] | None:
    """The greedy plan's choices (from the pruned problem) as a fallback for a timed-out time-only solve."""
    try:
        return tuple(c for _, c in greedy(enc.problem).choices)
    except ValueError:
        return None


def pareto(problem: Problem, points: int = 10, time_limit_s: float = 10.0) -> list[Plan]:
    """The memory-latency frontier: from the smallest-peak plan to the fastest plan, with the fastest plan under
    evenly spaced budgets in between (each then at its smallest peak, so no point dominates another).
    Sorted by increasing memory (so decreasing time), duplicates removed."""
    if points < 2:
        raise ValueError("pareto needs at least 2 points")
    smallest = solve(problem, None, objective="memory", time_limit_s=time_limit_s)
    fastest = solve(problem, None, time_limit_s=time_limit_s)
    lo, hi, align = smallest.peak_bytes, fastest.peak_bytes, problem.alignment
    budgets = sorted({(lo + (hi - lo) * k // (points - 1)) // align * align for k in range(1, points - 1)})
    plans = [smallest, fastest] + [solve(problem, b, time_limit_s=time_limit_s) for b in budgets if lo < b < hi]
    frontier: dict[tuple[int, int], Plan] = {}
    for plan in sorted(plans, key=lambda p: (p.peak_bytes, p.time_ns)):
        frontier.setdefault((plan.peak_bytes, plan.time_ns), plan)
    out: list[Plan] = []
    for plan in frontier.values():
        if not out or plan.time_ns < out[-1].time_ns:  # drop a point no faster than a smaller one
            out.append(plan)
    return out


def _no_plan(problem: Problem, outcome: Outcome, budget_bytes: int | None, latency_budget_ms: float | None,
             time_limit_s: float) -> None:
    """Raise the UserError that explains why there is no plan."""
    if not outcome.proven:
        raise UserError(f"the solver found no plan within its {time_limit_s:g} s time limit; raise the time limit "
                        f"or the memory budget")
    if latency_budget_ms is not None:
        try:
            min_peak_bytes(problem, latency_budget_ms, time_limit_s)
        except UserError:
            fastest = solve(problem, None, time_limit_s=time_limit_s, tie_break=False)
            raise UserError(f"latency budget {latency_budget_ms:g} ms is too tight: the fastest plan takes "
                            f"{fastest.predicted_ms:.6g} ms; raise the latency budget") from None
    if budget_bytes is not None:
        need = min_peak_bytes(problem, latency_budget_ms, time_limit_s)
        within = "" if latency_budget_ms is None else f" within {latency_budget_ms:g} ms"
        raise UserError(f"memory budget {budget_bytes} bytes is too small: the smallest budget with a plan{within} "
                        f"is {need} bytes ({_human(need)}); raise [constraints] memory to at least that")
    raise UserError(NO_TRANSFORM)


def _human(n: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} B"
