"""A/B timing of the Winograd kernels: an older commit's against this tree's, same process, same buffers.

    python bench/winograd_ab.py [--old 581a623] [--rounds 5] [--layers googlenet] [--no-record]

The pattern of bench/kernel_ab.py (whose helpers it uses): both kernel folders compiled into bindings with the
profiler's flags, every call timed by the profiler's `measure_call`, old and new alternating call by call, their
order swapped every round. The layers are the Winograd layers of GoogLeNet, SqueezeNet 1.1 and ResNet-18 that
the plans run (HWC, relu fused), each with the variant its plan picks; "GFLOP/s" is the direct convolution's
flops over the new median (what the layer would need without Winograd), so layers compare with the GEMM's rate.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
from pathlib import Path

from common import record_or_print, table
from kernel_ab import alternate, conv_call, kernels_at

from tasobuild import native
from tasobuild.primitives import KernelCall
from tasobuild.resources import kernels_dir

# (label, in_c, in_h, in_w, out_c, kernel, stride, pads (top, left, bottom, right)), primitive
LAYERS = (
    (("googlenet 96x28x28->128", 96, 28, 28, 128, (3, 3), (1, 1), (1, 1, 1, 1)), "conv_winograd_f4x4_3x3_hwc"),
    (("googlenet 128x28x28->192", 128, 28, 28, 192, (3, 3), (1, 1), (1, 1, 1, 1)), "conv_winograd_f4x4_3x3_hwc"),
    (("googlenet 96x14x14->208", 96, 14, 14, 208, (3, 3), (1, 1), (1, 1, 1, 1)), "conv_winograd_f4x4_3x3_hwc"),
    (("googlenet 160x14x14->320", 160, 14, 14, 320, (3, 3), (1, 1), (1, 1, 1, 1)), "conv_winograd_f4x4_3x3_hwc"),
    (("googlenet 160x7x7->320", 160, 7, 7, 320, (3, 3), (1, 1), (1, 1, 1, 1)), "conv_winograd_f2x2_3x3_hwc"),
    (("googlenet 192x7x7->384", 192, 7, 7, 384, (3, 3), (1, 1), (1, 1, 1, 1)), "conv_winograd_f2x2_3x3_hwc"),
    (("squeezenet 16x55x55->64", 16, 55, 55, 64, (3, 3), (1, 1), (1, 1, 1, 1)),
     "conv_winograd_f4x4_3x3_lowmem_hwc"),
    (("squeezenet 32x27x27->128", 32, 27, 27, 128, (3, 3), (1, 1), (1, 1, 1, 1)), "conv_winograd_f4x4_3x3_hwc"),
    (("squeezenet 48x13x13->192", 48, 13, 13, 192, (3, 3), (1, 1), (1, 1, 1, 1)), "conv_winograd_f4x4_3x3_hwc"),
    (("squeezenet 64x13x13->256", 64, 13, 13, 256, (3, 3), (1, 1), (1, 1, 1, 1)), "conv_winograd_f4x4_3x3_hwc"),
    (("resnet18 64x56x56->64", 64, 56, 56, 64, (3, 3), (1, 1), (1, 1, 1, 1)), "conv_winograd_f4x4_3x3_hwc"),
    (("resnet18 128x28x28->128", 128, 28, 28, 128, (3, 3), (1, 1), (1, 1, 1, 1)), "conv_winograd_f4x4_3x3_hwc"),
    (("resnet18 256x14x14->256", 256, 14, 14, 256, (3, 3), (1, 1), (1, 1, 1, 1)), "conv_winograd_f4x4_3x3_hwc"),
    (("resnet18 512x7x7->512", 512, 7, 7, 512, (3, 3), (1, 1), (1, 1, 1, 1)), "conv_winograd_f2x2_3x3_hwc"),
)
WS_SLACK = 1 << 24  # bytes past either side's workspace: the old kernels may size theirs by another formula


def padded(call: KernelCall) -> KernelCall:
    return dataclasses.replace(call, buffer_bytes=tuple((role, n + WS_SLACK if role == "ws" else n)
                                                        for role, n in call.buffer_bytes))


def gflops(layer: tuple, ms: float) -> float:  # type: ignore[type-arg]
    _, c, h, w, m, (kh, kw), _, _ = layer
    return 2.0 * c * m * kh * kw * h * w / (ms * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", default="581a623", help="the commit whose kernels_pyx/ is the baseline")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--layers", nargs="+", help="only the layers whose label contains one of these")
    parser.add_argument("--primitive", help="time this primitive on every layer instead of the plan's")
    parser.add_argument("--section", default="winograd_ab", help="the BENCHMARKS.md section to write")
    parser.add_argument("--no-record", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args()

    chosen = [(layer, args.primitive or prim) for layer, prim in LAYERS
              if not args.layers or any(part in layer[0] for part in args.layers)]
    calls = [(layer[0], prim, padded(conv_call(prim, layer))) for layer, prim in chosen]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        old, _ = kernels_at(args.old, work)
        new = native.load(cflags=native.DEFAULT_CFLAGS, cache_dir=work / "cache", folder=kernels_dir())
        times = alternate(calls, old, new, args.rounds)

    rows = []
    for (layer, _), (label, prim, _) in zip(chosen, calls, strict=True):
        t = times[(label, prim)]
        old_ms, new_ms = statistics.median(t["old"]), statistics.median(t["new"])
        ratio = statistics.median(n / o for n, o in zip(t["new"], t["old"], strict=True))
        rows.append([label, prim.removeprefix("conv_winograd_"), f"{old_ms:.4f}", f"{new_ms:.4f}", f"{ratio:.3f}",
                     f"{gflops(layer, new_ms):.0f}"])
    body = table(["layer", "variant", f"old ms ({args.old})", "new ms", "new/old", "new GFLOP/s"], rows)
    record_or_print(args.no_record, args.section,
                    f"Winograd A/B: {args.old}'s kernels vs this tree's (one thread, medians, same run)", body)


if __name__ == "__main__":
    main()
