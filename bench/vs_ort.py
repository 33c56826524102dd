"""Issue 3: the emitted C against ONNX Runtime, one thread each, same machine, same run.

    python bench/vs_ort.py [--networks resnet18 googlenet ...] [--runs 30]

For each network: build with tasobuild (full primitive library, profiled costs, a budget that does not bind),
compile, then alternate batches of our binary's `--bench` and ONNX Runtime's timed runs on the same input so both
see the same machine state; report the medians and their ratio (ours/ORT: < 1 means faster). With fused tiling on
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
from common import build_project, make, median, ort_median_ms, ort_session, record, table
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
            session = ort_session(model)
            ours: list[list[float]] = [[], [], []]
            theirs = []
            for _ in range(args.rounds):  # interleaved: all see the same machine state
                for times, binary in zip(ours, binaries):
                    times.append(run_binary(binary, x, work, bench=args.runs)[1])
                theirs.append(ort_median_ms(session, x, args.runs))
            families = sorted({n["primitive"] for n in report["nodes"] if n["op"] == "conv"})
            ratio = [f"{median(t) / median(theirs):.2f}" for t in ours]
            rows.append([name, f"{median(ours[0]):.2f}", f"{median(theirs):.2f}", ratio[0],
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
    body = table(["network", "ours ms", "ORT ms", "ours/ORT", "arena MiB", "tiled fastest /ORT", "arena MiB",
                  "tiled smallest /ORT", "arena MiB", "conv primitives chosen (untiled)"], rows)
    record("vs_ort", "Emitted C vs ONNX Runtime (1 thread, medians, same run)",
           "python bench/vs_ort.py", f"Goal: ours/ORT ≤ 1.0 on every network.\n\n{body}\n\n{gemm_line}")


if __name__ == "__main__":
    sys.exit(main())
