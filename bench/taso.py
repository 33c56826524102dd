"""TASO's comparisons, with the MEASURED latency of the emitted C.

Per network, three C projects built from the same costs, compiled, and timed side by side in one run
(`<name>_main in.bin out.bin --bench N`, rounds interleaved, the median of the per-round medians):

* greedy    — every layer's fastest primitive in isolation, layouts fixed afterwards by transforms
              (decide(emit="greedy"): the baseline the build reports, emitted instead of the plan);
* time-only — the optimiser without a memory limit (the build's plan under a budget it never meets);
* budgeted  — memory saved at <= 15% more time: the smallest peak of any plan predicted within 1.15x of the
              time-only plan (objective "memory" with that latency budget), placed; then the build's latency
              objective under that arena as the budget.

TASO's headlines: the plan vs greedy (8x there), and 2.2x less memory for 15% more time than time-only.

    TASOBUILD_CACHE_DIR=... python bench/taso.py [resnet18 googlenet squeezenet11 mobilenetv2]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import make, median, record, table

NETWORKS = ("resnet18", "googlenet", "squeezenet11", "mobilenetv2")
BENCH_RUNS = 9  # inferences per --bench call
ROUNDS = 5  # interleaved calls per variant
TIME_LIMIT_S = 60.0
SLACK = 1.15


@dataclass(frozen=True)
class Variant:
    label: str
    predicted_ms: float
    arena_bytes: int
    binary: Path


def build_variant(model: str, workdir: Path, label: str, budget: int, objective: str = "latency",
                  latency_ms: float | None = None, emit: str = "plan") -> Variant:
    """The build's own stages (spec, candidates, costs, decide, lower, emit), with decide's `emit` choosing what
    is emitted; then `make`."""
    from tasobuild.decide import decide
    from tasobuild.pipeline import Planned, Solve, load, price, program_of, render
    from tests.e2e import write_spec
    from tests.zoo import ensure_model

    out = workdir / label
    out.mkdir(parents=True)
    spec_path = write_spec(out, ensure_model(model))
    inputs = load(spec_path)
    spec = inputs.spec
    priced = price(inputs, Solve(spec, inputs.target, progress=sys.stderr.isatty()))
    decision = decide(priced.problem, budget, objective, latency_ms, TIME_LIMIT_S, emit=emit)
    planned = Planned(spec, inputs.target, inputs.graph, priced.nodes, priced.transforms, priced.costed, decision)
    for rel, data in render(program_of(planned)).items():
        path = spec.out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    make(spec.out_dir)
    return Variant(label, decision.plan.predicted_ms, decision.arena.arena_bytes,
                   spec.out_dir / f"{spec.project.name}_main")


def problem_and_input(model: str):
    from bench.solver import problem_of
    from tasobuild.importer import import_onnx
    from tests.zoo import ensure_model

    shape = import_onnx(ensure_model(model)).onnx_input_shape
    return problem_of(model), np.random.default_rng(0).standard_normal(shape).astype("<f4")


def measure(variants: list[Variant], x: np.ndarray, workdir: Path) -> dict[str, float]:
    inp, out = workdir / "in.bin", workdir / "out.bin"
    x.tofile(inp)
    medians: dict[str, list[float]] = {v.label: [] for v in variants}
    for _ in range(ROUNDS):
        for v in variants:
            proc = subprocess.run([str(v.binary), str(inp), str(out), "--bench", str(BENCH_RUNS)], check=True,
                                  capture_output=True, text=True)
            line = next(l for l in proc.stdout.splitlines() if l.startswith("median_ms:"))
            medians[v.label].append(float(line.split(":", 1)[1]))
    return {label: median(ms) for label, ms in medians.items()}


def compare(model: str, workdir: Path) -> list[str]:
    from tasobuild.decide import place
    from tasobuild.solve import Session

    problem, x = problem_and_input(model)
    session = Session(problem)
    fastest = session.solve(None, time_limit_s=TIME_LIMIT_S)
    within = session.solve(None, "memory", latency_budget_ms=fastest.predicted_ms * SLACK, time_limit_s=TIME_LIMIT_S)
    budget = place(within).arena_bytes
    huge = 1 << 40
    variants = [build_variant(model, workdir, "greedy", huge, emit="greedy"),
                build_variant(model, workdir, "time_only", huge),
                build_variant(model, workdir, "budgeted", budget)]
    ms = measure(variants, x, workdir)
    g, t, b = variants
    return [model,
            f"{g.predicted_ms:.2f} / {ms['greedy']:.2f}",
            f"{t.predicted_ms:.2f} / {ms['time_only']:.2f}",
            f"{ms['greedy'] / ms['time_only']:.2f}x",
            f"{_mib(t.arena_bytes)} -> {_mib(b.arena_bytes)}",
            f"{t.arena_bytes / b.arena_bytes:.2f}x",
            f"{b.predicted_ms:.2f} / {ms['budgeted']:.2f}",
            f"{b.predicted_ms / t.predicted_ms:.3f} / {ms['budgeted'] / ms['time_only']:.3f}",
            f"{_mib(g.arena_bytes)}"]


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def main(models: list[str]) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            rows.append(compare(model, Path(tmp) / model))
            print(" | ".join(rows[-1]), file=sys.stderr)
    headers = ["network", "greedy ms pred / meas", "time-only ms pred / meas", "speedup over greedy (meas)",
               "arena time-only -> budgeted", "memory saved", "budgeted ms pred / meas",
               "time vs time-only pred / meas", "greedy arena"]
    body = (
        "Three C projects per network from the same (profiled) costs, timed side by side: "
        f"`<name>_main in.bin out.bin --bench {BENCH_RUNS}`, {ROUNDS} interleaved rounds, the median of the "
        "per-round medians. *greedy*: the fastest primitive per layer in isolation, layouts fixed afterwards by "
        "transforms (`decide(emit=\"greedy\")`). *time-only*: the plan without a memory limit. *budgeted*: memory "
        f"saved at <= {round((SLACK - 1) * 100)}% more predicted time — the smallest peak of any plan predicted "
        f"within {SLACK}x of time-only, its placed arena then given to the build as the budget.\n\n"
        + table(headers, rows))
    record("taso", "TASO's comparisons, measured", "python bench/taso.py", body)


if __name__ == "__main__":
    main(sys.argv[1:] or list(NETWORKS))
