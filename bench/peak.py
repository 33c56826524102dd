"""One core's fp32 peak as measured here: a loop of independent fused multiply-adds on the widest vectors the host
target's flags give (AVX-512: 16 lanes, AVX2+FMA: 8, AArch64 NEON: 4), enough chains in flight to cover every FMA
port at its latency, timed by the thread's CPU clock; the best of a few runs. The nominal figure (ports x lanes x
the clock /proc/cpuinfo states) misses turbo, so a kernel can look above "100% of peak"; this one cannot.

    python bench/peak.py
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from common import ROOT

from tasobuild.target import load_target

# 24 accumulators: two FMA ports x latency 4 needs 8 in flight; 24 leaves room for a wider or deeper core.
LOOP = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <time.h>
#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 vec;
#define LANES 16
#define SPLAT(x) _mm512_set1_ps(x)
#define FMA(acc, a, b) _mm512_fmadd_ps(a, b, acc)
#define SUM(v) _mm512_reduce_add_ps(v)
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
typedef __m256 vec;
#define LANES 8
#define SPLAT(x) _mm256_set1_ps(x)
#define FMA(acc, a, b) _mm256_fmadd_ps(a, b, acc)
static float SUM(vec v)
{
    float t[8], s = 0.0f;
    int i;
    _mm256_storeu_ps(t, v);
    for (i = 0; i < 8; ++i) s += t[i];
    return s;
}
#elif defined(__ARM_NEON) && defined(__aarch64__)
#include <arm_neon.h>
typedef float32x4_t vec;
#define LANES 4
#define SPLAT(x) vdupq_n_f32(x)
#define FMA(acc, a, b) vfmaq_f32(acc, a, b)
#define SUM(v) vaddvq_f32(v)
#else
#include <math.h>
typedef float vec;
#define LANES 1
#define SPLAT(x) (x)
#define FMA(acc, a, b) fmaf(a, b, acc)
#define SUM(v) (v)
#endif
#define CHAINS 24

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(void)
{
    const long iters = 20000000;
    double best = 0.0;
    float sink = 0.0f;
    int run, c;
    for (run = 0; run < 5; ++run) {
        vec acc[CHAINS];
        volatile float seed = 0.999999f, step = 1e-7f; /* acc tends to 0.1: no overflow, no subnormals */
        const vec a = SPLAT(seed), b = SPLAT(step);
        double start, gflops;
        long i;
        for (c = 0; c < CHAINS; ++c) acc[c] = SPLAT((float)c);
        start = cpu_seconds();
        for (i = 0; i < iters; ++i) {
#pragma GCC unroll 24
            for (c = 0; c < CHAINS; ++c) acc[c] = FMA(b, acc[c], a); /* acc * a + b: one dependent chain each */
        }
        gflops = 2.0 * LANES * CHAINS * (double)iters / (cpu_seconds() - start) / 1e9;
        if (gflops > best) best = gflops;
        for (c = 0; c < CHAINS; ++c) sink += SUM(acc[c]) * SUM(b);
    }
    printf("%.1f %d %g\n", best, LANES, (double)sink);
    return 0;
}
"""


def measured_peak_gflops() -> tuple[float, str]:
    """The host core's measured fp32 FMA throughput in GFLOP/s, and how it was measured (for a table's note)."""
    target = load_target("host", ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        source, exe = Path(tmp) / "peak.c", Path(tmp) / "peak"
        source.write_text(LOOP)
        subprocess.run([target.cc, *target.cflags, str(source), *target.ldflags, "-o", str(exe)], check=True)
        gflops, lanes, _ = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    return float(gflops), f"measured: 24 independent {lanes}-lane FMA chains on one core, best of 5 runs"


if __name__ == "__main__":
    peak, how = measured_peak_gflops()
    print(f"{peak:.1f} GFLOP/s ({how})")
