/* The single-threaded SGEMM shared by every GEMM-based convolution (see tb_gemm.h for the contract).
 *
 * GotoBLAS/BLIS structure: loops jc (NC columns) > pc (KC depth) > ic (MC rows) > jr (NR) > ir (MR) > micro-kernel.
 * An operand given row-major is packed block by block into the caller's workspace; a pre-packed operand (the
 * weights, packed at build time) is read in place. The micro-kernel keeps a 6x16 tile of C in registers; on
 * AVX-512, up to 2 x 2 of them (12x32: two A panels, two B panels, same packed formats, micro_wide).
 * Micro-kernels, best first: AVX-512, AVX2+FMA, AArch64 NEON intrinsics, Helium (MVE) intrinsics, 32-bit NEON
 * intrinsics, GCC vector extensions, plain C99 (TB_GEMM_SCALAR forces the plain one, for testing). Rounding: the
 * AVX, AArch64 NEON and Helium paths use fused multiply-add (one rounding per term), 32-bit NEON and the portable
 * ones multiply then add (with -ffp-contract=off); both stay well within 1e-5 of a float64 reference. */
#include "tb_kernels.h"
#include "tb_gemm.h"

#define MR TB_GEMM_MR
#define NR TB_GEMM_NR

#if defined(__AVX512F__) && !defined(TB_GEMM_SCALAR)
#include <immintrin.h>

/* The fused epilogue of a tile (bias and a relu/clip activation applied in registers before the one store). */
#define TB_GEMM_MICRO_EDGE 1
typedef struct { const float *bias_m, *bias_n; int act; float act_a, act_b; } tb_gemm_epi;

/* The wide tiles: rows [0, mr) of rp A panels x cp B panels (6 x 16 each) in one register block, rp, cp in
 * {1, 2}, mr <= 6 rp (fewer where the job's rows end inside the tile: the rows past them are not computed), the rest as
 * the edge (rows [r0, r1), columns per B panel in cols[q], the fused bias + activation). 12 x 32 keeps 24
 * accumulators in flight, 2 B vectors and 12 broadcasts (from memory) per k: 24 independent FMA chains cover two
 * 512-bit FMA ports at latency 4, where 6 x 16's six cannot (<= 75% of peak, a broadcast per FMA). Each element's
 * sum runs k by k from zero in one register, then C, bias_m, bias_n and the activation:
 * whichever tile an element falls in (a row view's grid included), its bits are the same. Always inlined with
 * constant rp, cp, so the accumulator array lives in registers. */
/* B's panels are prefetched this many depths ahead: with few A rows (a Winograd block of 16 tiles) each B vector
 * feeds few FMAs and B streams from L3, where the hardware prefetchers alone leave the loads waiting. */
#ifndef TB_GEMM_PREFETCH
#define TB_GEMM_PREFETCH 32
#endif
static inline __attribute__((always_inline)) void micro_wide(const int rp, const int cp, const int mr, int kc,
                                                            const float *restrict a, long a_ps,
                                                            const float *restrict b, long b_ps, float *restrict c,
                                                            long ldc, int add, int r0, int r1,
                                                            const __mmask16 *cols, const tb_gemm_epi *e)
{
    __m512 acc[2 * MR][2], bn[2], lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
    const float *a1 = a + (rp > 1 ? a_ps : 0), *b1 = b + (cp > 1 ? b_ps : 0);
    int k, r, q;
#pragma GCC unroll 12
    for (r = 0; r < rp * MR; ++r)
#pragma GCC unroll 2
        for (q = 0; q < cp; ++q) acc[r][q] = _mm512_setzero_ps();
#pragma GCC unroll 2 /* two depths per trip: the loop's own instructions halved (measured: bench/gemm_ab.py) */
    for (k = 0; k < kc; ++k) {
        __m512 bk[2];
        bk[0] = _mm512_loadu_ps(b);
        if (cp > 1) bk[1] = _mm512_loadu_ps(b1);
        _mm_prefetch((const char *)(b + TB_GEMM_PREFETCH * NR), _MM_HINT_T0);
        if (cp > 1) _mm_prefetch((const char *)(b1 + TB_GEMM_PREFETCH * NR), _MM_HINT_T0);
#pragma GCC unroll 12
        for (r = 0; r < mr; ++r) {
            const __m512 ar = _mm512_set1_ps(r < MR ? a[r] : a1[r - MR]);
#pragma GCC unroll 2
            for (q = 0; q < cp; ++q) acc[r][q] = _mm512_fmadd_ps(ar, bk[q], acc[r][q]);
        }
        a += MR;
        a1 += MR;
        b += NR;
        b1 += NR;
    }
#pragma GCC unroll 2
    for (q = 0; q < cp; ++q) bn[q] = _mm512_setzero_ps();
    if (e) {
#pragma GCC unroll 2
        for (q = 0; q < cp; ++q)
            if (e->bias_n) bn[q] = _mm512_maskz_loadu_ps(cols[q], e->bias_n + q * NR);
        lo = _mm512_set1_ps(e->act == TB_ACT_CLIP ? e->act_a : 0.0f);
        hi = _mm512_set1_ps(e->act_b);
    }
#pragma GCC unroll 12
    for (r = 0; r < mr; ++r) {
        if (r < r0 || r >= r1) continue;
#pragma GCC unroll 2
        for (q = 0; q < cp; ++q) {
            float *cr = c + r * ldc + q * NR;
            __m512 v = acc[r][q];
            if (add) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(cols[q], cr));
            if (e) {
                if (e->bias_m) v = _mm512_add_ps(v, _mm512_set1_ps(e->bias_m[r]));
                v = _mm512_add_ps(v, bn[q]);
                if (e->act != TB_ACT_NONE) v = _mm512_max_ps(v, lo);
                if (e->act == TB_ACT_CLIP) v = _mm512_min_ps(v, hi);
            }
            _mm512_mask_storeu_ps(cr, cols[q], v);
        }
    }
}

