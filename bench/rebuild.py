"""Issue 6: how fast a no-op build and a budget-change rebuild are, and what a budget change rewrites.

    python bench/rebuild.py [--network googlenet] [--baseline OLD_TREE]

--baseline names another tasobuild source tree (e.g. a checkout of an older commit): its no-op and rebuild times
are measured in the same run, interleaved with this tree's, so the ratio is fair on a busy machine.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import ROOT, build_project, make, median, record, table, tasobuild


@dataclass(frozen=True)
class Tree:
    """One tasobuild source tree and the project it builds."""

    label: str
    root: Path
    work: Path


def timed_run(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of the child processes, result) of fn()."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    result = fn()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - start, cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="googlenet")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="another tasobuild source tree, measured side by side")
    parser.add_argument("--baseline-name", default="the baseline tree", help="what to call it in BENCHMARKS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = [Tree("this tree", ROOT, Path(tmp) / "new")]
        if args.baseline:
            trees.append(Tree("baseline", args.baseline.resolve(), Path(tmp) / "old"))
        firsts, specs = {}, {}
        for tree in trees:  # profiles (or hits the cost cache)
            firsts[tree.label], specs[tree.label] = build_project(args.network, tree.work, memory="64 MiB",
                                                                  root=tree.root)
        first, spec = firsts["this tree"], specs["this tree"]
        out = spec.parent / "out"
        full_compile = make(out)
        noop = {tree.label: [] for tree in trees}
        for _ in range(args.repeat):
            for tree in trees:
                spec_path = str(specs[tree.label])
                noop[tree.label].append(timed_run(lambda t=tree, s=spec_path: tasobuild("build", "-c", s,
                                                                                         root=t.root))[:2])
        # Budgets between the smallest that has a plan and the fastest plan's arena, so that plans change.
        fastest = first["baselines"]["time_only"]["arena_bytes"]
        probe = subprocess.run([sys.executable, "-m", "tasobuild", "plan", "-c", str(spec), "--memory", "1KiB"],
                               capture_output=True, text=True, cwd=ROOT)
        smallest = int(re.search(r"smallest budget with a plan is (\d+)", probe.stderr).group(1))
        budgets = [smallest + (fastest - smallest) * k // 100 for k in (90, 30, 60, 5, 100, 45, 75)]
        rows, compile_times, rewritten = [], [], []
        rebuild = {tree.label: [] for tree in trees}
        for budget in budgets[: args.repeat]:
            for tree in trees:
                wall, cpu, (report, _) = timed_run(lambda t=tree, b=budget: build_project(
                    args.network, t.work, memory="64 MiB", args=("--memory", f"{b}B"), root=t.root))
                rebuild[tree.label].append((wall, cpu))
                if tree.label == "this tree":
                    mine = report, wall
            report, wall = mine
            compile_times.append(make(out))
            rewritten.append(len(report["files"]["written"]))
            total = len(report["files"]["written"]) + len(report["files"]["unchanged"])
            rows.append([f"{budget}", f"{report['arena_bytes']}", f"{report['predicted_ms']:.2f}",
                         str(report["profiled"]), f"{len(report['files']['written'])}/{total}",
                         ", ".join(report["files"]["written"]), f"{wall:.2f}", f"{compile_times[-1]:.2f}"])

    def wall(xs):
        return median([w for w, _ in xs])

    def cpu(xs):
        return median([c for _, c in xs])

    summary_rows = [
        ["no-op build (`tasobuild build`, nothing changed), s", f"{wall(noop['this tree']):.3f}",
         f"{cpu(noop['this tree']):.3f}"],
        [f"budget-change rebuild of {args.network}, excluding the C compiler, s", f"{wall(rebuild['this tree']):.2f}",
         f"{cpu(rebuild['this tree']):.2f}"],
        ["files rewritten per budget change", f"{median(rewritten):g}", ""],
        ["C recompile after a budget change (`make -j2`), s", f"{median(compile_times):.2f}", ""],
        ["full C compile of the project (`make -j2`), s", f"{full_compile:.2f}", ""],
    ]
    summary = table(["what", "median wall", "median CPU"], summary_rows)
    side = ""
    if args.baseline:
        pairs = [("no-op build, s", noop), ("budget-change rebuild, s", rebuild)]
        side_rows = [[what, f"{wall(d['baseline']):.3f}", f"{wall(d['this tree']):.3f}",
                      f"{wall(d['this tree']) / wall(d['baseline']):.2f}", f"{cpu(d['baseline']):.3f}",
                      f"{cpu(d['this tree']):.3f}", f"{cpu(d['this tree']) / cpu(d['baseline']):.2f}"]
                     for what, d in pairs]
        side = (f"\n\nSide by side with {args.baseline_name}, interleaved in this run (medians; CPU = user + system "
                f"of the tasobuild process, which a busy machine inflates less than wall time):\n\n" +
                table(["what", "baseline wall", "this wall", "ratio", "baseline CPU", "this CPU", "ratio"],
                      side_rows))
    detail = table(["budget B", "arena B", "predicted ms", "profiled", "rewritten", "which", "rebuild s",
                    "recompile s"], rows)
    command = "python bench/rebuild.py" + (" --baseline OLD_TREE" if args.baseline else "")
    record("rebuild", f"Incremental rebuilds ({args.network})", command,
           f"Goals: no-op ≤ 0.3 s; budget-change rebuild ≤ 2 s. Each build is a fresh `python -m tasobuild` process "
           f"with Python's bytecode cache on, as a user's shell or a pip install has it (bench/common.py user_env)."
           f"\n\n{summary}{side}\n\nEach budget change:\n\n{detail}")


if __name__ == "__main__":
    sys.exit(main())
