"""The memory-latency frontier as a user reads it: each point labelled (A, B, ... by growing arena) with what it
runs (the convolution families, the fused groups, how many layers differ from the fastest point), the baselines
it is measured against, the budget, and why there is a single point when there is one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from string import ascii_uppercase

from tasobuild.decide import place
from tasobuild.memory import ArenaPlan, align_up
from tasobuild.solve import Plan, Problem, Session
from tasobuild.units import format_size

# What the baselines are, in the words the plot, the table and the report use.
BASELINE_MEANING = {
    "greedy": "every layer's fastest primitive on its own, layout transforms where layouts meet, no memory limit",
    "time_only": "the fastest plan as a whole (Z3), no memory limit",
}


@dataclass(frozen=True)
class Point:
    """One plan of the frontier."""

    label: str  # "A", "B", ...: A has the smallest arena
    arena_bytes: int  # placed
    peak_bytes: int  # the most bytes live at one step: no placement is smaller
    predicted_ms: float
    status: str  # the solver's: "optimal" | "feasible"
    tie_break: str
    conv_families: tuple[tuple[str, int], ...]  # (primitive family, convolutions running it), sorted by family
    fused_groups: int  # fused tiling groups the plan runs
    changed_layers: int  # layers whose choice differs from the fastest point's
    # The fused groups: the lock's names (layers, kind and its parameter: "l1-l2 rows=4") by first layer, each with
    # " over its input" where the placed arena has its output overlap its input (memory.Overlap).
    tiled: tuple[str, ...] = ()

    @property
    def what(self) -> str:
        """What the plan runs, in a few words: "conv: depthwise 4, direct 4, mec 1; 2 fused groups (l1-l2 rows=4
        over its input, l6-l7 channels=16 HWC)"."""
        parts = ["conv: " + ", ".join(f"{family} {n}" for family, n in self.conv_families)] \
            if self.conv_families else []
        if self.fused_groups:
            parts.append(f"{self.fused_groups} fused group{'s' if self.fused_groups > 1 else ''}"
                         + (f" ({', '.join(self.tiled)})" if self.tiled else ""))
        if self.changed_layers:
            parts.append(f"{self.changed_layers} layer{'s' if self.changed_layers > 1 else ''} unlike the fastest")
        return "; ".join(parts) or "no convolutions"


@dataclass(frozen=True)
class Baseline:
    name: str  # "greedy" | "time_only"
    arena_bytes: int
    predicted_ms: float

    @property
    def meaning(self) -> str:
        return BASELINE_MEANING.get(self.name, self.name)


@dataclass(frozen=True)
class Frontier:
    project: str
    points: tuple[Point, ...]  # by growing arena, so by falling time
    baselines: tuple[Baseline, ...]  # sorted by name
    budget_bytes: int
    seconds: float = field(default=0.0, compare=False)  # solving time: shown by the command, never in a file

    @property
    def note(self) -> str:
        """Why the frontier looks as it does, when that needs saying (a single point), else ""."""
        if len(self.points) != 1:
            return ""
        p = self.points[0]
        return (f"one point: the fastest plan ({p.predicted_ms:.3f} ms) is also the one with the smallest peak of "
                f"live buffers ({format_size(p.peak_bytes)}), so every budget from {format_size(p.arena_bytes)} up "
                f"gives this same plan, and no budget below it has one")


def frontier_of(project: str, plans: Sequence[Plan], baselines: Mapping[str, Mapping[str, float]],
                budget_bytes: int, families: Mapping[str, tuple[str, str]], time_limit_s: float,
                seconds: float = 0.0) -> Frontier:
    """The frontier of `plans` (solve.pareto's), labelled. `families`: primitive name -> (op, family)."""
    placed = sorted(((place(p, time_limit_s), p) for p in plans),
                    key=lambda ap: (ap[0].arena_bytes, ap[1].predicted_ms))
    fastest = min(plans, key=lambda p: (p.time_ns, p.peak_bytes)).chosen if plans else {}
    points = []
    for label, (arena, plan) in zip(_labels(len(placed)), placed):
        convs = Counter(families[c.primitive][1] for _, c in plan.choices
                        if families.get(c.primitive, ("", ""))[0] == "conv")
        points.append(Point(
            label=label, arena_bytes=int(arena.arena_bytes), peak_bytes=int(plan.peak_bytes),
            predicted_ms=float(plan.predicted_ms), status=plan.status, tie_break=plan.tie_break,
            conv_families=tuple(sorted(convs.items())),
            fused_groups=len({c.group for _, c in plan.choices if c.group}),
            changed_layers=sum(1 for name, c in plan.choices if fastest.get(name) != c),
            tiled=tiled_groups(plan, arena)))
    base = tuple(Baseline(name, int(b["arena_bytes"]), float(b["predicted_ms"])) for name, b in sorted(
        baselines.items()))
    return Frontier(project, tuple(points), base, budget_bytes, seconds)


def tiled_groups(plan: Plan, arena: ArenaPlan) -> tuple[str, ...]:
    """The plan's fused groups by first layer ("l1-l2 rows=4"), " over its input" where the arena overlaps them."""
    offsets, sizes = arena.offset_map(), {b.name: align_up(b.size, arena.alignment) for b in plan.buffers()}
    over = {o.step for o in plan.overlaps  # an overlap is at the group's step, its last member's
            if offsets[o.output] < offsets[o.input] + sizes[o.input] and offsets[o.input] < offsets[o.output]
            + sizes[o.output]}
    last = [(step, c.group, step in over) for step, (_, c) in enumerate(plan.choices) if c.group and not c.deferred]
    first = {group: min(step for step, (_, c) in enumerate(plan.choices) if c.group == group) for _, group, _ in last}
    return tuple(group + (" over its input" if overlaps else "")
                 for _, group, overlaps in sorted(last, key=lambda s: (first[s[1]], s[1])))


def solve_frontier(problem: Problem, points: int, time_limit_s: float) -> list[Plan]:
    """solve.pareto's plans (at least 2 budgets are asked for; duplicates fold into one point)."""
    return Session(problem).pareto(points=max(points, 2), time_limit_s=time_limit_s)


def _labels(n: int) -> list[str]:
    """A, B, ..., Z, then A2, B2, ...: a frontier has at most a few dozen points."""
    return [ascii_uppercase[i % 26] + (str(i // 26 + 1) if i >= 26 else "") for i in range(n)]
