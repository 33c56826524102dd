"""A Session: one problem, pruned and encoded once, asked many questions (a fastest plan, a fastest plan under
each of several budgets, the smallest peak) — so a Pareto sweep or the build's decision pays for the encoding once
and reuses every answer it has proven.

What makes it fast, besides encoding once:
* Budget pruning (`excluded`). At step i the tensors take between lo[i] and hi[i] bytes whatever the choices
  (encode.tensor_bytes_range). Under a cap B, a choice whose workspace w has lo[i] + w > B can never be picked;
  and among choices of one kind (Choice.kind: same layouts, aliasing and group, so they affect every other step
  identically), once a choice is safe (hi[i] + w <= B) every slower choice of that kind is dominated by it.
  Without a cap that leaves the fastest choice of each kind.
* Group dominance (`_dominated_groups`). A fused group slower than running its members one by one (each member's
  fastest plain choice with the group member's layouts, so no transform changes) is only ever picked to save
  memory inside its span of steps. Where every step of that span is safe under the cap (hi + the largest workspace
  <= cap), the ungrouped members fit as well and are faster, so the group cannot be in a fastest plan: it never
  enters the question (with tiling on, most of GoogLeNet's Inception groups, which made the walk's MaxSAT slow).
* Interval reuse. The fastest plan under a cap c0 (proven), with peak p, is also the fastest under every cap in
  [p, c0]: a later question in that range is answered without Z3. The fastest plan without a cap that fits the
  budget IS the answer; the tie-break's question "fastest with a smaller peak" is the next budget down's answer.
  Below p, the time of that plan is a proven lower bound (a plan under a smaller cap is one under c0): a question
  the first MaxSAT slice leaves open bisects between it and maxres's best plan with plain SAT checks
  (search.descend), which prove "no plan is faster" far quicker than maxres's cores do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

from tasobuild.errors import UserError
from tasobuild.solve.encode import encode
from tasobuild.solve.plan import Plan, evaluate, to_ns
from tasobuild.solve.problem import Choice, Problem, group_members, overlap_saving, prune
from tasobuild.solve.search import Clock, Excluded, Outcome, min_peak, min_time

OBJECTIVES = ("latency", "memory")
# Z3 resource units (rlimit, as search.Clock charges them: each check's whole grant) the frontier walk may spend
# per second of its time limit: a 10 s limit covers the walks that took a few CPU seconds (BENCHMARKS.md, frontier).
WALK_WORK_PER_S = 10_000_000
NO_TRANSFORM = "no plan exists: the layouts cannot be reconciled because a needed layout transform is missing"


def pruned(problem: Problem) -> Problem:
    """The same problem with dominated choices removed from every node."""
    return replace(problem, nodes=tuple(replace(n, choices=prune(n.choices)) for n in problem.nodes))


@dataclass(frozen=True)
class _Fastest:
    """A proven answer: `plan` is a fastest plan among those with peak <= cap (None: no cap)."""
    cap: int | None
    plan: Plan

    def answers(self, cap: int | None) -> bool:
        if cap is None:
            return self.cap is None
        return self.plan.peak_bytes <= cap and (self.cap is None or cap <= self.cap)


class Session:
    """Solves one problem many ways. Results depend only on the problem and the sequence of questions asked."""

    def __init__(self, problem: Problem) -> None:
        self.original = problem
        self.problem = pruned(problem)
        self.enc = encode(self.problem)
        self._proven: list[_Fastest] = []
        self._hard = False  # the last fastest-plan question needed more than maxres's first slice
        self._excluded: dict[int | None, Excluded] = {}

    # ---- facts that hold whatever the choices ----
    @functools.cached_property
    def _workspace(self) -> tuple[tuple[int, ...], ...]:
        """Per node, per choice: its aligned workspace, less what its output overlapping its input saves."""
        return tuple(tuple(self.problem.aligned(c.workspace_bytes) - overlap_saving(self.problem, i, c)
                           for c in n.choices) for i, n in enumerate(self.problem.nodes))

    @functools.cached_property
    def floor(self) -> int:
        """A proven lower bound on every plan's peak: the most tensor bytes some step always holds, plus the
        smallest workspace its node can run with."""
        lo, _ = self.enc.tensor_bytes_range()
        least_ws = [min(ws) for ws in self._workspace] + [0]  # the epilogue step runs no node
        return max(b + w for b, w in zip(lo, least_ws))

    def infeasible(self, cap: int) -> Excluded:
        """Choices whose workspace cannot fit under the cap next to the tensors their step always holds."""
        lo, _ = self.enc.tensor_bytes_range()
        return frozenset((i, k) for i, ws in enumerate(self._workspace) for k, w in enumerate(ws) if lo[i] + w > cap)

    def excluded(self, cap: int | None) -> Excluded:
        """Choices no fastest plan under the cap needs (module docstring: budget pruning)."""
        if cap not in self._excluded:
            self._excluded[cap] = self._dominated_or_infeasible(cap)
        return self._excluded[cap]

    def _dominated_or_infeasible(self, cap: int | None) -> Excluded:
        lo, hi = self.enc.tensor_bytes_range()
        out: set[tuple[int, int]] = set()
        for i, by_speed in enumerate(self._by_speed):
            safe_kinds: set[tuple[str, str, bool, str, int, bool, bool]] = set()
            for k, kind in by_speed:
                w = self._workspace[i][k]
                if kind in safe_kinds or (cap is not None and lo[i] + w > cap):
                    out.add((i, k))
                elif cap is None or hi[i] + w <= cap:
                    safe_kinds.add(kind)
        for members, worst in self._slower_groups:
            if cap is None or worst <= cap:
                out.update(members)
        return frozenset(out)

    @functools.cached_property
    def _by_speed(self) -> tuple[tuple[tuple[int, tuple[str, str, bool, str, int, bool, bool]], ...], ...]:
        """Per node, its choices' (index, kind), fastest first: what budget pruning walks at every cap."""
        return tuple(tuple((k, node.choices[k].kind)
                           for k in sorted(range(len(node.choices)), key=lambda k: (to_ns(node.choices[k].time_ms), k)))
                     for node in self.problem.nodes)

    @functools.cached_property
    def _slower_groups(self) -> tuple[tuple[tuple[tuple[int, int], ...], int], ...]:
        """The fused groups strictly slower than their members run one by one (module docstring: group dominance),
        each with the most memory any of its span's steps can take whatever the choices (the cap at and above which
        the group is dominated). A group whose members' outputs are read outside its span, or a member without a
        plain alternative of the same layouts, is left out."""
        _, hi = self.enc.tensor_bytes_range()
        consumers = self.enc.topo.consumer_steps
        out = []
        for members in group_members(self.problem).values():
            first, last = members[0][0], members[-1][0]
            if any(not set(consumers[self.problem.nodes[i].output]) <= set(range(first, last + 1))
                   for i, _ in members[:-1]):
                continue
            grouped = alone = 0
            for i, k in members:
                c = self.problem.nodes[i].choices[k]
                plain = [to_ns(d.time_ms) for d in self.problem.nodes[i].choices
                         if not d.group and not d.no_buffer and not d.gathers and not d.strided_out
                         and (d.layout_in, d.layout_out) == (c.layout_in, c.layout_out)]
                if not plain:
                    break
                grouped, alone = grouped + to_ns(c.time_ms), alone + min(plain)
            else:
                if alone < grouped:
                    worst = max(hi[s] + max(self._workspace[s]) for s in range(first, last + 1))
                    out.append((tuple(members), worst))
        return tuple(out)

    # ---- the questions ----
    def solve(self, budget_bytes: int | None, objective: str = "latency", latency_budget_ms: float | None = None,
              time_limit_s: float = 10.0, tie_break: bool = True, clock: Clock | None = None) -> Plan:
        """Contract: tasobuild.solve.solve. `clock`: the limit to solve within instead of `time_limit_s`."""
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if latency_budget_ms is not None and objective != "memory":
            raise ValueError("latency_budget_ms applies to the 'memory' objective only")
        clock = clock or Clock(time_limit_s)
        if objective == "latency":
            first = self.fastest_under(budget_bytes, clock)
            if first.picks is None:
                self._no_plan(first, budget_bytes, None, time_limit_s)
            assert first.picks is not None
            picks, second = first.picks, "skipped"
            if tie_break and first.proven:
                picks, second_proven = smallest_peak_at_same_time(self.problem, picks,
                                                                  lambda cap: self.fastest_under(cap, clock))
                second = "optimal" if second_proven else "feasible"
            bound: float = first.bound / 1e6
        else:
            first = self._smallest_peak(budget_bytes, latency_budget_ms, clock)
            if first.picks is None:
                self._no_plan(first, budget_bytes, latency_budget_ms, time_limit_s)
            assert first.picks is not None
            picks, second = first.picks, "skipped"
            if tie_break and first.proven:
                # the fastest plan at that peak; within the latency budget, as some plan at that peak is
                tie = self.fastest_under(evaluate(self.problem, picks).peak_bytes, clock, known=picks)
                picks, second = tie.picks or picks, "optimal" if tie.proven else "feasible"
            bound = first.bound
        return evaluate(self.problem, picks, objective=objective, status="optimal" if first.proven else "feasible",
                        tie_break=second, bound=bound, solver_seconds=clock.used)

    def min_peak_bytes(self, latency_budget_ms: float | None = None, time_limit_s: float = 10.0) -> int:
        """Contract: tasobuild.solve.min_peak_bytes."""
        found = self._smallest_peak(None, latency_budget_ms, Clock(time_limit_s))
        if not found.proven:
            raise UserError(f"the solver could not find the smallest memory budget within {time_limit_s:g} s; "
                            f"raise its time limit")
        if found.picks is None:
            raise UserError(NO_TRANSFORM if latency_budget_ms is None else
                            f"no plan meets the latency budget of {latency_budget_ms:g} ms")
        return evaluate(self.problem, found.picks).peak_bytes

    def pareto(self, points: int = 10, time_limit_s: float = 10.0) -> list[Plan]:
        """Contract: tasobuild.solve.pareto. First the walk down the frontier (`walk`): when it reaches the
        smallest peak within `points` plans and the time limit, that is the whole frontier. Otherwise evenly spaced
        budgets, solved largest first, so each answer's interval (see _Fastest) covers the budgets below it down to
        its peak for free (and the walk's proven answers are reused)."""
        if points < 2:
            raise ValueError("pareto needs at least 2 points")
        walked = self.walk(points, time_limit_s)
        return walked if walked is not None else self.spaced(points, time_limit_s)

    def spaced(self, points: int, time_limit_s: float = 10.0) -> list[Plan]:
        """The smallest-peak plan, the fastest plan and the fastest plans under points - 2 evenly spaced budgets
        between their peaks, dominated points and duplicates removed (Session.pareto)."""
        smallest = self.solve(None, objective="memory", time_limit_s=time_limit_s)
        fastest = self.solve(None, time_limit_s=time_limit_s)
        lo, hi, align = smallest.peak_bytes, fastest.peak_bytes, self.problem.alignment
        budgets = sorted({(lo + (hi - lo) * k // (points - 1)) // align * align for k in range(1, points - 1)},
                         reverse=True)
        plans = [smallest, fastest] + [self.solve(b, time_limit_s=time_limit_s) for b in budgets if lo < b < hi]
        frontier: dict[tuple[int, int], Plan] = {}
        for plan in sorted(plans, key=lambda p: (p.peak_bytes, p.time_ns)):
            frontier.setdefault((plan.peak_bytes, plan.time_ns), plan)
        out: list[Plan] = []
        for plan in frontier.values():
            if not out or plan.time_ns < out[-1].time_ns:  # drop a point no faster than a smaller one
                out.append(plan)
        return out

    def walk(self, points: int, time_limit_s: float = 10.0) -> list[Plan] | None:
        """Every point of the frontier, by increasing memory, if there are at most `points` and all are proven
        within `time_limit_s` in all (the walk costs pareto at most that before it falls back); else None. From the
        fastest plan (the smallest peak among the fastest), ask for the fastest plan with a smaller peak (then the
        smallest peak at its time) until none exists: each answer is the next point down, and "none" proves the
        last one has the smallest peak, so no point is missed. The last question is usually free (a cap under the
        floor has no plan), and no smallest-peak search is needed. The limit is Z3 work (WALK_WORK_PER_S units a
        second, Clock's `work`), not wall-clock time, so whether the walk ends in time does not depend on the
        machine's load: the same problem gives the same frontier."""
        left = int(WALK_WORK_PER_S * time_limit_s)

        def clock() -> Clock:
            return Clock(time_limit_s, work=left)

        asked = clock()
        plan = self.solve(None, clock=asked)
        left -= asked.work_used
        found = [plan]
        while plan.status == "optimal" and plan.tie_break == "optimal" and len(found) <= points:
            asked = clock()
            below = self.fastest_under(plan.peak_bytes - 1, asked)  # the tie break's question: answered
            left -= asked.work_used
            if not below.proven or left <= 0:
                return None
            if below.picks is None:
                return found[::-1] if len(found) <= points else None
            asked = clock()
            plan = self.solve(plan.peak_bytes - 1, clock=asked)
            left -= asked.work_used
            found.append(plan)
        return None

    # ---- searches, with reuse ----
    def fastest_under(self, cap: int | None, clock: Clock, known: tuple[Choice, ...] | None = None) -> Outcome:
        """The fastest plan with peak <= cap (None: no cap). `known`: a plan under the cap, the fallback."""
        for answer in self._proven:
            if answer.answers(cap):
                return Outcome(tuple(c for _, c in answer.plan.choices), True, answer.plan.time_ns)
        if cap is not None and cap < self.floor:
            return Outcome(None, True, 0)
        if known is None and cap is None:
            known = self._greedy_picks()
        extra = [] if cap is None else self.enc.memory_at_most(cap)
        # a plan under this cap is one under every larger cap: no faster than the fastest there (interval bound)
        at_least = max((a.plan.time_ns for a in self._proven if cap is not None and (a.cap is None or a.cap >= cap)),
                       default=None)
        found = min_time(self.enc, extra, clock, self.excluded(cap), known,
                         accept=lambda plan: cap is None or plan.peak_bytes <= cap, at_least_ns=at_least,
                         ascend_first=self._hard)
        self._hard = found.hard  # hard questions come in runs: after one, the next ascends first
        if found.proven and found.picks is not None:
            self._proven.append(_Fastest(cap, evaluate(self.problem, found.picks)))
        return found

    def _smallest_peak(self, cap: int | None, latency_budget_ms: float | None, clock: Clock) -> Outcome:
        """The smallest-peak plan with peak <= cap (None: any) and time within the latency budget (None: any)."""
        if latency_budget_ms is not None:
            return self._smallest_peak_within(cap, to_ns(latency_budget_ms), clock)
        extra = [] if cap is None else self.enc.memory_at_most(cap)
        return min_peak(self.enc, extra, clock, self.floor, self.infeasible)

    def _smallest_peak_within(self, cap: int | None, limit_ns: int, clock: Clock) -> Outcome:
        """Under a latency budget, bisect on the memory cap with fastest-plan questions (a plan within the budget
        exists under cap c iff the fastest plan under c is within it). MaxSAT answers those quickly, where a
        pseudo-boolean time limit in a plain SAT search does not; each answer's peak (often far below the cap
        asked) tightens the bracket, and the last one is also the memory objective's tie break, already proven."""
        align = self.problem.alignment
        top = self.fastest_under(cap, clock)
        if top.picks is None or not top.proven:
            return Outcome(None, top.proven, 0) if top.picks is None else Outcome(None, False, self.floor)
        best = evaluate(self.problem, top.picks)
        if best.time_ns > limit_ns:
            return Outcome(None, True, 0)
        lo, hi = -(-self.floor // align), best.peak_bytes // align
        while lo < hi:
            mid = lo if lo + 1 == hi else (lo + hi) // 2
            found = self.fastest_under(mid * align, clock)
            if not found.proven:
                return Outcome(tuple(c for _, c in best.choices), False, lo * align)
            plan = None if found.picks is None else evaluate(self.problem, found.picks)
            if plan is not None and plan.time_ns <= limit_ns:
                best, hi = plan, plan.peak_bytes // align
            else:
                lo = mid + 1
        return Outcome(tuple(c for _, c in best.choices), True, hi * align)

    def _greedy_picks(self) -> tuple[Choice, ...] | None:
        """The greedy plan's choices: a fallback for a timed-out solve without a cap."""
        picks = tuple(min(n.choices, key=lambda c: (c.time_ms, c.workspace_bytes, c.primitive))
                      for n in self.problem.nodes)
        try:
            evaluate(self.problem, picks)
        except ValueError:
            return None
        return picks

    def _no_plan(self, outcome: Outcome, budget_bytes: int | None, latency_budget_ms: float | None,
                 time_limit_s: float) -> None:
        """Raise the UserError that explains why there is no plan."""
        if not outcome.proven:
            raise UserError(f"the solver found no plan within its {time_limit_s:g} s time limit; raise the time "
                            f"limit or the memory budget")
        if latency_budget_ms is not None:
            try:
                self.min_peak_bytes(latency_budget_ms, time_limit_s)
            except UserError:
                fastest = self.solve(None, time_limit_s=time_limit_s, tie_break=False)
                raise UserError(f"latency budget {latency_budget_ms:g} ms is too tight: the fastest plan takes "
                                f"{fastest.predicted_ms:.6g} ms; raise the latency budget") from None
        if budget_bytes is not None:
            need = self.min_peak_bytes(latency_budget_ms, time_limit_s)
            within = "" if latency_budget_ms is None else f" within {latency_budget_ms:g} ms"
            raise UserError(f"memory budget {budget_bytes} bytes is too small: the smallest budget with a plan"
                            f"{within} is {need} bytes ({_human(need)}); raise the budget ([constraints] memory "
                            f"or --memory) to at least that")
        raise UserError(NO_TRANSFORM)


def smallest_peak_at_same_time(problem: Problem, picks: tuple[Choice, ...],
                               fastest_under: Callable[[int], Outcome]) -> tuple[tuple[Choice, ...], bool]:
    """Among plans as fast as `picks`, one with the smallest peak (and whether that is proven): ask for the fastest
    plan with a smaller peak until it is slower (or there is none). Usually one question settles it, and its answer
    is the next point down the frontier."""
    while True:
        plan = evaluate(problem, picks)
        better = fastest_under(plan.peak_bytes - 1)
        if not better.proven:
            if better.picks is not None and evaluate(problem, better.picks).time_ns <= plan.time_ns:
                picks = better.picks  # as fast and smaller, though maybe not the smallest
            return picks, False
        if better.picks is None or evaluate(problem, better.picks).time_ns > plan.time_ns:
            return picks, True
        picks = better.picks


def _human(n: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} B"


__all__ = ["NO_TRANSFORM", "OBJECTIVES", "Session", "pruned", "smallest_peak_at_same_time"]
