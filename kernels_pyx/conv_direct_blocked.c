/* Register-blocked direct convolution into HWC, for convolutions with few input channels per tap, such as a
 * network's first layer (3 -> 32, 3x3 stride 2 at 224x224). There a GEMM-based kernel spends more building its patch
 * matrix (a workspace the size of the input times the taps) than multiplying; this kernel reads the input in place.
 *
 * A block is PX neighbouring output pixels of one row x NV vectors of output channels, held in registers for the
 * whole reduction: per (tap, input channel) it loads NV weight vectors once and multiplies them by PX broadcast input
 * values (fused multiply-add where the ISA has it, as in gemm.c). Output channels go in blocks of 2 vectors, then 1,
 * then one channel at a time; pixels whose window crosses the left or right edge of the input take the per-pixel
 * path, which checks every tap. Rows outside the input are skipped a tap row at a time on both paths.
 *
 * Weights [k_h][k_w][in_c][out_c] (as direct_hwc), so one (tap, channel)'s weights are a contiguous row. The input
 * is read through its layout's strides (tb_layout_strides), so one body serves CHW, HWC and HCW inputs.
 * groups == 1. No workspace. Views (tb_kernels.h): output channels [oc_begin, oc_end) x rows [oh_begin, oh_end),
 * reading only the input rows they need; accumulate adds the raw convolution. */
#include "tb_kernels.h"
#include "tb_conv_layout.h"

#if defined(__AVX512F__) && !defined(TB_GEMM_SCALAR)
#include <immintrin.h>
typedef __m512 vec;
enum { VW = 16 };
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VZERO() _mm512_setzero_ps()
#define VFMA(acc, x, w) _mm512_fmadd_ps(_mm512_set1_ps(x), w, acc)
#elif defined(__AVX2__) && defined(__FMA__) && !defined(TB_GEMM_SCALAR)
#include <immintrin.h>
typedef __m256 vec;
enum { VW = 8 };
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VZERO() _mm256_setzero_ps()
#define VFMA(acc, x, w) _mm256_fmadd_ps(_mm256_set1_ps(x), w, acc)
#elif defined(__ARM_NEON) && defined(__aarch64__) && !defined(TB_GEMM_SCALAR)
#include <arm_neon.h>
typedef float32x4_t vec;
enum { VW = 4 };
#define VLOAD(p) vld1q_f32(p)
#define VSTORE(p, v) vst1q_f32(p, v)
#define VZERO() vdupq_n_f32(0.0f)
#define VFMA(acc, x, w) vfmaq_n_f32(acc, w, x)
#else
/* Plain C: a one-float "vector", so the same blocking serves as a register-blocked scalar kernel. */
typedef float vec;
enum { VW = 1 };
#define VLOAD(p) (*(p))
#define VSTORE(p, v) (*(p) = (v))
#define VZERO() 0.0f
#define VFMA(acc, x, w) ((acc) + (x) * (w))
#endif

enum { PX = 6 };  /* pixels per block: 6 x 2 vectors = 12 accumulators, within every ISA's register file */

/* Where input element (ch, ih, iw) lives, through the layout's strides. */
static inline long at(tb_strides s, int ch, int ih, int iw) { return ch * s.c + ih * s.h + iw * s.w; }

/* PX pixels ow.. of row oh x NV vectors of channels from m0, every tap column inside the input. NV is 1 or 2 and
 * constant at each call, so the compiler unrolls the vector loops and keeps `acc` in registers. */
static inline __attribute__((always_inline)) void block(const tb_conv *p, const float *restrict in, tb_strides s,
                                                        const float *restrict w, float *restrict out, int oh, int ow,
                                                        int m0, const int NV)
{
    const int M = p->out_c, C = p->in_c;
    const long step = (long)p->stride_w * s.w;  /* input distance between neighbouring output pixels */
    float *restrict o = out + ((long)oh * p->out_w + ow) * M + m0;
    vec acc[PX][2];
    int px, v, ki, kj, c;
    for (px = 0; px < PX; ++px)
        for (v = 0; v < NV; ++v) acc[px][v] = p->accumulate ? VLOAD(o + (long)px * M + v * VW) : VZERO();
    for (ki = 0; ki < p->k_h; ++ki) {
        const int ih = oh * p->stride_h + ki * p->dil_h - p->pad_top;
        if (ih < 0 || ih >= p->in_h) continue;
        for (kj = 0; kj < p->k_w; ++kj) {
            const float *restrict wr = w + (long)(ki * p->k_w + kj) * C * M + m0;
            const float *restrict x = in + at(s, 0, ih, ow * p->stride_w + kj * p->dil_w - p->pad_left);
            for (c = 0; c < C; ++c, wr += M, x += s.c) {
                vec wv[2];
                for (v = 0; v < NV; ++v) wv[v] = VLOAD(wr + v * VW);
                for (px = 0; px < PX; ++px)
                    for (v = 0; v < NV; ++v) acc[px][v] = VFMA(acc[px][v], x[px * step], wv[v]);
            }
        }
    }
    for (px = 0; px < PX; ++px)
        for (v = 0; v < NV; ++v) VSTORE(o + (long)px * M + v * VW, acc[px][v]);
}

