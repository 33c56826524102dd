"""The emitted C against ONNX Runtime and OpenVINO, same machine, same run (issues 3 and 19).

    python bench/vs_ort.py [--networks resnet18 googlenet ...] [--runs 30]

For each network: build with tasobuild (full primitive library, profiled costs, a budget that does not bind),
compile, then alternate batches of our binary's `--bench` and each peer's timed runs (bench/peers.py: ONNX Runtime
and OpenVINO, one thread and all cores) on the same input so all see the same machine state; report the medians and
the ratio to the best peer (< 1 means faster), and check every peer's output against ours. With fused tiling on
(`tiling = true`), two more plans run in the same rounds: the fastest one, and the one in the smallest arena. Also
reports the shared GEMM's GFLOP/s on a large 1x1 convolution as a fraction of one core's peak.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import build_project, make, median, record, table
from peers import all_cores, max_error, median_ms, peers
from tiling import TILED, smallest_budget

from tests.e2e import run_binary
from tests.zoo import ensure_model

NETWORKS = ["resnet18", "googlenet", "mobilenetv2", "squeezenet11", "vgg16"]


def core_peak_gflops() -> tuple[float, str]:
    """2 FMA units x fp32 lanes per unit x 2 flops x nominal clock, from /proc/cpuinfo. AMD cores (Zen 4) run
    AVX-512 on 256-bit units, so they count 8 lanes; boost clocks make this an underestimate of the true peak."""
    info = Path("/proc/cpuinfo").read_text()
    flags = set(re.search(r"^flags\s*:(.*)$", info, re.M).group(1).split())
    mhz = max(float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M))
    amd = "AuthenticAMD" in info
    lanes = 16 if "avx512f" in flags and not amd else 8 if "avx2" in flags else 4
    peak = 2 * lanes * 2 * mhz / 1e3
    return peak, f"2 FMA units x {lanes} fp32 lanes x 2 flops x {mhz:.0f} MHz nominal"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="*", default=NETWORKS)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = []
    labels: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks:
            work = Path(tmp) / name
            report, spec = build_project(name, work / "untiled")
            fastest, _ = build_project(name, work / "tiled", extra=TILED)
            smallest, _ = build_project(name, work / "tiled_small", extra=TILED,
                                        memory=f"{smallest_budget(name, work / 'probe', TILED)} B")
            binaries = [work / d / "out" / "net_main" for d in ("untiled", "tiled", "tiled_small")]
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
            ours: list[list[float]] = [[], [], []]
            theirs: list[list[float]] = [[] for _ in others]
            for _ in range(args.rounds):  # interleaved: all see the same machine state
                for times, binary in zip(ours, binaries):
                    times.append(run_binary(binary, x, work, bench=args.runs)[1])
                for times, peer in zip(theirs, others):
                    times.append(median_ms(peer, x, args.runs))
            peer_ms = [median(t) for t in theirs]
            best_one = min(ms for ms, p in zip(peer_ms, others) if p.threads == 1)
            best_all = min(ms for ms, p in zip(peer_ms, others) if p.threads == all_cores())
            families = sorted({n["primitive"] for n in report["nodes"] if n["op"] == "conv"})
            ratio = [f"{median(t) / best_one:.2f}" for t in ours]
            rows.append([name, f"{median(ours[0]):.2f}", *[f"{ms:.2f}" for ms in peer_ms], ratio[0],
                         f"{median(ours[0]) / best_all:.2f}", f"{max(errors):.1e}",
                         f"{report['arena_bytes'] / 2**20:.1f}", ratio[1], f"{fastest['arena_bytes'] / 2**20:.1f}",
                         ratio[2], f"{smallest['arena_bytes'] / 2**20:.2f}", ", ".join(families)])
            print(rows[-1], file=sys.stderr)
    peak, how = core_peak_gflops()
    try:
        gemm = gemm_gflops()
        gemm_line = f"Shared GEMM, 256x3136x1152: {gemm:.1f} GFLOP/s = {gemm / peak:.0%} of the nominal core peak " \
                    f"{peak:.0f} GFLOP/s ({how})."
    except Exception as error:  # the figure is a side note; the table is the point
        gemm_line = f"(GEMM figure unavailable: {error})"
    body = table(["network", "ours 1t ms", *[f"{label} ms" for label in labels], "ours/best 1t",
                  f"ours 1t/best {all_cores()}t", "max err", "arena MiB", "tiled fastest /best 1t", "arena MiB",
                  "tiled smallest /best 1t", "arena MiB", "conv primitives chosen (untiled)"], rows)
    notes = ("Peers: ONNX Runtime (CPU provider, sequential) and OpenVINO (CPU plugin, f32 inference precision, "
             "latency hint), each on one thread and on all cores of this machine; `max err` is the largest "
             "difference between our output and any peer's, relative to the output's magnitude. Our plans run on "
             "one thread (multi-threaded plans: issue 19).")
    record("vs_ort", "Emitted C vs ONNX Runtime and OpenVINO (medians, same run)",
           "python bench/vs_ort.py",
           f"Goal: ours/best peer ≤ 0.85 on one thread.\n\n{notes}\n\n{body}\n\n{gemm_line}")


if __name__ == "__main__":
    sys.exit(main())
