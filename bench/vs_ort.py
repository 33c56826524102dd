"""The emitted C against ONNX Runtime and OpenVINO, same machine, same run (issues 3 and 19).

    python bench/vs_ort.py [--networks resnet18 googlenet ...] [--runs 30] [--threads N] [--costs auto]
                           [--no-tiled] [--section NAME] [--fresh-cache]

For each network: build with tasobuild (full primitive library, profiled costs unless --costs says otherwise, a
budget that does not bind) on one thread and on N threads (`--threads`, default all cores), compile, then alternate
batches of our binaries' `--bench` and each peer's timed runs (bench/peers.py: ONNX Runtime and OpenVINO, one thread
and all cores) on the same input so all see the same machine state; report the medians, the ratio to the best peer
on as many threads (< 1 means faster) and our speed-up from 1 to N threads, and check every peer's output and our
N-thread output against ours (the N-thread output bit for bit when the plan's primitives are the same). With fused
tiling on (`tiling = true`, unless --no-tiled), two more one-thread plans run in the same rounds: the fastest one,
and the one in the smallest arena. Also reports the shared GEMM's GFLOP/s on a large 1x1 convolution as a
fraction of one core's measured peak (bench/peak.py), and the load average (other work on the machine) during the
run: a figure on more than one thread means something only on an otherwise idle machine. --fresh-cache builds
with an empty cost cache (a temporary TASOBUILD_CACHE_DIR), as a first build on a new machine does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import make, median, record, table, tasobuild
from peak import measured_peak_gflops
from peers import all_cores, max_error, median_ms, peers
from tiling import TILED, smallest_budget

from tests.e2e import run_binary, write_spec
from tests.zoo import ensure_model

NETWORKS = ["resnet18", "googlenet", "mobilenetv2", "squeezenet11", "vgg16"]


def gemm_gflops() -> float:
    """The shared GEMM as the 1x1 convolution 1152 -> 256 channels at 56x56 runs it (M=256, N=3136, K=1152)."""
    from tasobuild import native
    from tasobuild.costs.profile import make_buffers
    from tasobuild.primitives.registry import library
    from tasobuild.target import load_target
    from tests.test_conv_primitives import Case, conv_graph

    node, graph, _ = conv_graph(Case(1152, 56, 56, 256, (1, 1)))
    (call,) = next(p for p in library() if p.name == "conv_1x1_gemm_chw").call(node, graph)
    target = load_target("host", Path("."))
    kernels = native.load(target.cc, tuple(target.cflags))
    seconds = kernels.bench(call, make_buffers(call), warmup=3, reps=15)
    return 2 * 256 * 3136 * 1152 / float(np.median(seconds)) / 1e9


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="*", default=NETWORKS)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=all_cores(), help="our multi-threaded plan's threads")
    parser.add_argument("--costs", default="profile", choices=("profile", "auto", "model"))
    parser.add_argument("--no-tiled", action="store_true", help="skip the fused tiling plans")
    parser.add_argument("--section", default="vs_ort", help="the BENCHMARKS.md section to write (a partial run "
                                                            "beside the full one)")
    parser.add_argument("--fresh-cache", action="store_true", help="build with an empty cost cache")
    args = parser.parse_args()
    fresh = tempfile.TemporaryDirectory() if args.fresh_cache else None
    if fresh is not None:  # the builds (subprocesses) and the bindings loaded here see it
        os.environ["TASOBUILD_CACHE_DIR"] = fresh.name
    loads = [os.getloadavg()[0]]
    rows = []
    labels: list[str] = []
    costs = f'costs = "{args.costs}"'

    def build(name: str, workdir: Path, extra: str = "", memory: str = "4 GiB", threads: int = 1) -> dict:
        workdir.mkdir(parents=True, exist_ok=True)
        spec = write_spec(workdir, ensure_model(name), memory=memory, extra=extra)
        spec.write_text(spec.read_text().replace('costs = "profile"', costs, 1))
        flags = ("--threads", str(threads)) if threads > 1 else ()
        report: dict = json.loads(tasobuild("build", "-c", str(spec), "--json", *flags).stdout)
        return report

    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks:
            work = Path(tmp) / name
            report = build(name, work / "untiled")
            threaded = build(name, work / "threads", threads=args.threads)
            plans = ["untiled", "threads"]
            fastest = smallest = None
            if not args.no_tiled:
                fastest = build(name, work / "tiled", extra=TILED)
                smallest = build(name, work / "tiled_small", extra=TILED,
                                 memory=f"{smallest_budget(name, work / 'probe', TILED)} B")
                plans += ["tiled", "tiled_small"]
            binaries = [work / d / "out" / "net_main" for d in plans]
            for binary in binaries:
                make(binary.parent)
            model = ensure_model(name)
            x = np.random.default_rng(0).standard_normal(
                [d.dim_value for d in __import__("onnx").load(str(model), load_external_data=False)
                 .graph.input[0].type.tensor_type.shape.dim]).astype(np.float32)
            others = peers(model)
            labels = [p.label for p in others]
            output = run_binary(binaries[0], x, work)[0]
            errors = [max_error(output, p.run(x)) for p in others]
            same_plan = [n["primitive"].split("@")[0] for n in threaded["nodes"]] == \
                [n["primitive"] for n in report["nodes"]]
            threaded_output = run_binary(binaries[1], x, work)[0]
            identical = "bit-identical" if threaded_output.tobytes() == output.tobytes() else \
                f"{max_error(output, threaded_output):.1e}" + ("" if not same_plan else " (same plan!)")
            ours: list[list[float]] = [[] for _ in binaries]
            theirs: list[list[float]] = [[] for _ in others]
            cpu_wall: list[list[float]] = [[] for _ in binaries]  # the program's CPU time over its wall time
            for _ in range(args.rounds):  # interleaved: all see the same machine state
                for times, ratios, binary in zip(ours, cpu_wall, binaries):
                    before, start = children_cpu(), time.perf_counter()
                    times.append(run_binary(binary, x, work, bench=args.runs)[1])
                    ratios.append((children_cpu() - before) / (time.perf_counter() - start))
                for times, peer in zip(theirs, others):
                    times.append(median_ms(peer, x, args.runs))
                loads.append(os.getloadavg()[0])
            peer_ms = [median(t) for t in theirs]
            best_one = min(ms for ms, p in zip(peer_ms, others) if p.threads == 1)
            best_all = min(ms for ms, p in zip(peer_ms, others) if p.threads == all_cores())
            families = sorted({n["primitive"] for n in report["nodes"] if n["op"] == "conv"})
            ratio = [f"{median(t) / best_one:.2f}" for t in ours]
            nodes = threaded["nodes"]
            convs = sum(n["op"] == "conv" for n in nodes)
            split_convs = sum("@" in n["primitive"] for n in nodes if n["op"] == "conv")
            split_others = sum("@" in n["primitive"] for n in nodes) - split_convs
            split = f"{split_convs}/{convs} conv, {split_others}/{len(nodes) - convs} other"
            tiled = ["-"] * 4 if fastest is None or smallest is None else [
                ratio[2], f"{fastest['arena_bytes'] / 2**20:.1f}", ratio[3], f"{smallest['arena_bytes'] / 2**20:.2f}"]
            rows.append([name, f"{median(ours[0]):.2f}", f"{median(ours[1]):.2f}", *[f"{ms:.2f}" for ms in peer_ms],
                         ratio[0], f"{median(ours[1]) / best_all:.2f}", f"{median(ours[0]) / median(ours[1]):.2f}",
                         split, f"{median(cpu_wall[1]):.2f}", identical, f"{max(errors):.1e}",
                         f"{report['arena_bytes'] / 2**20:.1f}",
                         f"{threaded['arena_bytes'] / 2**20:.1f}", *tiled, ", ".join(families)])
            print(rows[-1], file=sys.stderr)
    peak, how = measured_peak_gflops()
    try:
        gemm = gemm_gflops()
        gemm_line = f"Shared GEMM, 256x3136x1152: {gemm:.1f} GFLOP/s = {gemm / peak:.0%} of the core's peak " \
                    f"{peak:.0f} GFLOP/s ({how})."
    except Exception as error:  # the figure is a side note; the table is the point
        gemm_line = f"(GEMM figure unavailable: {error})"
    n = args.threads
    body = table(["network", "ours 1t ms", f"ours {n}t ms", *[f"{label} ms" for label in labels], "ours/best 1t",
                  f"ours {n}t/best {all_cores()}t", f"ours 1t/{n}t", f"split layers {n}t", f"CPU/wall ours {n}t",
                  f"{n}t vs 1t output",
                  "max err", "arena MiB", f"arena MiB {n}t", "tiled fastest /best 1t", "arena MiB",
                  "tiled smallest /best 1t", "arena MiB", "conv primitives chosen (untiled, 1t)"], rows)
    notes = ("Peers: ONNX Runtime (CPU provider, sequential) and OpenVINO (CPU plugin, f32 inference precision, "
             "latency hint), each on one thread and on all cores of this machine; `max err` is the largest "
             "difference between our output and any peer's, relative to the output's magnitude. Ours on "
             f"{n} threads: `[target] threads = {n}` (`split layers`: the convs the plan runs split by output rows "
             f"or channels, of all convs, the other layers split (element-wise and fully connected into slices, "
             f"pooling, concat copies and HWC LRN by rows or channels), of the other layers; "
             f"`CPU/wall`: the {n}-thread program's CPU time over its wall time, start-up included, at most {n}; "
             f"`{n}t vs 1t output`: bit-identical, or the largest difference when the {n}-thread plan "
             f"chose other primitives). Costs: optimizer.costs = \"{args.costs}\""
             f"{', from an empty cost cache' if args.fresh_cache else ''}. Load average (1 min) during the timed "
             f"rounds: {min(loads):.1f} to {max(loads):.1f} on {all_cores()} cores (above ~0.5, other work shares "
             f"the cores and the multi-thread figures understate every program's scaling).")
    command = "python bench/vs_ort.py" + "".join(
        f" {flag}" for flag, on in ((f"--networks {' '.join(args.networks)}", args.networks != NETWORKS),
                                    (f"--threads {n}", n != all_cores()), (f"--costs {args.costs}",
                                    args.costs != "profile"), ("--no-tiled", args.no_tiled),
                                    (f"--runs {args.runs}", args.runs != 20), (f"--rounds {args.rounds}",
                                    args.rounds != 3), (f"--section {args.section}", args.section != "vs_ort"),
                                    ("--fresh-cache", args.fresh_cache))
        if on)
    record(args.section, "Emitted C vs ONNX Runtime and OpenVINO (medians, same run)", command,
           f"Goals: ours/best peer ≤ 0.85 on one thread, ≤ 1.0 on all cores.\n\n{notes}\n\n{body}\n\n{gemm_line}")


if __name__ == "__main__":
    sys.exit(main())