/* A tile whose rows end at `rows` (1 .. 2 MR - 1, not MR: a ragged last panel, SqueezeNet's 169 pixels = 14 x 12 + 1,
 * a Winograd block of 16 tiles = 12 + 4): micro_wide over those rows only, where computing the whole panel spent up
 * to five rows' FMAs on zeros. Each element's sum is the same either way. */
static void micro_ragged(int cp, int rows, int kc, const float *restrict a, long a_ps, const float *restrict b,
                         long b_ps, float *restrict c, long ldc, int add, int r0, const __mmask16 *cols,
                         const tb_gemm_epi *e)
{
    switch (rows) {
#define TB_RAGGED(n)                                                                                               \
    case n:                                                                                                        \
        if (cp == 2) micro_wide((n) > MR ? 2 : 1, 2, n, kc, a, a_ps, b, b_ps, c, ldc, add, r0, n, cols, e);        \
        else micro_wide((n) > MR ? 2 : 1, 1, n, kc, a, a_ps, b, b_ps, c, ldc, add, r0, n, cols, e);                \
        break;
    TB_RAGGED(1) TB_RAGGED(2) TB_RAGGED(3) TB_RAGGED(4) TB_RAGGED(5) TB_RAGGED(7) TB_RAGGED(8) TB_RAGGED(9)
    TB_RAGGED(10) TB_RAGGED(11)
#undef TB_RAGGED
    default: break;
    }
}

#elif defined(__AVX2__) && defined(__FMA__) && !defined(TB_GEMM_SCALAR)
#include <immintrin.h>

/* c[6][16] = a.b (add=0) or c += a.b (add=1) over kc terms; a: kc x 6 packed, b: kc x 16 packed. */
static void micro(int kc, const float *restrict a, const float *restrict b, float *restrict c, long ldc, int add)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps();
    __m256 c11 = _mm256_setzero_ps(), c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c40 = _mm256_setzero_ps();
    __m256 c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    int k;
    for (k = 0; k < kc; ++k) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), ak;
        ak = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(ak, b0, c00); c01 = _mm256_fmadd_ps(ak, b1, c01);
        ak = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(ak, b0, c10); c11 = _mm256_fmadd_ps(ak, b1, c11);
        ak = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(ak, b0, c20); c21 = _mm256_fmadd_ps(ak, b1, c21);
        ak = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(ak, b0, c30); c31 = _mm256_fmadd_ps(ak, b1, c31);
        ak = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(ak, b0, c40); c41 = _mm256_fmadd_ps(ak, b1, c41);
        ak = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(ak, b0, c50); c51 = _mm256_fmadd_ps(ak, b1, c51);
        a += MR;
        b += NR;
    }
