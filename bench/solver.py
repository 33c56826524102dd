"""How long the optimiser takes to a proven optimum on big networks with the full primitive library.

For GoogLeNet, ResNet-50 and VGG-16 (costs from the cost cache, profiled on first use): the time-only solve, the
smallest peak (memory objective), budgeted latency solves at 1.05x, 1.2x and 1.5x the smallest peak, and the
10-point memory-latency frontier. Each question is asked of a fresh Session, so every row pays for its own
encoding. "optimum" is the time until the first objective is proven (tie_break off); "total" adds the tie break
(the smallest peak among equally fast plans) — what the build pays.

    TASOBUILD_CACHE_DIR=... python bench/solver.py [googlenet resnet50 vgg16]
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import record, table
from tasobuild.solve import Plan, Problem, Session

NETWORKS = ("googlenet", "resnet50", "vgg16")
TIME_LIMIT_S = 60.0


def problem_of(model: str) -> Problem:
    """The network's solver problem, exactly as `tasobuild plan` builds it (costs: profile, from the cache)."""
    from tasobuild.pipeline import Solve, load, price
    from tests.e2e import write_spec
    from tests.zoo import ensure_model

    with tempfile.TemporaryDirectory() as tmp:
        spec_path = write_spec(Path(tmp), ensure_model(model))
        inputs = load(spec_path)
        return price(inputs, Solve(inputs.spec, inputs.target, progress=sys.stderr.isatty())).problem


def timed(problem: Problem, ask: Callable[[Session], Plan | list[Plan]]
          ) -> tuple[float, float, float, Plan | list[Plan]]:
    """(encode s, Z3 s, total s, answer) for one question asked of a fresh session."""
    start = time.perf_counter()
    session = Session(problem)
    session.enc.memory()
    encoded = time.perf_counter() - start
    answer = ask(session)
    total = time.perf_counter() - start
    plans = answer if isinstance(answer, list) else [answer]
    return encoded, sum(p.solver_seconds for p in plans), total, answer


def rows_for(model: str) -> list[list[str]]:
    problem = problem_of(model)
    choices = sum(len(n.choices) for n in problem.nodes)
    smallest = Session(problem).min_peak_bytes(time_limit_s=TIME_LIMIT_S)
    questions: list[tuple[str, int | None, str]] = [("time-only", None, "latency"), ("min peak", None, "memory")]
    questions += [(f"budget {f}x min peak", int(smallest * f), "latency") for f in (1.05, 1.2, 1.5)]
    rows = []
    for label, budget, objective in questions:
        _, _, first_total, _ = timed(problem, lambda s, b=budget, o=objective: s.solve(
            b, o, time_limit_s=TIME_LIMIT_S, tie_break=False))
        enc, z3s, total, plan = timed(problem, lambda s, b=budget, o=objective: s.solve(
            b, o, time_limit_s=TIME_LIMIT_S))
        assert isinstance(plan, Plan)
        rows.append([model, f"{len(problem.nodes)} / {choices}", label, f"{enc:.3f}", f"{first_total:.3f}",
                     f"{z3s:.3f}", f"{total:.3f}", f"{plan.status}/{plan.tie_break}", f"{plan.predicted_ms:.3f}",
                     f"{plan.peak_bytes / 2**20:.2f}"])
    enc, z3s, total, frontier = timed(problem, lambda s: s.pareto(10, time_limit_s=TIME_LIMIT_S))
    assert isinstance(frontier, list)
    statuses = sorted({f"{p.status}/{p.tie_break}" for p in frontier})
    rows.append([model, f"{len(problem.nodes)} / {choices}", f"10-point frontier ({len(frontier)} distinct)",
                 f"{enc:.3f}", "", f"{z3s:.3f}", f"{total:.3f}", ", ".join(statuses),
                 f"{frontier[-1].predicted_ms:.3f}..{frontier[0].predicted_ms:.3f}",
                 f"{frontier[0].peak_bytes / 2**20:.2f}..{frontier[-1].peak_bytes / 2**20:.2f}"])
    return rows


def main(models: list[str]) -> None:
    rows = [row for model in models for row in rows_for(model)]
    headers = ["network", "nodes / choices", "question", "encode s", "optimum s", "Z3 s", "total s",
               "status / tie break", "predicted ms", "peak MiB"]
    body = (
        "Each row asks a fresh `Session` one question (full primitive library, profiled costs). *encode*: pruning "
        "and the Z3 encoding, memory included; *optimum*: wall time until the first objective is proven (tie "
        "break off, encoding included); *Z3* and *total*: with the tie break (the smallest peak among equally fast "
        "plans), as the build runs it. Statuses are `first objective/tie break`.\n\n" + table(headers, rows))
    record("solver", "Solver: time to a proven optimum", "python bench/solver.py", body)


if __name__ == "__main__":
    main(sys.argv[1:] or list(NETWORKS))
