"""A/B timing of the blocked direct and the depthwise HWC kernels on MobileNetV2's and SqueezeNet's layers: an older
commit's kernels against this tree's, one C driver, old and new alternating, weights warm and cold.

    python bench/direct_ab.py [--old bba8fe3] [--rounds 5] [--reps 31] [--only 16->96 ...] [--section direct_ab]
                              [--no-record]

bench/kernel_ab.py times calls through the profiler, whose buffers stay in cache from run to run. In a network a
layer's weights were last read a whole inference ago, so they come from L3 or memory: "cold" runs rotate over copies
of the weights (48 MiB of them, as many as fit, up to 64) so that each call reads a copy no recent call touched;
"warm" runs reuse one. Both sides' kernels are compiled with the host target's flags into one driver (the old ones
under other names) and called on the same buffers; per layer: the median over rounds of each side's median, and the
median of the per-round ratios new/old (< 1: the new kernel is faster). "same" says the outputs are bit-identical.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, record, table

from tasobuild.resources import kernels_dir
from tasobuild.target import load_target

# (label, in_c, h, w, out_c, kernel, stride, kind): kind 0 a blocked conv over HWC, 1 depthwise, 2 a blocked stem over
# CHW, unpadded (SqueezeNet's); other 3x3 layers padded by 1, 1x1 unpadded.
LAYERS = (
    ("mnv2 1x1 32->16 @112", 32, 112, 112, 16, 1, 1, 0),
    ("mnv2 1x1 16->96 @112", 16, 112, 112, 96, 1, 1, 0),
    ("mnv2 1x1 96->24 @56", 96, 56, 56, 24, 1, 1, 0),
    ("mnv2 1x1 24->144 @56", 24, 56, 56, 144, 1, 1, 0),
    ("mnv2 1x1 32->192 @28", 32, 28, 28, 192, 1, 1, 0),
    ("mnv2 1x1 576->96 @14", 576, 14, 14, 96, 1, 1, 0),
    ("mnv2 1x1 576->160 @7", 576, 7, 7, 160, 1, 1, 0),
    ("mnv2 1x1 160->960 @7", 160, 7, 7, 960, 1, 1, 0),
    ("mnv2 1x1 960->160 @7", 960, 7, 7, 160, 1, 1, 0),
    ("mnv2 1x1 960->320 @7", 960, 7, 7, 320, 1, 1, 0),
    ("mnv2 1x1 320->1280 @7", 320, 7, 7, 1280, 1, 1, 0),
    ("squeezenet 1x1 512->1000 @13", 512, 13, 13, 1000, 1, 1, 0),
    ("squeezenet 1x1 128->16 @55", 128, 55, 55, 16, 1, 1, 0),
    ("squeezenet 1x1 16->64 @55", 16, 55, 55, 64, 1, 1, 0),
    ("squeezenet stem 3->64 /2 @224", 3, 224, 224, 64, 3, 2, 2),
    ("mnv2 dw 32 @112", 32, 112, 112, 32, 3, 1, 1),
    ("mnv2 dw 96 /2 @112", 96, 112, 112, 96, 3, 2, 1),
    ("mnv2 dw 144 @56", 144, 56, 56, 144, 3, 1, 1),
    ("mnv2 dw 144 /2 @56", 144, 56, 56, 144, 3, 2, 1),
    ("mnv2 dw 192 @28", 192, 28, 28, 192, 3, 1, 1),
    ("mnv2 dw 384 @14", 384, 14, 14, 384, 3, 1, 1),
    ("mnv2 dw 576 @14", 576, 14, 14, 576, 3, 1, 1),
    ("mnv2 dw 960 @7", 960, 7, 7, 960, 3, 1, 1),
)

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "tb_kernels.h"
typedef void (*convfn)(const tb_conv *, const float *, const float *, const float *, float *);
void old_blocked_hwc(const tb_conv *, const float *, const float *, const float *, float *);
void old_depthwise_hwc(const tb_conv *, const float *, const float *, const float *, float *);
void old_blocked_chw_to_hwc(const tb_conv *, const float *, const float *, const float *, float *);
static const int LAYERS[][7] = {%(layers)s};
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}
static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
/* The median of `reps` calls, call r reading weight copy r %% copies. */
static double median_ms(convfn f, const tb_conv *p, const float *in, const float *w, long stride, int copies,
                        const float *b, float *out, int reps) {
    double t[256]; int r;
    for (r = 0; r < reps; ++r) { double t0 = now(); f(p, in, w + (r %% copies) * stride, b, out); t[r] = now() - t0; }
    qsort(t, reps, sizeof *t, by_value);
    return t[reps / 2];
}
int main(int argc, char **argv) {
    const int reps = atoi(argv[1]), rounds = atoi(argv[2]), cold = atoi(argv[3]);
    int i;
    for (i = 0; i < (int)(sizeof LAYERS / sizeof LAYERS[0]); ++i) {
        const int c = LAYERS[i][0], h = LAYERS[i][1], wd = LAYERS[i][2], m = LAYERS[i][3], k = LAYERS[i][4];
        const int s = LAYERS[i][5], dw = LAYERS[i][6] == 1, stem = LAYERS[i][6] == 2, pad = stem ? 0 : k / 2;
        const int oh = (h + 2 * pad - k) / s + 1, ow = (wd + 2 * pad - k) / s + 1;
        tb_conv p = {c, h, wd, m, oh, ow, k, k, s, s, pad, pad, 1, 1, dw ? c : 1,
                     TB_ACT_CLIP, 0.f, 6.f, 0, m, 0, oh, 0};
        const long nin = (long)c * h * wd, nw = (long)m * (dw ? 1 : c) * k * k, nout = (long)m * oh * ow;
        const long stride = (nw + 15) / 16 * 16;
        int copies = cold ? (int)((48l << 20) / (stride * 4)) + 2 : 1, r;
        float *in, *w, *b, *o1, *o2;
        double old_ms[64], new_ms[64], ratio[64];
        long j;
        convfn fo = stem ? old_blocked_chw_to_hwc : dw ? old_depthwise_hwc : old_blocked_hwc;
        convfn fn = stem ? tb_conv_direct_blocked_chw_to_hwc : dw ? tb_conv_depthwise_direct_hwc
                                : tb_conv_direct_blocked_hwc;
        if (copies > 64) copies = 64;
        in = malloc(nin * 4); w = malloc(stride * 4 * copies); b = malloc(m * 4);
        o1 = malloc(nout * 4); o2 = malloc(nout * 4);
        srand(i + 1);
        for (j = 0; j < nin; ++j) in[j] = rand() / (float)RAND_MAX - 0.5f;
        for (j = 0; j < nw; ++j) w[j] = (rand() / (float)RAND_MAX - 0.5f) * 0.3f;
        for (j = nw; j < stride * copies; ++j) w[j] = j %% stride < nw ? w[j %% stride] : 0.0f;
        for (j = 0; j < m; ++j) b[j] = rand() / (float)RAND_MAX - 0.5f;
        fo(&p, in, w, b, o1);
        fn(&p, in, w, b, o2);
        for (r = 0; r < rounds; ++r) { /* alternate, the order swapped every round */
            if (r %% 2) {
                new_ms[r] = median_ms(fn, &p, in, w, stride, copies, b, o2, reps);
                old_ms[r] = median_ms(fo, &p, in, w, stride, copies, b, o1, reps);
            } else {
                old_ms[r] = median_ms(fo, &p, in, w, stride, copies, b, o1, reps);
                new_ms[r] = median_ms(fn, &p, in, w, stride, copies, b, o2, reps);
            }
            ratio[r] = new_ms[r] / old_ms[r];
        }
        qsort(old_ms, rounds, sizeof(double), by_value);
        qsort(new_ms, rounds, sizeof(double), by_value);
        qsort(ratio, rounds, sizeof(double), by_value);
        printf("%%d %%.4f %%.4f %%.3f %%d\n", i, old_ms[rounds / 2], new_ms[rounds / 2], ratio[rounds / 2],
               memcmp(o1, o2, nout * 4) == 0);
        free(in); free(w); free(b); free(o1); free(o2);
    }
    return 0;
}
"""


