"""The fastest plan under a memory budget, from answers a build can remember.

A Session asks all its questions of one Z3 context, and Z3's pick among equally fast plans depends on what that
context was asked before. Here each question "the fastest plan with peak <= c" is asked of a Session of its own, so
its answer is a function of (problem, c) alone, and `remember` may keep it across builds (build.py passes the stage
cache) without the output ever depending on which budgets were built before. A budget change then solves only the
questions no earlier build asked: often the tie-break's ("anything as fast with a smaller peak?"), whose cap is the
peak of a plan that several budgets share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tasobuild.solve.plan import Plan, evaluate
from tasobuild.solve.problem import Problem
from tasobuild.solve.search import Clock, Outcome
from tasobuild.solve.session import Session, pruned, smallest_peak_at_same_time


@dataclass(frozen=True)
class Answer:
    """A proven answer to "the fastest plan with peak <= cap", by Choice.ident per node (None: no plan)."""

    choices: tuple[str, ...] | None
    time_ns: int


Remember = Callable[[int, Callable[[], Answer | None]], Answer | None]  # (cap, solve) -> solve(), maybe kept


def forget(cap: int, solve: Callable[[], Answer | None]) -> Answer | None:
    return solve()


def fastest_within(problem: Problem, budget_bytes: int, time_limit_s: float = 10.0,
                   remember: Remember = forget) -> Plan:
    """Session(problem).solve(budget_bytes) — the fastest plan that fits, then the smallest peak among the fastest —
    with every question answered by a fresh Session or by `remember`. `remember(cap, solve)` returns solve() or
    what an earlier solve() for that cap returned; solve() returns None when the answer was not proven in time,
    which must not be kept."""
    problem = pruned(problem)  # idempotent: each fresh Session prunes it again to the same choices
    clock = Clock(time_limit_s)

    def fastest_under(cap: int) -> Outcome:
        fresh: list[Outcome] = []

        def solve() -> Answer | None:
            fresh.append(Session(problem).fastest_under(cap, clock))
            found = fresh[0]
            if not found.proven:
                return None  # the best plan found in time: a later build may do better
            return Answer(None if found.picks is None else tuple(c.ident for c in found.picks), found.bound)

        answer = remember(cap, solve)
        if answer is None:
            return fresh[0]
        if answer.choices is None:
            return Outcome(None, True, 0)
        picks = tuple(next(c for c in node.choices if c.ident == ident)
                      for node, ident in zip(problem.nodes, answer.choices))
        return Outcome(picks, True, answer.time_ns)

    first = fastest_under(budget_bytes)
    if first.picks is None:  # no plan: the Session explains why, naming the smallest budget that has one
        return Session(problem).solve(budget_bytes, "latency", None, time_limit_s)
    picks, tie_break = first.picks, "skipped"
    if first.proven:
        picks, smallest = smallest_peak_at_same_time(problem, picks, fastest_under)
        tie_break = "optimal" if smallest else "feasible"
    return evaluate(problem, picks, objective="latency", status="optimal" if first.proven else "feasible",
                    tie_break=tie_break, bound=first.bound / 1e6, solver_seconds=clock.used)


__all__ = ["Answer", "Remember", "fastest_within", "forget"]
