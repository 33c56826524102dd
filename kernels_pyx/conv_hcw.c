/* HCW-layout convolutions (memory order: row h, then channel, then column: each input row is a [C][W] matrix).
 * direct / depthwise: per output row oh and channel m, every (input channel, tap) adds a shifted, scaled input row
 * segment to the contiguous output row segment, as the CHW direct kernels do, but with a row's channels adjacent.
 * 1x1 (stride 1, no padding): per row h, out[h] (M x W) = W[M][C] . in[h] (C x W), a GEMM reading the input row in
 * place (its workspace is the GEMM's packing of one block of it).
 * All three work one output row at a time, so a row view [oh_begin, oh_end) is just the bounds of that loop. */
#include "tb_kernels.h"
#include "tb_gemm.h"
#include "tb_conv_layout.h"
#include "tb_conv_families.h"

#define MR TB_GEMM_MR

/* orow += the taps of row ki of one kernel (wrow = its k_w weights) applied to input row x (one channel). */
static void add_kernel_row(const tb_conv *p, const float *restrict x, const float *restrict wrow,
                           float *restrict orow)
{
    int kj;
    for (kj = 0; kj < p->k_w; ++kj) {
        const int off_w = kj * p->dil_w - p->pad_left;
        int lo, hi;
        tb_valid_range(p->out_w, p->stride_w, off_w, p->in_w, &lo, &hi);
        if (lo < hi) tb_axpy_strided(orow + lo, x + (long)lo * p->stride_w + off_w, hi - lo, p->stride_w, wrow[kj]);
    }
}

/* Four output rows o0..o3 (channels m..m+3) += their weights w0..w3 times one input row segment: each input value
 * is loaded once for four channels. */
static void axpy4(float *restrict o0, float *restrict o1, float *restrict o2, float *restrict o3,
                  const float *restrict x, int n, int sw, float w0, float w1, float w2, float w3)
{
    int o;
    if (sw == 1)
        for (o = 0; o < n; ++o) {
            const float v = x[o];
            o0[o] += w0 * v; o1[o] += w1 * v; o2[o] += w2 * v; o3[o] += w3 * v;
        }
    else
        for (o = 0; o < n; ++o) {
            const float v = x[(long)o * sw];
            o0[o] += w0 * v; o1[o] += w1 * v; o2[o] += w2 * v; o3[o] += w3 * v;
        }
}

/* Output row oh, channel m (four: channels m..m+3, one group g): every (tap, input channel) term, in the order
 * (ki, kj, c) either way, so a channel's sum does not depend on whether it went through in a block of four (a
 * channel view moves the blocks). */
static inline void direct_rows(const tb_conv *p, const float *restrict in, const float *restrict w, int oh, int m,
                               int g, float *restrict orow, int four)
{
    const int cg = p->in_c / p->groups, OW = p->out_w, taps = p->k_h * p->k_w;
    const long in_row = (long)p->in_c * p->in_w, wstride = (long)cg * taps;
    int ki, kj, c;
    for (ki = 0; ki < p->k_h; ++ki) {
        const int ih = oh * p->stride_h + ki * p->dil_h - p->pad_top;
        if (ih < 0 || ih >= p->in_h) continue;
        for (kj = 0; kj < p->k_w; ++kj) {
            const int off_w = kj * p->dil_w - p->pad_left;
            const float *restrict wk = w + (long)m * wstride + ki * p->k_w + kj;
            int lo, hi;
            tb_valid_range(OW, p->stride_w, off_w, p->in_w, &lo, &hi);
            if (lo >= hi) continue;
            for (c = 0; c < cg; ++c) {
                const float *restrict x = in + ih * in_row + (long)(g * cg + c) * p->in_w + (long)lo * p->stride_w +
                                          off_w;
                const long t = (long)c * taps;
                if (four)
                    axpy4(orow + lo, orow + OW + lo, orow + 2 * OW + lo, orow + 3 * OW + lo, x, hi - lo, p->stride_w,
                          wk[t], wk[wstride + t], wk[2 * wstride + t], wk[3 * wstride + t]);
                else
                    tb_axpy_strided(orow + lo, x, hi - lo, p->stride_w, wk[t]);
            }
        }
    }
}

void tb_conv_direct_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                        const float *restrict bias, float *restrict out)
{
    const int mg = p->out_c / p->groups, OW = p->out_w;
    int oh, m;
    for (oh = p->oh_begin; oh < p->oh_end; ++oh) {
        float *restrict out_row = out + (long)oh * p->out_c * OW;
        int o;
        if (!p->accumulate)
            for (o = p->oc_begin * OW; o < p->oc_end * OW; ++o) out_row[o] = 0.0f;
        for (m = p->oc_begin; m < p->oc_end;) {
            const int g = m / mg;
            if (m + 4 <= tb_min(p->oc_end, (g + 1) * mg)) { /* four channels of one group at once */
                direct_rows(p, in, w, oh, m, g, out_row + (long)m * OW, 1);
                m += 4;
            } else {
                direct_rows(p, in, w, oh, m, g, out_row + (long)m * OW, 0);
                m += 1;
            }
        }
        if (!p->accumulate)
            for (m = p->oc_begin; m < p->oc_end; ++m)
                tb_bias_act_row(out_row + (long)m * OW, OW, bias[m], p->act, p->act_a, p->act_b);
    }
}

void tb_conv_depthwise_direct_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                  const float *restrict bias, float *restrict out)
{
    const int mult = p->out_c / p->in_c, OW = p->out_w;
    const long in_row = (long)p->in_c * p->in_w;
    int oh, m;
    for (oh = p->oh_begin; oh < p->oh_end; ++oh)
        for (m = p->oc_begin; m < p->oc_end; ++m) {
            float *restrict orow = out + ((long)oh * p->out_c + m) * OW;
            int ki, o;
            if (!p->accumulate)
                for (o = 0; o < OW; ++o) orow[o] = 0.0f;
            for (ki = 0; ki < p->k_h; ++ki) {
                const int ih = oh * p->stride_h + ki * p->dil_h - p->pad_top;
                if (ih < 0 || ih >= p->in_h) continue;
                add_kernel_row(p, in + ih * in_row + (long)(m / mult) * p->in_w,
                               w + ((long)m * p->k_h + ki) * p->k_w, orow);
            }
            if (!p->accumulate) tb_bias_act_row(orow, OW, bias[m], p->act, p->act_a, p->act_b);
        }
}

void tb_conv_1x1_gemm_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                          const float *restrict bias, float *restrict out, float *restrict ws)
{
    const int cg = p->in_c / p->groups, mg = p->out_c / p->groups, W = p->in_w;
    const int mgpad = (mg + MR - 1) / MR * MR;
    int h, g;
    for (h = p->oh_begin; h < p->oh_end; ++h) /* in_h == out_h */
        for (g = 0; g < p->groups; ++g) {
            tb_gemm_job job = tb_conv_job(p);
            int m0, m1;
            if (!tb_group_range(p, g, mg, &m0, &m1)) continue;
            job.m0 = m0; job.m1 = m1; job.n0 = 0; job.n1 = W; job.k = cg;
            job.a = w + (long)g * mgpad * cg; job.lda = cg; job.a_packed = 1;
            job.b = in + ((long)h * p->in_c + g * cg) * W; job.ldb = W; job.b_packed = 0;
            job.c = out + ((long)h * p->out_c + g * mg) * W; job.ldc = W;
            job.bias_m = bias + g * mg;
            tb_gemm(&job, ws);
        }
}
