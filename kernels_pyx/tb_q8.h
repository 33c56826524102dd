/* int8 kernels (quantised networks): int8 activations and weights, int32 accumulation, and TensorFlow Lite's
 * requantisation arithmetic, exactly as TFLite's reference kernels (and TFLM, CMSIS-NN) compute it:
 *   acc = bias[m] + sum w * (x - in_zp)          (weights are symmetric: zero point 0)
 *   out = clamp(MultiplyByQuantizedMultiplier(acc, mult[m], shift[m]) + out_zp, act_min, act_max)
 * The multiplier and shift of every output channel are computed at build time in Python exactly as TFLite's
 * QuantizeMultiplier does (tasobuild.primitives.q8), and passed as one int32 array `rq`: M multipliers, then M
 * shifts. A layout names the memory order of the logical (C, H, W) axes, as for the float kernels. The int8
 * products run through tb_q8_dot.h (SIMD per architecture), the requantisation eight lanes at a time with AVX2;
 * every version computes the same integers.
 *
 * Not included by tb_kernels.h: only projects that run int8 layers carry this header. */
#ifndef TB_Q8_H
#define TB_Q8_H

#include <stdint.h>
#include <string.h>
#include "tb_kernels.h" /* tb_tensor */
#include "tb_q8_dot.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- TFLite's fixed-point helpers (tensorflow/lite/kernels/internal/common.h, gemmlowp fixedpoint.h) ---- */

/* round(a * b / 2^31), ties away from zero, saturating the one overflow (INT32_MIN * INT32_MIN). */
static inline int32_t tb_q8_doubling_high_mul(int32_t a, int32_t b)
{
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    int32_t high = (int32_t)((ab + nudge) / ((int64_t)1 << 31));
    return a == b && a == INT32_MIN ? INT32_MAX : high; /* branch-free: loops of requantisations vectorise */
}

/* x / 2^exponent rounded to nearest, ties away from zero (gemmlowp RoundingDivideByPOT). */
static inline int32_t tb_q8_divide_by_pot(int32_t x, int exponent)
{
    int32_t mask = (int32_t)((1u << exponent) - 1u); /* exponent <= 31 */
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite's MultiplyByQuantizedMultiplier: x * multiplier * 2^shift / 2^31 with its two roundings. */
static inline int32_t tb_q8_requant(int32_t x, int32_t multiplier, int shift)
{
    int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    return tb_q8_divide_by_pot(tb_q8_doubling_high_mul((int32_t)((uint32_t)x << left), multiplier), right);
}

static inline int8_t tb_q8_clamp(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : v > hi ? hi : v);
}

#ifdef __AVX2__
#include <immintrin.h>

/* tb_q8_requant on 8 lanes, the same integers: the doubling high multiply on magnitudes (|x| * |multiplier| as
 * unsigned 32 x 32 -> 64 bits, even and odd lanes apart), its nudge 2^30 for a positive product and 2^30 - 1 for a
 * negative one (which is what C's truncation of (ab + 1 - 2^30) / 2^31 amounts to), the sign put back, the one
 * overflow saturated, then the rounding division by 2^right as tb_q8_divide_by_pot. */
