"""Searches over an Encoding with Z3: minimum time (weighted MaxSAT, Z3 Optimize) and minimum peak (bisection
over a pseudo-boolean memory cap, Z3 Solver). Every plan is rebuilt from the chosen primitives with
`plan.evaluate`, and the solver's claim about it (its cost, or that it fits the cap) is checked against that."""

from __future__ import annotations

import time
from dataclasses import dataclass

import z3

from tasobuild.solve.encode import Encoding
from tasobuild.solve.plan import Plan, evaluate, to_ns
from tasobuild.solve.problem import Choice

SEED = 0


@dataclass(frozen=True)
class Outcome:
    picks: tuple[Choice, ...] | None  # None: no plan (infeasible, or none found in time)
    proven: bool  # the picks are optimal (or, with no picks, infeasibility is proven)
    bound: int  # proven lower bound on the objective (ns or bytes)


class Clock:
    """The time limit shared by every check of one solve, and the seconds spent inside Z3."""

    def __init__(self, limit_s: float) -> None:
        self.deadline = time.perf_counter() + limit_s
        self.used = 0.0

    def remaining_ms(self) -> int:
        return max(1, int((self.deadline - time.perf_counter()) * 1000))

    def run(self, solver: z3.Solver | z3.Optimize) -> z3.CheckSatResult:
        solver.set("timeout", self.remaining_ms())
        t0 = time.perf_counter()
        try:
            return solver.check()
        finally:
            self.used += time.perf_counter() - t0


def picks_of(plan: Plan) -> tuple[Choice, ...]:
    return tuple(c for _, c in plan.choices)


def feasible(enc: Encoding, extra: list[z3.BoolRef], clock: Clock) -> Outcome:
    """Any plan meeting the constraints (a quick satisfiability check)."""
    solver = z3.Solver()
    solver.set("random_seed", SEED)
    solver.add(*enc.constraints, *extra)
    result = clock.run(solver)
    if result != z3.sat:
        return Outcome(None, result == z3.unsat, 0)
    return Outcome(tuple(enc.picks(solver.model())), False, 0)


def min_time(enc: Encoding, extra: list[z3.BoolRef], clock: Clock, known: tuple[Choice, ...] | None = None) -> Outcome:
    """Fastest plan under the extra constraints, as weighted MaxSAT (Z3 Optimize, core-guided maxres).
    Each choice is a soft 'not this' weighted by how much slower it is than the node's fastest choice (the fastest
    weighs 0, which keeps the cores small); each transform is a soft 'not this' weighted by its time.
    `known`, a plan meeting the constraints, is the fallback on timeout; without one a quick check finds one."""
    if known is None:
        first = feasible(enc, extra, clock)
        if first.picks is None:
            return first
        known = first.picks
    opt = z3.Optimize()
    opt.set("random_seed", SEED)
    opt.set("maxres.hill_climb", False)  # measured: several times faster on layout-coupled chains
    opt.set("maxres.pivot_on_correction_set", False)
    opt.add(*enc.constraints, *extra)
    handle, base = None, enc.time_const
    for xs, node in zip(enc.x, enc.problem.nodes):
        fastest = min(to_ns(c.time_ms) for c in node.choices)
        base += fastest
        for v, c in zip(xs, node.choices):
            if to_ns(c.time_ms) > fastest:
                handle = opt.add_soft(z3.Not(v), to_ns(c.time_ms) - fastest, id="time")
    for v, w in enc.transform_terms:
        if w > 0:
            handle = opt.add_soft(z3.Not(v), w, id="time")
    result = clock.run(opt)
    if result == z3.unsat:
        return Outcome(None, True, 0)
    best = evaluate(enc.problem, known)
    if result == z3.sat:
        plan = evaluate(enc.problem, enc.picks(opt.model()))
        claimed = base + _objective_value(handle)
        if claimed != plan.time_ns:
            raise AssertionError(f"solver encoding disagrees with evaluate: time {claimed} vs {plan.time_ns} ns")
        return Outcome(picks_of(plan), True, plan.time_ns)
    try:  # timeout: maxres keeps its best model so far
        model = opt.model()
        if all(z3.is_true(model.eval(c, model_completion=True)) for c in extra):
            found = evaluate(enc.problem, enc.picks(model))
            best = found if found.time_ns < best.time_ns else best
    except (z3.Z3Exception, AssertionError):
        pass
    return Outcome(picks_of(best), False, min(base + _soft_lower(handle), best.time_ns))


def min_peak(enc: Encoding, extra: list[z3.BoolRef], clock: Clock, known: tuple[Choice, ...] | None = None) -> Outcome:
    """Smallest-peak plan under the extra constraints: bisection on a memory cap, in units of the alignment.
    `known` (a plan meeting `extra`) saves the first check."""
    align = enc.problem.alignment
    enc.memory()  # the memory definitions join enc.constraints
    solver = z3.Solver()
    solver.set("random_seed", SEED)
    solver.add(*enc.constraints, *extra)
    if known is None:
        result = clock.run(solver)
        if result != z3.sat:
            return Outcome(None, result == z3.unsat, 0)
        known = tuple(enc.picks(solver.model()))
    best = known
    hi = evaluate(enc.problem, best).peak_bytes // align  # a plan with this peak exists
    lo = -(-enc.lowest_peak() // align)  # no plan does better than this
    while lo < hi:
        mid = (lo + hi) // 2
        solver.push()
        solver.add(*enc.memory_at_most(mid * align))
        result = clock.run(solver)
        if result == z3.sat:
            plan = evaluate(enc.problem, enc.picks(solver.model()))
            if plan.peak_bytes > mid * align:
                raise AssertionError(f"solver encoding disagrees with evaluate: a plan under the {mid * align}-byte "
                                     f"cap peaks at {plan.peak_bytes} bytes")
            best, hi = picks_of(plan), plan.peak_bytes // align
        elif result == z3.unsat:
            lo = mid + 1
        solver.pop()
        if result not in (z3.sat, z3.unsat):
            return Outcome(best, False, lo * align)
    return Outcome(best, True, hi * align)


def _objective_value(handle: z3.OptimizeObjective | None) -> int:
    return 0 if handle is None else handle.value().as_long()


def _soft_lower(handle: z3.OptimizeObjective | None) -> int:
    """Z3's proven lower bound on the soft-constraint penalty after a timeout (0 if it has none)."""
    if handle is None:
        return 0
    try:
        value = handle.lower()
        return value.as_long() if z3.is_int_value(value) else 0
    except (z3.Z3Exception, AttributeError, ValueError):
        return 0
