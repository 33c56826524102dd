"""`tasobuild profile --plan`: the emitted program's per-layer times, measured, against the plan's predictions.

Builds if needed, runs `make profile` (the network compiled with -DTB_PROFILE: a clock read as each layer starts),
runs `<name>_main_profile IN.bin OUT.bin --profile N` on a seeded input (natively, or under qemu-user for a Linux
board: then the times are the emulator's) and parses its `profile_layer:` lines. Which layer is which comes from the
Program the build emitted, rebuilt from taso.lock as `build --frozen` would (no profiling, no solving), so the k-th
line is the k-th of `emit.program.timed_layers`; its prediction is the sum of the plan's times of the nodes and
layout transforms it runs.

`record`: a layer that is exactly one kernel call, run once (not a fused group's bands or slices, not a primitive of
several calls) has its measured median stored in the cost cache as a measurement of that call, the same key
`tasobuild profile` times it under; several layers of the same call give the median of their medians. The lock's
costs come first in a build, so `tasobuild update` is what plans with them. Emulator times are never recorded.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tasobuild.costs.provenance import describe
from tasobuild.emit.program import Program, timed_layers
from tasobuild.errors import UserError
from tasobuild.execute import Project, built, compile_project, run_program, scratch_input
from tasobuild.pipeline import Planned

DEFAULT_RUNS = 100
PROFILE_SEED = 0
_LAYER_LINE = re.compile(r"^profile_layer:\s+(\d+)\s+(\S+) ms \(IQR (\S+) ms\)  (.*)$")
_TOTAL_LINE = re.compile(r"^profile_total:\s+(\S+) ms$")


@dataclass(frozen=True)
class LayerTime:
    """One timed layer: what the program measured and what the plan predicted."""

    index: int
    label: str  # the node's name (from the model: print it through text.terminal_text), a transform, a group
    measured_ms: float  # median over the runs
    spread_ms: float  # interquartile range
    predicted_ms: float
    cost_source: tuple[str, ...]  # where the predictions came from ("measured", "predicted (host model)", ...)
    call: str | None  # the kernel call the layer is, if exactly one run once (what --record stores), else None


@dataclass(frozen=True)
class LayerProfile:
    out_dir: Path
    target: str
    emulator: tuple[str, ...]  # what ran the program here (empty: natively): its times are then the emulator's
    runs: int
    layers: tuple[LayerTime, ...]
    measured_total_ms: float  # median of the whole runs
    predicted_total_ms: float
    recorded: int  # calls stored in the cost cache (--record)


def profile_layers(config: Path, overrides: Mapping[str, str] | None = None, *, runs: int = DEFAULT_RUNS,
                   record: bool = False, progress: bool = False) -> LayerProfile:
    """Build if needed, time every layer of the emitted program over `runs` runs, and set it against the plan."""
    if runs < 1:
        raise UserError(f"--runs: must be a whole number >= 1, got {runs}")
    project = built(config, overrides, progress)
    target = project.target
    if target.board is not None:
        raise UserError(f"{target.source}: target {target.name!r} is a microcontroller: per-layer timing runs on "
                        f"the host and on Linux targets only (the board's runner has no clock to read under QEMU)")
    if record and (project.emulated or not target.profile):
        raise UserError(f"--record: target {target.name!r} is not this machine (its program runs here under "
                        f"{' '.join(target.emulator_argv[:1]) or 'another machine'}), so these times are not the "
                        f"device's; time it on the device instead (`tasobuild profile --emit-harness`, then "
                        f"`tasobuild costs import`)")
    planned, program = emitted_program(project)
    compile_project(project, "profile")
    graph = planned.graph
    _, printed = run_program(project, scratch_input(graph.onnx_input_shape, PROFILE_SEED),
                             ("--profile", str(runs)), binary=f"{project.name}_main_profile")
    measured, total = parse_profile(printed, project)
    layers = _layer_times(planned, program, measured)
    recorded = _record(project, layers, runs) if record else 0
    return LayerProfile(project.out_dir, target.name, tuple(target.emulator_argv), runs, layers, total,
                        float(planned.decision.plan.predicted_ms), recorded)


def emitted_program(project: Project) -> tuple[Planned, Program]:
    """The plan and the Program the build emitted, from taso.lock (as `build --frozen` makes them)."""
    from tasobuild.digest import sha256_file
    from tasobuild.incremental.frozen import FromLock
    from tasobuild.incremental.lock import read_lock
    from tasobuild.incremental.stagecache import cached
    from tasobuild.incremental.state import lock_inputs
    from tasobuild.pipeline import Inputs, imported_graph, plan, program_of

    onnx_sha = sha256_file(project.spec.onnx_path)
    inputs = Inputs(project.spec, project.target, imported_graph(project.spec.onnx_path, onnx_sha, cached), onnx_sha)
    decider = FromLock(read_lock(project.lock_path), lock_inputs(project.spec, project.target, onnx_sha),
                       project.lock_path)
    planned = plan(inputs, decider, cached)
    return planned, program_of(planned, onnx_sha, cached)


def parse_profile(printed: str, project: Project) -> tuple[list[tuple[float, float]], float]:
    """The (median, IQR) of every layer, in order, and the median whole run, from the program's stdout."""
    layers: list[tuple[float, float]] = []
    total: float | None = None
    for line in printed.splitlines():
        if m := _LAYER_LINE.match(line):
            if int(m.group(1)) != len(layers):
                raise UserError(f"{project.out_dir}: the profile lists layer {m.group(1)} out of order; rebuild it "
                                f"(`make -C {project.out_dir} clean profile`)")
            layers.append((float(m.group(2)), float(m.group(3))))
        elif m := _TOTAL_LINE.match(line):
            total = float(m.group(1))
    if total is None:
        raise UserError(f"{project.out_dir}: {project.name}_main_profile printed no profile; rebuild it "
                        f"(`make -C {project.out_dir} clean profile`)")
    return layers, total


