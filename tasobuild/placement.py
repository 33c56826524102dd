"""Exact arena placement: the offsets that make the arena as small as any placement can, proven with Z3.

The greedy planner (memory.plan_arena, TFLite Micro's GreedyMemoryPlanner) leaves gaps: on MobileNetV1-0.25 its
arena is 17% above the live-set bound (memory.lower_bound), the most bytes live at one step, which no placement
can beat. `place` closes them:

1. The greedy placement is the incumbent. If it reaches the live-set bound it is optimal: no solve (the fast
   path, which most chains and all single-buffer-per-step plans take).
2. Else Z3 decides "does every buffer fit below CAP?": an integer offset per buffer (in units of the alignment),
   `0 <= offset`, `offset + size <= CAP`, and for every two buffers whose lifetimes intersect, one lies wholly
   below the other (or, for an overlap pair at their step, the output at or below the input minus its lead, or
   at or above the input plus its rise where the group may run bottom to top: Z3 picks the direction).
   CAP starts at the live-set bound (usually feasible: one check proves the optimum); when it is
   proven infeasible, a bisection between the proven bound and the incumbent finds the smallest feasible CAP.
   (Interval lifetimes with sizes do not always reach the live-set bound: then the bisection proves the best.)
3. Every check has a resource budget (Z3's rlimit, counted in operations, not seconds, so that the same check
   ends at the same point on every machine) and the wall-clock limit left; a check that runs out stops the
   search: the best placement found is the answer, status "feasible", with the proven bound reported.
4. Z3's offsets are compacted: buffers, in the order of Z3's offsets (ties by name), each go to the lowest offset
   free of the ones already placed. No buffer moves up (each one's Z3 offset is still free when its turn comes),
   so the arena never grows; the offsets become the canonical ones for that order.

Deterministic: buffers are encoded sorted by name, with a fixed seed, in a Z3 context of their own; the same
buffers give the same offsets.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import replace

from tasobuild.memory import ARENA_ALIGN, ArenaPlan, Buffer, Overlap, align_up, lower_bound, lowest_free, plan_arena

SEED = 0
# Z3 operations per feasibility check: MobileNetV1's (33 buffers) takes under 0.1 M; a check that needs more than
# this is one whose answer is not worth the wait (about 2-5 s here).
CHECK_RLIMIT = 20_000_000
STATUSES = ("optimal", "feasible")  # "optimal": no placement has a smaller arena; "feasible": the best found


def place(buffers: Iterable[Buffer], alignment: int = ARENA_ALIGN, time_limit_s: float = 10.0,
          check_rlimit: int = CHECK_RLIMIT, overlaps: Sequence[Overlap] = ()) -> ArenaPlan:
    """The smallest arena for these buffers (algorithm: module docstring), with its status and proven bound.
    `check_rlimit`: Z3's budget per check (tests make it tiny to see the search stop). `overlaps`: the pairs that
    may share bytes at their step (memory.Overlap)."""
    todo = sorted(buffers, key=lambda b: b.name)
    started = time.perf_counter()
    incumbent = plan_arena(todo, alignment, overlaps)
    bound = lower_bound(todo, alignment, overlaps)
    if incumbent.arena_bytes <= bound:
        return replace(incumbent, status="optimal", bound_bytes=bound, seconds=time.perf_counter() - started)
    sized = [b for b in todo if b.size > 0]
    units = [align_up(b.size, alignment) // alignment for b in sized]
    leads = [replace(o, lead=o.lead // alignment, rise=o.rise // alignment) for o in overlaps]  # in alignment units
    lo, offsets = _bisect(sized, units, bound // alignment, incumbent.arena_bytes // alignment,
                          started + time_limit_s, check_rlimit, leads)
    if offsets is not None:
        incumbent = _compacted(todo, sized, units, offsets, alignment, leads)
    status = "optimal" if incumbent.arena_bytes <= lo * alignment else "feasible"
    return replace(incumbent, status=status, bound_bytes=lo * alignment, seconds=time.perf_counter() - started)


def _bisect(sized: Sequence[Buffer], units: Sequence[int], lo: int, hi: int, deadline: float, rlimit: int,
            leads: Sequence[Overlap]) -> tuple[int, list[int] | None]:
    """(the proven bound, the best offsets found in units, or None if none beat the incumbent's `hi`).
    Invariant: no placement fits below `lo`; one fits below `hi`."""
    import z3

    ctx = z3.Context()  # its own: Z3's shared context keeps state between solves, which changed the offsets
    solver = z3.SolverFor("QF_LIA", ctx=ctx)
    solver.set("random_seed", SEED)
    offsets = [z3.Int(f"o{i}", ctx) for i in range(len(sized))]
    cap = z3.Int("cap", ctx)
    index = {b.name: i for i, b in enumerate(sized)}
    shared = {(index[o.input], index[o.output]): o for o in leads if o.input in index and o.output in index}
    for i, (buf, size) in enumerate(zip(sized, units)):
        solver.add(offsets[i] >= 0, offsets[i] + size <= cap)
        for j in range(i):
            if buf.lives_with(sized[j]):
                apart = [offsets[i] + size <= offsets[j], offsets[j] + units[j] <= offsets[i]]
                for (a, b), pair in shared.items():
                    if {a, b} == {i, j}:
                        apart.append(offsets[b] + pair.lead <= offsets[a])
                        if pair.rise > 0:
                            apart.append(offsets[a] + pair.rise <= offsets[b])
                solver.add(z3.Or(*apart))
    best: list[int] | None = None
    target = lo  # the bound first: when it is reachable, one check proves the optimum
    while lo < hi:
        remaining_ms = int((deadline - time.perf_counter()) * 1000)
        if remaining_ms <= 0:
            break
        solver.set("timeout", remaining_ms)
        solver.set("rlimit", rlimit)
        solver.push()
        solver.add(cap <= target)
        answer = solver.check()
        if answer == z3.sat:
            model = solver.model()
            best = [model.eval(o, model_completion=True).as_long() for o in offsets]
            hi = max((o + u for o, u in zip(best, units)), default=0)
        solver.pop()
        if answer == z3.unsat:
            lo = target + 1
        elif answer != z3.sat:
            break  # out of budget: the best found stands, `lo` is what is proven
        target = (lo + hi - 1) // 2 if lo < hi else lo
    return lo, best


def _compacted(todo: Sequence[Buffer], sized: Sequence[Buffer], units: Sequence[int], offsets: Sequence[int],
               alignment: int, leads: Sequence[Overlap]) -> ArenaPlan:
    """Z3's placement, every buffer lowered as far as it goes, taken in the order of Z3's offsets (ties by name)."""
    order = sorted(range(len(sized)), key=lambda i: (offsets[i], sized[i].name))
    placed: list[tuple[Buffer, int, int]] = []  # (buffer, offset, size) in units
    for i in order:
        placed.append((sized[i], lowest_free(sized[i], units[i], placed, leads), units[i]))
    where = {b.name: off * alignment for b, off, _ in placed}
    arena = max((off + sz for _, off, sz in placed), default=0) * alignment
    return ArenaPlan(offsets=tuple((b.name, where.get(b.name, 0)) for b in todo), arena_bytes=arena,
                     alignment=alignment)