/* One pixel, channels [m0, m1): every tap checked against the input's edges. */
static void one_pixel(const tb_conv *p, const float *restrict in, tb_strides s, const float *restrict w,
                      float *restrict out, int oh, int ow, int m0, int m1)
{
    const int M = p->out_c, C = p->in_c;
    float *restrict o = out + ((long)oh * p->out_w + ow) * M;
    int m, ki, kj, c;
    if (!p->accumulate)
        for (m = m0; m < m1; ++m) o[m] = 0.0f;
    for (ki = 0; ki < p->k_h; ++ki) {
        const int ih = oh * p->stride_h + ki * p->dil_h - p->pad_top;
        if (ih < 0 || ih >= p->in_h) continue;
        for (kj = 0; kj < p->k_w; ++kj) {
            const int iw = ow * p->stride_w + kj * p->dil_w - p->pad_left;
            const float *restrict wr = w + (long)(ki * p->k_w + kj) * C * M;
            if (iw < 0 || iw >= p->in_w) continue;
            for (c = 0; c < C; ++c, wr += M) {
                const float xv = in[at(s, c, ih, iw)];
                for (m = m0; m < m1; ++m) o[m] += xv * wr[m];
            }
        }
    }
}

/* Output row oh, channels [m0, m0 + NV*VW): full blocks over the inner columns, single pixels elsewhere. */
static inline __attribute__((always_inline)) void row(const tb_conv *p, const float *restrict in, tb_strides s,
                                                      const float *restrict w, float *restrict out, int oh, int m0,
                                                      int inner_lo, int inner_hi, const int NV)
{
    int ow = 0;
    for (; ow < inner_lo; ++ow) one_pixel(p, in, s, w, out, oh, ow, m0, m0 + NV * VW);
    for (; ow + PX <= inner_hi; ow += PX) block(p, in, s, w, out, oh, ow, m0, NV);
    for (; ow < p->out_w; ++ow) one_pixel(p, in, s, w, out, oh, ow, m0, m0 + NV * VW);
}

static void conv_blocked(const tb_conv *p, const float *restrict in, tb_strides s, const float *restrict w,
                         const float *restrict bias, float *restrict out)
{
    int lo_first, hi_first, lo_last, hi_last, inner_lo, inner_hi, oh;
    /* The output columns whose every tap column is inside the input: those of the first and of the last tap. */
    tb_valid_range(p->out_w, p->stride_w, -p->pad_left, p->in_w, &lo_first, &hi_first);
    tb_valid_range(p->out_w, p->stride_w, (p->k_w - 1) * p->dil_w - p->pad_left, p->in_w, &lo_last, &hi_last);
    inner_lo = tb_max(lo_first, lo_last);
    inner_hi = tb_max(inner_lo, tb_min(hi_first, hi_last));
    for (oh = p->oh_begin; oh < p->oh_end; ++oh) {
        int m0 = p->oc_begin, ow;
        for (; m0 + 2 * VW <= p->oc_end; m0 += 2 * VW) row(p, in, s, w, out, oh, m0, inner_lo, inner_hi, 2);
        for (; m0 + VW <= p->oc_end; m0 += VW) row(p, in, s, w, out, oh, m0, inner_lo, inner_hi, 1);
        for (ow = 0; m0 < p->oc_end && ow < p->out_w; ++ow) one_pixel(p, in, s, w, out, oh, ow, m0, p->oc_end);
        if (!p->accumulate)
            for (ow = 0; ow < p->out_w; ++ow) {
                float *o = out + ((long)oh * p->out_w + ow) * p->out_c + p->oc_begin;
                tb_bias_act_vec(o, p->oc_end - p->oc_begin, bias + p->oc_begin, p->act, p->act_a, p->act_b);
            }
    }
}

void tb_conv_direct_blocked_chw_to_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                       const float *restrict bias, float *restrict out)
{
    conv_blocked(p, in, tb_layout_strides(TB_LAYOUT_CHW, p->in_c, p->in_h, p->in_w), w, bias, out);
}

void tb_conv_direct_blocked_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                const float *restrict bias, float *restrict out)
{
    conv_blocked(p, in, tb_layout_strides(TB_LAYOUT_HWC, p->in_c, p->in_h, p->in_w), w, bias, out);
}

void tb_conv_direct_blocked_hcw_to_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                       const float *restrict bias, float *restrict out)
{
    conv_blocked(p, in, tb_layout_strides(TB_LAYOUT_HCW, p->in_c, p->in_h, p->in_w), w, bias, out);
}
