/* Depthwise convolution (groups == in_c, out_c = in_c * multiplier; output m reads input channel m / multiplier).
 * CHW: one output row at a time (it and the k_h input rows it reads stay in L1); each tap adds a shifted, scaled
 * input row over the contiguous outputs. HWC: per output pixel each tap is an element-wise multiply-add across the
 * contiguous channels. Both inner loops vectorise (stride 1 in CHW; any stride in HWC with multiplier 1). */
#include "tb_kernels.h"
#include "tb_gemm.h"

/* One output value from every valid tap (the border path). */
static float dw_point(const tb_conv *p, const float *restrict x, const float *restrict wk, int oh, int ow)
{
    float s = 0.0f;
    int ki, kj;
    for (ki = 0; ki < p->k_h; ++ki) {
        const int ih = oh * p->stride_h + ki * p->dil_h - p->pad_top;
        if (ih < 0 || ih >= p->in_h) continue;
        for (kj = 0; kj < p->k_w; ++kj) {
            const int iw = ow * p->stride_w + kj * p->dil_w - p->pad_left;
            if (iw >= 0 && iw < p->in_w) s += wk[ki * p->k_w + kj] * x[(long)ih * p->in_w + iw];
        }
    }
    return s;
}

/* out[o] += the nine taps of a 3x3 window at input column o*sw (rows r0, r0+dh, r0+2dh); inlined with constant
 * sw, dw for the common cases so the loop vectorises. */
static inline void dw3x3_row(const float *restrict r0, long dh, const float *restrict wk, float *restrict out, int n,
                             int sw, int dw)
{
    const float *restrict r1 = r0 + dh, *restrict r2 = r0 + 2 * dh;
    const float w00 = wk[0], w01 = wk[1], w02 = wk[2], w10 = wk[3], w11 = wk[4], w12 = wk[5];
    const float w20 = wk[6], w21 = wk[7], w22 = wk[8];
    int o;
    for (o = 0; o < n; ++o) {
        const long i = (long)o * sw;
        out[o] += w00 * r0[i] + w01 * r0[i + dw] + w02 * r0[i + 2 * dw] + w10 * r1[i] + w11 * r1[i + dw] +
                  w12 * r1[i + 2 * dw] + w20 * r2[i] + w21 * r2[i + dw] + w22 * r2[i + 2 * dw];
    }
}

/* Interior outputs [lo, hi) of row oh (every tap inside the input): 3x3 fuses all nine taps in one pass (one store
 * per output); other sizes add one tap at a time. */
static void dw_interior(const tb_conv *p, const float *restrict x, const float *restrict wk, int oh, int lo, int hi,
                        float *restrict orow)
{
    const int sw = p->stride_w, dw = p->dil_w;
    const float *row0 = x + (long)(oh * p->stride_h - p->pad_top) * p->in_w + (long)lo * sw - p->pad_left;
    const long dh = (long)p->dil_h * p->in_w;
    int ki, kj, o;
    if (p->k_h == 3 && p->k_w == 3) {
        if (sw == 1 && dw == 1)
            dw3x3_row(row0, dh, wk, orow + lo, hi - lo, 1, 1);
        else if (sw == 2 && dw == 1)
            dw3x3_row(row0, dh, wk, orow + lo, hi - lo, 2, 1);
        else
            dw3x3_row(row0, dh, wk, orow + lo, hi - lo, sw, dw);
        return;
    }
    for (ki = 0; ki < p->k_h; ++ki)
        for (kj = 0; kj < p->k_w; ++kj) {
            const float wv = wk[ki * p->k_w + kj];
            const float *restrict r = row0 + ki * dh + (long)kj * dw;
            float *restrict out = orow + lo;
            for (o = 0; o < hi - lo; ++o) out[o] += wv * r[(long)o * sw];
        }
}

void tb_conv_depthwise_direct_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                  const float *restrict bias, float *restrict out)
{
    const int mult = p->out_c / p->in_c, taps = p->k_h * p->k_w;
    const long in_plane = (long)p->in_h * p->in_w;
    int m, row_lo, row_hi, col_lo, col_hi, t;
    /* Interior rows/columns: those whose first and last taps are both inside the input. */
    tb_valid_range(p->out_h, p->stride_h, -p->pad_top, p->in_h, &row_lo, &row_hi);
    tb_valid_range(p->out_h, p->stride_h, (p->k_h - 1) * p->dil_h - p->pad_top, p->in_h, &t, &row_hi);
    row_lo = tb_max(row_lo, t);
    tb_valid_range(p->out_w, p->stride_w, -p->pad_left, p->in_w, &col_lo, &col_hi);
    tb_valid_range(p->out_w, p->stride_w, (p->k_w - 1) * p->dil_w - p->pad_left, p->in_w, &t, &col_hi);
    col_lo = tb_max(col_lo, t);
    if (col_hi < col_lo) col_hi = col_lo;
    for (m = p->oc_begin; m < p->oc_end; ++m) {
        const float *x = in + (long)(m / mult) * in_plane;
        const float *wk = w + (long)m * taps;
        int oh, ow;
        for (oh = 0; oh < p->out_h; ++oh) {
            float *restrict orow = out + ((long)m * p->out_h + oh) * p->out_w;
            const int inner = oh >= row_lo && oh < row_hi && col_lo < col_hi;
            if (!p->accumulate)
                for (ow = 0; ow < p->out_w; ++ow) orow[ow] = 0.0f;
            for (ow = 0; ow < p->out_w; ++ow) {
                if (inner && ow == col_lo) {
                    dw_interior(p, x, wk, oh, col_lo, col_hi, orow);
                    ow = col_hi - 1;
                    continue;
                }
                orow[ow] += dw_point(p, x, wk, oh, ow);
            }
            if (!p->accumulate) tb_bias_act_row(orow, p->out_w, bias[m], p->act, p->act_a, p->act_b);
        }
    }
}

void tb_conv_depthwise_direct_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                  const float *restrict bias, float *restrict out)
{
    const int mult = p->out_c / p->in_c, M = p->out_c, m0 = p->oc_begin, n = p->oc_end - p->oc_begin;
    int oh, ow;
    if (n <= 0) return;
    for (oh = 0; oh < p->out_h; ++oh) {
        for (ow = 0; ow < p->out_w; ++ow) {
            float *restrict o = out + ((long)oh * p->out_w + ow) * M + m0;
            int ki, kj, i;
            if (!p->accumulate)
                for (i = 0; i < n; ++i) o[i] = 0.0f;
            for (ki = 0; ki < p->k_h; ++ki) {
                const int ih = oh * p->stride_h + ki * p->dil_h - p->pad_top;
                if (ih < 0 || ih >= p->in_h) continue;
                for (kj = 0; kj < p->k_w; ++kj) {
                    const int iw = ow * p->stride_w + kj * p->dil_w - p->pad_left;
                    const float *restrict x, *restrict wt;
                    if (iw < 0 || iw >= p->in_w) continue;
                    x = in + ((long)ih * p->in_w + iw) * p->in_c;
                    wt = w + (long)(ki * p->k_w + kj) * M + m0;
                    if (mult == 1)
                        for (i = 0; i < n; ++i) o[i] += wt[i] * x[m0 + i];
                    else
                        for (i = 0; i < n; ++i) o[i] += wt[i] * x[(m0 + i) / mult];
                }
            }
            if (!p->accumulate) tb_bias_act_vec(o, n, bias + m0, p->act, p->act_a, p->act_b);
        }
    }
}
