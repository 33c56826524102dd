/* Direct convolution, the general fallback: any kernel, stride, asymmetric padding, dilation and groups.
 * CHW: for each output channel, every (input channel, tap) adds a shifted, scaled input row to each output row; the
 * output plane stays in cache and the inner loop runs over contiguous outputs (vectorises for stride 1).
 * HWC: for each output pixel, every (tap, input channel) adds a weight row over the contiguous output channels.
 * A row view [oh_begin, oh_end) only narrows the output-row loops (so only the input rows they need are read). */
#include "tb_kernels.h"
#include "tb_gemm.h"
#include "tb_conv_layout.h"

void tb_conv_direct_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                        const float *restrict bias, float *restrict out)
{
    const int cg = p->in_c / p->groups, mg = p->out_c / p->groups;
    const long plane = (long)p->out_h * p->out_w, in_plane = (long)p->in_h * p->in_w;
    const long slab = (long)(p->oh_end - p->oh_begin) * p->out_w; /* the view's rows of one channel */
    const int taps = p->k_h * p->k_w;
    int m;
    if (p->oh_begin >= p->oh_end) return;
    for (m = p->oc_begin; m < p->oc_end; ++m) {
        const int g = m / mg;
        float *restrict o = out + m * plane;
        int c, ki, kj;
        long i;
        if (!p->accumulate)
            for (i = 0; i < slab; ++i) o[(long)p->oh_begin * p->out_w + i] = 0.0f;
        for (c = 0; c < cg; ++c) {
            const float *x = in + (long)(g * cg + c) * in_plane;
            const float *wk = w + ((long)m * cg + c) * taps;
            for (ki = 0; ki < p->k_h; ++ki) {
                int oh_lo, oh_hi, oh;
                const int off_h = ki * p->dil_h - p->pad_top;
                tb_valid_range(p->out_h, p->stride_h, off_h, p->in_h, &oh_lo, &oh_hi);
                oh_lo = tb_max(oh_lo, p->oh_begin);
                oh_hi = tb_min(oh_hi, p->oh_end);
                for (kj = 0; kj < p->k_w; ++kj) {
                    int ow_lo, ow_hi;
                    const int off_w = kj * p->dil_w - p->pad_left;
                    const float wv = wk[ki * p->k_w + kj];
                    tb_valid_range(p->out_w, p->stride_w, off_w, p->in_w, &ow_lo, &ow_hi);
                    if (ow_lo >= ow_hi) continue;
                    for (oh = oh_lo; oh < oh_hi; ++oh) {
                        const float *xr = x + (long)(oh * p->stride_h + off_h) * p->in_w + ow_lo * p->stride_w + off_w;
                        tb_axpy_strided(o + (long)oh * p->out_w + ow_lo, xr, ow_hi - ow_lo, p->stride_w, wv);
                    }
                }
            }
        }
        if (!p->accumulate)
            tb_bias_act_row(o + (long)p->oh_begin * p->out_w, slab, bias[m], p->act, p->act_a, p->act_b);
    }
}

void tb_conv_direct_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                        const float *restrict bias, float *restrict out)
{
    const int cg = p->in_c / p->groups, mg = p->out_c / p->groups, M = p->out_c;
    const int g_lo = p->oc_begin / mg, g_hi = (p->oc_end + mg - 1) / mg;
    int oh, ow;
    if (p->oc_begin >= p->oc_end) return;
    for (oh = p->oh_begin; oh < p->oh_end; ++oh) {
        for (ow = 0; ow < p->out_w; ++ow) {
            float *restrict o = out + ((long)oh * p->out_w + ow) * M;
            int ki, kj, m;
            if (!p->accumulate)
                for (m = p->oc_begin; m < p->oc_end; ++m) o[m] = 0.0f;
            for (ki = 0; ki < p->k_h; ++ki) {
                const int ih = oh * p->stride_h + ki * p->dil_h - p->pad_top;
                if (ih < 0 || ih >= p->in_h) continue;
                for (kj = 0; kj < p->k_w; ++kj) {
                    const int iw = ow * p->stride_w + kj * p->dil_w - p->pad_left;
                    const float *x, *wt;
                    int g;
                    if (iw < 0 || iw >= p->in_w) continue;
                    x = in + ((long)ih * p->in_w + iw) * p->in_c;
                    wt = w + (long)(ki * p->k_w + kj) * cg * M;
                    for (g = g_lo; g < g_hi; ++g) {
                        const int m_lo = tb_max(g * mg, p->oc_begin), m_hi = tb_min(g * mg + mg, p->oc_end);
                        int c;
                        for (c = 0; c < cg; ++c) {
                            const float xv = x[g * cg + c];
                            const float *restrict wr = wt + (long)c * M;
                            for (m = m_lo; m < m_hi; ++m) o[m] += xv * wr[m];
                        }
                    }
                }
            }
            if (!p->accumulate)
                tb_bias_act_vec(o + p->oc_begin, p->oc_end - p->oc_begin, bias + p->oc_begin, p->act, p->act_a,
                                p->act_b);
        }
    }
}
