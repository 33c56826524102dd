/* Register-blocked direct convolution into HWC. It reads the input in place, so it needs no workspace: a network's
 * first layer (3 -> 32, 3x3 stride 2 at 224x224), where a GEMM-based kernel spends more building its patch matrix (the
 * input times the taps) than multiplying, and pointwise (1x1) layers, where packing the GEMM's operands costs as much
 * as the few multiplications per element.
 *
 * A block is up to 12 neighbouring output pixels of one row x NV (1 or 2) vectors of output channels, held in
 * registers for the whole reduction: per (tap, input channel) it loads NV weight vectors once and multiplies them by
 * the pixels' broadcast input values (fused multiply-add where the ISA has it, as in gemm.c). Rows go in blocks of
 * PX1 or PX2 pixels (the most the register file holds), then 4, 2 and 1. Channels go in blocks of 2 vectors, then 1,
 * then the tail: one masked vector where the ISA has masked loads and stores (AVX-512, AVX2), else one channel at a
 * time. Pixels whose window crosses the left or right edge of the input take the per-pixel path, which checks every
 * tap; rows outside the input are skipped a tap row at a time on both paths. A 1x1, stride 1, unpadded convolution
 * whose input rows follow each other in memory is run as one long row, so blocks do not stop at row ends.
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
typedef __mmask16 vmask;
#define TB_MASKED 1
#define VMASK(n) ((__mmask16)((1u << (n)) - 1u))
#define VLOADM(p, m) _mm512_maskz_loadu_ps(m, p)
#define VSTOREM(p, v, m) _mm512_mask_storeu_ps(p, m, v)
enum { PX1 = 12, PX2 = 12 };
#elif defined(__AVX2__) && defined(__FMA__) && !defined(TB_GEMM_SCALAR)
#include <immintrin.h>
typedef __m256 vec;
enum { VW = 8 };
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VZERO() _mm256_setzero_ps()
#define VFMA(acc, x, w) _mm256_fmadd_ps(_mm256_set1_ps(x), w, acc)
typedef __m256i vmask;
#define TB_MASKED 1
#define VMASK(n) _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define VLOADM(p, m) _mm256_maskload_ps(p, m)
#define VSTOREM(p, v, m) _mm256_maskstore_ps(p, m, v)
enum { PX1 = 12, PX2 = 6 };  /* 16 registers: 12 or 6 x 2 accumulators, the weights and a broadcast */
#elif defined(__ARM_NEON) && defined(__aarch64__) && !defined(TB_GEMM_SCALAR)
#include <arm_neon.h>
typedef float32x4_t vec;
enum { VW = 4 };
#define VLOAD(p) vld1q_f32(p)
#define VSTORE(p, v) vst1q_f32(p, v)
#define VZERO() vdupq_n_f32(0.0f)
#define VFMA(acc, x, w) vfmaq_n_f32(acc, w, x)
enum { PX1 = 12, PX2 = 12 };
#else
/* Plain C: a one-float "vector", so the same blocking serves as a register-blocked scalar kernel. */
typedef float vec;
enum { VW = 1 };
#define VLOAD(p) (*(p))
#define VSTORE(p, v) (*(p) = (v))
#define VZERO() 0.0f
#define VFMA(acc, x, w) ((acc) + (x) * (w))
enum { PX1 = 6, PX2 = 6 };
#endif
#ifndef TB_MASKED
typedef int vmask;  /* no masked loads: a channel tail narrower than a vector takes the one-pixel path */
#define VMASK(n) (n)
#define VLOADM(p, m) ((void)(m), VLOAD(p))
#define VSTOREM(p, v, m) ((void)(m), VSTORE(p, v))
#endif
/* PX1, PX2: pixels per block with 1 or 2 vectors of channels; 2 x 12 accumulators where there are 32 registers. */
enum { PXMAX = PX1 > PX2 ? PX1 : PX2 };

/* Where input element (ch, ih, iw) lives, through the layout's strides. */
static inline long at(tb_strides s, int ch, int ih, int iw) { return ch * s.c + ih * s.h + iw * s.w; }

/* NP pixels ow.. of row oh x NV vectors of channels from m0, every tap column inside the input; NV == 1 with
 * `masked` covers a channel tail narrower than a vector (lanes past `mask` are neither read nor written). NP, NV and
 * masked are constant at each call, so the compiler unrolls the loops and keeps `acc` in registers. */
