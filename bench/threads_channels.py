"""Short maps' convs on 2 threads: split by output rows against by output channels (half each), whole for scale.

    python bench/threads_channels.py [--rounds 5] [--networks squeezenet11] [--section threads_channels]

The layers are real networks' convs on short maps (7 or 13 rows) on the kernels with channel views
(primitives.parallel.CHANNEL_VIEWS): ResNet-18's layer4 3x3 convs (blocked direct), GoogLeNet's inception 5b 1x1
(blocked direct and 1x1 GEMM), MobileNetV2's last 1x1 (1x1 GEMM); SqueezeNet 1.1's 13x13 expand 3x3s (Winograd,
whose 13 rows split 2/3 F(3x3) tile rows, and whose row parts each read all the transformed weights). Each is timed
whole, split by rows (the split before channel views: the row split forced by hiding CHANNEL_VIEWS) and split by
channels (what the build now offers), by the profiler on the emitted thread pool
(tasobuild.costs.profile.measure_call), the three alternated in rounds so all see the same machine state; the
medians of the rounds, the ratios side by side, and the load average during the run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from unittest import mock

from common import record, table

# (network, layer, in channels, out channels, kernel, pad, input size, stride, primitive)
LAYERS = (
    ("resnet18", "layer4 3x3", 512, 512, 3, 1, 7, 1, "conv_direct_blocked_hwc"),
    ("resnet18", "layer4.0 3x3 s2", 256, 512, 3, 1, 14, 2, "conv_direct_blocked_hwc"),
    ("googlenet", "5b 1x1", 832, 384, 1, 0, 7, 1, "conv_direct_blocked_hwc"),
    ("googlenet", "5b 1x1", 832, 384, 1, 0, 7, 1, "conv_1x1_gemm_hwc"),
    ("mobilenetv2", "last 1x1", 320, 1280, 1, 0, 7, 1, "conv_1x1_gemm_hwc"),
    ("squeezenet11", "fire9 expand 3x3", 64, 256, 3, 1, 13, 1, "conv_winograd_f3x3_3x3_hwc"),
    ("squeezenet11", "fire9 expand 3x3", 64, 256, 3, 1, 13, 1, "conv_winograd_f3x3_3x3_lowmem_hwc"),
    ("squeezenet11", "fire7 expand 3x3", 48, 192, 3, 1, 13, 1, "conv_winograd_f4x4_3x3_hwc"),
)


def layer_call(c: int, m: int, k: int, pad: int, size: int, stride: int, primitive: str):
    from tasobuild.candidates import node_candidates
    from tests.test_conv_primitives import Case, conv_graph

    _, graph, _ = conv_graph(Case(c, size, size, m, (k, k), stride=(stride, stride), pads=(pad,) * 4))
    (conv,) = node_candidates(graph)
    return next(o.calls[0] for o in conv.options if o.primitive.name == primitive)


def main() -> None:
    from tasobuild import native
    from tasobuild.costs.profile import measure_call
    from tasobuild.primitives import parallel
    from tasobuild.target import load_target

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--networks", nargs="*", help="only these networks' layers")
    parser.add_argument("--section", default="threads_channels", help="the BENCHMARKS.md section to write")
    args = parser.parse_args()
    target = load_target("host", Path("."))
    kernels = native.load(target.cc, tuple(target.cflags))
    loads = [os.getloadavg()[0]]
    calls = []
    for net, layer, c, m, k, pad, size, stride, primitive in LAYERS:
        if args.networks and net not in args.networks:
            continue
        whole = layer_call(c, m, k, pad, size, stride, primitive)
        split = parallel.parallel_call(whole, 2)
        assert split is not None and parallel.by_channels(split), (net, layer)
        calls.append((net, layer, primitive, whole, split))
    times: dict[tuple[int, str], list[float]] = {}
    for _ in range(args.rounds):  # alternated: all see the same machine state
        for i, (_, _, _, whole, split) in enumerate(calls):
            times.setdefault((i, "whole"), []).append(measure_call(whole, kernels).median_ms)
            with mock.patch.dict(parallel.CHANNEL_VIEWS, clear=True):  # the same split call, by rows
                times.setdefault((i, "rows"), []).append(measure_call(split, kernels).median_ms)
            times.setdefault((i, "channels"), []).append(measure_call(split, kernels).median_ms)
            # each part alone on this thread: how evenly a split divides the work, whatever the other core does
            for kind in ("rows", "channels"):
                with mock.patch.dict(parallel.CHANNEL_VIEWS, {} if kind == "rows" else parallel.CHANNEL_VIEWS,
                                     clear=True):
                    parts = [parallel.part_call(split, k) for k in range(split.parts)]
                for k, part in enumerate(parts):
                    times.setdefault((i, f"{kind} part {k}"), []).append(measure_call(part, kernels).median_ms)
        loads.append(os.getloadavg()[0])
    rows = []
    for i, (net, layer, primitive, _, _) in enumerate(calls):
        whole, by_rows, by_channels = (statistics.median(times[(i, kind)]) for kind in ("whole", "rows", "channels"))
        largest = {kind: max(statistics.median(times[(i, f"{kind} part {k}")]) for k in range(2)) / whole
                   for kind in ("rows", "channels")}
        rows.append([net, layer, primitive, f"{whole:.3f}", f"{largest['rows']:.2f}", f"{largest['channels']:.2f}",
                     f"{whole / by_rows:.2f}", f"{whole / by_channels:.2f}", f"{by_channels / by_rows:.2f}"])
        print(rows[-1], file=sys.stderr)
    body = table(["network", "layer", "primitive", "whole ms", "largest part / whole, rows",
                  "largest part / whole, channels", "1t/2t by rows", "1t/2t by channels",
                  "channels / rows"], rows)
    command = " ".join(["python bench/threads_channels.py",
                        *(["--rounds", str(args.rounds)] if args.rounds != 5 else []),
                        *(["--networks", *args.networks] if args.networks else []),
                        *(["--section", args.section] if args.section != "threads_channels" else [])])
    record(args.section, "Short maps' convs on 2 threads: split by rows against by output channels", command,
           f"Each layer whole and split over 2 threads by output rows (a 7-row map: 3 and 4) and by output "
           f"channels (whole 32-channel panels, half each), by the profiler on the emitted thread pool, the three"
           f" alternated in {args.rounds} rounds, medians. `largest part / whole`: each part of the split timed "
           f"alone on one thread, the larger one over the whole call (0.5: an even split with no overhead; this "
           f"does not need a second idle core). `1t/2t`: the speed-up over the whole call (2.0 would be perfect);"
           f" `channels / rows`: below 1, the channel split is faster. Load average (1 min) during the run: "
           f"{min(loads):.1f} to {max(loads):.1f} on {len(os.sched_getaffinity(0))} cores (above ~0.5, other work"
           f" shares the cores and no split reaches its speed-up).\n\n{body}")


if __name__ == "__main__":
    sys.exit(main())
