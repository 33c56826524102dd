"""Everything `tasobuild report` shows, gathered once from the pipeline's stages into one frozen value: the plan per
layer, the arena's buffers over time, the frontier, the device footprint. Nothing here varies from run to run
(no solving times), so the same inputs give the same page."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tasobuild.device import ram_needed
from tasobuild.emit.footprint import Footprint, estimate
from tasobuild.errors import UserError
from tasobuild.memory import align_up
from tasobuild.pipeline import Inputs, Memo, Planned, Solve, chosen_calls, load, lock_data, price, program_of
from tasobuild.visual.frontier import Frontier, frontier_of, solve_frontier

# Cost sources that are a real time of the kernel call (on this machine, or imported from the device).
REAL_SOURCES = frozenset({"measured", "imported"})


@dataclass(frozen=True)
class Layer:
    """One node of the plan, in execution order."""

    step: int
    name: str  # the model's: shown escaped
    op: str
    primitive: str
    layout_in: str
    layout_out: str
    tiling: str  # the fused group, "" if none
    workspace_bytes: int
    planned_ms: float  # the cost the solver used
    cost_source: tuple[str, ...]  # of its calls: "measured", "imported", "predicted", "predicted (host model)"
    model_ms: float | None  # the performance model's prediction of the same calls, when the cost is a real time

    @property
    def measured_ms(self) -> float | None:
        """The real time of the layer's calls, where every one was measured or imported."""
        return self.planned_ms if set(self.cost_source) <= REAL_SOURCES else None

    @property
    def predicted_ms(self) -> float | None:
        return self.model_ms if self.measured_ms is not None else self.planned_ms


@dataclass(frozen=True)
class Transform:
    """A layout transform the plan runs before a step."""

    step: int
    tensor: str  # the model's: shown escaped
    from_layout: str
    to_layout: str
    planned_ms: float


@dataclass(frozen=True)
class CallCost:
    """A kernel call the plan runs, and its cost: what the solver's times are sums of."""

    step: int
    call: str  # the kernel and its parameters (generated: no name from the model)
    median_ms: float
    spread_ms: float  # measured: the interquartile range; predicted: the model's error band
    source: str  # "measured" | "imported" | "predicted" | "predicted (host model)"


@dataclass(frozen=True)
class Box:
    """A buffer of the arena: bytes [offset, offset + size) from `first_step` through `last_step`."""

    buffer: str  # the model's tensor name and layout, or "<node>:workspace": shown escaped
    offset: int
    size: int  # aligned: what it occupies
    first_step: int
    last_step: int

    @property
    def workspace(self) -> bool:
        return self.buffer.endswith(":workspace")


@dataclass(frozen=True)
class Facts:
    project: str
    network: str  # the spec's network.onnx, as written
    target: str
    objective: str
    solver_status: str  # "optimal" | "feasible" | ...
    placement_status: str  # "optimal" | "feasible" | "greedy"
    placement_bound_bytes: int
    arena_bytes: int
    budget_bytes: int
    lower_bound_bytes: int  # the most bytes live at one step
    predicted_ms: float
    steps: int  # execution steps, the epilogue included
    layers: tuple[Layer, ...]
    calls: tuple[CallCost, ...]  # by step, in the order each layer runs them
    transforms: tuple[Transform, ...]
    boxes: tuple[Box, ...]  # by offset, then first step
    footprint: Footprint
    ram_needed_bytes: int  # on the target: a Linux board also loads code and weights into RAM
    target_ram_bytes: int | None
    target_flash_bytes: int | None
    frontier: Frontier


def facts_of(config: Path, overrides: Mapping[str, str] | None = None, points: int = 6,
             progress: bool = False) -> Facts:
    """The facts `tasobuild report` shows for the spec at `config`: the plan `build` would make (taso.lock's costs
    first, as `build` takes them), its stages reused through the stage cache."""
    from tasobuild.incremental.stagecache import cached
    from tasobuild.incremental.transaction import locked_costs_of

    inputs = load(config, overrides, cached)
    solve = Solve(inputs.spec, inputs.target, progress, cached, locked_costs_of(inputs.spec, inputs.target))
    return gather(inputs, solve, cached, points)


def gather(inputs: Inputs, solve: Solve, memo: Memo, points: int = 6) -> Facts:
    """The facts of the plan `solve` makes from `inputs`, and the frontier of up to `points` points (at least 2:
    its two ends)."""
    from tasobuild.costs.provenance import describe
    from tasobuild.costs.stage import shipped_model
    from tasobuild.primitives.registry import library

    if points < 2:
        raise UserError(f"--points {points}: a frontier needs at least 2 points (its two ends)")
    spec, target = inputs.spec, inputs.target
    limit_s = spec.optimizer.time_limit / 1000.0
    priced = price(inputs, solve, memo)
    decision = solve.decide(priced.problem)
    planned = Planned(spec, target, inputs.graph, priced.nodes, priced.transforms, priced.costed, decision,
                      priced.groups)
    lock = lock_data(planned, {}, {})
    calls = chosen_calls(planned)
    model = shipped_model()
    cross = not target.profile  # a prediction is the host's time: its label says so
    costs = priced.costed.costs
    call_costs = tuple(CallCost(step, c.key(), costs[c.key()].median_ms, costs[c.key()].spread_ms,
                                describe(costs[c.key()].source, cross))
                       for step, node_calls in enumerate(calls) for c in node_calls)
    layers = []
    for step, (node, node_calls) in enumerate(zip(lock["node"], calls)):
        sources = tuple(node["cost_source"].split("+"))
        model_ms = None
        if model is not None and set(sources) <= REAL_SOURCES:  # the prediction to set the real time against
            predicted = model.predict_ms(node_calls)
            model_ms = round(sum(predicted[c.key()] for c in node_calls), 6)
        layers.append(Layer(step, node["name"], node["op"], node["primitive"], node["layout_in"], node["layout_out"],
                            "" if node["tiling"] == "none" else node["tiling"], node["workspace_bytes"],
                            node["predicted_ms"], sources, model_ms))
    plan, arena = decision.plan, decision.arena
    offsets = arena.offset_map()
    boxes = sorted((Box(b.name, offsets[b.name], align_up(b.size, arena.alignment), b.first_step, b.last_step)
                    for b in plan.buffers() if b.size > 0), key=lambda b: (b.offset, b.first_step, b.buffer))
    started = time.perf_counter()
    plans = solve_frontier(priced.problem, points, limit_s)
    frontier = frontier_of(spec.project.name, plans, decision.baselines, lock["plan"]["budget_bytes"],
                           {p.name: (p.op, p.family) for p in library()}, limit_s, time.perf_counter() - started)
    table = lock["plan"]
    footprint = estimate(program_of(planned, inputs.onnx_sha, memo), target.stack or 0)
    return Facts(
        project=spec.project.name, network=spec.network.onnx, target=target.name, objective=table["objective"],
        solver_status=table["solver_status"], placement_status=table["placement"],
        placement_bound_bytes=table["placement_bound_bytes"], arena_bytes=table["arena_bytes"],
        budget_bytes=table["budget_bytes"], lower_bound_bytes=table["lower_bound_bytes"],
        predicted_ms=table["predicted_ms"], steps=len(plan.step_bytes), layers=tuple(layers), calls=call_costs,
        transforms=tuple(Transform(t["step"], t["tensor"], t["from"], t["to"], t["predicted_ms"])
                         for t in lock["transform"]),
        boxes=tuple(boxes), footprint=footprint, ram_needed_bytes=ram_needed(footprint, target),
        target_ram_bytes=target.ram, target_flash_bytes=target.flash, frontier=frontier)
