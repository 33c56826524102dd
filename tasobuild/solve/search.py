"""Searches over an Encoding with Z3: minimum time (weighted MaxSAT, Z3 Optimize) and minimum peak (a memory cap
lowered step by step, Z3 Solver). Every plan is rebuilt from the chosen primitives with `plan.evaluate`, and the
solver's claim about it (its cost, or that it fits the cap) is checked against that."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import z3

from tasobuild.solve.encode import Encoding, add_soft_all, assert_all, not_, pb_le
from tasobuild.solve.plan import Plan, evaluate, to_ns
from tasobuild.solve.problem import Choice

SEED = 0
Excluded = frozenset[tuple[int, int]]  # (node index, choice index) pairs the search must not pick


@dataclass(frozen=True)
class Outcome:
    picks: tuple[Choice, ...] | None  # None: no plan (infeasible, or none found in time)
    proven: bool  # the picks are optimal (or, with no picks, infeasibility is proven)
    bound: int  # proven lower bound on the objective (ns or bytes)
    hard: bool = False  # min_time: maxres's first slice did not settle it (or the ascent did, in its place)


class Clock:
    """The limit shared by every check of one solve, and the seconds spent inside Z3. The limit is wall-clock
    seconds, or (`work`) Z3 resource units: each check is given an rlimit of at most the work left and is charged
    all of it, however early it ends, so the limit ends at the same point on every run whatever the machine's load.
    (Reading Z3's own count needs a solver of the context, and creating one between checks changed maxres's path
    and slowed MobileNetV1's walk: BENCHMARKS.md, the frontier.)"""

    def __init__(self, limit_s: float, work: int | None = None) -> None:
        self.limit_s = limit_s
        self.deadline = time.perf_counter() + limit_s
        self.used = 0.0
        self.work = work
        self.work_used = 0

    def expired(self) -> bool:
        if self.work is not None:
            return self.work_used >= self.work
        return time.perf_counter() >= self.deadline

    def remaining_ms(self) -> int:
        return max(1, int((self.deadline - time.perf_counter()) * 1000))

    def run(self, solver: z3.Solver | z3.Optimize, rlimit: int = 0, charge_used: bool = False) -> z3.CheckSatResult:
        """solver.check() within the limit; `rlimit`: the check's own resource limit (0: none). `charge_used`: a
        plain Solver's check is charged the work it did (its own rlimit count, as deterministic as the grant), not
        its whole grant: the descent runs many short checks."""
        granted = 0
        if self.work is None:
            solver.set("timeout", self.remaining_ms())
        else:
            left = max(1, self.work - self.work_used)
            granted = min(rlimit, left) if rlimit else left
            solver.set("rlimit", granted)
        before = _rlimit_count(solver) if charge_used else 0
        t0 = time.perf_counter()
        try:
            return solver.check()
        finally:
            self.used += time.perf_counter() - t0
            if self.work is not None:
                used = _rlimit_count(solver) - before if charge_used else granted
                self.work_used += min(granted, max(1, used))


def _rlimit_count(solver: z3.Solver | z3.Optimize) -> int:
    """The Z3 resource units the solver has used so far (its statistics' "rlimit count")."""
    stats = solver.statistics()
    return next((int(stats.get_key_value(k)) for k in stats.keys() if k == "rlimit count"), 0)


def picks_of(plan: Plan) -> tuple[Choice, ...]:
    return tuple(c for _, c in plan.choices)


def exclusions(enc: Encoding, excluded: Excluded) -> list[z3.BoolRef]:
    return [not_(enc.x[i][k]) for i, k in sorted(excluded)]


# Core-guided MaxSAT has heavy tails: the same question takes 0.2 s or over a minute depending on the search
# parameters (and on incidental orderings). So min_time runs a deterministic portfolio: slices that alternate
# maxres with and without hill climbing and change the seed, each with a resource budget (Z3's rlimit, counted in
# operations, not seconds: the same slice ends at the same point on every run) twice the last, until one finishes
# or the wall-clock limit ends the search.
FIRST_SLICE_RLIMIT = 3_000_000  # about 0.3-0.8 s of maxres on this kind of problem

# When the first slice does not settle a question, its hard part is usually proving that no plan a few microseconds
# faster exists among many near-equal ones. A coarse MaxSAT first (every weight floored to COARSE_NS) answers fast,
# as far fewer distinct weights make far fewer cores, and its plan P bounds the exact search: a plan faster than P
# has a smaller exact penalty, hence a coarse penalty of at most (penalty(P) - 1) // COARSE_NS, which is added as a
# hard constraint. The answer stays the exact optimum (P itself when nothing within the bound is faster).
COARSE_NS = 10_000
# Proving that no plan is faster than a given time is one quick SAT check (no cores to find): so `descend` asks for
# faster plans, bisecting from a proven lower bound or descending from the coarse plan (within tens of microseconds
# of the optimum), each check given at most this many Z3 resource units (20k-600k each on GoogLeNet). Only when a
# check runs out does the exact MaxSAT search run, within the best plan's bound.
DESCENT_STEP_RLIMIT = 5_000_000
# A walk's questions come in runs of hard ones (the caps next to the floor). After one, the next question first
# ascends from its interval lower bound (`ascend`) within this much work, before any maxres slice.
ASCENT_WORK = 3_000_000


def slice_params(k: int) -> dict[str, object]:
    climb = k % 2 == 1
    return {"random_seed": SEED + k // 2, "maxres.hill_climb": climb, "maxres.pivot_on_correction_set": climb,
            "rlimit": FIRST_SLICE_RLIMIT << k}


def run_slice(opt: z3.Optimize, k: int, clock: Clock) -> z3.CheckSatResult:
    """Slice k of a MaxSAT search (slice_params) within the clock."""
    params = slice_params(k)
    for key, value in params.items():
        opt.set(key, value)
    rlimit = params["rlimit"]
    assert isinstance(rlimit, int)
    return clock.run(opt, rlimit)


def min_time(enc: Encoding, extra: list[z3.BoolRef], clock: Clock, excluded: Excluded = frozenset(),
             known: tuple[Choice, ...] | None = None,
             accept: Callable[[Plan], bool] = lambda _: True, coarse: Plan | None = None,
             at_least_ns: int | None = None, ascend_first: bool = False) -> Outcome:
    """Fastest plan under the extra constraints, never picking an excluded choice, as weighted MaxSAT (Z3 Optimize,
    core-guided maxres, in slices: see slice_params). Each choice is a soft 'not this' weighted by how much slower
    it is than the node's fastest allowed choice (the fastest weighs 0, which keeps the cores small); each transform
    is a soft 'not this' weighted by its time. A fused group is one soft constraint, on its first member, weighted
    by its time minus its members' fastest ungrouped choices ('this' when the group is faster): a soft per member
    made the search 30x slower on MobileNetV2. An interleaved gather and its producers' strided choices are picked
    together too, so each producer's least strided delta moves onto the gather's soft (`time_softs`): a soft per
    strided writer made GoogLeNet's walk several times slower (BENCHMARKS.md, the frontier). On timeout: the best
    plan found that `accept`s (meets the caps), else `known`, with the best proven lower bound. When the first
    slice does not settle it: with `at_least_ns` (a proven lower bound on the time, say the fastest plan under a
    larger cap) a bisection between it and maxres's best plan (`descend`); without, the coarse plan (COARSE_NS) and
    a descent from it; only when that runs out, the exact MaxSAT search bounded by the best plan found: `coarse` is
    then that plan, and `extra` holds the bound. `ascend_first` (with `at_least_ns`): try `ascend` before maxres."""
    hard = [*enc.constraints, *extra, *exclusions(enc, excluded)]
    opt = z3.Optimize(ctx=enc.ctx)
    assert_all(opt, hard)
    softs = time_softs(enc, excluded)
    if softs is None:
        return Outcome(None, True, 0)
    base, soft = softs
    if ascend_first and at_least_ns is not None and coarse is None:
        settled = ascend(enc, hard, base, soft, clock, accept, at_least_ns)
        if settled is not None:
            return Outcome(picks_of(settled), True, settled.time_ns, hard=True)
    handle = add_soft_all(opt, soft, "time")
    best = None if known is None else evaluate(enc.problem, known)
    if coarse is not None and (best is None or coarse.time_ns < best.time_ns):
        best = coarse
    lower = base
    for k in itertools.count():
        result = run_slice(opt, k, clock)
        if result == z3.unsat:
            if coarse is not None:  # nothing within the coarse bound is faster: the coarse plan is the optimum
                return Outcome(picks_of(coarse), True, coarse.time_ns)
            return Outcome(None, True, 0)
        if result == z3.sat:
            plan = evaluate(enc.problem, enc.picks(opt.model()))
            claimed = base + _objective_value(handle)
            if claimed != plan.time_ns or not accept(plan):
                raise AssertionError(f"solver encoding disagrees with evaluate: time {claimed} vs {plan.time_ns} ns, "
                                     f"or the plan breaks a cap")
            if coarse is not None and coarse.time_ns < plan.time_ns:
                plan = coarse
            return Outcome(picks_of(plan), True, plan.time_ns)
        if k == 0 and coarse is None and not clock.expired():
            found = _incumbent(enc, opt, accept) if at_least_ns is not None else None
            if found is not None and at_least_ns is not None:
                at_least_ns = max(at_least_ns, base + _soft_lower(handle))
            else:
                found, at_least_ns = _coarse_plan(enc, hard, soft, clock, accept), None
            if found is not None:
                found, proven = descend(enc, hard, base, soft, found, clock, accept, at_least_ns)
                if proven:
                    return Outcome(picks_of(found), True, found.time_ns, hard=True)
                # the exact search again, from its first slice, within the bound of the best plan found
                units = tuple((z3.Not(lit), w // COARSE_NS) for lit, w in soft if w >= COARSE_NS)
                bound = pb_le(units, (found.time_ns - base - 1) // COARSE_NS, enc.ctx)
                return replace(min_time(enc, [*extra, bound], clock, excluded, known, accept, coarse=found),
                               hard=True)
        lower = max(lower, base + _soft_lower(handle))
        found = _incumbent(enc, opt, accept)  # out of budget: maxres keeps its best model so far
        if found is not None and (best is None or found.time_ns < best.time_ns):
            best = found
        if clock.expired():
            break
    if best is None:
        return Outcome(None, False, lower)
    return Outcome(picks_of(best), False, min(lower, best.time_ns))


def _incumbent(enc: Encoding, opt: z3.Optimize, accept: Callable[[Plan], bool]) -> Plan | None:
    """The best plan maxres holds after a slice that ran out (None: none, or one that breaks a cap)."""
    try:
        found = evaluate(enc.problem, enc.picks(opt.model()))
    except (z3.Z3Exception, AssertionError, ValueError):
        return None
    return found if accept(found) else None


def time_softs(enc: Encoding, excluded: Excluded) -> tuple[int, list[tuple[z3.BoolRef, int]]] | None:
    """min_time's objective as (constant ns, soft constraints): the plan's time is the constant plus the weights of
    the soft constraints it breaks. None: some node has no allowed choice."""
    soft, base = [], enc.time_const
    group_delta: dict[str, int] = {}  # a fused group's time minus its members' fastest ungrouped choices
    group_literal: dict[str, z3.BoolRef] = {}
    delta: dict[tuple[int, int], int] = {}  # an ungrouped choice's time minus its node's fastest ungrouped choice
    for i, (xs, node) in enumerate(zip(enc.x, enc.problem.nodes)):
        allowed = [(k, to_ns(c.time_ms), c.group) for k, c in enumerate(node.choices) if (i, k) not in excluded]
        if not allowed:
            return None
        fastest = min((ns for _, ns, g in allowed if not g), default=min(ns for _, ns, _ in allowed))
        base += fastest
        for k, ns, g in allowed:
            if g:
                group_delta[g] = group_delta.get(g, 0) + ns - fastest
                group_literal.setdefault(g, xs[k])
            else:
                delta[(i, k)] = ns - fastest
    for gather, writers in gather_writers(enc, excluded).items():
        # A gather and its strided writers are picked together, like a group's members: each writer's least
        # strided delta moves onto the gather's soft (one core for the trade, not one per member), the rest stays.
        for choices in writers:
            least = min(delta[w] for w in choices)
            delta[gather] += least
            for w in choices:
                delta[w] -= least
    soft += [(not_(enc.x[i][k]), d) for (i, k), d in delta.items() if d > 0]
    for g, d in sorted(group_delta.items()):  # members are picked together: one soft per group
        if d > 0:
            soft.append((not_(group_literal[g]), d))
        elif d < 0:  # faster than the fastest ungrouped choices: the bonus counted in, refunded if not picked
            base += d
            soft.append((group_literal[g], -d))
    soft += [(not_(v), w) for v, w in enc.transform_terms if w > 0]
    return base, soft


def gather_writers(enc: Encoding, excluded: Excluded) -> dict[tuple[int, int], list[list[tuple[int, int]]]]:
    """Each allowed interleaved gather that is its node's only allowed one, with, per input, the producer's
    allowed strided choices: the encoding picks it exactly when each producer picks one of them (a strided writer
    only with an interleaved gather of its reader, the gather only with every producer strided). Gathers some
    producer cannot write strided for are left out (never picked)."""
    p, producer = enc.problem, enc.topo.producer_step
    out: dict[tuple[int, int], list[list[tuple[int, int]]]] = {}
    for r, node in enumerate(p.nodes):
        gathers = [(r, k) for k, c in enumerate(node.choices) if c.interleave and (r, k) not in excluded]
        if len(gathers) != 1:
            continue
        writers = [[(q, k) for k, c in enumerate(p.nodes[q].choices) if c.strided_out and (q, k) not in excluded]
                   for q in (producer[t] for t in node.inputs)]
        if all(writers):
            out[gathers[0]] = writers
    return out


def _coarse_plan(enc: Encoding, hard: list[z3.BoolRef], soft: list[tuple[z3.BoolRef, int]], clock: Clock,
                 accept: Callable[[Plan], bool]) -> Plan | None:
    """The fastest plan with every soft weight floored to COARSE_NS (see there), in the same slices as min_time;
    None if the clock ends first."""
    opt = z3.Optimize(ctx=enc.ctx)
    assert_all(opt, hard)
    add_soft_all(opt, [(lit, w // COARSE_NS) for lit, w in soft if w >= COARSE_NS], "coarse")
    for k in itertools.count():
        result = run_slice(opt, k, clock)
        if result == z3.sat:
            plan = evaluate(enc.problem, enc.picks(opt.model()))
            return plan if accept(plan) else None
        if result == z3.unsat or clock.expired():
            return None
    return None  # unreachable: itertools.count never ends


def descend(enc: Encoding, hard: list[z3.BoolRef], base: int, soft: list[tuple[z3.BoolRef, int]], plan: Plan,
            clock: Clock, accept: Callable[[Plan], bool], lower: int | None = None) -> tuple[Plan, bool]:
    """From `plan`, a plan under the hard constraints, plain SAT checks on the soft weights broken (one
    pseudo-boolean sum): is there a plan faster than t? Each "yes" is a faster plan, each "no" a proven lower bound;
    when no plan is faster than the best found, it is the exact optimum (True). `lower`: a proven lower bound on
    the time, which makes t bisect between it and the best plan; without one t is just below the best plan (a
    linear descent, for a start already close, like the coarse plan). After a check that raised the lower bound,
    the next one asks just below the best plan, once per plan: the best plan is often the optimum (a model lands on
    a real plan, the midpoints rarely do), and then one "no" proves it where bisecting on would take about
    log2(gap) more. Each check has at most DESCENT_STEP_RLIMIT: (best plan, False) when one runs out or the clock
    ends."""
    checks = FasterThan(enc, hard, base, soft, accept)
    probed = plan.time_ns  # the plan last asked about just below (not the start's: it is rarely the optimum)
    raised = False  # the last check raised the lower bound
    while not clock.expired():
        if lower is not None and lower >= plan.time_ns:
            return plan, True
        if lower is None or (raised and probed != plan.time_ns):
            faster_than = probed = plan.time_ns
        else:
            faster_than = (lower + plan.time_ns + 1) // 2
        result, faster = checks.run(faster_than, clock)
        raised = result == z3.unsat
        if result == z3.unsat:
            if lower is None or faster_than >= plan.time_ns:
                return plan, True
            lower = faster_than
            continue
        if faster is None:
            break
        plan = faster
    return plan, False


class FasterThan:
    """Plain SAT checks on one solver holding the hard constraints: "is there a plan faster than t?" (the soft
    weights broken, one pseudo-boolean sum), each within DESCENT_STEP_RLIMIT, charged the work it did."""

    def __init__(self, enc: Encoding, hard: list[z3.BoolRef], base: int, soft: list[tuple[z3.BoolRef, int]],
                 accept: Callable[[Plan], bool]) -> None:
        self.enc, self.base, self.accept = enc, base, accept
        self.solver = z3.Solver(ctx=enc.ctx)
        self.solver.set("random_seed", SEED)
        assert_all(self.solver, hard)
        self.broken = tuple((z3.Not(lit), w) for lit, w in soft)

    def run(self, faster_than: int, clock: Clock) -> tuple[z3.CheckSatResult, Plan | None]:
        """The check's result, and on sat the plan rebuilt from the model (it must be as fast as asked)."""
        self.solver.push()
        self.solver.add(pb_le(self.broken, faster_than - self.base - 1, self.enc.ctx))
        result = clock.run(self.solver, DESCENT_STEP_RLIMIT, charge_used=True)
        model = self.solver.model() if result == z3.sat else None
        self.solver.pop()
        if model is None:
            return result, None
        faster = evaluate(self.enc.problem, self.enc.picks(model))
        if not self.accept(faster) or faster.time_ns >= faster_than:
            raise AssertionError(f"solver encoding disagrees with evaluate: a plan faster than {faster_than} ns "
                                 f"takes {faster.time_ns} ns, or breaks a cap")
        return result, faster


def ascend(enc: Encoding, hard: list[z3.BoolRef], base: int, soft: list[tuple[z3.BoolRef, int]], clock: Clock,
           accept: Callable[[Plan], bool], lower: int) -> Plan | None:
    """The fastest plan from a proven lower bound up, within ASCENT_WORK of the clock's work: plain SAT checks "is
    there a plan faster than lower + d?", d from COARSE_NS doubling; each "no" raises the proven bound to lower + d,
    the first "yes" is a plan, from which `descend` bisects down to the bound. None when the checks or the descent
    run out (the caller's maxres then answers, as without it). Near a walk's floor the next point is often a few
    microseconds slower than the last, where maxres's first slice spends its whole budget settling nothing."""
    limited = Clock(clock.limit_s, work=ASCENT_WORK if clock.work is None else min(ASCENT_WORK, clock.work -
                                                                                   clock.work_used))
    checks = FasterThan(enc, hard, base, soft, accept)
    top = base + sum(w for _, w in soft) + 1  # every plan is faster than this: "no" here means no plan at all
    step, found = COARSE_NS, None
    try:
        while found is None and not limited.expired():
            faster_than = min(lower + step, top)
            result, found = checks.run(faster_than, limited)
            if result == z3.unsat:
                if faster_than >= top:
                    return None  # no plan under these constraints: maxres proves it as before
                lower, step = faster_than, step * 2
            elif found is None:
                return None
        if found is None:
            return None
        plan, proven = descend(enc, hard, base, soft, found, limited, accept, lower)
        return plan if proven else None
    finally:
        clock.used += limited.used
        clock.work_used += limited.work_used


def min_peak(enc: Encoding, extra: list[z3.BoolRef], clock: Clock, floor: int,
             infeasible: Callable[[int], Excluded]) -> Outcome:
    """Smallest-peak plan under the extra constraints. `floor` is a proven lower bound on any plan's peak and
    `infeasible(cap)` the choices that cannot fit under a cap. The first probe is at the floor (often the answer:
    the peak is where a big layer's tensors must be live together); then any plan, then bisection in units of the
    alignment between what is proven impossible and the best plan found."""
    align = enc.problem.alignment
    enc.memory()  # the memory definitions join enc.constraints
    solver = z3.Solver(ctx=enc.ctx)
    solver.set("random_seed", SEED)
    assert_all(solver, [*enc.constraints, *extra])

    def probe(units: int | None) -> tuple[z3.CheckSatResult, Plan | None]:
        solver.push()
        if units is not None:
            assert_all(solver, [*enc.memory_at_most(units * align), *exclusions(enc, infeasible(units * align))])
        result = clock.run(solver)
        plan = evaluate(enc.problem, enc.picks(solver.model())) if result == z3.sat else None
        solver.pop()
        if plan is not None and units is not None and plan.peak_bytes > units * align:
            raise AssertionError(f"solver encoding disagrees with evaluate: a plan under the {units * align}-byte "
                                 f"cap peaks at {plan.peak_bytes} bytes")
        return result, plan

    lo = -(-floor // align)  # caps below lo * align are impossible
    result, plan = probe(lo)
    if result == z3.unsat:
        lo += 1
        result, plan = probe(None)
        if result == z3.unsat:
            return Outcome(None, True, 0)
    if plan is None:
        return Outcome(None, False, lo * align)
    best, hi = picks_of(plan), plan.peak_bytes // align  # a plan with peak hi * align exists
    while lo < hi:
        mid = (lo + hi) // 2
        result, plan = probe(mid)
        if plan is not None:
            best, hi = picks_of(plan), plan.peak_bytes // align
        elif result == z3.unsat:
            lo = mid + 1
        else:
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
