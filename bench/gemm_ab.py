"""A/B of the shared SGEMM alone: an older commit's kernels_pyx/gemm.c against this tree's, on the GEMM shapes the
convolutions give it, in GFLOP/s and as a fraction of one core's measured peak (bench/peak.py).

    python bench/gemm_ab.py [--old bba8fe3] [--rounds 7] [--section gemm_ab]

Each side's gemm.c is compiled with the host target's flags into a small driver that runs one tb_gemm job `reps`
times and prints the median GFLOP/s, timed by the thread's CPU clock (CLOCK_THREAD_CPUTIME_ID), so the time the
process waits for a core on a loaded machine is not counted (cache sharing with other processes still is). Old and
new run alternately, their order swapped every round; per shape: each side's median over rounds and the median of
the per-round ratios of times new/old (< 1: the new GEMM is faster). A Winograd-like job cycles through `copies`
distinct B operands (its alpha^2 transformed weight matrices), so B comes from L3 as it does in the kernel.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, extract_kernels, record_or_print, table
from peak import measured_peak_gflops

from tasobuild.resources import kernels_dir
from tasobuild.target import load_target

DRIVER = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "tb_gemm.h"

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* argv: M N K a_packed b_packed copies reps */
int main(int argc, char **argv)
{
    int m, n, k, a_packed, b_packed, copies, reps, r;
    long na, nb, i;
    float *a, *b, *c, *ws;
    double *t;
    tb_gemm_job g;
    if (argc != 8) return 2;
    m = atoi(argv[1]); n = atoi(argv[2]); k = atoi(argv[3]); a_packed = atoi(argv[4]); b_packed = atoi(argv[5]);
    copies = atoi(argv[6]); reps = atoi(argv[7]);
    na = (long)(m + 16) * (k + 16);
    nb = (long)(k + 16) * (n + 32);
    a = malloc(sizeof(float) * (size_t)na);
    b = malloc(sizeof(float) * (size_t)(nb * copies));
    c = malloc(sizeof(float) * (size_t)m * (size_t)n);
    ws = malloc(sizeof(float) * ((size_t)16 << 20));
    t = malloc(sizeof(double) * (size_t)reps);
    if (!a || !b || !c || !ws || !t) return 2;
    for (i = 0; i < na; ++i) a[i] = (float)(i % 7) * 0.1f - 0.3f;
    for (i = 0; i < nb * copies; ++i) b[i] = (float)(i % 5) * 0.1f - 0.2f;
    g.m0 = 0; g.m1 = m; g.n0 = 0; g.n1 = n; g.k = k;
    g.a = a; g.lda = k; g.a_packed = a_packed;
    g.ldb = n; g.b_packed = b_packed;
    g.c = c; g.ldc = n; g.accumulate = 0;
    g.bias_m = 0; g.bias_n = 0; g.act = TB_ACT_RELU; g.act_a = 0.0f; g.act_b = 0.0f;
    for (r = 0; r < reps + copies; ++r) { /* a first pass over the copies warms up, then reps timed calls */
        double start;
        g.b = b + (r % copies) * nb;
        start = cpu_seconds();
        tb_gemm(&g, ws);
        if (r >= copies) t[r - copies] = cpu_seconds() - start;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp);
    printf("%.3f\n", 2.0 * m * n * k / t[reps / 2] / 1e9);
    return 0;
}
"""