static inline __m256i tb_q8_requant8(__m256i x, __m256i mult, __m256i shift)
{
    const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi32(1);
    const __m256i left = _mm256_max_epi32(shift, zero), right = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
    const __m256i a = _mm256_sllv_epi32(x, left);
    const __m256i neg = _mm256_srai_epi32(_mm256_xor_si256(a, mult), 31);
    const __m256i abs_a = _mm256_abs_epi32(a), abs_m = _mm256_abs_epi32(mult);
    const __m256i nudge = _mm256_set1_epi64x((1LL << 30) - 1), low = _mm256_set1_epi64x(0xffffffffLL);
    const __m256i round_up = _mm256_andnot_si256(neg, one); /* +1 on the nudge where the product is >= 0 */
    const __m256i even = _mm256_srli_epi64(
        _mm256_add_epi64(_mm256_add_epi64(_mm256_mul_epu32(abs_a, abs_m), nudge), _mm256_and_si256(round_up, low)), 31);
    const __m256i odd = _mm256_srli_epi64(
        _mm256_add_epi64(_mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(abs_a, 32), _mm256_srli_epi64(abs_m, 32)),
                                          nudge),
                         _mm256_srli_epi64(round_up, 32)),
        31);
    __m256i high = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xaa);
    high = _mm256_sub_epi32(_mm256_xor_si256(high, neg), neg);
    const __m256i min = _mm256_set1_epi32(INT32_MIN);
    const __m256i overflow = _mm256_and_si256(_mm256_cmpeq_epi32(a, min), _mm256_cmpeq_epi32(mult, min));
    high = _mm256_blendv_epi8(high, _mm256_set1_epi32(INT32_MAX), overflow);
    const __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
    const __m256i remainder = _mm256_and_si256(high, mask);
    const __m256i threshold = _mm256_sub_epi32(_mm256_srai_epi32(mask, 1), _mm256_srai_epi32(high, 31));
    return _mm256_sub_epi32(_mm256_srav_epi32(high, right), _mm256_cmpgt_epi32(remainder, threshold));
}
#endif

#ifdef __AVX2__
/* clamp(requant(acc[0..8)) + zp) stored as 8 int8 at out */
static inline void tb_q8_requant8_store(const int32_t *restrict acc, __m256i mult, __m256i shift, __m256i zp,
                                        __m256i lo, __m256i hi, int8_t *restrict out)
{
    /* the low byte of each int32 lane, gathered into the low 4 bytes of each 128-bit half */
    const __m256i bytes = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                           0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256i v = tb_q8_requant8(_mm256_loadu_si256((const __m256i *)(const void *)acc), mult, shift);
    v = _mm256_shuffle_epi8(_mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(v, zp), lo), hi), bytes);
    const int32_t first = _mm_cvtsi128_si32(_mm256_castsi256_si128(v));
    const int32_t second = _mm_cvtsi128_si32(_mm256_extracti128_si256(v, 1));
    memcpy(out, &first, 4);
    memcpy(out + 4, &second, 4);
}
#endif

/* out[j * out_step] = the requantised acc[j] of output channel m0 + j, j < n; rq as the kernels take it (M
 * multipliers, then M shifts). AVX2: eight at a time (tb_q8_requant8); otherwise a loop without calls or branches
 * per element, which compilers vectorise. */
static inline void tb_q8_requant_run(const int32_t *restrict acc, int n, const int32_t *restrict rq, int M, int m0,
                                     int out_zp, int act_min, int act_max, int8_t *restrict out, long out_step)
{
    const int32_t *restrict mult = rq + m0, *restrict shift = rq + M + m0;
    int j = 0;
#ifdef __AVX2__
    if (out_step == 1) {
        const __m256i zp = _mm256_set1_epi32(out_zp), lo = _mm256_set1_epi32(act_min), hi = _mm256_set1_epi32(act_max);
        for (; j + 8 <= n; j += 8)
            tb_q8_requant8_store(acc + j, _mm256_loadu_si256((const __m256i *)(const void *)(mult + j)),
                                 _mm256_loadu_si256((const __m256i *)(const void *)(shift + j)), zp, lo, hi, out + j);
    }
#endif
    for (; j < n; ++j)
        out[j * out_step] = tb_q8_clamp(tb_q8_requant(acc[j], mult[j], (int)shift[j]) + out_zp, act_min, act_max);
}