def build_driver(old: str, work: Path, layers: tuple[tuple[str, int, int, int, int, int, int, int], ...]) -> Path:
    """The driver with `old`'s blocked and depthwise kernels (renamed) and this tree's, host target flags."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", old, "kernels_pyx"], capture_output=True,
                             check=True).stdout
    (work / "old").mkdir()
    subprocess.run(["tar", "-x", "-C", str(work / "old")], input=archive, check=True)
    old_dir, new_dir = work / "old" / "kernels_pyx", kernels_dir()
    host = load_target("host", ROOT)
    cc, flags = host.cc, [*host.cflags]
    rename = {"conv_direct_blocked.c": ["-Dtb_conv_direct_blocked_hwc=old_blocked_hwc",
                                        "-Dtb_conv_direct_blocked_chw_to_hwc=old_blocked_chw_to_hwc",
                                        "-Dtb_conv_direct_blocked_hcw_to_hwc=old_blocked_hcw_to_hwc"],
              "conv_depthwise.c": ["-Dtb_conv_depthwise_direct_hwc=old_depthwise_hwc",
                                   "-Dtb_conv_depthwise_direct_chw=old_depthwise_chw"]}
    objects = []
    for source, names in sorted(rename.items()):
        for side, folder, extra in (("old", old_dir, names), ("new", new_dir, [])):
            obj = work / f"{side}_{source}.o"
            subprocess.run([cc, *flags, *extra, "-I", str(folder), "-c", str(folder / source), "-o", str(obj)],
                           check=True)
            objects.append(str(obj))
    rows = ", ".join("{" + ", ".join(str(v) for v in layer[1:]) + "}" for layer in layers)
    (work / "driver.c").write_text(DRIVER % {"layers": rows})
    binary = work / "driver"
    subprocess.run([cc, *flags, "-I", str(new_dir), str(work / "driver.c"), *objects, "-o", str(binary), "-lm"],
                   check=True)
    return binary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", default="bba8fe3", help="the commit whose kernels_pyx/ is the baseline")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=31, help="calls per side per round (at most 256)")
    parser.add_argument("--only", nargs="*", default=[], help="only the layers whose label contains one of these")
    parser.add_argument("--section", default="direct_ab", help="BENCHMARKS.md section to write")
    parser.add_argument("--no-record", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    layers = tuple(layer for layer in LAYERS if not args.only or any(part in layer[0] for part in args.only))
    with tempfile.TemporaryDirectory() as tmp:
        driver = build_driver(args.old, Path(tmp), layers)
        results = {}
        for mode, cold in (("warm", "0"), ("cold", "1")):
            out = subprocess.run([str(driver), str(min(args.reps, 256)), str(min(args.rounds, 64)), cold],
                                 capture_output=True, text=True, check=True).stdout
            results[mode] = {int(line.split()[0]): line.split()[1:] for line in out.splitlines()}
            print(f"{mode} done", file=sys.stderr)
    rows = []
    for i, layer in enumerate(layers):
        warm, cold = results["warm"][i], results["cold"][i]
        same = "yes" if warm[3] == "1" and cold[3] == "1" else "NO"
        rows.append([layer[0], *warm[:3], *cold[:3], same])
    load = os.getloadavg()[0]
    body = (f"Load average (1 min) at the end: {load:.1f}. One thread, ms; clip(0, 6) after each conv.\n\n"
            + table(["layer", f"warm old ({args.old})", "warm new", "warm new/old", "cold old", "cold new",
                     "cold new/old", "bit-identical"], rows))
    if args.no_record:
        print(body)
    else:
        record(args.section, f"Direct and depthwise kernels A/B: {args.old}'s vs this tree's (warm and cold weights)",
               ("python bench/direct_ab.py " + " ".join(sys.argv[1:])).strip(), body)


if __name__ == "__main__":
    main()
