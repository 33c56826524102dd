/* Internal to the conv kernels: the one single-threaded SGEMM every GEMM-based convolution shares, and the fused
 * bias + activation helpers. Not part of the public kernel API (tb_conv.h is).
 *
 * Packed panel formats (the build-time weight transforms, through tasobuild/primitives/gemm.py, produce exactly these):
 *   A packed: row i of A[M][K] lives in panel i / MR; panel p holds A[p*MR + r][k] at p*K*MR + k*MR + r
 *             (rows past M are zero).
 *   B packed: column j of B[K][N] lives in panel j / NR; panel q holds B[k][q*NR + c] at q*K*NR + k*NR + c
 *             (columns past N are zero).
 * Because a panel spans all of K, a k-block [pc, pc+kc) of a panel is the contiguous run starting at pc*MR (pc*NR):
 * pre-packed operands need no repacking whatever the cache blocking. The block sizes below are part of the
 * workspace formula (tasobuild/primitives/gemm.py mirrors them; a test checks they agree). */
#ifndef TB_GEMM_H
#define TB_GEMM_H

#include <math.h>
#include "tb_kernels.h" /* TB_ACT_* */

#define TB_GEMM_MR 6    /* panel rows: 6 x 2 AVX2 accumulators + 2 B + 1 broadcast (NEON: 30; AVX-512 2x2 panels) */
#define TB_GEMM_NR 16
#define TB_GEMM_KC 384  /* kc x NR B micro-panel (24 KiB) stays in L1 */
#define TB_GEMM_KC_WHOLE 512 /* a depth up to this runs as one block: a second block would reload all of C */
#define TB_GEMM_MC 96   /* MC x KC packed A block (144 KiB) stays in L2 */
#define TB_GEMM_NC 4080 /* KC x NC packed B block in L3 */

/* C[m0:m1, n0:n1] (+)= A[m0:m1, :] . B[:, n0:n1], rows and columns in absolute coordinates of the full matrices.
 * A row-major (lda) is packed block by block into the workspace; A pre-packed is read in place (likewise B).
 * accumulate=0: C = act(AB + bias_m[i] + bias_n[j]) (either bias may be 0); accumulate=1: C += AB, no bias/act.
 * Workspace floats: (a_packed ? 0 : ceil(min(MC, m1-m0) / MR) * MR * kc(K))
 *                 + (b_packed ? 0 : kc(K) * ceil(min(NC, n1-n0) / NR) * NR), kc as tb_gemm_kc. */
typedef struct {
    int m0, m1, n0, n1, k;
    const float *a; int lda; int a_packed;
    const float *b; int ldb; int b_packed;
    float *c; int ldc;
    int accumulate;
    const float *bias_m, *bias_n;
    int act; float act_a, act_b;
} tb_gemm_job;

void tb_gemm(const tb_gemm_job *job, float *ws);

/* The depth of the GEMM's k-blocks for a depth K: all of it up to TB_GEMM_KC_WHOLE, else TB_GEMM_KC (the last
 * block what is left). An element's sum restarts from zero at each block and is then added to C, so the blocks
 * are part of the result's rounding: the same for every tile and view of one job. */
static inline int tb_gemm_kc(int k) { return k <= TB_GEMM_KC_WHOLE ? k : TB_GEMM_KC; }

/* The fused activation of one value; tb_act_row applies it to n contiguous values after adding a scalar bias,
 * one loop per kind so each loop vectorises. */
static inline float tb_act_value(float v, int act, float a, float b)
{
    switch (act) {
    case TB_ACT_RELU: return v > 0.0f ? v : 0.0f;
    case TB_ACT_CLIP: v = v < a ? a : v; return v > b ? b : v; /* clip(min a, max b) */
    case TB_ACT_LEAKY_RELU: return v < 0.0f ? a * v : v;
    case TB_ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
    default: return v;
    }
}

static inline void tb_bias_act_row(float *restrict x, long n, float bias, int act, float a, float b)
{
    long i;
    switch (act) {
    case TB_ACT_RELU:
        for (i = 0; i < n; ++i) { float v = x[i] + bias; x[i] = v > 0.0f ? v : 0.0f; }
        break;
    case TB_ACT_CLIP:
        for (i = 0; i < n; ++i) { float v = x[i] + bias; v = v < a ? a : v; x[i] = v > b ? b : v; }
        break;
    case TB_ACT_LEAKY_RELU:
        for (i = 0; i < n; ++i) { float v = x[i] + bias; x[i] = v < 0.0f ? a * v : v; }
        break;
    case TB_ACT_SIGMOID:
        for (i = 0; i < n; ++i) x[i] = 1.0f / (1.0f + expf(-(x[i] + bias)));
        break;
    default:
        for (i = 0; i < n; ++i) x[i] += bias;
        break;
    }
}

/* x[i] = act(x[i] + bias[i]) for n contiguous values (a per-channel bias along a HWC pixel). */
static inline void tb_bias_act_vec(float *restrict x, long n, const float *restrict bias, int act, float a, float b)
{
    long i;
    switch (act) {
    case TB_ACT_RELU:
        for (i = 0; i < n; ++i) { float v = x[i] + bias[i]; x[i] = v > 0.0f ? v : 0.0f; }
        break;
    case TB_ACT_CLIP:
        for (i = 0; i < n; ++i) { float v = x[i] + bias[i]; v = v < a ? a : v; x[i] = v > b ? b : v; }
        break;
    case TB_ACT_LEAKY_RELU:
        for (i = 0; i < n; ++i) { float v = x[i] + bias[i]; x[i] = v < 0.0f ? a * v : v; }
        break;
    case TB_ACT_SIGMOID:
        for (i = 0; i < n; ++i) x[i] = 1.0f / (1.0f + expf(-(x[i] + bias[i])));
        break;
    default:
        for (i = 0; i < n; ++i) x[i] += bias[i];
        break;
    }
}

static inline int tb_min(int a, int b) { return a < b ? a : b; }
static inline int tb_max(int a, int b) { return a > b ? a : b; }

/* The range [lo, hi) of output positions o with 0 <= o*stride + off < size (off = tap offset - pad). */
static inline void tb_valid_range(int out_n, int stride, int off, int size, int *lo, int *hi)
{
    int l = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int h = size - off <= 0 ? 0 : (size - off - 1) / stride + 1;
    if (h > out_n) h = out_n;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

#endif
