/* im2col (CHW) and im2row (HWC) + GEMM, one group at a time. The patch matrix is written straight into the GEMM's
 * packed panel format (tb_gemm.h), so the GEMM reads both operands in place and needs no further workspace:
 *   CHW: out_g[mg][N] = W_g[mg][K] . patches[K][N],   patches packed as B (NR-column panels), W_g pre-packed as A;
 *   HWC: out_g[N][mg] = patches[N][K] . W_g^T[K][mg], patches packed as A (MR-row panels), W_g^T pre-packed as B;
 * with N = out_h*out_w pixels, K = cg*k_h*k_w (CHW order c,ki,kj; HWC order ki,kj,c).
 * A row view [oh_begin, oh_end) narrows the pixels to that slab, N = (oh_end-oh_begin)*out_w: only its patches are
 * built (so only the input rows it needs are read; the whole call's workspace is the largest) and the GEMM stores
 * them at the slab's place (CHW: columns from oh_begin*out_w of each channel row; HWC: rows from that pixel). */
#include "tb_kernels.h"
#include "tb_gemm.h"

#define MR TB_GEMM_MR
#define NR TB_GEMM_NR

/* Write `count` consecutive patch-matrix columns starting at column n of one row (dk = the row's start in panel 0)
 * into B panels, in runs that stay inside a panel: src[i * stride] for each, or zeros when src is null. */
static void put_run(float *restrict dk, long ps, int n, int count, const float *restrict src, int stride)
{
    while (count > 0) {
        const int r = n % NR, len = tb_min(NR - r, count);
        float *restrict d = dk + (long)(n / NR) * ps + r;
        int i;
        if (src) {
            for (i = 0; i < len; ++i) d[i] = src[(long)i * stride];
            src += (long)len * stride;
        } else {
            for (i = 0; i < len; ++i) d[i] = 0.0f;
        }
        n += len;
        count -= len;
    }
}

/* Patches of one group (x = its first input channel) for the view's rows as B panels: element (k, n) at
 * (n/NR)*K*NR + k*NR + n%NR, n counted from the view's first pixel. */
static void im2col_packed(const tb_conv *p, const float *restrict x, int cg, float *restrict ws)
{
    const int K = cg * p->k_h * p->k_w, N = (p->oh_end - p->oh_begin) * p->out_w, npad = (N + NR - 1) / NR * NR;
    const long ps = (long)K * NR, in_plane = (long)p->in_h * p->in_w;
    int c, ki, kj, k = 0;
    for (c = 0; c < cg; ++c)
        for (ki = 0; ki < p->k_h; ++ki)
            for (kj = 0; kj < p->k_w; ++kj, ++k) {
                float *restrict dk = ws + (long)k * NR;
                const int off_h = ki * p->dil_h - p->pad_top, off_w = kj * p->dil_w - p->pad_left;
                int lo, hi, oh, n = 0;
                tb_valid_range(p->out_w, p->stride_w, off_w, p->in_w, &lo, &hi);
                for (oh = p->oh_begin; oh < p->oh_end; ++oh, n += p->out_w) {
                    const int ih = oh * p->stride_h + off_h;
                    if (ih < 0 || ih >= p->in_h || lo >= hi) {
                        put_run(dk, ps, n, p->out_w, 0, 0);
                        continue;
                    }
                    put_run(dk, ps, n, lo, 0, 0);
                    put_run(dk, ps, n + lo, hi - lo,
                            x + c * in_plane + (long)ih * p->in_w + (long)lo * p->stride_w + off_w, p->stride_w);
                    put_run(dk, ps, n + hi, p->out_w - hi, 0, 0);
                }
                put_run(dk, ps, N, npad - N, 0, 0);
            }
}

