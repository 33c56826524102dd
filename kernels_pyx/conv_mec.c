/* MEC, memory-efficient convolution (Cho & Brand, ICML 2017), between any input and output layout.
 * Instead of im2col's patch matrix (k_h*k_w values per pixel), MEC lowers each output column ow once: the k_w-wide
 * vertical strip of the padded input it reads, all Hl = (out_h-1)*stride_h + k_h rows of it (k_w*Hl*cg values per
 * output column, k_h/stride_h times less than im2col). The patches of output row oh are then a contiguous window
 * of that strip (rows oh*stride_h .. oh*stride_h + k_h), so one GEMM per output row reads the lowered matrix in
 * place, with a leading dimension that skips between strips. Needs dil_h == 1 (any dil_w, stride, groups).
 * The output layout picks the operand order (k = (ki, kj, c) in both):
 *   out CHW / HCW: lowered as LT[(ih*k_w + kj)*cg + c][ow]; out_g[:, oh, :] = W_g[mg][K] . LT[rows of oh][ow]
 *   out HWC:       lowered as L[ow][(ih*k_w + kj)*cg + c];   out_g[oh, :, :] = L[ow][cols of oh] . W_g^T[K][mg]
 * Workspace: the lowered matrix, Hl*k_w*cg*out_w floats, then the GEMM's packing of one block of it.
 * A row view [oh_begin, oh_end) lowers only the padded rows its output rows read, oh_begin*stride_h ..
 * (oh_end-1)*stride_h + k_h (at most Hl, into the same place), and runs only its rows' GEMMs. */
#include "tb_kernels.h"
#include "tb_gemm.h"
#include "tb_conv_layout.h"
#include "tb_conv_families.h"

#define MR TB_GEMM_MR
#define NR TB_GEMM_NR

static void zero(float *restrict d, long n)
{
    long i;
    for (i = 0; i < n; ++i) d[i] = 0.0f;
}

/* LT for one group (x = its first input channel) over padded rows [h0, h0 + hl): row (ihl*k_w + kj)*cg + c holds
 * out_w values, ihl counted from h0. */
static void lower_rows(const tb_conv *p, const float *restrict x, tb_strides s, int cg, int h0, int hl,
                       float *restrict lt)
{
    const int OW = p->out_w;
    const long step = (long)p->stride_w * s.w;
    int ihl, kj, c, o;
    for (ihl = 0; ihl < hl; ++ihl) {
        const int ih = h0 + ihl - p->pad_top;
        for (kj = 0; kj < p->k_w; ++kj) {
            const int off_w = kj * p->dil_w - p->pad_left;
            int lo, hi;
            tb_valid_range(OW, p->stride_w, off_w, p->in_w, &lo, &hi);
            for (c = 0; c < cg; ++c) {
                float *restrict row = lt + ((long)(ihl * p->k_w + kj) * cg + c) * OW;
                const float *restrict src;
                if (ih < 0 || ih >= p->in_h || lo >= hi) {
                    zero(row, OW);
                    continue;
                }
                src = x + c * s.c + ih * s.h + ((long)lo * p->stride_w + off_w) * s.w;
                zero(row, lo);
                if (step == 1)
                    for (o = lo; o < hi; ++o) row[o] = src[o - lo];
                else
                    for (o = lo; o < hi; ++o) row[o] = src[(long)(o - lo) * step];
                zero(row + hi, OW - hi);
            }
        }
    }
}

/* L for one group over padded rows [h0, h0 + hl): row ow holds hl*k_w*cg values, (ihl*k_w + kj)*cg + c, ihl
 * counted from h0. Channel-contiguous inputs (HWC) are read pixel by pixel, the others channel by channel along a
 * strip. */
static void lower_cols(const tb_conv *p, const float *restrict x, tb_strides s, int cg, int h0, int hl,
                       float *restrict l)
{
    const int OW = p->out_w;
    const long lrow = (long)hl * p->k_w * cg;
    int ow, ihl, kj, c;
    for (ihl = 0; ihl < hl; ++ihl) {
        const int ih = h0 + ihl - p->pad_top;
        for (kj = 0; kj < p->k_w; ++kj) {
            const int off_w = kj * p->dil_w - p->pad_left;
            float *restrict base = l + (long)(ihl * p->k_w + kj) * cg;
            int lo, hi;
            tb_valid_range(OW, p->stride_w, off_w, p->in_w, &lo, &hi);
            if (ih < 0 || ih >= p->in_h) lo = hi = OW;
            for (ow = 0; ow < OW; ++ow)
                if (ow < lo || ow >= hi) zero(base + ow * lrow, cg);
            if (s.c == 1) {
                for (ow = lo; ow < hi; ++ow) {
                    const float *restrict src = x + ih * s.h + ((long)ow * p->stride_w + off_w) * s.w;
                    float *restrict d = base + ow * lrow;
                    for (c = 0; c < cg; ++c) d[c] = src[c];
                }
            } else {
                for (c = 0; c < cg; ++c) {
                    const float *restrict src = x + c * s.c + ih * s.h;
                    for (ow = lo; ow < hi; ++ow) base[ow * lrow + c] = src[((long)ow * p->stride_w + off_w) * s.w];
                }
            }
        }
    }
}