#define TB_STORE_ROW(r, lo, hi)                                                                 \
    do {                                                                                        \
        float *cr = c + (r) * ldc;                                                              \
        if (add) { lo = _mm256_add_ps(lo, _mm256_loadu_ps(cr)); hi = _mm256_add_ps(hi, _mm256_loadu_ps(cr + 8)); } \
        _mm256_storeu_ps(cr, lo);                                                               \
        _mm256_storeu_ps(cr + 8, hi);                                                           \
    } while (0)
    TB_STORE_ROW(0, c00, c01); TB_STORE_ROW(1, c10, c11); TB_STORE_ROW(2, c20, c21);
    TB_STORE_ROW(3, c30, c31); TB_STORE_ROW(4, c40, c41); TB_STORE_ROW(5, c50, c51);
#undef TB_STORE_ROW
}

#elif defined(__ARM_NEON) && defined(__aarch64__) && !defined(TB_GEMM_SCALAR)
#include <arm_neon.h>

/* c[6][16] = a.b (add=0) or c += a.b (add=1) over kc terms; a: kc x 6 packed, b: kc x 16 packed.
 * AArch64 NEON: 6 rows x 4 quads = 24 accumulators + 4 B quads + A's 6 values in one quad and one pair = 30 of the
 * 32 q registers. Each A value is used straight from its lane (fmla v.4s, v.4s, v.s[i]): no broadcasts. */
static void micro(int kc, const float *restrict a, const float *restrict b, float *restrict c, long ldc, int add)
{
    float32x4_t c00 = vdupq_n_f32(0.0f), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    float32x4_t c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
    float32x4_t c40 = c00, c41 = c00, c42 = c00, c43 = c00, c50 = c00, c51 = c00, c52 = c00, c53 = c00;
    int k;
    for (k = 0; k < kc; ++k) {
        const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8), b3 = vld1q_f32(b + 12);
        const float32x4_t a03 = vld1q_f32(a); /* rows 0-3 */
        const float32x2_t a45 = vld1_f32(a + 4); /* rows 4-5: a pair, so nothing past the panel is read */
#define TB_ROW(r, fmla, av, lane)                                                                              \
    do {                                                                                                       \
        c##r##0 = fmla(c##r##0, b0, av, lane); c##r##1 = fmla(c##r##1, b1, av, lane);                          \
        c##r##2 = fmla(c##r##2, b2, av, lane); c##r##3 = fmla(c##r##3, b3, av, lane);                          \
    } while (0)
        TB_ROW(0, vfmaq_laneq_f32, a03, 0); TB_ROW(1, vfmaq_laneq_f32, a03, 1);
        TB_ROW(2, vfmaq_laneq_f32, a03, 2); TB_ROW(3, vfmaq_laneq_f32, a03, 3);
        TB_ROW(4, vfmaq_lane_f32, a45, 0); TB_ROW(5, vfmaq_lane_f32, a45, 1);
#undef TB_ROW
        a += MR;
        b += NR;
    }