void tb_conv_im2col_gemm_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                             const float *restrict bias, float *restrict out, float *restrict ws)
{
    const int cg = p->in_c / p->groups, mg = p->out_c / p->groups, K = cg * p->k_h * p->k_w;
    const int N = p->out_h * p->out_w, mgpad = (mg + MR - 1) / MR * MR;
    const int n_view = (p->oh_end - p->oh_begin) * p->out_w;
    int g;
    if (n_view <= 0) return;
    for (g = 0; g < p->groups; ++g) {
        const int m0 = tb_max(p->oc_begin - g * mg, 0), m1 = tb_min(p->oc_end - g * mg, mg);
        tb_gemm_job job;
        if (m0 >= m1) continue;
        im2col_packed(p, in + (long)g * cg * p->in_h * p->in_w, cg, ws);
        job.m0 = m0; job.m1 = m1; job.n0 = 0; job.n1 = n_view; job.k = K;
        job.a = w + (long)g * mgpad * K; job.lda = K; job.a_packed = 1;
        job.b = ws; job.ldb = n_view; job.b_packed = 1;
        job.c = out + (long)g * mg * N + (long)p->oh_begin * p->out_w; job.ldc = N;
        job.accumulate = p->accumulate;
        job.bias_m = bias + g * mg; job.bias_n = 0;
        job.act = p->act; job.act_a = p->act_a; job.act_b = p->act_b;
        tb_gemm(&job, 0);
    }
}

/* Patches of one group (x = in + g*cg, pixel stride in_c) for the view's rows as A panels: element (n, k) at
 * (n/MR)*K*MR + k*MR + n%MR, n counted from the view's first pixel. */
static void im2row_packed(const tb_conv *p, const float *restrict x, int cg, float *restrict ws)
{
    const int K = p->k_h * p->k_w * cg, N = (p->oh_end - p->oh_begin) * p->out_w, npad = (N + MR - 1) / MR * MR;
    int oh, ow, n = 0, k;
    for (oh = p->oh_begin; oh < p->oh_end; ++oh)
        for (ow = 0; ow < p->out_w; ++ow, ++n) {
            float *restrict dn = ws + (long)(n / MR) * K * MR + n % MR;
            int ki, kj, c;
            for (ki = 0; ki < p->k_h; ++ki) {
                const int ih = oh * p->stride_h + ki * p->dil_h - p->pad_top;
                for (kj = 0; kj < p->k_w; ++kj) {
                    const int iw = ow * p->stride_w + kj * p->dil_w - p->pad_left;
                    float *restrict d = dn + (long)(ki * p->k_w + kj) * cg * MR;
                    if (ih < 0 || ih >= p->in_h || iw < 0 || iw >= p->in_w) {
                        for (c = 0; c < cg; ++c) d[c * MR] = 0.0f;
                    } else {
                        const float *restrict src = x + ((long)ih * p->in_w + iw) * p->in_c;
                        for (c = 0; c < cg; ++c) d[c * MR] = src[c];
                    }
                }
            }
        }
    for (; n < npad; ++n) {
        float *restrict dn = ws + (long)(n / MR) * K * MR + n % MR;
        for (k = 0; k < K; ++k) dn[k * MR] = 0.0f;
    }
}

void tb_conv_im2row_gemm_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                             const float *restrict bias, float *restrict out, float *restrict ws)
{
    const int cg = p->in_c / p->groups, mg = p->out_c / p->groups, K = cg * p->k_h * p->k_w;
    const int n_view = (p->oh_end - p->oh_begin) * p->out_w, mgpad = (mg + NR - 1) / NR * NR;
    int g;
    if (n_view <= 0) return;
    for (g = 0; g < p->groups; ++g) {
        const int n0 = tb_max(p->oc_begin - g * mg, 0), n1 = tb_min(p->oc_end - g * mg, mg);
        tb_gemm_job job;
        if (n0 >= n1) continue;
        im2row_packed(p, in + g * cg, cg, ws);
        job.m0 = 0; job.m1 = n_view; job.n0 = n0; job.n1 = n1; job.k = K;
        job.a = ws; job.lda = K; job.a_packed = 1;
        job.b = w + (long)g * mgpad * K; job.ldb = mg; job.b_packed = 1;
        job.c = out + (long)p->oh_begin * p->out_w * p->out_c + g * mg; job.ldc = p->out_c;
        job.accumulate = p->accumulate;
        job.bias_m = 0; job.bias_n = bias + g * mg;
        job.act = p->act; job.act_a = p->act_a; job.act_b = p->act_b;
        tb_gemm(&job, 0);
    }
}
