/* int8 kernels (quantised networks): int8 activations and weights, int32 accumulation, and TensorFlow Lite's
 * requantisation arithmetic, exactly as TFLite's reference kernels (and TFLM, CMSIS-NN) compute it:
 *   acc = bias[m] + sum w * (x - in_zp)          (weights are symmetric: zero point 0)
 *   out = clamp(MultiplyByQuantizedMultiplier(acc, mult[m], shift[m]) + out_zp, act_min, act_max)
 * The multiplier and shift of every output channel are computed at build time in Python exactly as TFLite's
 * QuantizeMultiplier does (tasobuild.primitives.q8), and passed as one int32 array `rq`: M multipliers, then M
 * shifts. A layout names the memory order of the logical (C, H, W) axes, as for the float kernels.
 *
 * Not included by tb_kernels.h: only projects that run int8 layers carry this header. */
#ifndef TB_Q8_H
#define TB_Q8_H

#include <stdint.h>
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

/* out[j * out_step] = the requantised acc[j] of output channel m0 + j, j < n; rq as the kernels take it (M
 * multipliers, then M shifts). One loop without calls or branches per element, which compilers vectorise. */
static inline void tb_q8_requant_run(const int32_t *restrict acc, int n, const int32_t *restrict rq, int M, int m0,
                                     int out_zp, int act_min, int act_max, int8_t *restrict out, long out_step)
{
    const int32_t *restrict mult = rq + m0, *restrict shift = rq + M + m0;
    for (int j = 0; j < n; ++j)
        out[j * out_step] = tb_q8_clamp(tb_q8_requant(acc[j], mult[j], (int)shift[j]) + out_zp, act_min, act_max);
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

#ifdef __cplusplus
}
#endif
#endif
