/* kn2row (CHW input) and kn2col (HWC input): a k_h x k_w convolution as k_h*k_w 1x1 convolutions of the whole
 * input, one per kernel tap, each shifted by its tap offset and added into the output (Vasudevan, Anderson & Gregg,
 * ASAP 2017). The 1x1 convolutions are GEMMs that read the input in place (as 1x1_gemm does); no patch matrix.
 *   full: one GEMM of all taps' weights stacked, [taps*mg][cg] . X[cg][h*w] (kn2col: X[h*w][cg] . [cg][taps*mg]),
 *         into a taps x mg x h*w temporary, then one shift-add pass (fast, big workspace);
 *   acc:  one tap at a time into an mg x h*w buffer, shift-added into the output at once (low memory).
 * The registry offers them for stride 1 (for stride s the GEMMs would compute s*s times the pixels needed), but the
 * kernels are correct for any stride, padding, dilation and groups. The CHW kernels also write HCW (the shift-add
 * runs along output rows in both). Workspace: the temporary (or tap buffer), then the GEMM's packing of one block
 * of the input.
 * A row view [oh_begin, oh_end) runs the 1x1 GEMMs over only the input rows its output rows read (per tap for the
 * acc variants and for channel ranges, the union of the taps' rows for one stacked GEMM) and shift-adds only its
 * output rows; the temporary keeps its whole-call place and leading dimension, partly filled. */
#include "tb_kernels.h"
#include "tb_gemm.h"
#include "tb_conv_layout.h"
#include "tb_conv_families.h"

#define MR TB_GEMM_MR
#define NR TB_GEMM_NR

/* The input rows [*ih0, *ih1) that kernel rows [ki0, ki1) read for the view's output rows, clipped to the input;
 * empty (*ih0 >= *ih1) when they all fall in the padding. */
static void input_rows(const tb_conv *p, int ki0, int ki1, int *ih0, int *ih1)
{
    *ih0 = tb_max(p->oh_begin * p->stride_h + ki0 * p->dil_h - p->pad_top, 0);
    *ih1 = tb_min((p->oh_end - 1) * p->stride_h + (ki1 - 1) * p->dil_h - p->pad_top + 1, p->in_h);
}

/* A GEMM into the temporary: plain C = A.B, no bias, no activation. */
static tb_gemm_job raw_job(const tb_conv *p)
{
    tb_gemm_job job = tb_conv_job(p);
    job.accumulate = 0;
    job.act = TB_ACT_NONE;
    return job;
}

/* Output rows (m, oh) of a group (out_g = its channel 0; o.w == 1) += taps [t0, t1) of the tap planes, where
 * plane (tap, m) is the h x w result of tap `tap` for channel m at tp + (tap - t0)*tap_stride + m*h*w. */
static void shift_add_rows(const tb_conv *p, const float *restrict tp, long tap_stride, int t0, int t1, int m0,
                           int m1, float *restrict out_g, tb_strides o)
{
    const long hw = (long)p->in_h * p->in_w;
    const int sw = p->stride_w;
    int m, oh, tap, ow;
    for (m = m0; m < m1; ++m)
        for (oh = p->oh_begin; oh < p->oh_end; ++oh) {
            float *restrict orow = out_g + m * o.c + oh * o.h;
            for (tap = t0; tap < t1; ++tap) {
                const int ki = tap / p->k_w, kj = tap % p->k_w;
                const int ih = oh * p->stride_h + ki * p->dil_h - p->pad_top, off_w = kj * p->dil_w - p->pad_left;
                const float *restrict src;
                int lo, hi;
                if (ih < 0 || ih >= p->in_h) continue;
                tb_valid_range(p->out_w, sw, off_w, p->in_w, &lo, &hi);
                if (lo >= hi) continue;
                src = tp + (tap - t0) * tap_stride + m * hw + (long)ih * p->in_w + (long)lo * sw + off_w;
                if (sw == 1)
                    for (ow = lo; ow < hi; ++ow) orow[ow] += src[ow - lo];
                else
                    for (ow = lo; ow < hi; ++ow) orow[ow] += src[(long)(ow - lo) * sw];
            }
        }
}

/* Output rows (m, oh) of the view, m in [m0, m1): zeroed (first = 1) or given bias and activation (first = 0). */
static void rows_begin_end(const tb_conv *p, const float *restrict bias_g, int m0, int m1, float *restrict out_g,
                           tb_strides o, int first)
{
    int m, oh, ow;
    for (m = m0; m < m1; ++m)
        for (oh = p->oh_begin; oh < p->oh_end; ++oh) {
            float *restrict orow = out_g + m * o.c + oh * o.h;
            if (first)
                for (ow = 0; ow < p->out_w; ++ow) orow[ow] = 0.0f;
            else
                tb_bias_act_row(orow, p->out_w, bias_g[m], p->act, p->act_a, p->act_b);
        }
}

