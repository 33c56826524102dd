"""Where a build's time goes, stage by stage, and how long the emitted project takes to compile.

    python bench/stages.py [--networks vgg16 googlenet]

Issue 2 asks that VGG-16 (550 MB of float32 weights) emit and compile in well under a minute: its weights go into a
binary blob linked with .incbin, not a C array. Costs come from the cost cache (the first run profiles; the table
is from a run with the cache warm), planned from the same primitive subset the end-to-end tests use.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import build_project, make, record, table

from tests.test_end_to_end import BIG_NETWORK_PRIMITIVES


def stage_times(spec: Path) -> dict[str, float]:
    from tasobuild import pipeline as p
    from tasobuild.decide import to_problem
    from tasobuild.digest import sha256_file
    from tasobuild.incremental.tree import commit, plan_tree

    times: dict[str, float] = {}

    def clock(name, fn):
        start = time.perf_counter()
        value = fn()
        times[name] = time.perf_counter() - start
        return value

    spec_, target = clock("spec + target", lambda: p.load_settings(spec, {}))
    graph = clock("ONNX import", lambda: p.imported_graph(spec_.onnx_path, sha256_file(spec_.onnx_path)))
    solve = p.Solve(spec_, target)
    nodes, transforms = clock("candidates", lambda: p.candidates_of(spec_, graph))
    costed = clock("costs (cache)", lambda: solve.costs(p.all_calls(nodes, transforms)))
    problem = clock("problem", lambda: to_problem(graph, nodes, transforms, costed.costs))
    decision = clock("solve + arena", lambda: solve.decide(problem))
    planned = p.Planned(spec_, target, graph, nodes, transforms, costed, decision)
    program = clock("lower (weight transforms)", lambda: p.program_of(planned))
    files = clock("render", lambda: p.render(program))
    scratch = Path(tempfile.mkdtemp(prefix="tasobuild-bench-"))  # a first build's write, lock and all
    clock("write tree", lambda: commit(scratch / "out", files, plan_tree(scratch / "out", files, None,
                                                                           scratch / "bench.lock"),
                                       scratch / "bench.lock", "version = 1\n"))
    shutil.rmtree(scratch)
    times["weights MB"] = program.weight_bytes / 1e6
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="*", default=["vgg16", "googlenet"])
    args = parser.parse_args()
    primitives = "primitives = [" + ", ".join(f'"{p}"' for p in BIG_NETWORK_PRIMITIVES) + "]\n"
    columns: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks:
            work = Path(tmp) / name
            _, spec = build_project(name, work, extra=primitives)  # warms the cost cache
            for path in (work / "out").iterdir():  # start the timed emission from an empty tree
                if path.is_file():
                    path.unlink()
            import shutil

            shutil.rmtree(work / "out")
            times = stage_times(spec)
            times["total build"] = sum(v for k, v in times.items() if k != "weights MB")
            times["C compile (make -j2)"] = make(work / "out")
            columns[name] = times
    names = list(columns)
    rows = [[stage] + [f"{columns[n][stage]:.2f}" for n in names] for stage in columns[names[0]]]
    record("stages", "Build stages and C compile time (seconds; warm cost cache)", "python bench/stages.py",
           f"Goal (issue 2): VGG-16 emits and compiles in well under a minute.\n\n{table(['stage'] + names, rows)}")


if __name__ == "__main__":
    sys.exit(main())