static inline __attribute__((always_inline)) void block(const tb_conv *p, const float *restrict in, tb_strides s,
                                                        const float *restrict w, float *restrict out, int oh, int ow,
                                                        int m0, const int NP, const int NV, const int masked,
                                                        vmask mask)
{
    const int M = p->out_c, C = p->in_c;
    const long step = (long)p->stride_w * s.w;  /* input distance between neighbouring output pixels */
    float *restrict o = out + ((long)oh * p->out_w + ow) * M + m0;
    vec acc[PXMAX][2];
    int px, v, ki, kj, c;
    for (px = 0; px < NP; ++px)
        for (v = 0; v < NV; ++v)
            acc[px][v] = !p->accumulate ? VZERO() : masked ? VLOADM(o + (long)px * M, mask)
                                                          : VLOAD(o + (long)px * M + v * VW);
    for (ki = 0; ki < p->k_h; ++ki) {
        const int ih = oh * p->stride_h + ki * p->dil_h - p->pad_top;
        if (ih < 0 || ih >= p->in_h) continue;
        for (kj = 0; kj < p->k_w; ++kj) {
            const float *restrict wr = w + (long)(ki * p->k_w + kj) * C * M + m0;
            const float *restrict x = in + at(s, 0, ih, ow * p->stride_w + kj * p->dil_w - p->pad_left);
            for (c = 0; c < C; ++c, wr += M, x += s.c) {
                vec wv[2];
                for (v = 0; v < NV; ++v) wv[v] = masked ? VLOADM(wr, mask) : VLOAD(wr + v * VW);
                for (px = 0; px < NP; ++px)
                    for (v = 0; v < NV; ++v) acc[px][v] = VFMA(acc[px][v], x[px * step], wv[v]);
            }
        }
    }
    for (px = 0; px < NP; ++px)
        for (v = 0; v < NV; ++v) {
            if (masked) VSTOREM(o + (long)px * M, acc[px][v], mask);
            else VSTORE(o + (long)px * M + v * VW, acc[px][v]);
        }
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

/* Output row oh, channels [m0, m0 + NV*VW) (masked: [m0, m0 + tail)): blocks of NPX pixels over the inner
 * columns, then blocks of 4, 2 and 1, single checked pixels outside them. */
static inline __attribute__((always_inline)) void row(const tb_conv *p, const float *restrict in, tb_strides s,
                                                      const float *restrict w, float *restrict out, int oh, int m0,
                                                      int inner_lo, int inner_hi, const int NV, const int NPX,
                                                      const int masked, int tail)
{
    const int m1 = m0 + (masked ? tail : NV * VW);
    const vmask mask = VMASK(tail);
    int ow = 0;
    for (; ow < inner_lo; ++ow) one_pixel(p, in, s, w, out, oh, ow, m0, m1);
    for (; ow + NPX <= inner_hi; ow += NPX) block(p, in, s, w, out, oh, ow, m0, NPX, NV, masked, mask);
    for (; ow + 4 <= inner_hi; ow += 4) block(p, in, s, w, out, oh, ow, m0, 4, NV, masked, mask);
    for (; ow + 2 <= inner_hi; ow += 2) block(p, in, s, w, out, oh, ow, m0, 2, NV, masked, mask);
    for (; ow < inner_hi; ++ow) block(p, in, s, w, out, oh, ow, m0, 1, NV, masked, mask);
    for (; ow < p->out_w; ++ow) one_pixel(p, in, s, w, out, oh, ow, m0, m1);
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
        for (; m0 + 2 * VW <= p->oc_end; m0 += 2 * VW) row(p, in, s, w, out, oh, m0, inner_lo, inner_hi, 2, PX2, 0, 0);
        for (; m0 + VW <= p->oc_end; m0 += VW) row(p, in, s, w, out, oh, m0, inner_lo, inner_hi, 1, PX1, 0, 0);
#ifdef TB_MASKED
        if (m0 < p->oc_end) row(p, in, s, w, out, oh, m0, inner_lo, inner_hi, 1, PX1, 1, p->oc_end - m0);
#else
        for (ow = 0; m0 < p->oc_end && ow < p->out_w; ++ow) one_pixel(p, in, s, w, out, oh, ow, m0, p->oc_end);
#endif
        if (!p->accumulate)
            for (ow = 0; ow < p->out_w; ++ow) {
                float *o = out + ((long)oh * p->out_w + ow) * p->out_c + p->oc_begin;
                tb_bias_act_vec(o, p->oc_end - p->oc_begin, bias + p->oc_begin, p->act, p->act_a, p->act_b);
            }
    }
}

/* A 1x1, stride 1, unpadded convolution whose input rows follow each other in memory (HWC; CHW too, as one
 * channel's rows do) is one long row of pixels: blocks then run across row ends, which matters for 7x7 maps. */
static void conv_blocked_or_flat(const tb_conv *p, const float *restrict in, tb_strides s,
                                 const float *restrict w, const float *restrict bias, float *restrict out)
{
    if (p->k_h == 1 && p->k_w == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_top == 0 &&
        p->pad_left == 0 && p->in_w == p->out_w && p->in_h == p->out_h && s.h == p->in_w * s.w) {
        const int rows = p->oh_end - p->oh_begin;
        tb_conv flat = *p;
        flat.in_h = flat.out_h = 1; flat.in_w = flat.out_w = rows * p->out_w;
        flat.oh_begin = 0; flat.oh_end = 1;
        conv_blocked(&flat, in + p->oh_begin * s.h, s, w, bias, out + (long)p->oh_begin * p->out_w * p->out_c);
        return;
    }
    conv_blocked(p, in, s, w, bias, out);
}

void tb_conv_direct_blocked_chw_to_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                       const float *restrict bias, float *restrict out)
{
    conv_blocked_or_flat(p, in, tb_layout_strides(TB_LAYOUT_CHW, p->in_c, p->in_h, p->in_w), w, bias, out);
}

void tb_conv_direct_blocked_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                const float *restrict bias, float *restrict out)
{
    conv_blocked_or_flat(p, in, tb_layout_strides(TB_LAYOUT_HWC, p->in_c, p->in_h, p->in_w), w, bias, out);
}

void tb_conv_direct_blocked_hcw_to_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                       const float *restrict bias, float *restrict out)
{
    conv_blocked_or_flat(p, in, tb_layout_strides(TB_LAYOUT_HCW, p->in_c, p->in_h, p->in_w), w, bias, out);
}