#define TB_STORE_ROW(r)                                                                                        \
    do {                                                                                                       \
        float *cr = c + (r) * ldc;                                                                             \
        if (add) {                                                                                             \
            c##r##0 = vaddq_f32(c##r##0, vld1q_f32(cr)); c##r##1 = vaddq_f32(c##r##1, vld1q_f32(cr + 4));      \
            c##r##2 = vaddq_f32(c##r##2, vld1q_f32(cr + 8)); c##r##3 = vaddq_f32(c##r##3, vld1q_f32(cr + 12)); \
        }                                                                                                      \
        vst1q_f32(cr, c##r##0); vst1q_f32(cr + 4, c##r##1);                                                    \
        vst1q_f32(cr + 8, c##r##2); vst1q_f32(cr + 12, c##r##3);                                               \
    } while (0)
    TB_STORE_ROW(0); TB_STORE_ROW(1); TB_STORE_ROW(2);
    TB_STORE_ROW(3); TB_STORE_ROW(4); TB_STORE_ROW(5);
#undef TB_STORE_ROW
}

#elif defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 2) && !defined(TB_GEMM_SCALAR)
#include <arm_mve.h>

/* c[6][16] = a.b (add=0) or c += a.b (add=1) over kc terms; a: kc x 6 packed, b: kc x 16 packed.
 * Helium (MVE with floating point, Cortex-M55): 8 q registers, so the tile goes in four strips of 4 columns, each
 * 6 accumulators + 1 B quad, A's values as scalar operands (vfma.f32 q, q, r: fused, one rounding, as AVX). */
static void micro(int kc, const float *restrict a, const float *restrict b, float *restrict c, long ldc, int add)
{
    int j, k, r;
    for (j = 0; j < NR; j += 4) {
        float32x4_t c0 = vdupq_n_f32(0.0f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
        const float *ak = a, *bk = b + j;
        for (k = 0; k < kc; ++k) {
            const float32x4_t bv = vld1q_f32(bk);
            c0 = vfmaq_n_f32(c0, bv, ak[0]); c1 = vfmaq_n_f32(c1, bv, ak[1]); c2 = vfmaq_n_f32(c2, bv, ak[2]);
            c3 = vfmaq_n_f32(c3, bv, ak[3]); c4 = vfmaq_n_f32(c4, bv, ak[4]); c5 = vfmaq_n_f32(c5, bv, ak[5]);
            ak += MR;
            bk += NR;
        }
        {
            float32x4_t rows[MR];
            rows[0] = c0; rows[1] = c1; rows[2] = c2; rows[3] = c3; rows[4] = c4; rows[5] = c5;
            for (r = 0; r < MR; ++r) {
                float *cr = c + r * ldc + j;
                vst1q_f32(cr, add ? vaddq_f32(rows[r], vld1q_f32(cr)) : rows[r]);
            }
        }
    }
}

#elif defined(__ARM_NEON) && !defined(__aarch64__) && !defined(TB_GEMM_SCALAR)
#include <arm_neon.h>

/* c[6][16] = a.b (add=0) or c += a.b (add=1) over kc terms; a: kc x 6 packed, b: kc x 16 packed.
 * 32-bit NEON (Cortex-A15, -mfpu=neon-vfpv4): 16 q registers, so the tile goes in two halves of 8 columns, each
 * 6 rows x 2 quads = 12 accumulators + 2 B quads + A's 6 values in three d registers. vmla multiplies then adds
 * (two roundings), as the portable paths do. */
static void micro_half(int kc, const float *restrict a, const float *restrict b, float *restrict c, long ldc,
                       int add)
{
    float32x4_t c00 = vdupq_n_f32(0.0f), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    float32x4_t c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    int k;
    for (k = 0; k < kc; ++k) {
        const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4);
        const float32x2_t a01 = vld1_f32(a), a23 = vld1_f32(a + 2), a45 = vld1_f32(a + 4);
        c00 = vmlaq_lane_f32(c00, b0, a01, 0); c01 = vmlaq_lane_f32(c01, b1, a01, 0);
        c10 = vmlaq_lane_f32(c10, b0, a01, 1); c11 = vmlaq_lane_f32(c11, b1, a01, 1);
        c20 = vmlaq_lane_f32(c20, b0, a23, 0); c21 = vmlaq_lane_f32(c21, b1, a23, 0);
        c30 = vmlaq_lane_f32(c30, b0, a23, 1); c31 = vmlaq_lane_f32(c31, b1, a23, 1);
        c40 = vmlaq_lane_f32(c40, b0, a45, 0); c41 = vmlaq_lane_f32(c41, b1, a45, 0);
        c50 = vmlaq_lane_f32(c50, b0, a45, 1); c51 = vmlaq_lane_f32(c51, b1, a45, 1);
        a += MR;
        b += NR;
    }
#define TB_STORE_ROW(r)                                                                                        \
    do {                                                                                                       \
        float *cr = c + (r) * ldc;                                                                             \
        if (add) { c##r##0 = vaddq_f32(c##r##0, vld1q_f32(cr)); c##r##1 = vaddq_f32(c##r##1, vld1q_f32(cr + 4)); } \
        vst1q_f32(cr, c##r##0); vst1q_f32(cr + 4, c##r##1);                                                    \
    } while (0)
    TB_STORE_ROW(0); TB_STORE_ROW(1); TB_STORE_ROW(2);
    TB_STORE_ROW(3); TB_STORE_ROW(4); TB_STORE_ROW(5);
#undef TB_STORE_ROW
}

static void micro(int kc, const float *restrict a, const float *restrict b, float *restrict c, long ldc, int add)
{
    micro_half(kc, a, b, c, ldc, add);
    micro_half(kc, a, b + 8, c + 8, ldc, add);
}

#elif defined(__GNUC__) && (defined(__SSE2__) || defined(__ARM_NEON)) && !defined(TB_GEMM_SCALAR)
/* GCC vector extensions: the same 6 x (2 x 8) register tile, lowered to whatever SIMD the target has. */
typedef float tb_v8 __attribute__((vector_size(32)));

static void micro(int kc, const float *restrict a, const float *restrict b, float *restrict c, long ldc, int add)
{
    tb_v8 acc[MR][2];
    int k, r;
    for (r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = (tb_v8){0, 0, 0, 0, 0, 0, 0, 0};
    for (k = 0; k < kc; ++k) {
        tb_v8 b0, b1;
        __builtin_memcpy(&b0, b, sizeof b0);
        __builtin_memcpy(&b1, b + 8, sizeof b1);
        for (r = 0; r < MR; ++r) {
            acc[r][0] += a[r] * b0;
            acc[r][1] += a[r] * b1;
        }
        a += MR;
        b += NR;
    }
    for (r = 0; r < MR; ++r) {
        float *cr = c + r * ldc;
        if (add) {
            tb_v8 c0, c1;
            __builtin_memcpy(&c0, cr, sizeof c0);
            __builtin_memcpy(&c1, cr + 8, sizeof c1);
            acc[r][0] += c0;
            acc[r][1] += c1;
        }
        __builtin_memcpy(cr, &acc[r][0], sizeof acc[r][0]);
        __builtin_memcpy(cr + 8, &acc[r][1], sizeof acc[r][1]);
    }
}

#else
/* Plain C99 (e.g. Cortex-M): the same tile, scalar. */
static void micro(int kc, const float *restrict a, const float *restrict b, float *restrict c, long ldc, int add)
{
    float acc[MR][NR];
    int k, r, j;
    for (r = 0; r < MR; ++r)
        for (j = 0; j < NR; ++j) acc[r][j] = 0.0f;
    for (k = 0; k < kc; ++k) {
        for (r = 0; r < MR; ++r) {
            float ar = a[r];
            for (j = 0; j < NR; ++j) acc[r][j] += ar * b[j];
        }
        a += MR;
        b += NR;
    }
    for (r = 0; r < MR; ++r)
        for (j = 0; j < NR; ++j) c[r * ldc + j] = add ? c[r * ldc + j] + acc[r][j] : acc[r][j];
}
#endif

/* Every path packs A into the declared workspace (or reads it pre-packed), so the arena the emitted code uses is
 * exactly the arena the registry's formula declares, whatever the ISA. */

#ifdef TB_GEMM_MICRO_EDGE
/* A whole panel's 16 depths at once: six rows of 16 loaded, transposed in registers into the panel's 96 floats
 * (element i of output vector j is row (16j+i) % 6 at depth (16j+i) / 6): per output vector three two-source
 * permutes (rows 0-1, 2-3, 4-5) merged by lane masks. A scalar copy would spend a store per float. */
#define TB_PK_E(j, i) (16 * (j) + (i))
#define TB_PK(j, g, i) (TB_PK_E(j, i) % MR / 2 == (g) ? TB_PK_E(j, i) / MR + 16 * (TB_PK_E(j, i) % 2) : 0)
#define TB_PK16(j, g)                                                                                              \
    { TB_PK(j, g, 0), TB_PK(j, g, 1), TB_PK(j, g, 2), TB_PK(j, g, 3), TB_PK(j, g, 4), TB_PK(j, g, 5),             \
      TB_PK(j, g, 6), TB_PK(j, g, 7), TB_PK(j, g, 8), TB_PK(j, g, 9), TB_PK(j, g, 10), TB_PK(j, g, 11),           \
      TB_PK(j, g, 12), TB_PK(j, g, 13), TB_PK(j, g, 14), TB_PK(j, g, 15) }
#define TB_PK3(j) { TB_PK16(j, 0), TB_PK16(j, 1), TB_PK16(j, 2) }
/* pack_idx[j][g][i]: where output vector j's lane i comes from in rows 2g, 2g+1 (an index < 16: row 2g, else 2g+1) */
static const int pack_idx[MR][3][16] = { TB_PK3(0), TB_PK3(1), TB_PK3(2), TB_PK3(3), TB_PK3(4), TB_PK3(5) };
/* pack_from[j][g - 1]: the lanes of output vector j taken from rows 2g, 2g+1 (g = 1, 2), as a lane mask */
#define TB_PK_M(j, g, i) ((unsigned)(TB_PK_E(j, i) % MR / 2 == (g)) << (i))
#define TB_PK_MASK(j, g)                                                                                           \
    (__mmask16)(TB_PK_M(j, g, 0) | TB_PK_M(j, g, 1) | TB_PK_M(j, g, 2) | TB_PK_M(j, g, 3) | TB_PK_M(j, g, 4) |     \
                TB_PK_M(j, g, 5) | TB_PK_M(j, g, 6) | TB_PK_M(j, g, 7) | TB_PK_M(j, g, 8) | TB_PK_M(j, g, 9) |     \
                TB_PK_M(j, g, 10) | TB_PK_M(j, g, 11) | TB_PK_M(j, g, 12) | TB_PK_M(j, g, 13) |                   \
                TB_PK_M(j, g, 14) | TB_PK_M(j, g, 15))
#define TB_PK_MASKS(j) { TB_PK_MASK(j, 1), TB_PK_MASK(j, 2) }
static const __mmask16 pack_from[MR][2] = {
    TB_PK_MASKS(0), TB_PK_MASKS(1), TB_PK_MASKS(2), TB_PK_MASKS(3), TB_PK_MASKS(4), TB_PK_MASKS(5)
};
#undef TB_PK_MASKS
#undef TB_PK_MASK
#undef TB_PK_M
#undef TB_PK3
#undef TB_PK16
#undef TB_PK
#undef TB_PK_E

/* The whole panels [0, panels) of rows [0, 6 * panels), each kc * MR floats at d. The permute indices are loaded
 * once per call, not per panel: a Winograd GEMM over 16-64 channels packs one or four 16-depth steps per panel,
 * where rebuilding them per panel took 30% of the layer. */
static void pack_a_panels16(int panels, int kc, const float *restrict a, long lda, float *restrict d)
{
    __m512i idx[MR][3];
    __m512 rows[MR];
    int j, r, k, p;
    for (j = 0; j < MR; ++j)
        for (r = 0; r < 3; ++r) idx[j][r] = _mm512_loadu_si512(pack_idx[j][r]);
    for (p = 0; p < panels; ++p, a += MR * lda, d += (long)kc * MR) {
        for (k = 0; k + 16 <= kc; k += 16) {
            for (r = 0; r < MR; ++r) rows[r] = _mm512_loadu_ps(a + r * lda + k);
            for (j = 0; j < MR; ++j) {
                __m512 v = _mm512_permutex2var_ps(rows[0], idx[j][0], rows[1]);
                v = _mm512_mask_blend_ps(pack_from[j][0], v, _mm512_permutex2var_ps(rows[2], idx[j][1], rows[3]));
                v = _mm512_mask_blend_ps(pack_from[j][1], v, _mm512_permutex2var_ps(rows[4], idx[j][2], rows[5]));
                _mm512_storeu_ps(d + (long)k * MR + 16 * j, v);
            }
        }
        for (; k < kc; ++k)
            for (r = 0; r < MR; ++r) d[(long)k * MR + r] = a[r * lda + k];
    }
}
#endif

/* Pack rows [0, mc) x depth [0, kc) of row-major a into MR-row panels (rows past mc zero). */
static void pack_a(int mc, int kc, const float *restrict a, long lda, float *restrict dst)
{
    int ir = 0, r, k;
#ifdef TB_GEMM_MICRO_EDGE
    ir = mc / MR * MR;
    pack_a_panels16(mc / MR, kc, a, lda, dst);
#endif
    for (; ir < mc; ir += MR) {
        int rows = tb_min(MR, mc - ir);
        float *d = dst + (long)ir * kc;
        for (r = 0; r < MR; ++r) {
            if (r < rows) {
                const float *src = a + (long)(ir + r) * lda;
                for (k = 0; k < kc; ++k) d[k * MR + r] = src[k];
            } else
                for (k = 0; k < kc; ++k) d[k * MR + r] = 0.0f;
        }
    }
}

/* Pack depth [0, kc) x columns [0, nc) of row-major b into NR-column panels (columns past nc zero). */
static void pack_b(int kc, int nc, const float *restrict b, long ldb, float *restrict dst)
{
    const int whole = nc / NR * NR; /* columns in whole panels */
    int jr, k0, k, j;
    /* whole panels, 16 rows of b at a time, all panels across: 16 read streams the prefetcher follows (panel by
     * panel would be kc strided ones), 1 KiB written contiguously per panel (row by row would write each line of
     * every panel kc * 64 bytes apart: one L1 set when kc is a multiple of 64); 16 floats at a time (a constant
     * count: a vector copy, not a call to memcpy) */
    for (k0 = 0; k0 < kc; k0 += 16) {
        const int k1 = tb_min(k0 + 16, kc);
        for (jr = 0; jr < whole; jr += NR)
            for (k = k0; k < k1; ++k)
                for (j = 0; j < NR; ++j) dst[(long)jr * kc + k * NR + j] = b[(long)k * ldb + jr + j];
    }
    if (whole < nc) { /* the last, partial panel */
        float *d = dst + (long)whole * kc;
        for (k = 0; k < kc; ++k) {
            const float *src = b + (long)k * ldb + whole;
            for (j = 0; j < nc - whole; ++j) d[k * NR + j] = src[j];
            for (; j < NR; ++j) d[k * NR + j] = 0.0f;
        }
    }
}

/* Bias + activation on the finished tile rows [r0, r1) x columns [j0, j1) at absolute (row, col). */
static void epilogue(const tb_gemm_job *g, int row, int col, int rows, int cols)
{
    int r;
    if (!g->bias_m && !g->bias_n && g->act == TB_ACT_NONE) return; /* nothing to add: skip a pass over C */
    for (r = 0; r < rows; ++r) {
        float *cr = g->c + (long)(row + r) * g->ldc + col;
        float bm = g->bias_m ? g->bias_m[row + r] : 0.0f;
        if (g->bias_n) {
            int j;
            for (j = 0; j < cols; ++j) cr[j] += bm;
            tb_bias_act_vec(cr, cols, g->bias_n + col, g->act, g->act_a, g->act_b);
        } else {
            tb_bias_act_row(cr, cols, bm, g->act, g->act_a, g->act_b);
        }
    }
}

#ifdef TB_GEMM_MICRO_EDGE
/* One (ic, jc, pc) block with packed A on AVX-512: tiles of up to 2 x 2 panels (12 x 32), each clipped to the
 * job's [m0, m1) x [n0, n1) in place, bias + relu/clip fused into the store (same bounds as tb_act_value). The
 * B pair stays in L1 while the A panels stream by (jr outer, ir inner). */
static void macro_wide(const tb_gemm_job *g, int ic, int mc, int jc, int nc, int kc, const float *ablk, long a_ps,
                       const float *bblk, long b_ps, int first, int last)
{
    const int add = !first || g->accumulate;
    const int fuse = last && !g->accumulate &&
                     (g->act == TB_ACT_NONE || g->act == TB_ACT_RELU || g->act == TB_ACT_CLIP);
    int jr, ir, q;
    for (jr = 0; jr < nc; jr += 2 * NR) {
        const float *bp = bblk + (long)(jr / NR) * b_ps;
        const int col = jc + jr, cp = jr + NR < nc ? 2 : 1;
        const int c_lo = tb_max(col, g->n0), c_hi = tb_min(col + cp * NR, g->n1);
        __mmask16 cols[2];
        for (q = 0; q < 2; ++q) { /* the lanes of panel q inside [c_lo, c_hi) */
            const int lo = tb_max(c_lo - col - q * NR, 0), hi = tb_min(c_hi - col - q * NR, NR);
            cols[q] = hi > lo ? (__mmask16)((0xFFFFu >> (NR - hi)) & (0xFFFFu << lo)) : 0;
        }
        for (ir = 0; ir < mc; ir += 2 * MR) {
            const float *ap = ablk + (long)(ir / MR) * a_ps;
            const int row = ic + ir, rp = ir + MR < mc ? 2 : 1;
            const int r_lo = tb_max(row, g->m0), r_hi = tb_min(row + rp * MR, g->m1);
            float *ct = g->c + (long)row * g->ldc + col;
            tb_gemm_epi e;
            const tb_gemm_epi *ep = fuse ? &e : 0;
            e.bias_m = g->bias_m ? g->bias_m + row : 0;
            e.bias_n = g->bias_n ? g->bias_n + col : 0;
            e.act = g->act; e.act_a = g->act_a; e.act_b = g->act_b;
            if (r_hi - row < rp * MR) /* the job's rows end inside the tile */
                micro_ragged(cp, r_hi - row, kc, ap, a_ps, bp, b_ps, ct, g->ldc, add, r_lo - row, cols, ep);
            else if (rp == 2 && cp == 2)
                micro_wide(2, 2, 2 * MR, kc, ap, a_ps, bp, b_ps, ct, g->ldc, add, r_lo - row, r_hi - row, cols, ep);
            else if (rp == 2)
                micro_wide(2, 1, 2 * MR, kc, ap, a_ps, bp, b_ps, ct, g->ldc, add, r_lo - row, r_hi - row, cols, ep);
            else if (cp == 2)
                micro_wide(1, 2, MR, kc, ap, a_ps, bp, b_ps, ct, g->ldc, add, r_lo - row, r_hi - row, cols, ep);
            else
                micro_wide(1, 1, MR, kc, ap, a_ps, bp, b_ps, ct, g->ldc, add, r_lo - row, r_hi - row, cols, ep);
            if (last && !g->accumulate && !fuse) epilogue(g, r_lo, c_lo, r_hi - r_lo, c_hi - c_lo);
        }
    }
}
#endif

/* One (ic, jc, pc) block: every MR x NR tile, clipped to the job's [m0, m1) x [n0, n1). */
static void macro(const tb_gemm_job *g, int ic, int mc, int jc, int nc, int kc, const float *ablk, long a_ps,
                  const float *bblk, long b_ps, int first, int last)
{
#ifdef TB_GEMM_MICRO_EDGE
    macro_wide(g, ic, mc, jc, nc, kc, ablk, a_ps, bblk, b_ps, first, last); /* A is always packed */
#else
    int add = !first || g->accumulate, jr, ir;
    float tile[MR * NR];
    for (jr = 0; jr < nc; jr += NR) {
        const float *bp = bblk + (long)(jr / NR) * b_ps;
        int col = jc + jr;
        int c_lo = tb_max(col, g->n0), c_hi = tb_min(col + NR, g->n1);
        for (ir = 0; ir < mc; ir += MR) {
            const float *ap = ablk + (long)(ir / MR) * a_ps;
            int row = ic + ir;
            int r_lo = tb_max(row, g->m0), r_hi = tb_min(row + MR, g->m1);
            if (r_lo == row && r_hi == row + MR && c_lo == col && c_hi == col + NR) {
                micro(kc, ap, bp, g->c + (long)row * g->ldc + col, g->ldc, add);
            } else {
                int r, j;
                micro(kc, ap, bp, tile, NR, 0);
                for (r = r_lo; r < r_hi; ++r) {
                    float *cr = g->c + (long)r * g->ldc;
                    const float *tr = tile + (r - row) * NR;
                    if (add)
                        for (j = c_lo; j < c_hi; ++j) cr[j] += tr[j - col];
                    else
                        for (j = c_lo; j < c_hi; ++j) cr[j] = tr[j - col];
                }
            }
            if (last && !g->accumulate) epilogue(g, r_lo, c_lo, r_hi - r_lo, c_hi - c_lo);
        }
    }
#endif
}

void tb_gemm(const tb_gemm_job *g, float *ws)
{
    const int K = g->k;
    /* A pre-packed operand's panels are aligned at row (column) 0; a packed-here one at m0 (n0). */
    const int mbase = g->a_packed ? g->m0 - g->m0 % MR : g->m0;
    const int nbase = g->b_packed ? g->n0 - g->n0 % NR : g->n0;
    const int kcmax = tb_gemm_kc(K);
    float *apack = ws;
    float *bpack = ws + (g->a_packed ? 0 : (long)((tb_min(TB_GEMM_MC, g->m1 - g->m0) + MR - 1) / MR) * MR * kcmax);
    int jc, pc, ic;
    if (g->m0 >= g->m1 || g->n0 >= g->n1) return;
    if (K <= 0) { /* empty sum: C = act(bias) */
        int r;
        if (g->accumulate) return;
        for (r = g->m0; r < g->m1; ++r) {
            int j;
            for (j = g->n0; j < g->n1; ++j) g->c[(long)r * g->ldc + j] = 0.0f;
        }
        epilogue(g, g->m0, g->n0, g->m1 - g->m0, g->n1 - g->n0);
        return;
    }
    for (jc = nbase; jc < g->n1; jc += TB_GEMM_NC) {
        int nc = tb_min(TB_GEMM_NC, g->n1 - jc);
        for (pc = 0; pc < K; pc += kcmax) {
            int kc = tb_min(kcmax, K - pc);
            const float *bblk;
            long b_ps;
            if (g->b_packed) {
                bblk = g->b + (long)(jc / NR) * K * NR + (long)pc * NR;
                b_ps = (long)K * NR;
            } else {
                pack_b(kc, nc, g->b + (long)pc * g->ldb + jc, g->ldb, bpack);
                bblk = bpack;
                b_ps = (long)kc * NR;
            }
            for (ic = mbase; ic < g->m1; ic += TB_GEMM_MC) {
                int mc = tb_min(TB_GEMM_MC, g->m1 - ic);
                const float *ablk;
                long a_ps;
                if (g->a_packed) {
                    ablk = g->a + (long)(ic / MR) * K * MR + (long)pc * MR;
                    a_ps = (long)K * MR;
                } else {
                    pack_a(mc, kc, g->a + (long)ic * g->lda + pc, g->lda, apack);
                    ablk = apack;
                    a_ps = (long)kc * MR;
                }
                macro(g, ic, mc, jc, nc, kc, ablk, a_ps, bblk, b_ps, pc == 0, pc + kc >= K);
            }
        }
    }
}