def _layer_times(planned: Planned, program: Program, measured: list[tuple[float, float]]) -> tuple[LayerTime, ...]:
    plan, cross = planned.decision.plan, not planned.target.profile
    timed = timed_layers(program)
    if len(timed) != len(measured):
        raise UserError(f"{planned.spec.out_dir}: the program timed {len(measured)} layers, the plan has "
                        f"{len(timed)}; rebuild (`tasobuild build`, then `make profile`)")
    out = []
    for k, (t, (median, spread)) in enumerate(zip(timed, measured)):
        predicted = sum(plan.choice(planned.nodes[i].node.name).time_ms for i in t.layer.nodes) \
            + sum(plan.transforms[j].time_ms for j in t.layer.transforms)
        steps = [program.steps[s] for s in t.steps]
        calls = [call for step in steps for call, _ in step.calls]
        sources = sorted({describe(planned.costed.costs[c.key()].source, cross) for c in calls
                          if c.key() in planned.costed.costs})
        single = len(steps) == 1 and steps[0].repeat == 1 and len(calls) == 1 and len(t.layer.nodes) <= 1
        out.append(LayerTime(k, t.layer.label, median, spread, float(predicted), tuple(sources),
                             calls[0].key() if single else None))
    return tuple(out)


def _record(project: Project, layers: tuple[LayerTime, ...], runs: int) -> int:
    """Store the measured time of every layer that is one call as a measurement of that call; the count stored."""
    from tasobuild.costs.cache import Cost, CostCache, CostKey, kernel_digest
    from tasobuild.target import host_fingerprint

    by_call: dict[str, list[LayerTime]] = {}
    for layer in layers:
        if layer.call is not None:
            by_call.setdefault(layer.call, []).append(layer)
    fingerprint, digest = host_fingerprint(project.target).digest, kernel_digest()
    rows = [(CostKey(fingerprint, digest, call),
             Cost(statistics.median(t.measured_ms for t in times), statistics.median(t.spread_ms for t in times),
                  runs, "measured"))
            for call, times in sorted(by_call.items())]
    with CostCache() as cache:
        cache.put_many(rows)
    return len(rows)
