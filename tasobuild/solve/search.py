"""Searches over an Encoding with Z3: minimum time (weighted MaxSAT over the pseudo-boolean model) and minimum
peak (bisection over a pseudo-boolean memory cap), each with a secondary objective so results are not dominated.
Every model is decoded and re-evaluated with `plan.evaluate`; the Z3 bookkeeping must agree with it exactly."""

from __future__ import annotations

import time
from dataclasses import dataclass

import z3

from tasobuild.solve.encode import Assignment, Encoding
from tasobuild.solve.plan import Plan, evaluate, to_ns
from tasobuild.solve.problem import Choice

SEED = 0


@dataclass(frozen=True)
class Outcome:
    picks: tuple[Choice, ...] | None  # None: no plan (infeasible, or none found in time)
    proven: bool  # the picks are optimal for the objective (or, with no picks, infeasibility is proven)
    bound: int  # proven lower bound on the objective (ns or bytes)


class Clock:
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


def checked(enc: Encoding, model: z3.ModelRef, with_memory: bool) -> Plan:
    """The plan a model encodes, after checking that Z3's time (and, if the memory constraints took part in the
    solve, memory) accounting equals `evaluate`'s exactly."""
    value = Assignment(model)
    plan = evaluate(enc.problem, enc.picks(value))
    z3_ns = enc.time_ns(value)
    z3_bytes = tuple(enc.step_bytes(value)) if with_memory else plan.step_bytes
    if z3_bytes != plan.step_bytes or z3_ns != plan.time_ns:
        raise AssertionError(f"solver encoding disagrees with evaluate: bytes {list(z3_bytes)} vs "
                             f"{list(plan.step_bytes)}, time {z3_ns} vs {plan.time_ns} ns")
    return plan


def min_time(enc: Encoding, extra: list[z3.BoolRef], clock: Clock, with_memory: bool) -> Outcome:
    """Fastest plan under the extra constraints, as weighted MaxSAT (Z3 Optimize, core-guided maxres).
    Each choice is a soft 'not this' weighted by how much slower it is than the node's fastest choice (the fastest
    weighs 0, which keeps the cores small); each transform is a soft 'not this' weighted by its time."""
    opt = z3.Optimize()
    opt.set("random_seed", SEED)
    opt.set("maxres.hill_climb", False)  # measured: 10x faster on layout-coupled chains
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
    try:
        model = opt.model()
    except z3.Z3Exception:
        model = None
    if model is None or (result != z3.sat and not _satisfies(model, enc, extra)):
        return Outcome(None, False, 0)
    plan = checked(enc, model, with_memory)
    if result == z3.sat:
        return Outcome(plan_picks(plan), True, plan.time_ns)
    return Outcome(plan_picks(plan), False, min(base + _soft_lower(handle), plan.time_ns))


def min_peak(enc: Encoding, extra: list[z3.BoolRef], clock: Clock, known: tuple[Choice, ...] | None = None) -> Outcome:
    """Smallest-peak plan under the extra constraints: bisection on a memory cap, in units of the alignment.
    `known` (a plan satisfying `extra`) saves the first search."""
    align = enc.problem.alignment
    enc.memory()  # the memory definitions join enc.constraints
    solver = z3.Solver()
    solver.set("random_seed", SEED)
    solver.add(*enc.constraints, *extra)
    if known is None:
        result = clock.run(solver)
        if result != z3.sat:
            return Outcome(None, result == z3.unsat, 0)
        known = plan_picks(checked(enc, solver.model(), True))
    best = known
    hi = evaluate(enc.problem, best).peak_bytes // align  # a plan with this peak exists
    lo = -(-enc.lowest_peak() // align)  # no plan does better than this
    while lo < hi:
        mid = (lo + hi) // 2
        solver.push()
        solver.add(*enc.memory_at_most(mid * align))
        result = clock.run(solver)
        if result == z3.sat:
            plan = checked(enc, solver.model(), True)
            best, hi = plan_picks(plan), plan.peak_bytes // align
        elif result == z3.unsat:
            lo = mid + 1
        solver.pop()
        if result not in (z3.sat, z3.unsat):
            return Outcome(best, False, lo * align)
    return Outcome(best, True, hi * align)


def plan_picks(plan: Plan) -> tuple[Choice, ...]:
    return tuple(c for _, c in plan.choices)


def _satisfies(model: z3.ModelRef, enc: Encoding, extra: list[z3.BoolRef]) -> bool:
    return all(z3.is_true(model.eval(c, model_completion=True)) for c in (*enc.constraints, *extra))


def _soft_lower(handle: z3.OptimizeObjective | None) -> int:
    """Z3's proven lower bound on the soft-constraint penalty after a timeout (0 if it has none)."""
    if handle is None:
        return 0
    try:
        value = handle.lower()
        return int(value.as_long()) if z3.is_int_value(value) else 0
    except (z3.Z3Exception, AttributeError, ValueError):
        return 0
