"""GoogLeNet's memory-latency frontier with tiling on: how many distinct proven points, how long they take to solve
and place, and what limits their number.

The network's problem is priced as `tasobuild pareto` prices it (costs = "profile", warm cost cache; tiling on or
off), then the frontier is solved and every point placed, as `pareto` does (solve.Session.pareto, then
decide.place per point), ROUNDS times in alternation with the evenly spaced budgets that pareto asked before it
walked the frontier (Session.spaced, same points). Per point: its arena, predicted time, status, the fused groups
it runs, and the step that sets its peak (the node, and the tensors live there); for the problem: the fused groups
on offer by kind, and the smallest peak any plan reaches at each of the network's steps, which says where tiling
would have to lower the floor for another point to appear.

    TASOBUILD_CACHE_DIR=... python bench/frontier.py [--points N] [--baseline DIR] [googlenet ...]

--baseline DIR: also the walk of another tasobuild tree (say `git archive REV | tar -x -C DIR`), in a fresh
process per round, alternating with this tree's, on the same cost cache: the before/after of a solver change as a
ratio measured under the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import record, table

ROUNDS = 3
TIME_LIMIT_S = 10.0


def problem_of(model: str, tiling: bool):  # -> (pipeline.Priced, price seconds)
    from tasobuild.pipeline import Solve, load, price
    from tests.e2e import write_spec
    from tests.zoo import ensure_model

    with tempfile.TemporaryDirectory() as tmp:
        spec = write_spec(Path(tmp), ensure_model(model))
        inputs = load(spec, {"optimizer.tiling": "true" if tiling else "false"})
        solve = Solve(inputs.spec, inputs.target, progress=sys.stderr.isatty())
        price(inputs, solve)  # costs measured on first use: not part of the timing
        started = time.perf_counter()
        priced = price(inputs, solve)
        return priced, time.perf_counter() - started


def frontier_seconds(problem, points: int, method: str):  # -> (seconds solving, seconds placing, plans)
    from tasobuild.decide import place
    from tasobuild.solve import Session

    started = time.perf_counter()
    session = Session(problem)
    plans = session.pareto(points, TIME_LIMIT_S) if method == "walk" else session.spaced(points, TIME_LIMIT_S)
    solved = time.perf_counter()
    for plan in plans:
        place(plan, TIME_LIMIT_S)
    return solved - started, time.perf_counter() - solved, plans


BASELINE_ROUND = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from bench.frontier import frontier_seconds, problem_of
priced, _ = problem_of(sys.argv[2], sys.argv[3] == "on")
started = time.process_time()
solve_s, place_s, plans = frontier_seconds(priced.problem, int(sys.argv[4]), "walk")
print(json.dumps({"seconds": solve_s + place_s, "cpu": time.process_time() - started,
                  "points": [[p.peak_bytes, p.time_ns] for p in plans]}))
"""


def against_baseline(model: str, tiling: bool, points: int, baseline: Path) -> list[str]:
    """This tree's walk and the baseline tree's, ROUNDS rounds alternating, each baseline round a fresh process."""
    priced, _ = problem_of(model, tiling)
    ours: list[float] = []
    theirs: list[float] = []
    ours_cpu: list[float] = []  # Z3 runs on one thread: the process's CPU time is what the load does not stretch
    theirs_cpu: list[float] = []
    found: list[tuple[int, int]] = []
    before: list[list[int]] = []
    for _ in range(ROUNDS):
        started = time.process_time()
        solve_s, place_s, plans = frontier_seconds(priced.problem, points, "walk")
        ours_cpu.append(time.process_time() - started)
        ours.append(solve_s + place_s)
        found = [(p.peak_bytes, p.time_ns) for p in plans]
        run = subprocess.run([sys.executable, "-c", BASELINE_ROUND, str(baseline), model, "on" if tiling else "off",
                              str(points)], capture_output=True, text=True, check=True, cwd=baseline)
        answer = json.loads(run.stdout.strip().splitlines()[-1])
        theirs.append(answer["seconds"])
        theirs_cpu.append(answer["cpu"])
        before = answer["points"]
    same = "yes" if [tuple(q) for q in before] == found else "no"
    mine, base = statistics.median(ours), statistics.median(theirs)
    mine_cpu, base_cpu = statistics.median(ours_cpu), statistics.median(theirs_cpu)
    return [f"{model}, tiling {'on' if tiling else 'off'}", f"{len(before)}", f"{base:.2f}", f"{base_cpu:.2f}",
            f"{len(found)}", f"{mine:.2f}", f"{mine_cpu:.2f}", f"{base_cpu / mine_cpu:.2f}x", same]


def peak_step(problem, plan) -> str:
    """The node at the step that sets the plan's peak ("epilogue" after the last)."""
    step = max(range(len(plan.step_bytes)), key=lambda i: (plan.step_bytes[i], -i))
    return problem.nodes[step].name if step < len(problem.nodes) else "epilogue"


