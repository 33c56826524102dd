"""Fused tiling (optimizer.tiling: by rows, tasobuild.tiling.rows; by channels, tasobuild.tiling.channels; by patches,
tasobuild.tiling.patches) against untiled plans: FDT's comparison, measured.

    python bench/tiling.py [--networks mobilenet_v1_vww_tf mobilenet_v2_035_float ...] [--rounds 7] [--runs 40]

Per network (the MLPerf Tiny models as TensorFlow exports them, float32; MobileNetV2-0.35 is the float model the
int8 fixture came from), these plans are built (profiled costs) and compiled:
  untiled fastest, tiled fastest      the fastest plan with and without tiling (no memory limit)
  untiled smallest, tiled smallest    each at the smallest budget that has a plan (found by the solver)
  tiled at untiled smallest           the fastest tiled plan in the memory the smallest untiled plan needs
  fdt +N%                             channel tiling only (FDT): per predicted cap N of FDT_CAPS over the untiled
                                      fastest plan, the smallest plan within it (each distinct arena once; built in
                                      process: the spec has no switch for one kind). "fdt only" is the smallest of
                                      them whose MEASURED time is within 2% (issue 16)
  patches only                        patch-based inference only (halos recomputed): the smallest plan, and the
                                      fastest in that memory (in process, as fdt only)
then run in alternating rounds, with ONNX Runtime (1 thread) in each round, so all see the same machine state.
Memory is the arena (input and output included); times are the binaries' `--bench` medians, then the median over
rounds; ratios are paired per round against the untiled fastest plan. TFLM is TensorFlow Lite Micro's arena for
the same model (tests/zoo/tflm_arena.py, issue 16). A second table gives the smallest peak (live
bytes, before placement) with row tiling only, channel tiling only, patches only and all kinds, solved in process
from the same costs.
`--fdt`: the untiled fastest plan and the FDT-only frontier alone, each point with the arena the untiled plans reach
in the same predicted time (FDT's own saving), written as BENCHMARKS.md's "FDT-only frontier" section.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from common import ROOT, make, median, record, table, user_env
from peers import median_ms, ort_peer

from tests.e2e import run_binary, write_spec
from tests.zoo import ensure_model

if TYPE_CHECKING:
    from tasobuild.pipeline import Planned

NETWORKS = ["mobilenet_v1_vww_tf", "mobilenet_v2_035_float", "ds_cnn_tf", "resnet8_tf"]
TILED = "tiling = true\n"
# Not in the zoo: the float model tests/fixtures/int8's MobileNetV2-0.35 was quantised from.
FLOAT_FIXTURES = {"mobilenet_v2_035_float": ROOT / "tests" / "fixtures" / "int8" / "mobilenet_v2_035.float.onnx"}
# TensorFlow Lite Micro's arena (input and output included) for the TensorFlow exports: issue 16's table.
TFLM_BYTES = {"ds_cnn_tf": 64_000, "resnet8_tf": 196_608, "mobilenet_v1_vww_tf": 294_912,
              "mobilenet_v2_035_float": 552_960}
FDT_OVERHEAD = 0.02  # issue 16: an FDT-only point at most this much slower, measured
FDT_CAPS = (0.0, 0.01, 0.02, 0.04, 0.08)  # the FDT-only frontier: predicted overhead caps, smallest plan each


def model_of(name: str) -> Path:
    return FLOAT_FIXTURES[name] if name in FLOAT_FIXTURES else ensure_model(name)


def build(name: str, workdir: Path, memory: str, extra: str) -> dict:
    """The build's report; at a budget `plan` found a plan for whose buffers the build cannot place (fragmentation),
    at the arena the build names instead."""
    workdir.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        spec = write_spec(workdir, model_of(name), memory=memory, extra=extra)
        proc = subprocess.run([sys.executable, "-m", "tasobuild", "build", "-c", str(spec), "--json"],
                              capture_output=True, text=True, cwd=ROOT, env=user_env())
        if proc.returncode == 0:
            return json.loads(proc.stdout)
        found = re.search(r"smallest arena found is (\d+) bytes", proc.stderr)
        if found is None:
            break
        memory = f"{found.group(1)} B"
    raise SystemExit(f"{name}: build at {memory} failed:\n{proc.stderr}")


def rendered(planned: Planned, workdir: Path) -> dict:
    """A plan made in process, rendered into workdir/out; its report's keys this script reads."""
    from tasobuild.pipeline import program_of, render

    decision = planned.decision
    for path, data in render(program_of(planned)).items():
        (workdir / "out" / path).parent.mkdir(parents=True, exist_ok=True)
        (workdir / "out" / path).write_bytes(data)
    return {"arena_bytes": decision.arena.arena_bytes, "predicted_ms": decision.plan.predicted_ms,
            "nodes": [{"tiling": c.group} for _, c in decision.plan.choices],
            "solver": {"seconds": decision.plan.solver_seconds}}


