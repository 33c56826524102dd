"""Settling close calls: a layer's measured alternatives that are within a few percent of its best are timed again,
alternating, so their order does not depend on when each was first measured (issue 19).

Calls measured one after another over a minute see different machine states (other processes, clock, caches):
SqueezeNet's calls measured in two fresh-cache builds differed by 0.72x to 1.01x, so two alternatives within ~15%
of each other could come out in either order and give another plan. Here the alternatives of one layer shape are
timed in rounds, one short batch each per round in turn (A B C, A B C, ...), and each is compared with the layer's
reference *within* a round: the median over rounds of those ratios is what decides (`settled`). Alternatives whose
ratios stay within `SettlePolicy.tie` of each other are tied, and a tie is resolved deterministically: by the
performance model's prediction (then the call key), the preferred one a hair (`tie_step`) faster. The settled costs
replace the first measurements in the cost cache, so later builds read them and time nothing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tasobuild.costs.cache import Cost
from tasobuild.primitives import KernelCall


@dataclass(frozen=True)
class SettlePolicy:
    """Which alternatives are settled and how. `close`: measured within this fraction of the layer's best (its
    measurement noise between builds); `tie`: settled within this fraction of each other; `rounds` of one batch each
    of about `batch_seconds` (at least `min_reps` runs, after `warmup` untimed ones)."""

    close: float = 0.15
    tie: float = 0.02
    rounds: int = 6  # even: with two calls, each goes first in half the rounds, so a steady drift cancels
    batch_seconds: float = 0.004
    min_reps: int = 3
    warmup: int = 2
    tie_step: float = 1e-3


SETTLE = SettlePolicy()


def close_alternatives(layer: Sequence[KernelCall], costs: Mapping[str, Cost], policy: SettlePolicy = SETTLE
                       ) -> list[KernelCall]:
    """The measured calls of one layer's alternatives within `policy.close` of the fastest measured one (sorted by
    key); empty when fewer than two."""
    timed = [c for c in layer if c.key() in costs and costs[c.key()].source == "measured"]
    if len(timed) < 2:
        return []
    best = min(costs[c.key()].median_ms for c in timed)
    close = [c for c in timed if costs[c.key()].median_ms <= best * (1.0 + policy.close)]
    return sorted(close, key=KernelCall.key) if len(close) >= 2 else []


def settled(reference_ms: float, ratios: Mapping[str, Sequence[float]], preference: Mapping[str, float],
            policy: SettlePolicy = SETTLE) -> dict[str, float]:
    """The decision rule. `ratios`: per call key, its time over the reference's in each round (the reference's own
    are 1.0); `preference`: the model's predicted ms per key (lower wins a tie). Each call's ratio is the median of
    its rounds' (`log_median`); sorted by it, a call within `policy.tie` of the first of its class joins that class
    (a tie), else starts the next. A class's calls all take its first's ratio, ordered by preference then key, the
    i-th `1 + i * tie_step` times it. Returns ms per key: `reference_ms` times the ratio."""
    median = {k: log_median(r) for k, r in ratios.items()}
    order = sorted(median, key=lambda k: (median[k], k))
    out: dict[str, float] = {}
    start = 0
    while start < len(order):
        head = median[order[start]]
        end = start
        while end < len(order) and median[order[end]] <= head * (1.0 + policy.tie):
            end += 1
        tied = sorted(order[start:end], key=lambda k: (preference.get(k, float("inf")), k))
        for i, key in enumerate(tied):
            out[key] = reference_ms * head * (1.0 + i * policy.tie_step)
        start = end
    return {k: out[k] for k in sorted(out)}


def log_median(ratios: Sequence[float]) -> float:
    """The median of ratios taken in log space: of an even count, the geometric mean of the middle two (a ratio
    1.1 x r and one r / 1.1, the same call first and second in a drifting machine, give r)."""
    return float(2.0 ** statistics.median(math.log2(max(r, 1e-12)) for r in ratios))


# One batch of a call: the seconds of each of `reps` timed runs after `warmup` untimed ones.
Batch = Callable[[KernelCall, int, int], np.ndarray]


def alternating_ratios(calls: Sequence[KernelCall], batch: Batch, costs: Mapping[str, Cost],
                       policy: SettlePolicy = SETTLE) -> dict[str, list[float]]:
    """Time `calls` (one layer's alternatives; the first is the reference) in `policy.rounds` rounds, each call one
    batch per round, the order rotated every round so none always follows the same one; per call, its batch
    median over the reference's, per round."""
    reps = {c.key(): max(policy.min_reps, int(policy.batch_seconds / max(costs[c.key()].median_ms * 1e-3, 1e-9)))
            for c in calls}
    ratios: dict[str, list[float]] = {c.key(): [] for c in calls}
    for round_ in range(policy.rounds):
        shift = round_ % len(calls)
        turn = [*calls[shift:], *calls[:shift]]
        times = {c.key(): float(np.median(batch(c, policy.warmup, reps[c.key()]))) for c in turn}
        reference = max(times[calls[0].key()], 1e-12)
        for key, seconds in times.items():
            ratios[key].append(seconds / reference)
    return ratios
