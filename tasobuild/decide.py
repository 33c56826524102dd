"""From the network, its candidates and their costs to the solver's Problem, and from there to a Plan.

The solver (tasobuild.solve) knows nothing of ONNX or kernels; this module is the only place that translates.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from tasobuild.candidates import NodeCandidates, TransformCandidate
from tasobuild.costs.cache import Cost
from tasobuild.errors import UserError
from tasobuild.ir import Graph, Node
from tasobuild.memory import ArenaPlan, check_no_overlap, with_regions
from tasobuild.placement import place as place_exactly
from tasobuild.primitives import KernelCall, Primitive
from tasobuild.solve import (
    Choice,
    Plan,
    Problem,
    ProblemNode,
    ProblemTensor,
    Session,
    greedy,
)
from tasobuild.solve.budgeted import Remember, fastest_within, forget
from tasobuild.tiling import Group

# The emitted code and the cost model both see ONNX's row-major order at the network's boundary.
BOUNDARY_LAYOUT = "CHW"


def call_time_ms(calls: Iterable[KernelCall], costs: Mapping[str, Cost]) -> float:
    return sum(costs[c.key()].median_ms for c in calls)


def to_problem(graph: Graph, nodes: tuple[NodeCandidates, ...], transforms: tuple[TransformCandidate, ...],
               costs: Mapping[str, Cost], groups: tuple[Group, ...] = ()) -> Problem:
    names = {*graph.input_tensors, *(n.output for n in graph.nodes)}
    tensors = {t: ProblemTensor(t, graph.tensor_bytes(t)) for t in names}
    fused: dict[int, list[Choice]] = {}
    for g in groups:  # the group runs at its last member's step: the workspace is counted there
        last = len(g.members) - 1
        lead, rise = (g.output_lead, g.output_rise) if overlap_allowed(graph, nodes, g.members) else (0, 0)
        for j, (index, option) in enumerate(zip(g.members, g.chosen)):
            fused.setdefault(index, []).append(
                Choice(option.primitive, g.layout, g.layout, g.member_ms[j], g.workspace_bytes if j == last else 0,
                       group=g.name, deferred=j < last, output_lead=lead if j == last else 0,
                       output_rise=rise if j == last and lead else 0))
    # a strided producer only where its reader may gather (an allow-list may have left the HWC gather out)
    sliced = {t for nc in nodes for c in nc.options if interleave(nc.node, graph, c.primitive) for t in nc.node.inputs}
    problem_nodes = tuple(
        ProblemNode(
            nc.node.name,
            nc.node.inputs,
            nc.node.output,
            tuple(
                Choice(c.primitive.name, c.primitive.layout_in, c.primitive.layout_out,
                       call_time_ms(c.calls, costs), c.workspace_bytes, c.primitive.aliases_input,
                       in_place=c.primitive.in_place, gathers=c.primitive.gathers,
                       interleave=interleave(nc.node, graph, c.primitive), strided_out=c.primitive.strided_out)
                for c in nc.options if not c.primitive.strided_out or nc.node.output in sliced
            ) + tuple(fused.get(index, ())),
        )
        for index, nc in enumerate(nodes)
    )
    return Problem(
        nodes=problem_nodes,
        tensors=dict(sorted(tensors.items())),
        graph_input=graph.input,
        input_layout=BOUNDARY_LAYOUT,
        graph_output=graph.output,
        output_layout=BOUNDARY_LAYOUT,
        transform_ms={(t.tensor, t.src, t.dst): costs[t.call.key()].median_ms for t in transforms},
        more_inputs=graph.input_tensors[1:],
        more_outputs=graph.output_tensors[1:],
    )


def interleave(node: Node, graph: Graph, primitive: Primitive) -> int:
    """An HWC zero-copy concat's pixels (its slices interleave, Choice.interleave); 0 for any other primitive."""
    if not primitive.gathers or primitive.layout_in != "HWC":
        return 0
    shape = graph.shape(node.output)
    return shape.h * shape.w


def overlap_allowed(graph: Graph, nodes: tuple[NodeCandidates, ...], members: tuple[int, ...]) -> bool:
    """May a group's output overlap its input (Group.output_lead), whatever else the plan chooses: the buffer the
    input is in is read by the group alone (so it dies at the group's step: the input is read by the first member
    only, is no graph output, and neither is any tensor whose memory it may take over as a view or in place), and
    the output is a buffer of its own (no reader may gather it as a slice of a zero-copy concat's output)."""
    readers: dict[str, list[int]] = {}
    for i, n in enumerate(graph.nodes):
        for t in set(n.inputs):
            readers.setdefault(t, []).append(i)
    producer = {n.output: i for i, n in enumerate(graph.nodes)}
    todo = [graph.nodes[members[0]].inputs[0]]
    while todo:
        tensor = todo.pop()
        if len(readers.get(tensor, ())) != 1 or tensor in graph.output_tensors:
            return False
        if tensor in producer:
            q = producer[tensor]
            for c in nodes[q].options:
                if c.primitive.aliases_input or c.primitive.in_place >= 0:
                    todo.append(graph.nodes[q].inputs[max(c.primitive.in_place, 0)])
    out = graph.nodes[members[-1]].output
    return not any(c.primitive.gathers for r in readers.get(out, ()) for c in nodes[r].options)