def build_fdt_frontier(name: str, workdir: Path) -> dict[str, dict]:
    """FDT-only plans (channel groups only, no row or patch groups): per predicted overhead cap of FDT_CAPS over the
    fastest untiled plan, the smallest plan within it (each distinct arena once), rendered into workdir/<label>/out;
    by label ("fdt +2%"), its report's keys this script reads."""
    from tasobuild.decide import decide, to_problem
    from tasobuild.pipeline import Planned, Solve, load, price

    workdir.mkdir(parents=True, exist_ok=True)
    inputs = load(write_spec(workdir, model_of(name), extra=TILED))
    priced = price(inputs, Solve(inputs.spec, inputs.target))
    limit = inputs.spec.optimizer.time_limit / 1000.0  # ms
    costs = priced.costed.costs
    untiled = to_problem(inputs.graph, priced.nodes, priced.transforms, costs)
    # a cap at the fastest plan's own time, plus a nanosecond: the solver rounds times to ns
    fastest_ms = decide(untiled, 2**32, "latency", None, limit).plan.predicted_ms + 1e-6
    channels = tuple(g for g in priced.groups if "channels=" in g.name)
    problem = to_problem(inputs.graph, priced.nodes, priced.transforms, costs, channels)
    # before paths could end on a residual add: the same groups but those
    adds = {n.name for n in inputs.graph.nodes if n.op == "add"}
    no_add = to_problem(inputs.graph, priced.nodes, priced.transforms, costs,
                        tuple(g for g in channels if inputs.graph.nodes[g.members[-1]].op != "add"))
    points: dict[str, dict] = {}
    arenas: set[int] = set()
    for cap in FDT_CAPS:
        decision = decide(problem, 2**32, "memory", fastest_ms * (1 + cap), limit)
        if decision.arena.arena_bytes in arenas:
            continue
        arenas.add(decision.arena.arena_bytes)
        label = f"fdt +{cap:.0%}"
        (workdir / label).mkdir(exist_ok=True)
        planned = Planned(inputs.spec, inputs.target, inputs.graph, priced.nodes, priced.transforms, priced.costed,
                          decision, channels)
        points[label] = rendered(planned, workdir / label)
        # what the same predicted time buys without channel groups: FDT's own saving is the difference
        points[label]["untiled_arena_bytes"] = decide(untiled, 2**32, "memory", fastest_ms * (1 + cap),
                                                      limit).arena.arena_bytes
        points[label]["no_add_arena_bytes"] = decide(no_add, 2**32, "memory", fastest_ms * (1 + cap),
                                                     limit).arena.arena_bytes
        points[label]["adds_in_paths"] = sum(1 for name, c in decision.plan.choices if c.group and name in adds)
    return points


def build_patches_only(name: str, workdir: Path) -> dict:
    """The smallest plan with patch groups only (no row or channel groups), then the fastest plan in that memory,
    rendered into workdir/out; its report's keys this script reads."""
    from tasobuild.decide import decide, to_problem
    from tasobuild.pipeline import Planned, Solve, load, price

    workdir.mkdir(parents=True, exist_ok=True)
    inputs = load(write_spec(workdir, model_of(name), extra=TILED))
    priced = price(inputs, Solve(inputs.spec, inputs.target))
    limit = inputs.spec.optimizer.time_limit / 1000.0  # ms
    patches = tuple(g for g in priced.groups if " patches " in g.name)
    problem = to_problem(inputs.graph, priced.nodes, priced.transforms, priced.costed.costs, patches)
    smallest = decide(problem, 2**32, "memory", None, limit).arena.arena_bytes
    decision = decide(problem, smallest, "latency", None, limit)
    planned = Planned(inputs.spec, inputs.target, inputs.graph, priced.nodes, priced.transforms, priced.costed,
                      decision, patches)
    return rendered(planned, workdir)