/* out[j] = the requantised acc[j], j < n, all of one output channel (multiplier mult, shift shift). */
static inline void tb_q8_requant_channel(const int32_t *restrict acc, int n, int32_t mult, int shift, int out_zp,
                                         int act_min, int act_max, int8_t *restrict out)
{
    int j = 0;
#ifdef __AVX2__
    const __m256i zp = _mm256_set1_epi32(out_zp), lo = _mm256_set1_epi32(act_min), hi = _mm256_set1_epi32(act_max);
    for (; j + 8 <= n; j += 8)
        tb_q8_requant8_store(acc + j, _mm256_set1_epi32(mult), _mm256_set1_epi32(shift), zp, lo, hi, out + j);
#endif
    for (; j < n; ++j) out[j] = tb_q8_clamp(tb_q8_requant(acc[j], mult, shift) + out_zp, act_min, act_max);
}

/* out[k] = requantised sum_i x[i] * w[k][i] + bias[k] (i < K, k < M; w rows K bytes apart), out_zp and clamp: a
 * GEMV of the GEMM-like kernels, four rows at a time through tb_q8_dot4. */
static inline void tb_q8_gemv_rows(const int8_t *restrict x, const int8_t *restrict w, int K, int M,
                                   const int32_t *restrict bias, const int32_t *restrict rq, int out_zp, int act_min,
                                   int act_max, int8_t *restrict out)
{
    enum { BLOCK = 64 };
    int32_t acc[BLOCK];
    for (int m0 = 0; m0 < M; m0 += BLOCK) {
        const int n = M - m0 < BLOCK ? M - m0 : BLOCK;
        int j = 0;
        for (j = 0; j < n; ++j) acc[j] = bias[m0 + j];
        for (j = 0; j + 4 <= n; j += 4) tb_q8_dot4(x, w + (long)(m0 + j) * K, K, K, acc + j);
        for (; j < n; ++j) acc[j] += tb_q8_dot(x, w + (long)(m0 + j) * K, K);
        tb_q8_requant_run(acc, n, rq, M, m0, out_zp, act_min, act_max, out + m0, 1);
    }
}

/* ---- parameter structs ---- */

/* Convolution: tb_conv's geometry, the input and output zero points and the output clamp. */
typedef struct {
    int in_c, in_h, in_w;
    int out_c, out_h, out_w;
    int k_h, k_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, groups;
    int in_zp, out_zp, act_min, act_max;
} tb_q8_conv;

/* Fully connected: out[n] = requant(bias[n] + sum_k W[n][k] (in[k] - in_zp)). */
typedef struct { int in_n, out_n, in_zp, out_zp, act_min, act_max; } tb_q8_fc;

/* Pooling. Average with same_quant=1 is TFLite's AveragePool (input and output share scale and zero point: the
 * window sum divided by its count, rounded half away from zero); otherwise TFLite's Mean: the sum of (x - in_zp)
 * requantised by mult/shift (in_scale / out_scale) divided by the count in fixed point. */
typedef struct {
    int c, in_h, in_w, out_h, out_w;
    int k_h, k_w, stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right, count_include_pad;
    int in_zp, out_zp, same_quant, mult, shift, act_min, act_max;
} tb_q8_pool;

/* Element-wise add of two int8 tensors with their own scales (TFLite's Add: both inputs shifted left by
 * left_shift, rescaled to twice the larger scale, summed, requantised). */
typedef struct {
    int n, left_shift;
    int in0_zp, in0_mult, in0_shift, in1_zp, in1_mult, in1_shift;
    int out_zp, out_mult, out_shift, act_min, act_max;
} tb_q8_add;

/* float <-> int8 on n elements: q = clamp(round(x / scale) + zp) (round half away from zero, as TFLite's
 * Quantize); x = scale * (q - zp) (TFLite's Dequantize). */
typedef struct { int n, zp; float scale; } tb_q8_quant;

/* ---- kernels ---- */

/* Weights and biases. The GEMM-like kernels (direct HWC, 1x1, im2row, fully connected) take their weights with the
 * reduction axis contiguous, [M][K], so that their inner products run over contiguous int8 data (tb_q8_dot.h), and
 * their biases with the input zero point folded in at build time: bias[m] - in_zp * sum_k w[m][k] (exact in int32),
 * so the products run over the raw x. direct HWC, whose windows skip the padding, adds in_zp * the weights of the
 * skipped taps back at the borders; im2row fills its padding with in_zp, which the folded sum cancels. The direct
 * CHW and depthwise kernels take the model's bias and subtract in_zp from every x. */