@dataclass(frozen=True)
class Decision:
    plan: Plan
    arena: ArenaPlan
    baselines: Mapping[str, Mapping[str, float]]  # "greedy" | "time_only" -> {predicted_ms, arena_bytes}
    lower_bound_bytes: int  # the plan's largest sum of simultaneously live buffers: no placement does better


# What decide() emits: the optimiser's plan, or (for measuring the optimiser against them, e.g. bench/taso.py) one
# of its baselines, whatever the budget.
BASELINES = ("greedy", "time_only")


def baseline(plan: Plan, time_limit_s: float = 10.0) -> dict[str, float]:
    return {"predicted_ms": plan.predicted_ms, "arena_bytes": place(plan, time_limit_s).arena_bytes}


@dataclass(frozen=True)
class Baselines:
    """What decide() needs that does not depend on the budget: the fastest plan (time-only), the greedy plan, and
    their summaries. A budget change reuses them (build caches them by the problem's digest)."""

    time_only: Plan
    greedy: Plan
    summary: Mapping[str, Mapping[str, float]]  # "greedy" | "time_only" -> {predicted_ms, arena_bytes}

    @property
    def proven(self) -> bool:
        """The time-only plan is proven fastest, and smallest among the fastest: safe to reuse."""
        return self.time_only.status == "optimal" and self.time_only.tie_break == "optimal"


def baselines_of(problem: Problem, time_limit_s: float) -> Baselines:
    """Solved in a Session of their own, so that they — and the budget's solve, in another — are the same whether
    they were just computed or came from the cache (a Session's answers depend on the questions asked before)."""
    time_only = Session(problem).solve(None, "latency", time_limit_s=time_limit_s)
    greedy_plan = greedy(problem)
    return Baselines(time_only, greedy_plan, {"greedy": baseline(greedy_plan, time_limit_s),
                                              "time_only": baseline(time_only, time_limit_s)})


def problem_key(problem: Problem, time_limit_s: float) -> str:
    """A digest of everything the baselines depend on (repr is exact: floats print as their shortest round trip),
    Z3's version included: another Z3 may break ties between equally good plans differently."""
    import z3

    return hashlib.sha256(f"{problem!r}\0{time_limit_s!r}\0{z3.get_version_string()}".encode()).hexdigest()


def decide(problem: Problem, budget_bytes: int, objective: str, latency_budget_ms: float | None,
           time_limit_s: float, emit: str = "plan", baselines: Baselines | None = None,
           remember: Remember = forget) -> Decision:
    """Solve, then place every buffer; if the placed arena overshoots the budget (fragmentation), solve again
    with the overshoot taken off the budget, so the arena the code uses is what fits. The fastest plan, when it is
    proven and fits, is the answer without another solve. `baselines`: baselines_of(problem, time_limit_s), if
    already known. `remember`: keeps the latency objective's proven answers by cap (solve.budgeted). `emit` =
    "greedy" | "time_only" returns that baseline's plan instead (the budget is not enforced)."""
    if emit not in ("plan", *BASELINES):
        raise ValueError(f"emit must be 'plan' or one of {BASELINES}, got {emit!r}")
    started = time.perf_counter()
    base = baselines if baselines is not None else baselines_of(problem, time_limit_s)

    def decided(plan: Plan, arena: ArenaPlan) -> Decision:
        plan = replace(plan, solver_seconds=time.perf_counter() - started)  # encoding and every solve
        return Decision(plan, arena, base.summary, plan.peak_bytes)

    if emit != "plan":
        chosen = base.greedy if emit == "greedy" else base.time_only
        return decided(chosen, place(chosen, time_limit_s))
    session: Session | None = None  # encoded only if a solve is needed
    cap = budget_bytes
    latency_cap = latency_budget_ms if objective == "memory" else None
    for _ in range(8):
        if objective == "latency" and base.proven and base.time_only.peak_bytes <= cap:
            plan = base.time_only  # the fastest plan fits: no faster plan exists, nor a smaller one as fast
        else:
            try:
                if objective == "latency":
                    plan = fastest_within(problem, cap, time_limit_s, remember)
                else:
                    session = session or Session(problem)
                    plan = session.solve(cap, objective, latency_cap, time_limit_s)
            except UserError:
                if cap == budget_bytes:
                    raise
                break  # the tightened cap has no plan: fragmentation makes this budget unreachable
        arena = place(plan, time_limit_s)
        if objective == "memory":
            plan, arena = unchained(problem, plan, arena, cap, latency_cap, time_limit_s)
        if arena.arena_bytes <= budget_bytes:
            return decided(plan, arena)
        cap = min(cap, plan.peak_bytes) - (arena.arena_bytes - budget_bytes)
    session = session or Session(problem)
    smallest_plan = session.solve(None, "memory", latency_cap, time_limit_s)
    smallest_plan, smallest_arena = unchained(problem, smallest_plan, place(smallest_plan, time_limit_s), None,
                                              latency_cap, time_limit_s)
    smallest = smallest_arena.arena_bytes
    if smallest <= budget_bytes:  # the smallest-peak plan places without the gaps the faster ones left: not proven
        return decided(replace(smallest_plan, status="feasible"), smallest_arena)  # fastest in the budget
    raise NoArenaFits(f"constraints.memory: no plan's arena fits in {budget_bytes} bytes once buffers are placed; "
                      f"the smallest arena found is {smallest} bytes: raise the budget to at least that",
                      budget_bytes, smallest)