def rows_for(model: str, tiling: bool, points: int) -> tuple[list[list[str]], list[list[str]], str]:
    from tasobuild.decide import place
    from tasobuild.solve import Session

    priced, price_s = problem_of(model, tiling)
    problem = priced.problem
    runs: dict[str, list[tuple[float, float]]] = {"walk": [], "spaced": []}
    cpu: dict[str, list[float]] = {"walk": [], "spaced": []}  # this process's CPU: what the load does not stretch
    found: dict[str, list] = {}
    for _ in range(ROUNDS):
        for method in ("walk", "spaced"):
            started = time.process_time()
            solve_s, place_s, plans = frontier_seconds(problem, points, method)
            cpu[method].append(time.process_time() - started)
            runs[method].append((solve_s, place_s))
            found[method] = plans
    label = f"{model}, tiling {'on' if tiling else 'off'}"
    walk_total = statistics.median(s + p for s, p in runs["walk"])
    summary = []
    for method, meaning in (("walk", "walk down (pareto)"), ("spaced", "evenly spaced budgets")):
        total = statistics.median(s + p for s, p in runs[method])
        statuses = sorted({f"{p.status}/{p.tie_break}" for p in found[method]})
        summary.append([label, meaning, f"{len(found[method])}", ", ".join(statuses),
                        f"{statistics.median(s for s, _ in runs[method]):.2f}",
                        f"{statistics.median(p for _, p in runs[method]):.3f}", f"{total:.2f}",
                        f"{statistics.median(cpu[method]):.2f}", f"{total / walk_total:.2f}"])
    kinds = Counter(g.name.split(" ")[-1].split("=")[0] for g in priced.groups)
    points_rows = []
    for plan in found["walk"]:
        groups = sorted({c.group for _, c in plan.choices if c.group})
        points_rows.append([label, f"{place(plan, TIME_LIMIT_S).arena_bytes:,}", f"{plan.peak_bytes:,}",
                            f"{plan.predicted_ms:.3f}", f"{plan.status}/{plan.tie_break}",
                            ", ".join(groups) or "none", peak_step(problem, plan)])
    session = Session(problem)
    lo, _ = session.enc.tensor_bytes_range()
    floors = sorted(((lo[i] + min(problem.aligned(c.workspace_bytes) for c in n.choices), n.name)
                     for i, n in enumerate(problem.nodes)), reverse=True)
    note = (f"{label}: {len(problem.nodes)} nodes, {sum(len(n.choices) for n in problem.nodes)} choices, "
            f"{len(priced.groups)} fused groups on offer ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}"
            f"); pricing {price_s:.2f} s (warm); no plan peaks below {session.floor:,} bytes (the floor: the "
            f"tensors a step always holds plus its smallest workspace); the steps with the highest floors: "
            + ", ".join(f"{name} {b:,}" for b, name in floors[:4]))
    return summary, points_rows, note


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=10)
    parser.add_argument("--baseline", type=Path, help="another tasobuild tree whose walk to time alongside")
    parser.add_argument("models", nargs="*", default=["googlenet"])
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    summaries, points, notes = [], [], []
    for model in args.models:
        for tiling in (True, False):
            summary, rows, note = rows_for(model, tiling, args.points)
            summaries += summary
            points += rows
            notes.append(note)
    versus = "" if args.baseline is None else "\n\n" + table(
        ["network", "baseline points", "baseline walk s", "baseline CPU s", "points", "walk s", "walk CPU s",
         "speed-up (CPU)", "same points"],
        [against_baseline(m, t, args.points, args.baseline) for m in args.models for t in (True, False)]) + (
        "\n\nBaseline: the walk (solve and placement) of the tree given by `--baseline`, in a fresh process per "
        "round, alternating with this tree's; medians of the rounds; the speed-up is the ratio of CPU seconds.")
    body = (
        table(["network", "frontier by", "points", "status / tie break", "solve s", "place s", "total s",
               "total CPU s", "vs walk"], summaries)
        + "\n\n" + table(["network", "arena", "peak", "predicted ms", "status / tie break", "fused groups",
                          "peak set at"], points)
        + "\n\n" + "\n".join(f"* {n}" for n in notes)
        + f"\n\n`--points {args.points}`; seconds are medians of {ROUNDS} rounds, the two methods alternating in one "
        "run, each round a fresh `Session` (encoding included), costs from the warm cost cache (`costs = "
        "\"profile\"`). *Walk down*: what `tasobuild pareto` runs (solve.Session.pareto: from the fastest plan, the "
        "fastest plan with a smaller peak until none exists; every point of the frontier when there are at most "
        "`--points`); *evenly spaced budgets*: what it ran before (Session.spaced). *Place*: decide.place on every "
        "point, as pareto does; *total CPU s*: the process's CPU time for both (Z3 runs on one thread), which the "
        "machine's load does not stretch as it does the wall-clock seconds. Second table: the walk's points, with "
        "the fused groups they run and the node whose step sets their peak."
        + versus + " "
        f"Load average (1 min) before / after the run: {load_before:.1f} / {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores.")
    command = "TASOBUILD_CACHE_DIR=... python bench/frontier.py" + (
        "" if args.baseline is None else " --baseline DIR")
    record("frontier", "GoogLeNet's memory-latency frontier: points, solve and placement time", command, body)


if __name__ == "__main__":
    main()