def smallest_budget(model: str, workdir: Path, extra: str) -> int:
    """The smallest arena with a plan: the solver names the smallest peak; if placing its buffers needs more
    (fragmentation), the build names the arena it found."""
    workdir.mkdir(parents=True, exist_ok=True)
    budget = 1
    for _ in range(2):
        spec = write_spec(workdir, model_of(model), memory=f"{budget} B", extra=extra)
        proc = subprocess.run([sys.executable, "-m", "tasobuild", "plan", "-c", str(spec)], capture_output=True,
                              text=True, cwd=ROOT, env=user_env())
        if proc.returncode == 0:
            return budget
        found = re.search(r"smallest (?:budget with a plan is|arena found is) (\d+) bytes", proc.stderr)
        if found is None:
            raise SystemExit(f"{model}: expected a too-small-budget error, got:\n{proc.stderr}")
        budget = int(found.group(1))
    return budget


def smallest_peaks(model: str, workdir: Path) -> dict[str, int]:
    """The smallest peak with no tiling, rows only, channels only, patches only and all kinds (the costs are cached
    by now)."""
    from dataclasses import replace

    from tasobuild.pipeline import Solve, load, price
    from tasobuild.solve import Session

    workdir.mkdir(parents=True, exist_ok=True)
    spec = write_spec(workdir, model_of(model), extra=TILED)
    inputs = load(spec)
    problem = price(inputs, Solve(inputs.spec, inputs.target)).problem
    kinds = {"untiled": lambda g: not g, "rows": lambda g: not g or "rows=" in g,
             "channels": lambda g: not g or "channels=" in g, "patches": lambda g: not g or " patches " in g,
             "all": lambda g: True}
    return {kind: Session(replace(problem, nodes=tuple(replace(n, choices=tuple(c for c in n.choices if keep(c.group)))
                                                       for n in problem.nodes))).min_peak_bytes()
            for kind, keep in kinds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="*", default=NETWORKS)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--fdt", action="store_true",
                        help="the untiled fastest plan and the FDT-only frontier only (its own BENCHMARKS.md section)")
    parser.add_argument("--section", help="the BENCHMARKS.md section to write (default: tiling, with --fdt tiling_fdt)")
    args = parser.parse_args()
    section = args.section or ("tiling_fdt" if args.fdt else "tiling")
    rows, memory_rows, fdt_rows = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks:
            work = Path(tmp) / name
            plans = {"untiled fastest": ("4 GiB", "")}
            if not args.fdt:
                small_untiled = smallest_budget(name, work / "probe_untiled", "")
                small_tiled = smallest_budget(name, work / "probe_tiled", TILED)
                plans |= {"tiled fastest": ("4 GiB", TILED), "untiled smallest": (f"{small_untiled} B", ""),
                          "tiled smallest": (f"{small_tiled} B", TILED),
                          "tiled at untiled smallest": (f"{small_untiled} B", TILED)}
            built = {}
            for label, (memory, extra) in plans.items():
                folder = work / label.replace(" ", "_")
                report = build(name, folder, memory, extra)
                make(folder / "out")
                built[label] = (report, folder / "out" / "net_main")
            for label, report in build_fdt_frontier(name, work / "fdt").items():
                make(work / "fdt" / label / "out")
                built[label] = (report, work / "fdt" / label / "out" / "net_main")
            if not args.fdt:
                report = build_patches_only(name, work / "patches_only")
                make(work / "patches_only" / "out")
                built["patches only"] = (report, work / "patches_only" / "out" / "net_main")
            model = model_of(name)
            dims = [d.dim_value for d in onnx.load(str(model), load_external_data=False)
                    .graph.input[0].type.tensor_type.shape.dim]
            x = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
            ort = ort_peer(model, threads=1)
            times: dict[str, list[float]] = {label: [] for label in [*built, "ORT"]}
            for _ in range(args.rounds):
                for label, (_, binary) in built.items():
                    times[label].append(run_binary(binary, x, work, bench=args.runs)[1])
                times["ORT"].append(median_ms(ort, x, args.runs))
            base = times["untiled fastest"]
            ratio = {label: statistics.median(a / b for a, b in zip(times[label], base)) for label in built}
            fdt = [label for label in built if label.startswith("fdt +")]
            within = [label for label in fdt if ratio[label] <= 1 + FDT_OVERHEAD]
            fdt_only = min(within, key=lambda label: built[label][0]["arena_bytes"]) if within else None
            for label, (report, _) in built.items():
                fused = sum(1 for n in report["nodes"] if n["tiling"])
                rows.append([name, label, f"{report['arena_bytes'] / 1024:.0f}", f"{report['predicted_ms']:.3f}",
                             f"{median(times[label]):.3f}",
                             f"{ratio[label]:.3f}",
                             f"{median(times[label]) / median(times['ORT']):.2f}", str(fused),
                             f"{report['solver']['seconds']:.2f}"])
                print(rows[-1], file=sys.stderr)
            if args.fdt:
                for label in fdt:
                    report = built[label][0]
                    fdt_rows.append([name, label, f"{report['arena_bytes']:,}", f"{report['no_add_arena_bytes']:,}",
                                     str(report["adds_in_paths"]), f"{report['untiled_arena_bytes']:,}",
                                     f"{1 - report['arena_bytes'] / report['untiled_arena_bytes']:.0%}",
                                     f"{report['predicted_ms'] / built['untiled fastest'][0]['predicted_ms']:.3f}",
                                     f"{ratio[label]:.3f}", str(sum(1 for n in report["nodes"] if n["tiling"])),
                                     "yes" if label == fdt_only else ""])
                continue
            peaks = smallest_peaks(name, work / "peaks")
            # the probe's budget has a plan; the build placed its arena (smaller, or larger where it could not place)
            small_untiled = built["untiled smallest"][0]["arena_bytes"]
            small_tiled = built["tiled smallest"][0]["arena_bytes"]
            tflm = TFLM_BYTES.get(name)
            memory_rows.append([name, f"{tflm:,}" if tflm else "-", f"{small_untiled:,}", f"{small_tiled:,}",
                                f"{peaks['all']:,}",
                                f"{tflm / small_tiled:.2f}x" if tflm else "-",
                                f"{built[fdt_only][0]['arena_bytes']:,} ({fdt_only})" if fdt_only else "none",
                                f"{built['patches only'][0]['arena_bytes']:,}",
                                *(f"{peaks[k] / 1024:.0f} ({1 - peaks[k] / peaks['untiled']:.0%})"
                                  for k in ("untiled", "rows", "channels", "patches", "all"))])
    if args.fdt:
        record(section, "The FDT-only frontier: predicted and measured (channel groups costed as they run)",
               f"python bench/tiling.py --fdt --networks {' '.join(args.networks)} --rounds {args.rounds} "
               f"--runs {args.runs}" + (f" --section {section}" if section != "tiling_fdt" else ""),
               table(["network", "point (predicted cap)", "arena B", "without paths ending on an add B",
                      "residual adds in paths", "untiled arena B in that time", "FDT saves",
                      "predicted vs untiled fastest", "measured vs untiled fastest", "fused nodes",
                      "fdt only (<= 2% measured)"], fdt_rows)
               + "\n\n" + table(["network", "plan", "arena KiB", "predicted ms", "measured ms", "vs untiled fastest",
                                  "vs ORT", "fused nodes", "solver s"], rows))
        return
    body = (table(["network", "TFLM B", "smallest arena untiled B", "smallest arena tiled B",
                   "smallest peak tiled B", "TFLM / tiled",
                   "fdt only arena B", "patches only arena B",
                   "peak untiled KiB", "peak rows only", "peak channels only", "peak patches only", "peak all"],
                  memory_rows)
            + "\n\n" + table(["network", "plan", "arena KiB", "predicted ms", "measured ms", "vs untiled fastest",
                              "vs ORT", "fused nodes", "solver s"], rows))
    record(section, "Fused tiling vs untiled plans (FDT's comparison; measured, same run)",
           f"python bench/tiling.py --networks {' '.join(args.networks)} --rounds {args.rounds} --runs {args.runs}"
           + (f" --section {section}" if section != "tiling" else ""),
           body)


if __name__ == "__main__":
    sys.exit(main())
