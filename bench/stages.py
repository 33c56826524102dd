"""Where a build's time goes, stage by stage, and how long the emitted project takes to compile.

    python bench/stages.py [--networks vgg16 googlenet]

Issue 2 asks that VGG-16 (550 MB of float32 weights) emit and compile in well under a minute: its weights go into a
binary blob linked with .incbin, not a C array. Costs come from the cost cache (the first run profiles; the table
is from a run with the cache warm), planned from the same primitive subset the end-to-end tests use.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import build_project, make, record, table
from tests.test_end_to_end import BIG_NETWORK_PRIMITIVES


def stage_times(spec: Path) -> dict[str, float]:
    from tasobuild import build as b
    from tasobuild.costs.stage import measure_costs
    from tasobuild.emit.project import project_files
    from tasobuild.emit.tree import replace_tree
    from tasobuild.importer import import_onnx
    from tasobuild.optimize import decide, to_problem
    from tasobuild.resources import kernels_dir

    times: dict[str, float] = {}

    def clock(name, fn):
        start = time.perf_counter()
        value = fn()
        times[name] = time.perf_counter() - start
        return value

    spec_, target = clock("spec + target", lambda: b.load_settings(b.Options(spec)))
    graph = clock("ONNX import", lambda: import_onnx(spec_.onnx_path))
    nodes, transforms = clock("candidates", lambda: b.candidates_of(spec_, graph))
    costed = clock("costs (cache)", lambda: measure_costs(spec_, target, b.all_calls(nodes, transforms), False))
    problem = clock("problem", lambda: to_problem(graph, nodes, transforms, costed.costs))
    c = spec_.constraints
    decision = clock("solve + arena", lambda: decide(problem, c.memory, c.objective, c.latency, 10.0))
    planned = b.Planned(spec_, target, graph, nodes, transforms, costed, decision)
    program = clock("lower (weight transforms)", lambda: b.program_of(planned))
    files = clock("render", lambda: project_files(program, kernels_dir()))
    clock("write tree", lambda: replace_tree(spec_.out_dir, files, ()))
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