static void mec_any(const tb_conv *p, const float *restrict in, const float *restrict w, const float *restrict bias,
                    float *restrict out, float *restrict ws, int in_layout, int out_layout)
{
    const int cg = p->in_c / p->groups, mg = p->out_c / p->groups, K = p->k_h * p->k_w * cg;
    const int OW = p->out_w, hl = (p->out_h - 1) * p->stride_h + p->k_h;
    /* the padded rows the view's output rows read: the lowered matrix of the view, in the same place */
    const int h0 = p->oh_begin * p->stride_h, hv = (p->oh_end - p->oh_begin - 1) * p->stride_h + p->k_h;
    const long strip = (long)p->stride_h * p->k_w * cg; /* lowered rows (columns) between output rows */
    const tb_strides s = tb_layout_strides(in_layout, p->in_c, p->in_h, p->in_w);
    const tb_strides o = tb_layout_strides(out_layout, p->out_c, p->out_h, p->out_w);
    const int rows = out_layout == TB_LAYOUT_HWC;
    const int mgpad = rows ? (mg + NR - 1) / NR * NR : (mg + MR - 1) / MR * MR;
    float *restrict pack = ws + (long)hl * p->k_w * cg * OW;
    int g, oh;
    if (p->oh_begin >= p->oh_end) return;
    for (g = 0; g < p->groups; ++g) {
        const float *x = in + (long)g * cg * s.c;
        const float *wg = w + (long)g * mgpad * K;
        int m0, m1;
        if (!tb_group_range(p, g, mg, &m0, &m1)) continue;
        if (rows)
            lower_cols(p, x, s, cg, h0, hv, ws);
        else
            lower_rows(p, x, s, cg, h0, hv, ws);
        for (oh = p->oh_begin; oh < p->oh_end; ++oh) {
            tb_gemm_job job = tb_conv_job(p);
            job.k = K;
            if (rows) {
                job.m0 = 0; job.m1 = OW; job.n0 = m0; job.n1 = m1;
                job.a = ws + (oh - p->oh_begin) * strip; job.lda = hv * p->k_w * cg; job.a_packed = 0;
                job.b = wg; job.ldb = mg; job.b_packed = 1;
                job.c = out + oh * o.h + (long)g * mg; job.ldc = (int)o.w;
                job.bias_n = bias + g * mg;
            } else {
                job.m0 = m0; job.m1 = m1; job.n0 = 0; job.n1 = OW;
                job.a = wg; job.lda = K; job.a_packed = 1;
                job.b = ws + (oh - p->oh_begin) * strip * OW; job.ldb = OW; job.b_packed = 0;
                job.c = out + (long)g * mg * o.c + oh * o.h; job.ldc = (int)o.c;
                job.bias_m = bias + g * mg;
            }
            tb_gemm(&job, pack);
        }
    }
}

/* The exported kernels: every (input layout, output layout) pair. */
TB_CONV_LAYOUT_KERNEL(tb_conv_mec_chw, mec_any, CHW, CHW)
TB_CONV_LAYOUT_KERNEL(tb_conv_mec_chw_to_hwc, mec_any, CHW, HWC)
TB_CONV_LAYOUT_KERNEL(tb_conv_mec_chw_to_hcw, mec_any, CHW, HCW)
TB_CONV_LAYOUT_KERNEL(tb_conv_mec_hwc_to_chw, mec_any, HWC, CHW)
TB_CONV_LAYOUT_KERNEL(tb_conv_mec_hwc, mec_any, HWC, HWC)
TB_CONV_LAYOUT_KERNEL(tb_conv_mec_hwc_to_hcw, mec_any, HWC, HCW)
TB_CONV_LAYOUT_KERNEL(tb_conv_mec_hcw_to_chw, mec_any, HCW, CHW)
TB_CONV_LAYOUT_KERNEL(tb_conv_mec_hcw_to_hwc, mec_any, HCW, HWC)
TB_CONV_LAYOUT_KERNEL(tb_conv_mec_hcw, mec_any, HCW, HCW)
