/* int8 convolutions (see tb_q8.h for the arithmetic): direct, depthwise, 1x1 and im2row + int8 GEMM, in HWC and
 * CHW. Each entry point is written for its layout, its innermost loop over contiguous data. */
#include "tb_kernels.h"
#include "tb_q8.h"
#include "tb_q8_dot.h"

/* Output channels are computed TB_Q8_BLOCK at a time with their int32 sums on the stack: the innermost loops run
 * over contiguous channels (HWC) or pixels (CHW), which compilers vectorise. */
#define TB_Q8_BLOCK 64

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

static inline int8_t requantised(const tb_q8_conv *p, int32_t acc, const int32_t *restrict rq, int m)
{
    return tb_q8_clamp(tb_q8_requant(acc, rq[m], (int)rq[p->out_c + m]) + p->out_zp, p->act_min, p->act_max);
}

/* CHW: one output channel at a time over w [M][kh][kw][cg] (TFLite's OHWI). */
void tb_q8_conv_direct_chw(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                           const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out)
{
    const int hwc = 0;
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

/* Each output pixel's window [kh][kw][C] gathered into `patch` (groups 1), its padding holding in_zp (which the
 * folded bias cancels), then one GEMV over the whole window against w [M][kh][kw][C]: im2row in its workspace, and
 * direct HWC in a stack patch of at most TB_Q8_PATCH bytes when its window rows are too short for the vector steps
 * (few input channels, narrow kernels). */
#define TB_Q8_PATCH 512

static void gemv_by_patches(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                            const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out,
                            int8_t *restrict patch)
{
    const int C = p->in_c;
    for (int oy = 0; oy < p->out_h; ++oy)
        for (int ox = 0; ox < p->out_w; ++ox) {
            int8_t *row = patch;
            for (int ky = 0; ky < p->k_h; ++ky) {
                const int iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
                for (int kx = 0; kx < p->k_w; ++kx, row += C) {
                    const int ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
                    const int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
                    const int8_t *x = in + ((long)iy * p->in_w + ix) * C;
                    for (int c = 0; c < C; ++c) row[c] = inside ? x[c] : (int8_t)p->in_zp;
                }
            }
            tb_q8_gemv_rows(patch, w, p->k_h * p->k_w * C, p->out_c, bias, rq, p->out_zp, p->act_min, p->act_max,
                            out + ((long)oy * p->out_w + ox) * p->out_c);
        }
}

/* HWC: per output pixel, TB_Q8_BLOCK output channels of one group at a time, four at a time through tb_q8_dot4
 * over w [M][kh][kw][cg] (OHWI). With groups 1 and no horizontal dilation, a window row's valid taps are one
 * contiguous run of (kx1 - kx0) * C bytes in both the input and the weights; otherwise each tap is a run of cg. The
 * bias holds -in_zp * the sum of the whole window's weights: the taps a border pixel skips are added back, from the
 * per-tap weight sums that follow the multipliers and shifts in rq. */
void tb_q8_conv_direct_hwc(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                           const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out)
{
    const int C = p->in_c, M = p->out_c, cg = C / p->groups, mg = M / p->groups, in_zp = p->in_zp;
    const int k_h = p->k_h, k_w = p->k_w, row_runs = p->groups == 1 && p->dil_w == 1;
    const long K = (long)k_h * k_w * cg;
    const int32_t *restrict tap_sums = rq + 2 * M; /* [M][kh][kw]: each channel's weight sum per tap */
    int32_t acc[TB_Q8_BLOCK];
    if (p->groups == 1 && k_w * cg < 16 && K <= TB_Q8_PATCH) { /* runs too short for the vector steps */
        int8_t patch[TB_Q8_PATCH];
        gemv_by_patches(p, in, w, bias, rq, out, patch);
        return;
    }
    for (int oy = 0; oy < p->out_h; ++oy)
        for (int ox = 0; ox < p->out_w; ++ox) {
            int8_t *o = out + ((long)oy * p->out_w + ox) * M;
            /* the valid taps: ky in [ky0, ky1) and kx in [kx0, kx1) (windows are boxes; dilation keeps them so) */
            int ky0 = 0, ky1 = 0, kx0 = 0, kx1 = 0;
            const int y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
            while (ky0 < k_h && y0 + ky0 * p->dil_h < 0) ++ky0;
            for (ky1 = ky0; ky1 < k_h && y0 + ky1 * p->dil_h < p->in_h; ++ky1) {}
            while (kx0 < k_w && x0 + kx0 * p->dil_w < 0) ++kx0;
            for (kx1 = kx0; kx1 < k_w && x0 + kx1 * p->dil_w < p->in_w; ++kx1) {}
            const int border = ky0 > 0 || ky1 < k_h || kx0 > 0 || kx1 < k_w;
            for (int m0 = 0, n = 0; m0 < M; m0 += n) {
                const int group_end = (m0 / mg + 1) * mg; /* a block never straddles two groups */
                n = group_end - m0 < TB_Q8_BLOCK ? group_end - m0 : TB_Q8_BLOCK;
                const int c0 = (m0 / mg) * cg;
                const int8_t *wb = w + (long)m0 * K;
                for (int j = 0; j < n; ++j) acc[j] = bias[m0 + j];
                for (int ky = ky0; ky < ky1; ++ky) {
                    const int8_t *x_row = in + (long)(y0 + ky * p->dil_h) * p->in_w * C + c0;
                    const int8_t *w_row = wb + (long)ky * k_w * cg;
                    if (row_runs) {
                        const int8_t *x = x_row + (long)(x0 + kx0) * C, *wt = w_row + (long)kx0 * C;
                        const int len = (kx1 - kx0) * C;
                        int j = 0;
                        for (; j + 4 <= n; j += 4) tb_q8_dot4(x, wt + j * K, K, len, acc + j);
                        for (; j < n; ++j) acc[j] += tb_q8_dot(x, wt + j * K, len);
                        continue;
                    }
                    for (int kx = kx0; kx < kx1; ++kx) {
                        const int8_t *x = x_row + (long)(x0 + kx * p->dil_w) * C, *wt = w_row + (long)kx * cg;
                        int j = 0;
                        for (; j + 4 <= n; j += 4) tb_q8_dot4(x, wt + j * K, K, cg, acc + j);
                        for (; j < n; ++j) acc[j] += tb_q8_dot(x, wt + j * K, cg);
                    }
                }
                if (border && in_zp != 0)
                    for (int j = 0; j < n; ++j) {
                        const int32_t *sums = tap_sums + (long)(m0 + j) * k_h * k_w;
                        int32_t skipped = 0;
                        for (int ky = 0; ky < k_h; ++ky)
                            for (int kx = 0; kx < k_w; ++kx)
                                if (ky < ky0 || ky >= ky1 || kx < kx0 || kx >= kx1) skipped += sums[ky * k_w + kx];
                        acc[j] += in_zp * skipped;
                    }
                tb_q8_requant_run(acc, n, rq, M, m0, p->out_zp, p->act_min, p->act_max, o + m0, 1);
            }
        }
}

/* Depthwise HWC. (x - in_zp) * w is at most 255 * 128 in magnitude, so each product is exact in int16: compilers
 * multiply in 16-bit lanes and widen only the sum. One output pixel: TB_Q8_BLOCK channels at a time over its valid
 * taps, the innermost loop over contiguous channels. */
static void depthwise_hwc_pixel(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                                const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out, int oy,
                                int ox)
{
    const int multiplier = p->out_c / p->in_c, C = p->in_c, M = p->out_c;
    const int16_t in_zp = (int16_t)p->in_zp;
    const int k_h = p->k_h, k_w = p->k_w;
    int32_t acc[TB_Q8_BLOCK];
    int16_t xs[TB_Q8_BLOCK];
    int8_t *o = out + ((long)oy * p->out_w + ox) * M;
    const int y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
    for (int m0 = 0; m0 < M; m0 += TB_Q8_BLOCK) {
        const int n = M - m0 < TB_Q8_BLOCK ? M - m0 : TB_Q8_BLOCK;
        for (int j = 0; j < n; ++j) acc[j] = bias[m0 + j];
        for (int ky = 0; ky < k_h; ++ky) {
            const int iy = y0 + ky * p->dil_h;
            if (iy < 0 || iy >= p->in_h) continue;
            for (int kx = 0; kx < k_w; ++kx) {
                const int ix = x0 + kx * p->dil_w;
                if (ix < 0 || ix >= p->in_w) continue;
                const int8_t *restrict wt = w + ((long)ky * k_w + kx) * M + m0;
                const int8_t *restrict x = in + ((long)iy * p->in_w + ix) * C;
                if (multiplier == 1) {
                    for (int j = 0; j < n; ++j) xs[j] = (int16_t)(x[m0 + j] - in_zp);
                } else {
                    for (int j = 0; j < n; ++j) xs[j] = (int16_t)(x[(m0 + j) / multiplier] - in_zp);
                }
                for (int j = 0; j < n; ++j) acc[j] += (int16_t)(xs[j] * wt[j]);
            }
        }
        tb_q8_requant_run(acc, n, rq, M, m0, p->out_zp, p->act_min, p->act_max, o + m0, 1);
    }
}

/* Stride 1 horizontally, multiplier 1, no horizontal dilation: the pixels of an output row whose windows lie inside
 * the input horizontally read, at each tap, one contiguous run of (pixels x C) input bytes. Runs of up to
 * TB_Q8_DW_LANES lanes against the tap's weights repeated per pixel: long vector loops however few the channels. */
#define TB_Q8_DW_LANES 128
#define TB_Q8_DW_TAPS 9

static int depthwise_hwc_runs_apply(const tb_q8_conv *p)
{
    return p->out_c == p->in_c && p->stride_w == 1 && p->dil_w == 1 && p->in_c <= TB_Q8_DW_LANES &&
           p->k_h * p->k_w <= TB_Q8_DW_TAPS;
}

void tb_q8_conv_depthwise_hwc(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                              const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out)
{
    if (!depthwise_hwc_runs_apply(p)) {
        for (int oy = 0; oy < p->out_h; ++oy)
            for (int ox = 0; ox < p->out_w; ++ox) depthwise_hwc_pixel(p, in, w, bias, rq, out, oy, ox);
        return;
    }
    const int C = p->in_c, k_h = p->k_h, k_w = p->k_w, per_run = TB_Q8_DW_LANES / C;
    const int16_t in_zp = (int16_t)p->in_zp;
    int8_t w_rep[TB_Q8_DW_TAPS][TB_Q8_DW_LANES];
    int32_t acc[TB_Q8_DW_LANES];
    for (int t = 0; t < k_h * k_w; ++t)
        for (int j = 0; j < per_run * C; ++j) w_rep[t][j] = w[(long)t * C + j % C];
    /* [ox_lo, ox_hi): the output columns whose windows lie inside the input horizontally */
    int ox_lo = p->pad_left, ox_hi = p->in_w - k_w + 1 + p->pad_left;
    ox_lo = ox_lo < p->out_w ? ox_lo : p->out_w;
    ox_hi = ox_hi < p->out_w ? ox_hi : p->out_w;
    ox_hi = ox_hi > ox_lo ? ox_hi : ox_lo;
    for (int oy = 0; oy < p->out_h; ++oy) {
        for (int ox = 0; ox < ox_lo; ++ox) depthwise_hwc_pixel(p, in, w, bias, rq, out, oy, ox);
        for (int ox = ox_hi; ox < p->out_w; ++ox) depthwise_hwc_pixel(p, in, w, bias, rq, out, oy, ox);
        const int y0 = oy * p->stride_h - p->pad_top;
        for (int ox0 = ox_lo; ox0 < ox_hi; ox0 += per_run) {
            const int pixels = ox_hi - ox0 < per_run ? ox_hi - ox0 : per_run, lanes = pixels * C;
            for (int q = 0; q < pixels; ++q)
                for (int c = 0; c < C; ++c) acc[q * C + c] = bias[c];
            for (int ky = 0; ky < k_h; ++ky) {
                const int iy = y0 + ky * p->dil_h;
                if (iy < 0 || iy >= p->in_h) continue;
                for (int kx = 0; kx < k_w; ++kx) {
                    const int8_t *restrict x = in + ((long)iy * p->in_w + ox0 - p->pad_left + kx) * C;
                    const int8_t *restrict wt = w_rep[ky * k_w + kx];
                    for (int j = 0; j < lanes; ++j) acc[j] += (int16_t)((int16_t)(x[j] - in_zp) * wt[j]);
                }
            }
            int8_t *o = out + ((long)oy * p->out_w + ox0) * C;
            for (int q = 0; q < pixels; ++q)
                tb_q8_requant_run(acc + q * C, C, rq, C, 0, p->out_zp, p->act_min, p->act_max, o + (long)q * C, 1);
        }
    }
}

/* CHW: one channel plane at a time. */
void tb_q8_conv_depthwise_chw(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                              const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out)
{
    const int multiplier = p->out_c / p->in_c;
    const long plane = (long)p->in_h * p->in_w, out_plane = (long)p->out_h * p->out_w;
    for (int m = 0; m < p->out_c; ++m) {
        const int8_t *x = in + (long)(m / multiplier) * plane;
        int8_t *o = out + m * out_plane;
        for (int oy = 0; oy < p->out_h; ++oy)
            for (int ox = 0; ox < p->out_w; ++ox) {
                int32_t acc = bias[m];
                for (int ky = 0; ky < p->k_h; ++ky) {
                    const int iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
                    if (iy < 0 || iy >= p->in_h) continue;
                    for (int kx = 0; kx < p->k_w; ++kx) {
                        const int ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
                        if (ix < 0 || ix >= p->in_w) continue;
                        acc += (int32_t)w[((long)ky * p->k_w + kx) * p->out_c + m] *
                               ((int32_t)x[(long)iy * p->in_w + ix] - p->in_zp);
                    }
                }
                o[(long)oy * p->out_w + ox] = requantised(p, acc, rq, m);
            }
    }
}

/* The 1x1 GEMM: out[m][pixel] over in[c][pixel] and w [M][C], in_zp folded into the bias. HWC: per pixel, a GEMV
 * over contiguous C (tb_q8_gemv_rows). CHW: four output channels at a time over TB_Q8_BLOCK pixels, the innermost
 * loop over contiguous pixels (compilers vectorise it), each input row read once per four channels. */
void tb_q8_conv_1x1_hwc(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                        const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out)
{
    const long pixels = (long)p->out_h * p->out_w;
    const int C = p->in_c, M = p->out_c;
    for (long px = 0; px < pixels; ++px)
        tb_q8_gemv_rows(in + px * C, w, C, M, bias, rq, p->out_zp, p->act_min, p->act_max, out + px * M);
}

void tb_q8_conv_1x1_chw(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                        const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out)
{
    const long pixels = (long)p->out_h * p->out_w;
    const int C = p->in_c, M = p->out_c;
    int32_t acc[4][TB_Q8_BLOCK];
    for (int m0 = 0; m0 < M; m0 += 4) {
        const int rows = M - m0 < 4 ? M - m0 : 4;
        const int8_t *w0 = w + (long)m0 * C;
        for (long px0 = 0; px0 < pixels; px0 += TB_Q8_BLOCK) {
            const int n = pixels - px0 < TB_Q8_BLOCK ? (int)(pixels - px0) : TB_Q8_BLOCK;
            for (int r = 0; r < rows; ++r)
                for (int j = 0; j < n; ++j) acc[r][j] = bias[m0 + r];
            if (rows == 4) {
                for (int c = 0; c < C; ++c) {
                    const int8_t *x = in + c * pixels + px0;
                    const int32_t a = w0[c], b = w0[C + c], d = w0[2 * C + c], e = w0[3 * C + c];
                    for (int j = 0; j < n; ++j) {
                        const int32_t xv = x[j];
                        acc[0][j] += a * xv;
                        acc[1][j] += b * xv;
                        acc[2][j] += d * xv;
                        acc[3][j] += e * xv;
                    }
                }
            } else {
                for (int r = 0; r < rows; ++r)
                    for (int c = 0; c < C; ++c) {
                        const int8_t *x = in + c * pixels + px0;
                        const int32_t wv = w0[(long)r * C + c];
                        for (int j = 0; j < n; ++j) acc[r][j] += wv * (int32_t)x[j];
                    }
            }
            for (int r = 0; r < rows; ++r)
                tb_q8_requant_channel(acc[r], n, rq[m0 + r], (int)rq[M + m0 + r], p->out_zp, p->act_min, p->act_max,
                                      out + (m0 + r) * pixels + px0);
        }
    }
}

void tb_q8_conv_im2row_hwc(const tb_q8_conv *p, const int8_t *restrict in, const int8_t *restrict w,
                           const int32_t *restrict bias, const int32_t *restrict rq, int8_t *restrict out,
                           int8_t *restrict ws)
{
    gemv_by_patches(p, in, w, bias, rq, out, ws);
}
