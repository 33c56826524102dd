"""Issue 6: how fast a no-op build and a budget-change rebuild are, and what a budget change rewrites.

    python bench/rebuild.py [--network googlenet]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import build_project, make, median, record, table, tasobuild, timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="googlenet")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        first, spec = build_project(args.network, work, memory="64 MiB")  # profiles (or hits the cost cache)
        out = spec.parent / "out"
        full_compile = make(out)
        noop = timed(lambda: tasobuild("build", "-c", str(spec)), args.repeat)
        # Budgets between the smallest that has a plan and the fastest plan's arena, so that plans change.
        fastest = first["baselines"]["time_only"]["arena_bytes"]
        probe = subprocess.run([sys.executable, "-m", "tasobuild", "plan", "-c", str(spec), "--memory", "1KiB"],
                               capture_output=True, text=True)
        smallest = int(re.search(r"smallest budget with a plan is (\d+)", probe.stderr).group(1))
        budgets = [smallest + (fastest - smallest) * k // 100 for k in (90, 30, 60, 5, 100, 45, 75)]
        rows, rebuild_times, compile_times, rewritten = [], [], [], []
        for budget in budgets[: args.repeat]:
            start = time.perf_counter()
            report, _ = build_project(args.network, work, memory="64 MiB", args=("--memory", f"{budget}B"))
            rebuild_times.append(time.perf_counter() - start)
            compile_times.append(make(out))
            rewritten.append(len(report["files"]["written"]))
            total = len(report["files"]["written"]) + len(report["files"]["unchanged"])
            rows.append([f"{budget}", f"{report['arena_bytes']}", f"{report['predicted_ms']:.2f}",
                         str(report["profiled"]), f"{len(report['files']['written'])}/{total}",
                         ", ".join(report["files"]["written"]), f"{rebuild_times[-1]:.2f}", f"{compile_times[-1]:.2f}"])
    summary = table(["what", "median"], [
        ["no-op build (`tasobuild build`, nothing changed), s", f"{median(noop):.3f}"],
        [f"budget-change rebuild of {args.network}, excluding the C compiler, s", f"{median(rebuild_times):.2f}"],
        ["files rewritten per budget change", f"{median(rewritten):g}"],
        ["C recompile after a budget change (`make -j2`), s", f"{median(compile_times):.2f}"],
        ["full C compile of the project (`make -j2`), s", f"{full_compile:.2f}"],
    ])
    detail = table(["budget B", "arena B", "predicted ms", "profiled", "rewritten", "which", "rebuild s",
                    "recompile s"], rows)
    record("rebuild", f"Incremental rebuilds ({args.network})", "python bench/rebuild.py",
           f"Goals: no-op ≤ 0.3 s; budget-change rebuild ≤ 2 s.\n\n{summary}\n\nEach budget change:\n\n{detail}")


if __name__ == "__main__":
    sys.exit(main())
