"""The Python API: what `tasobuild build | update | plan | pareto | verify | report` do, as functions returning
typed results.

    import tasobuild

    built = tasobuild.build("taso.toml", memory="96KiB")   # BuildResult: the plan, the files, the lock
    shown = tasobuild.plan("taso.toml", memory="64KiB")     # PlanResult: the same plan, nothing written
    front = tasobuild.pareto("taso.toml", points=5)         # ParetoResult: the memory-latency frontier
    check = tasobuild.verify("taso.toml")                   # Verification: the program against ONNX Runtime
    page = tasobuild.report("taso.toml")                    # Report: the self-contained HTML page, its PNGs

Every function takes the spec's path and, as keywords, what the command line's flags override (`memory`,
`input_shapes`); a bad input raises `tasobuild.errors.UserError` with the one line the command line prints. The
results are frozen dataclasses whose fields are those of the JSON object `build --json` / `plan --json` print
(`report` holds that object itself). The command line is a thin layer over these functions.

Importing this module imports nothing heavy: each function imports the stages' libraries when it runs, so the
no-op build (`incremental.noop`) stays fast.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasobuild.pipeline import Inputs, Solve
    from tasobuild.verify import Verification
    from tasobuild.visual.frontier import Frontier
    from tasobuild.visual.frontier import Point as FrontierPoint
    from tasobuild.visual.page import Report

# Where the settings go in the spec (spec.load_spec's overrides).
MEMORY_KEY = "constraints.memory"
INPUT_SHAPES_KEY = "network.input_shapes"
THREADS_KEY = "target.threads"

SpecPath = str | os.PathLike[str]


# ------------------------------------------------------------------------------------------------------- results


@dataclass(frozen=True, kw_only=True)
class NodePlan:
    """One node of the plan: what runs it and what it is predicted to cost."""

    name: str  # the ONNX node's name (data from the model: print it, never evaluate it)
    op: str
    primitive: str
    layout_in: str
    layout_out: str
    tiling: str | None  # the fused group it runs in, None when untiled
    workspace_bytes: int
    predicted_ms: float
    cost_source: tuple[str, ...]  # where its calls' times came from ("measured", "predicted", "lock", ...)
    output_offset: int | None  # its output's byte offset in the arena; None for a fused member's (never whole)


@dataclass(frozen=True, kw_only=True)
class TransformPlan:
    """A layout transform the plan inserts before a step."""

    tensor: str
    from_layout: str
    to_layout: str
    step: int
    predicted_ms: float


@dataclass(frozen=True, kw_only=True)
class Baseline:
    """A plan to compare with: "greedy" (each layer's fastest alone), "time_only" (the fastest, memory no object)."""

    predicted_ms: float
    arena_bytes: int


@dataclass(frozen=True, kw_only=True)
class Solver:
    status: str  # "optimal", or how it stopped short ("feasible": past its time limit)
    seconds: float
    objective: str


@dataclass(frozen=True, kw_only=True)
class Placement:
    status: str | None  # "optimal": no placement of the plan's buffers is smaller; "feasible"; None: an old lock
    bound_bytes: int | None  # the arena no placement can beat


@dataclass(frozen=True, kw_only=True)
class DeviceMemory:
    """RAM and flash the program needs, and the target's (a target that states them)."""

    ram_bytes: int | None
    flash_bytes: int | None
    target_ram_bytes: int | None
    target_flash_bytes: int | None


@dataclass(frozen=True, kw_only=True)
class Files:
    """What a build did to the output folder, by path relative to it."""

    written: tuple[str, ...]
    unchanged: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class PlanResult:
    """The plan `tasobuild plan` shows and `build` emits."""

    arena_bytes: int
    budget_bytes: int
    lower_bound_bytes: int  # no plan's live buffers fit in less
    predicted_ms: float
    solver: Solver
    placement: Placement
    profiled: int  # kernel calls measured by this run
    nodes: tuple[NodePlan, ...]
    transforms: tuple[TransformPlan, ...]
    baselines: Mapping[str, Baseline]
    memory: DeviceMemory | None  # None unless the target states its RAM or flash
    report: Mapping[str, Any] = field(repr=False)  # the JSON object `--json` prints, as it prints it


@dataclass(frozen=True, kw_only=True)
class BuildResult(PlanResult):
    """A build: its plan, and the C project and lock it wrote (or found up to date)."""

    out_dir: Path
    lock_path: Path
    up_to_date: bool  # nothing changed: nothing was written
    files: Files


@dataclass(frozen=True, kw_only=True)
class ParetoResult:
    """The memory-latency frontier, smallest arena first: each point labelled ("A", "B", ...) with what it runs
    (`visual.frontier.Point.what`), the greedy and time-only baselines, and the budget."""

    frontier: Frontier
    profiled: int  # measurements taken to cost the candidates

    @property
    def points(self) -> tuple[FrontierPoint, ...]:
        return self.frontier.points

    @property
    def proven(self) -> bool:
        return all(p.status == "optimal" for p in self.frontier.points)

    def as_json(self) -> dict[str, Any]:
        """The object `pareto --json` prints."""
        f = self.frontier
        return {"points": [{"label": p.label, "arena_bytes": p.arena_bytes, "peak_bytes": p.peak_bytes,
                            "predicted_ms": p.predicted_ms, "status": p.status, "tie_break": p.tie_break,
                            "what": p.what} for p in f.points],
                "baselines": {b.name: {"arena_bytes": b.arena_bytes, "predicted_ms": b.predicted_ms}
                              for b in f.baselines},
                "budget_bytes": f.budget_bytes, "note": f.note, "solver": {"seconds": f.seconds}}


def _plan_fields(rep: Mapping[str, Any]) -> dict[str, Any]:
    """The PlanResult fields of a report (report.report's object)."""
    memory = rep.get("memory")
    return {
        "arena_bytes": rep["arena_bytes"], "budget_bytes": rep["budget_bytes"],
        "lower_bound_bytes": rep["lower_bound_bytes"], "predicted_ms": rep["predicted_ms"],
        "solver": Solver(status=rep["solver"]["status"], seconds=rep["solver"]["seconds"],
                         objective=rep["solver"]["objective"]),
        "placement": Placement(status=rep["placement"]["status"], bound_bytes=rep["placement"]["bound_bytes"]),
        "profiled": rep["profiled"],
        "nodes": tuple(NodePlan(name=n["name"], op=n["op"], primitive=n["primitive"], layout_in=n["layout_in"],
                                layout_out=n["layout_out"], tiling=n["tiling"], workspace_bytes=n["workspace_bytes"],
                                predicted_ms=n["predicted_ms"], cost_source=tuple(n["cost_source"]),
                                output_offset=n.get("output_offset")) for n in rep["nodes"]),
        "transforms": tuple(TransformPlan(tensor=t["tensor"], from_layout=t["from"], to_layout=t["to"], step=t["step"],
                                          predicted_ms=t["predicted_ms"]) for t in rep["transforms"]),
        "baselines": {name: Baseline(predicted_ms=b["predicted_ms"], arena_bytes=b["arena_bytes"])
                      for name, b in sorted(rep["baselines"].items())},
        "memory": DeviceMemory(**memory) if memory is not None else None,
        "report": rep,
    }


def _build_result(rep: Mapping[str, Any], lock_path: Path, up_to_date: bool) -> BuildResult:
    files = rep["files"]
    return BuildResult(**_plan_fields(rep), out_dir=Path(rep["out_dir"]), lock_path=lock_path, up_to_date=up_to_date,
                       files=Files(written=tuple(files["written"]), unchanged=tuple(files["unchanged"]),
                                   removed=tuple(files["removed"])))


# ----------------------------------------------------------------------------------------------------- functions


def overrides(memory: str | int | None = None, input_shapes: Mapping[str, Sequence[int]] | None = None,
              threads: str | int | None = None) -> dict[str, str]:
    """The spec settings the keywords override, as spec.load_spec takes them. `memory`: "48KiB" or bytes;
    `input_shapes`: ONNX input name -> its full shape, pinning its dynamic dimensions; `threads`: a count or
    "auto" (target.threads)."""
    out: dict[str, str] = {}
    if memory is not None:
        out[MEMORY_KEY] = str(memory)
    if threads is not None:
        out[THREADS_KEY] = str(threads)
    if input_shapes:
        out[INPUT_SHAPES_KEY] = json.dumps({name: list(dims) for name, dims in input_shapes.items()}, sort_keys=True)
    return out


def build(config: SpecPath = "taso.toml", *, memory: str | int | None = None,
          input_shapes: Mapping[str, Sequence[int]] | None = None, threads: str | int | None = None,
          locked: bool = False, frozen: bool = False, update: bool = False, progress: bool = False) -> BuildResult:
    """`tasobuild build`: plan, then write the C project and the lock (only files whose bytes change).

    `locked`: raise, writing nothing, if the lock or any output would change (CI). `frozen`: rebuild exactly what the
    lock says, no profiling and no solving. `update`: cost every call afresh instead of reusing the lock's costs
    (`tasobuild update`). `progress`: say on stderr what a long step is doing."""
    path, settings = Path(config), overrides(memory, input_shapes, threads)
    if not frozen and not update:  # the common case, nothing changed, answered before the stages' libraries load
        from tasobuild.incremental.noop import fast_up_to_date

        known = fast_up_to_date(path, settings, locked)
        if known is not None:
            return _build_result(known.report, known.lock_path, True)
    from tasobuild.incremental.transaction import Options
    from tasobuild.incremental.transaction import build as transaction

    result = transaction(Options(path, settings, progress=progress, locked=locked, frozen=frozen, update=update))
    return _build_result(result.report, result.lock_path, result.up_to_date)


def plan(config: SpecPath = "taso.toml", *, memory: str | int | None = None,
         input_shapes: Mapping[str, Sequence[int]] | None = None, threads: str | int | None = None,
         progress: bool = False) -> PlanResult:
    """`tasobuild plan`: the plan a build would emit (the lock's costs first, as a build takes them); writes
    nothing but the cost cache."""
    from tasobuild.incremental.stagecache import cached
    from tasobuild.pipeline import lock_data
    from tasobuild.pipeline import plan as plan_stages
    from tasobuild.report import report

    inputs = inputs_of(Path(config), overrides(memory, input_shapes, threads))
    planned = plan_stages(inputs, _solve(inputs, progress), cached)
    rep = report(lock_data(planned, {}, {}), profiled=planned.costed.profiled,
                 solver_seconds=planned.decision.plan.solver_seconds)
    return PlanResult(**_plan_fields(rep))


def pareto(config: SpecPath = "taso.toml", *, points: int = 10,
           input_shapes: Mapping[str, Sequence[int]] | None = None, progress: bool = False) -> ParetoResult:
    """`tasobuild pareto`: up to `points` plans on the memory-latency frontier, each arena placed and labelled."""
    from tasobuild.device import memory_budget
    from tasobuild.errors import UserError
    from tasobuild.incremental.stagecache import cached
    from tasobuild.pipeline import price
    from tasobuild.primitives.registry import library
    from tasobuild.visual.frontier import frontier_of, solve_frontier

    if points < 2:
        raise UserError(f"--points {points}: a frontier needs at least 2 points (its two ends)")
    inputs = inputs_of(Path(config), overrides(None, input_shapes))
    solve = _solve(inputs, progress)
    priced = price(inputs, solve, cached)
    limit_s = inputs.spec.optimizer.time_limit / 1000.0
    started = time.perf_counter()
    plans = solve_frontier(priced.problem, points, limit_s)
    frontier = frontier_of(inputs.spec.project.name, plans, solve.baselines(priced.problem).summary,
                           memory_budget(inputs.spec, inputs.target),
                           {p.name: (p.op, p.family) for p in library()}, limit_s, time.perf_counter() - started)
    return ParetoResult(frontier=frontier, profiled=priced.costed.profiled)


def verify(config: SpecPath = "taso.toml", *, input_path: SpecPath | Sequence[SpecPath] | None = None,
           seed: int = 0, atol: float | None = None, rtol: float | None = None, build_first: bool = True,
           input_shapes: Mapping[str, Sequence[int]] | None = None, progress: bool = False) -> Verification:
    """`tasobuild verify`: build if needed, run the emitted program (under the target's emulator for a cross
    target) on `input_path` (a raw float32 file per model input) or a seeded random input, and compare it with ONNX
    Runtime (`Verification.passed`). `atol` None: 1e-4, or one output quantisation step for a quantised network."""
    import tasobuild.verify as checking

    given = [input_path] if isinstance(input_path, (str, os.PathLike)) else input_path
    paths = None if given is None else [Path(p) for p in given]
    return checking.verify(Path(config), overrides(None, input_shapes), input_path=paths, seed=seed, atol=atol,
                           rtol=checking.DEFAULT_RTOL if rtol is None else rtol, build_first=build_first,
                           progress=progress)


def report(config: SpecPath = "taso.toml", *, points: int = 6,
           input_shapes: Mapping[str, Sequence[int]] | None = None, progress: bool = False) -> Report:
    """`tasobuild report`: the self-contained HTML page of the plan (per layer, the arena over time, the frontier,
    RAM and flash, the source of every cost) and its pictures, as bytes (`Report.html`, `Report.pngs`); nothing is
    written."""
    from tasobuild.visual.facts import facts_of
    from tasobuild.visual.page import render

    return render(facts_of(Path(config), overrides(None, input_shapes), points, progress))


def inputs_of(config: Path, settings: Mapping[str, str]) -> Inputs:
    """The spec (`settings` overriding it), its target and its network, the import from the stage cache."""
    from tasobuild.incremental.stagecache import cached
    from tasobuild.pipeline import load

    return load(config, settings, cached)


def _solve(inputs: Inputs, progress: bool) -> Solve:
    from tasobuild.incremental.stagecache import cached
    from tasobuild.incremental.transaction import locked_costs_of
    from tasobuild.pipeline import Solve

    # the lock's costs first, as `build` takes them, so the plan shown is the plan built
    return Solve(inputs.spec, inputs.target, progress, cached, locked_costs_of(inputs.spec, inputs.target))
