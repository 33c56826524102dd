/* int8 convolutions (see tb_q8.h for the arithmetic): direct, depthwise, 1x1 and im2row + int8 GEMM, in HWC and
 * CHW. Each layout pair is one entry point over a shared body that addresses the tensors through strides. */
#include "tb_kernels.h"
#include "tb_q8.h"

/* Element (c, y, x) of a (C, H, W) tensor is at c * c_step + y * y_step + x * x_step. */
typedef struct { long c_step, y_step, x_step; } tb_q8_strides;

static tb_q8_strides strides_of(int hwc, int c, int h, int w)
{
    tb_q8_strides s;
    (void)h;
    if (hwc) { s.c_step = 1; s.y_step = (long)w * c; s.x_step = c; }
    else { s.c_step = (long)h * w; s.y_step = w; s.x_step = 1; }
    return s;
}

static int8_t requantised(const tb_q8_conv *p, int32_t acc, const int32_t *restrict rq, int m)
{
    return tb_q8_clamp(tb_q8_requant(acc, rq[m], (int)rq[p->out_c + m]) + p->out_zp, p->act_min, p->act_max);
}

static void direct(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                   const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out, int hwc)
{
    const int cg = p->in_c / p->groups, mg = p->out_c / p->groups;
    const tb_q8_strides si = strides_of(hwc, p->in_c, p->in_h, p->in_w);
    const tb_q8_strides so = strides_of(hwc, p->out_c, p->out_h, p->out_w);
    for (int m = 0; m < p->out_c; ++m) {
        const int8_t *wm = w + (long)m * p->k_h * p->k_w * cg;
        const int8_t *group_in = in + (long)(m / mg) * cg * si.c_step;
        for (int oy = 0; oy < p->out_h; ++oy)
            for (int ox = 0; ox < p->out_w; ++ox) {
                int32_t acc = bias[m];
                for (int ky = 0; ky < p->k_h; ++ky) {
                    const int iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
                    if (iy < 0 || iy >= p->in_h) continue;
                    for (int kx = 0; kx < p->k_w; ++kx) {
                        const int ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
                        if (ix < 0 || ix >= p->in_w) continue;
                        const int8_t *x = group_in + iy * si.y_step + ix * si.x_step;
                        const int8_t *wk = wm + ((long)ky * p->k_w + kx) * cg;
                        for (int c = 0; c < cg; ++c) acc += (int32_t)wk[c] * ((int32_t)x[c * si.c_step] - p->in_zp);
                    }
                }
                out[m * so.c_step + oy * so.y_step + ox * so.x_step] = requantised(p, acc, rq, m);
            }
    }
}

void tb_q8_conv_direct_hwc(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                           const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out)
{
    direct(p, in, w, bias, rq, out, 1);
}

void tb_q8_conv_direct_chw(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                           const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out)
{
    direct(p, in, w, bias, rq, out, 0);
}

static void depthwise(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                      const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out, int hwc)
{
    const int multiplier = p->out_c / p->in_c;
    const tb_q8_strides si = strides_of(hwc, p->in_c, p->in_h, p->in_w);
    const tb_q8_strides so = strides_of(hwc, p->out_c, p->out_h, p->out_w);
    for (int oy = 0; oy < p->out_h; ++oy)
        for (int ox = 0; ox < p->out_w; ++ox)
            for (int m = 0; m < p->out_c; ++m) {
                const int8_t *x_c = in + (long)(m / multiplier) * si.c_step;
                int32_t acc = bias[m];
                for (int ky = 0; ky < p->k_h; ++ky) {
                    const int iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
                    if (iy < 0 || iy >= p->in_h) continue;
                    for (int kx = 0; kx < p->k_w; ++kx) {
                        const int ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
                        if (ix < 0 || ix >= p->in_w) continue;
                        acc += (int32_t)w[((long)ky * p->k_w + kx) * p->out_c + m] *
                               ((int32_t)x_c[iy * si.y_step + ix * si.x_step] - p->in_zp);
                    }
                }
                out[m * so.c_step + oy * so.y_step + ox * so.x_step] = requantised(p, acc, rq, m);
            }
}

void tb_q8_conv_depthwise_hwc(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                              const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out)
{
    depthwise(p, in, w, bias, rq, out, 1);
}

void tb_q8_conv_depthwise_chw(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                              const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out)
{
    depthwise(p, in, w, bias, rq, out, 0);
}

/* The 1x1 GEMM: out[m][pixel] over in[c][pixel]; in HWC a pixel's channels are contiguous (a dot product of two
 * rows), in CHW they are a pixel apart. */
static void pointwise(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                      const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out, int hwc)
{
    const long pixels = (long)p->out_h * p->out_w;
    const long c_step = hwc ? 1 : pixels, px_step = hwc ? p->in_c : 1;
    const long oc_step = hwc ? 1 : pixels, opx_step = hwc ? p->out_c : 1;
    for (long px = 0; px < pixels; ++px) {
        const int8_t *x = in + px * px_step;
        for (int m = 0; m < p->out_c; ++m) {
            const int8_t *wm = w + (long)m * p->in_c;
            int32_t acc = bias[m];
            for (int c = 0; c < p->in_c; ++c) acc += (int32_t)wm[c] * ((int32_t)x[c * c_step] - p->in_zp);
            out[m * oc_step + px * opx_step] = requantised(p, acc, rq, m);
        }
    }
}

void tb_q8_conv_1x1_hwc(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                        const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out)
{
    pointwise(p, in, w, bias, rq, out, 1);
}

void tb_q8_conv_1x1_chw(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                        const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out)
{
    pointwise(p, in, w, bias, rq, out, 0);
}

void tb_q8_conv_im2row_hwc(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                           const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out,
                           int8_t *restrict ws)
{
    const int C = p->in_c;
    const long k = (long)p->k_h * p->k_w * C;
    for (int oy = 0; oy < p->out_h; ++oy)
        for (int ox = 0; ox < p->out_w; ++ox) {
            int8_t *row = ws;
            for (int ky = 0; ky < p->k_h; ++ky) {
                const int iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
                for (int kx = 0; kx < p->k_w; ++kx, row += C) {
                    const int ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
                    const int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
                    const int8_t *x = in + ((long)iy * p->in_w + ix) * C;
                    /* padding holds the zero point, so that (x - in_zp) is 0 there */
                    for (int c = 0; c < C; ++c) row[c] = inside ? x[c] : (int8_t)p->in_zp;
                }
            }
            int8_t *o = out + ((long)oy * p->out_w + ox) * p->out_c;
            for (int m = 0; m < p->out_c; ++m) {
                const int8_t *wm = w + (long)m * k;
                int32_t acc = bias[m];
                for (long i = 0; i < k; ++i) acc += (int32_t)wm[i] * ((int32_t)ws[i] - p->in_zp);
                o[m] = requantised(p, acc, rq, m);
            }
        }
}