static void kn2row_any(const tb_conv *p, const float *restrict in, const float *restrict w,
                       const float *restrict bias, float *restrict out, float *restrict ws, int out_layout, int acc)
{
    const int cg = p->in_c / p->groups, mg = p->out_c / p->groups, taps = p->k_h * p->k_w;
    const long hw = (long)p->in_h * p->in_w;
    const tb_strides o = tb_layout_strides(out_layout, p->out_c, p->out_h, p->out_w);
    const long wg_floats = acc ? (long)taps * ((mg + MR - 1) / MR * MR) * cg
                               : (long)((taps * mg + MR - 1) / MR * MR) * cg;
    const long tap_floats = (long)((mg + MR - 1) / MR * MR) * cg;
    float *restrict pack = ws + (acc ? 1 : taps) * mg * hw;
    int g, tap, ih0, ih1;
    if (p->oh_begin >= p->oh_end) return;
    input_rows(p, 0, p->k_h, &ih0, &ih1);
    for (g = 0; g < p->groups; ++g) {
        float *out_g = out + (long)g * mg * o.c;
        const float *wg = w + g * wg_floats;
        tb_gemm_job job = raw_job(p);
        int m0, m1;
        if (!tb_group_range(p, g, mg, &m0, &m1)) continue;
        job.n0 = ih0 * p->in_w; job.n1 = ih1 * p->in_w; job.k = cg;
        job.a = wg; job.lda = cg; job.a_packed = 1;
        job.b = in + g * cg * hw; job.ldb = (int)hw; job.b_packed = 0;
        job.c = ws; job.ldc = (int)hw;
        if (!p->accumulate) rows_begin_end(p, 0, m0, m1, out_g, o, 1);
        if (acc) {
            for (tap = 0; tap < taps; ++tap) {
                int r0, r1;
                input_rows(p, tap / p->k_w, tap / p->k_w + 1, &r0, &r1);
                if (r0 >= r1) continue;
                job.a = wg + tap * tap_floats;
                job.m0 = m0; job.m1 = m1; job.n0 = r0 * p->in_w; job.n1 = r1 * p->in_w;
                tb_gemm(&job, pack);
                shift_add_rows(p, ws, 0, tap, tap + 1, m0, m1, out_g, o);
            }
        } else if (ih0 < ih1) {
            if (m0 == 0 && m1 == mg) { /* the whole group: one GEMM over every tap */
                job.m0 = 0; job.m1 = taps * mg;
                tb_gemm(&job, pack);
            } else {
                for (tap = 0; tap < taps; ++tap) {
                    int r0, r1;
                    input_rows(p, tap / p->k_w, tap / p->k_w + 1, &r0, &r1);
                    if (r0 >= r1) continue;
                    job.m0 = tap * mg + m0; job.m1 = tap * mg + m1; job.n0 = r0 * p->in_w; job.n1 = r1 * p->in_w;
                    tb_gemm(&job, pack);
                }
            }
            shift_add_rows(p, ws, (long)mg * hw, 0, taps, m0, m1, out_g, o);
        }
        if (!p->accumulate) rows_begin_end(p, bias + g * mg, m0, m1, out_g, o, 0);
    }
}

/* HWC output pixels += taps [t0, t1): tap `tap` of input pixel q for channel m at tp + (tap - t0)*tap_stride +
 * q*ldt + m. out_g = the group's channel 0; channels [m0, m1). */
static void shift_add_pixels(const tb_conv *p, const float *restrict tp, long tap_stride, long ldt, int t0, int t1,
                             int m0, int m1, float *restrict out_g)
{
    const int M = p->out_ps ? p->out_ps : p->out_c; /* the pixel stride: a concat slice's, or dense */
    int oh, ow, tap, m;
    for (oh = p->oh_begin; oh < p->oh_end; ++oh)
        for (ow = 0; ow < p->out_w; ++ow) {
            float *restrict o = out_g + ((long)oh * p->out_w + ow) * M;
            for (tap = t0; tap < t1; ++tap) {
                const int ki = tap / p->k_w, kj = tap % p->k_w;
                const int ih = oh * p->stride_h + ki * p->dil_h - p->pad_top;
                const int iw = ow * p->stride_w + kj * p->dil_w - p->pad_left;
                const float *restrict src;
                if (ih < 0 || ih >= p->in_h || iw < 0 || iw >= p->in_w) continue;
                src = tp + (tap - t0) * tap_stride + ((long)ih * p->in_w + iw) * ldt;
                for (m = m0; m < m1; ++m) o[m] += src[m];
            }
        }
}