def unchained(problem: Problem, plan: Plan, arena: ArenaPlan, cap: int | None, latency_cap: float | None,
              time_limit_s: float) -> tuple[Plan, ArenaPlan]:
    """The plan and its arena, or a plan of the smallest peak placed in less. Outputs that start below their group's
    input (Choice.output_lead) fix their buffers' order, and a chain of them can leave no placement at the peak while
    another plan of that peak places at it (MobileNetV2's int8 patches after row bands). So where the arena is above
    the peak, the smallest-peak question is asked again once per overlapping step, without the fused group the plan
    ends there (the quick question first, then the fastest plan at its peak); the smallest arena wins, then the
    faster. A replacement is optimal only among the plans asked about: its status is "feasible"."""
    best = (plan, arena)
    if arena.arena_bytes <= plan.peak_bytes:
        return best
    for step in sorted({o.step for o in plan.overlaps}):
        dropped = plan.choices[step][1].group
        nodes = tuple(replace(n, choices=tuple(c for c in n.choices if c.group != dropped)) for n in problem.nodes)
        if not all(n.choices for n in nodes):
            continue
        session = Session(replace(problem, nodes=nodes))
        below = best[1].arena_bytes - 1 if cap is None else min(cap, best[1].arena_bytes - 1)
        try:  # only a peak below the best arena can place below it; the quick question first (no tie-break)
            quick = session.solve(below, "memory", latency_cap, time_limit_s, tie_break=False)
        except UserError:
            continue  # no such plan without that group
        quick_arena = place(quick, time_limit_s)
        if quick_arena.arena_bytes >= best[1].arena_bytes:
            continue
        fastest = session.solve(below, "memory", latency_cap, time_limit_s)  # the fastest at that peak
        for other, placed in ((quick, quick_arena), (fastest, place(fastest, time_limit_s))):
            if (placed.arena_bytes, other.time_ns) < (best[1].arena_bytes, best[0].time_ns):
                best = (replace(other, status="feasible"), placed)
    return best


def without_sharing(problem: Problem) -> Problem:
    """The problem without its in-place and zero-copy choices; the problem itself when it has none, or when a node
    could run no other way outside a fused group (an allow-list that names only those: ResNet-8's adds in place,
    whose FDT paths ending on them keep a grouped add)."""
    kept = [tuple(c for c in n.choices if c.in_place < 0 and not c.gathers and not c.strided_out)
            for n in problem.nodes]
    if all(len(k) == len(n.choices) for k, n in zip(kept, problem.nodes)) \
            or not all(any(not c.group for c in k) for k in kept):
        return problem
    return replace(problem, nodes=tuple(replace(n, choices=k) for n, k in zip(problem.nodes, kept)))


def sharing_gains(shared: Decision, plain: Decision, objective: str) -> bool:
    """Does the decision with sharing beat the one without (`beats`)? Sharing that only ties is not taken: the plan
    stays the one a build without it makes (the same bytes)."""
    return beats(shared, plain, objective)


def beats(first: Decision, second: Decision, objective: str) -> bool:
    """Is `first` better than `second`: by the objective (time, or the placed arena), then by the other measure?"""
    def measure(d: Decision) -> tuple[int, int]:
        pair = (d.plan.time_ns, d.arena.arena_bytes)
        return pair if objective == "latency" else (pair[1], pair[0])

    return measure(first) < measure(second)


class NoArenaFits(UserError):
    """No plan's arena fits the budget; the smallest found is `smallest_bytes` (for a message in other words)."""

    def __init__(self, message: str, budget_bytes: int, smallest_bytes: int) -> None:
        super().__init__(message)
        self.budget_bytes, self.smallest_bytes = budget_bytes, smallest_bytes


# The share of optimizer.time_limit one arena placement may take (a build places up to three plans and the budget
# loop's): placements that are not proven within it keep the best found, status "feasible".
PLACEMENT_SHARE = 0.25


def place(plan: Plan, time_limit_s: float = 10.0) -> ArenaPlan:
    """Every buffer's offset, the arena as small as placement.place can prove in its share of the time limit; the
    overlap check runs on every placement, however it was made."""
    arena = with_regions(place_exactly(plan.buffers(), plan.alignment, time_limit_s * PLACEMENT_SHARE,
                                       overlaps=plan.overlaps), plan.regions)
    check_no_overlap(plan.buffers(), arena, plan.regions, plan.overlaps)
    return arena