/* Direct convolution, any geometry; w is [M][kh][kw][cg] (TFLite's OHWI) in both layouts. HWC folds in_zp, and its
 * rq is followed by each channel's weight sum per tap, [M][kh][kw] int32 (the borders' correction). */
void tb_q8_conv_direct_hwc(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                           const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out);
void tb_q8_conv_direct_chw(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                           const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out);
/* Depthwise (groups == in_c, out_c = in_c * multiplier); w is [kh][kw][M] (TFLite's 1HWO). */
void tb_q8_conv_depthwise_hwc(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                              const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out);
void tb_q8_conv_depthwise_chw(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                              const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out);
/* 1x1, stride 1, no padding, groups 1: a GEMM over the pixels; w is [M][C], in_zp folded, in both layouts. */
void tb_q8_conv_1x1_hwc(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                        const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out);
void tb_q8_conv_1x1_chw(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                        const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out);
/* im2row (groups 1): each output pixel's patch [kh][kw][C] gathered into ws (k_h * k_w * in_c bytes, padding
 * filled with in_zp), then a row of the int8 GEMM against w [M][kh][kw][C], in_zp folded. */
void tb_q8_conv_im2row_hwc(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                           const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out,
                           int8_t *restrict ws);

/* w is [N][K], in_zp folded. */
void tb_q8_fc_gemv(const tb_q8_fc *p, const int8_t *restrict in, const int8_t *restrict w, const int32_t *restrict bias,
                   const int32_t *restrict rq, int8_t *restrict out);

void tb_q8_maxpool_hwc(const tb_q8_pool *p, const int8_t *restrict in, int8_t *restrict out);
void tb_q8_maxpool_chw(const tb_q8_pool *p, const int8_t *restrict in, int8_t *restrict out);
void tb_q8_avgpool_hwc(const tb_q8_pool *p, const int8_t *restrict in, int8_t *restrict out);
void tb_q8_avgpool_chw(const tb_q8_pool *p, const int8_t *restrict in, int8_t *restrict out);

void tb_q8_add_flat(const tb_q8_add *p, const int8_t *restrict a, const int8_t *restrict b, int8_t *restrict out);
void tb_q8_quantize(const tb_q8_quant *p, const float *restrict in, int8_t *restrict out);
void tb_q8_dequantize(const tb_q8_quant *p, const int8_t *restrict in, float *restrict out);

/* Layout transforms of an int8 (c,h,w) tensor (the float ones are in tb_ops.h). */
void tb_q8_layout_chw_to_hwc(const tb_tensor *p, const int8_t *restrict in, int8_t *restrict out);
void tb_q8_layout_chw_to_hcw(const tb_tensor *p, const int8_t *restrict in, int8_t *restrict out);
void tb_q8_layout_hwc_to_chw(const tb_tensor *p, const int8_t *restrict in, int8_t *restrict out);
void tb_q8_layout_hwc_to_hcw(const tb_tensor *p, const int8_t *restrict in, int8_t *restrict out);
void tb_q8_layout_hcw_to_chw(const tb_tensor *p, const int8_t *restrict in, int8_t *restrict out);
void tb_q8_layout_hcw_to_hwc(const tb_tensor *p, const int8_t *restrict in, int8_t *restrict out);

/* A patch copy of an int8 HWC tensor (tiling.patches): `rows` runs of `row_bytes` contiguous bytes (the patch's
 * columns times the channels), read `in_stride` bytes apart and written `out_stride` bytes apart (the float one,
 * tb_copy_patch, is in tb_ops.h). */
typedef struct { int rows, row_bytes, in_stride, out_stride; } tb_q8_patch_copy;
void tb_q8_copy_patch(const tb_q8_patch_copy *p, const int8_t *restrict in, int8_t *restrict out);

#ifdef __cplusplus
}
#endif
#endif