# (label, M, N, K, A pre-packed, B pre-packed, B copies)
SHAPES = (
    ("1x1 CHW 1152->256 @56x56 (vs_ort's)", 256, 3136, 1152, 1, 0, 1),
    ("im2row HWC 3x3 64->64 @56x56", 3136, 64, 576, 0, 1, 1),
    ("im2row HWC 3x3 128->128 @28x28", 784, 128, 1152, 0, 1, 1),
    ("im2row HWC 3x3 256->256 @14x14", 196, 256, 2304, 0, 1, 1),
    ("im2row HWC 3x3 512->512 @7x7", 49, 512, 4608, 0, 1, 1),
    ("1x1 HWC 480->192 @14x14", 196, 192, 480, 0, 1, 1),
    ("1x1 CHW 64->256 @56x56", 256, 3136, 64, 1, 0, 1),
    ("1x1 HWC 528->256 @14x14 (GoogLeNet)", 196, 256, 528, 0, 1, 1),
    ("kn2row 1x1 832->256 @7x7 (GoogLeNet)", 49, 256, 832, 0, 1, 1),
    ("kn2row 1x1 832->384 @7x7 (GoogLeNet)", 49, 384, 832, 0, 1, 1),
    ("im2row 1x1 512->1000 @13x13 (SqueezeNet)", 169, 1000, 512, 0, 1, 1),
    ("1x1 HWC 512->64 @13x13 (SqueezeNet's squeeze)", 169, 64, 512, 0, 1, 1),
    ("im2row HWC 3x3 48->192 @13x13 (SqueezeNet, K 432)", 169, 192, 432, 0, 1, 1),
    ("im2row 7x7 s2 3->64 @112x112 (stem)", 12544, 64, 147, 1, 1, 1),
    ("Winograd F(4,3) 256->256 @14x14 (16 tiles, 36 B)", 16, 256, 256, 0, 1, 36),
    ("Winograd F(2,3) 512->512 @7x7 (16 tiles, 16 B)", 16, 512, 512, 0, 1, 16),
    ("Winograd F(3,3) lowmem 64->64 @56x56 (12 tiles, 25 B)", 12, 64, 64, 0, 1, 25),
)


def build(folder: Path, work: Path, name: str) -> Path:
    target = load_target("host", ROOT)
    (work / "driver.c").write_text(DRIVER)
    exe = work / name
    subprocess.run([target.cc, *target.cflags, "-I", str(folder), str(work / "driver.c"), str(folder / "gemm.c"),
                    *target.ldflags, "-o", str(exe)], check=True)
    return exe


def gflops(exe: Path, shape: tuple, reps: int) -> float:  # type: ignore[type-arg]
    _, m, n, k, a_packed, b_packed, copies = shape
    argv = [str(v) for v in (m, n, k, a_packed, b_packed, copies, reps)]
    return float(subprocess.run([str(exe), *argv], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", default="bba8fe3", help="the commit whose kernels_pyx/gemm.c is the baseline")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--reps", type=int, default=21, help="timed calls per run (their median counts)")
    parser.add_argument("--section", default="gemm_ab", help="the BENCHMARKS.md section to write")
    parser.add_argument("--no-record", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sides = {"old": build(extract_kernels(args.old, work), work, "gemm_old"),
                 "new": build(kernels_dir(), work, "gemm_new")}
        runs: dict[str, dict[str, list[float]]] = {s[0]: {"old": [], "new": []} for s in SHAPES}
        for r in range(args.rounds):
            for shape in SHAPES:
                for side in ("old", "new") if r % 2 == 0 else ("new", "old"):
                    runs[shape[0]][side].append(gflops(sides[side], shape, args.reps))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    peak, how = measured_peak_gflops()
    rows = []
    for label, m, n, k, a_packed, b_packed, _ in SHAPES:
        old, new = runs[label]["old"], runs[label]["new"]
        ratio = statistics.median(o / nw for o, nw in zip(old, new, strict=True))  # time new/old = GFLOP/s old/new
        rows.append([label, f"{m}x{n}x{k}", "A" * a_packed + "B" * b_packed or "-",
                     f"{statistics.median(old):.1f}", f"{statistics.median(new):.1f}",
                     f"{statistics.median(new) / peak:.0%}", f"{ratio:.3f}"])
    body = table(["shape", "M x N x K", "pre-packed", f"old GFLOP/s ({args.old})", "new GFLOP/s", "new / peak",
                  "time new/old"], rows)
    body += f"\n\nPeak: {peak:.0f} GFLOP/s ({how}); times by the thread's CPU clock, medians of {args.reps} calls."
    record_or_print(args.no_record, args.section,
                    f"Shared GEMM A/B: {args.old}'s gemm.c vs this tree's (one thread, medians, same run)", body)

if __name__ == "__main__":
    main()