static void pixels_begin_end(const tb_conv *p, const float *restrict bias_g, int m0, int m1, float *restrict out_g,
                             int first)
{
    const long n = (long)p->oh_end * p->out_w;
    long q;
    int m;
    for (q = (long)p->oh_begin * p->out_w; q < n; ++q) {
        float *restrict o = out_g + q * (p->out_ps ? p->out_ps : p->out_c);
        if (first)
            for (m = m0; m < m1; ++m) o[m] = 0.0f;
        else
            tb_bias_act_vec(o + m0, m1 - m0, bias_g + m0, p->act, p->act_a, p->act_b);
    }
}

static void kn2col_any(const tb_conv *p, const float *restrict in, const float *restrict w,
                       const float *restrict bias, float *restrict out, float *restrict ws, int acc)
{
    const int cg = p->in_c / p->groups, mg = p->out_c / p->groups, taps = p->k_h * p->k_w;
    const long hw = (long)p->in_h * p->in_w;
    const long wg_floats = acc ? (long)taps * ((mg + NR - 1) / NR * NR) * cg
                               : (long)((taps * mg + NR - 1) / NR * NR) * cg;
    const long tap_floats = (long)((mg + NR - 1) / NR * NR) * cg;
    float *restrict pack = ws + (acc ? 1 : taps) * mg * hw;
    int g, tap, ih0, ih1;
    if (p->oh_begin >= p->oh_end) return;
    input_rows(p, 0, p->k_h, &ih0, &ih1);
    for (g = 0; g < p->groups; ++g) {
        float *out_g = out + g * mg;
        const float *wg = w + g * wg_floats;
        tb_gemm_job job = raw_job(p);
        int m0, m1;
        if (!tb_group_range(p, g, mg, &m0, &m1)) continue;
        job.m0 = ih0 * p->in_w; job.m1 = ih1 * p->in_w; job.k = cg;
        job.a = in + g * cg; job.lda = p->in_c; job.a_packed = 0;
        job.b = wg; job.b_packed = 1;
        job.c = ws;
        if (!p->accumulate) pixels_begin_end(p, 0, m0, m1, out_g, 1);
        if (acc) {
            job.ldb = job.ldc = mg;
            for (tap = 0; tap < taps; ++tap) {
                int r0, r1;
                input_rows(p, tap / p->k_w, tap / p->k_w + 1, &r0, &r1);
                if (r0 >= r1) continue;
                job.b = wg + tap * tap_floats;
                job.n0 = m0; job.n1 = m1; job.m0 = r0 * p->in_w; job.m1 = r1 * p->in_w;
                tb_gemm(&job, pack);
                shift_add_pixels(p, ws, 0, mg, tap, tap + 1, m0, m1, out_g);
            }
        } else if (ih0 < ih1) {
            job.ldb = job.ldc = taps * mg;
            if (m0 == 0 && m1 == mg) {
                job.n0 = 0; job.n1 = taps * mg;
                tb_gemm(&job, pack);
            } else {
                for (tap = 0; tap < taps; ++tap) {
                    int r0, r1;
                    input_rows(p, tap / p->k_w, tap / p->k_w + 1, &r0, &r1);
                    if (r0 >= r1) continue;
                    job.n0 = tap * mg + m0; job.n1 = tap * mg + m1; job.m0 = r0 * p->in_w; job.m1 = r1 * p->in_w;
                    tb_gemm(&job, pack);
                }
            }
            shift_add_pixels(p, ws, mg, (long)taps * mg, 0, taps, m0, m1, out_g);
        }
        if (!p->accumulate) pixels_begin_end(p, bias + g * mg, m0, m1, out_g, 0);
    }
}

void tb_conv_kn2row_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                        const float *restrict bias, float *restrict out, float *restrict ws)
{
    kn2row_any(p, in, w, bias, out, ws, TB_LAYOUT_CHW, 0);
}

void tb_conv_kn2row_acc_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                            const float *restrict bias, float *restrict out, float *restrict ws)
{
    kn2row_any(p, in, w, bias, out, ws, TB_LAYOUT_CHW, 1);
}

void tb_conv_kn2row_chw_to_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                               const float *restrict bias, float *restrict out, float *restrict ws)
{
    kn2row_any(p, in, w, bias, out, ws, TB_LAYOUT_HCW, 0);
}

void tb_conv_kn2row_acc_chw_to_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws)
{
    kn2row_any(p, in, w, bias, out, ws, TB_LAYOUT_HCW, 1);
}

void tb_conv_kn2col_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                        const float *restrict bias, float *restrict out, float *restrict ws)
{
    kn2col_any(p, in, w, bias, out, ws, 0);
}

void tb_conv_kn2col_acc_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                            const float *restrict bias, float *restrict out, float *restrict ws)
{
    kn2col_any(p, in, w, bias, out, ws, 1);
}
