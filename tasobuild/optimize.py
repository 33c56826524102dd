"""From the network, its candidates and their costs to the solver's Problem, and from there to a Plan.

The solver (tasobuild.solve) knows nothing of ONNX or kernels; this module is the only place that translates.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

from tasobuild.candidates import NodeCandidates, TransformCandidate
from tasobuild.costs.cache import Cost
from tasobuild.errors import UserError
from tasobuild.ir import Graph
from tasobuild.memory import ArenaPlan, check_no_overlap, plan_arena
from tasobuild.solve import (
    Choice,
    Plan,
    Problem,
    ProblemNode,
    ProblemTensor,
    Session,
    greedy,
)

# The emitted code and the cost model both see ONNX's row-major order at the network's boundary.
BOUNDARY_LAYOUT = "CHW"


def call_time_ms(calls, costs: Mapping[str, Cost]) -> float:
    return sum(costs[c.key()].median_ms for c in calls)


def to_problem(graph: Graph, nodes: tuple[NodeCandidates, ...], transforms: tuple[TransformCandidate, ...],
               costs: Mapping[str, Cost]) -> Problem:
    tensors = {t: ProblemTensor(t, graph.shape(t).bytes) for t in {graph.input} | {n.output for n in graph.nodes}}
    problem_nodes = tuple(
        ProblemNode(
            nc.node.name,
            nc.node.inputs,
            nc.node.output,
            tuple(
                Choice(c.primitive.name, c.primitive.layout_in, c.primitive.layout_out,
                       call_time_ms(c.calls, costs), c.workspace_bytes, c.primitive.aliases_input)
                for c in nc.options
            ),
        )
        for nc in nodes
    )
    return Problem(
        nodes=problem_nodes,
        tensors=dict(sorted(tensors.items())),
        graph_input=graph.input,
        input_layout=BOUNDARY_LAYOUT,
        graph_output=graph.output,
        output_layout=BOUNDARY_LAYOUT,
        transform_ms={(t.tensor, t.src, t.dst): costs[t.call.key()].median_ms for t in transforms},
    )


@dataclass(frozen=True)
class Decision:
    plan: Plan
    arena: ArenaPlan
    baselines: Mapping[str, Mapping[str, float]]  # "greedy" | "time_only" -> {predicted_ms, arena_bytes}
    lower_bound_bytes: int  # the plan's largest sum of simultaneously live buffers: no placement does better


# What decide() emits: the optimiser's plan, or (for measuring the optimiser against them, e.g. bench/taso.py) one
# of its baselines, whatever the budget.
BASELINES = ("greedy", "time_only")


def baseline(plan: Plan) -> dict[str, float]:
    return {"predicted_ms": plan.predicted_ms, "arena_bytes": place(plan).arena_bytes}


def decide(problem: Problem, budget_bytes: int, objective: str, latency_budget_ms: float | None,
           time_limit_s: float, emit: str = "plan") -> Decision:
    """Solve, then place every buffer; if the placed arena overshoots the budget (fragmentation), solve again
    with the overshoot taken off the budget, so the arena the code uses is what fits. One Session answers every
    question, so the time-only baseline is solved once and, when it fits the budget, is the answer.
    `emit` = "greedy" | "time_only" returns that baseline's plan instead (the budget is not enforced)."""
    if emit not in ("plan", *BASELINES):
        raise ValueError(f"emit must be 'plan' or one of {BASELINES}, got {emit!r}")
    started = time.perf_counter()
    session = Session(problem)
    time_only = session.solve(None, "latency", time_limit_s=time_limit_s)
    greedy_plan = greedy(problem)
    baselines = {"greedy": baseline(greedy_plan), "time_only": baseline(time_only)}

    def decided(plan: Plan, arena: ArenaPlan) -> Decision:
        plan = replace(plan, solver_seconds=time.perf_counter() - started)  # encoding and every solve
        return Decision(plan, arena, baselines, plan.peak_bytes)

    if emit != "plan":
        chosen = greedy_plan if emit == "greedy" else time_only
        return decided(chosen, place(chosen))
    cap = budget_bytes
    latency_cap = latency_budget_ms if objective == "memory" else None
    for _ in range(8):
        try:
            plan = session.solve(cap, objective, latency_cap, time_limit_s)
        except UserError:
            if cap == budget_bytes:
                raise
            break  # the tightened cap has no plan: fragmentation makes this budget unreachable
        arena = place(plan)
        if arena.arena_bytes <= budget_bytes:
            return decided(plan, arena)
        cap = min(cap, plan.peak_bytes) - (arena.arena_bytes - budget_bytes)
    smallest = place(session.solve(None, "memory", latency_cap, time_limit_s)).arena_bytes
    raise UserError(f"constraints.memory: no plan's arena fits in {budget_bytes} bytes once buffers are placed; "
                    f"the smallest arena found is {smallest} bytes: raise the budget to at least that")


def place(plan: Plan) -> ArenaPlan:
    arena = plan_arena(plan.buffers(), alignment=plan.alignment)
    check_no_overlap(plan.buffers(), arena)
    return arena
