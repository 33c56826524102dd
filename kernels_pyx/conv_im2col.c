/* im2col / im2row + GEMM between any input and output layout, in two variants (triNNity's "copy" and "scan"):
 *   copy: the patch matrix of all out_h*out_w pixels is built once per group (big workspace, one large GEMM);
 *   scan: it is built and multiplied one block of TB_SCAN_PIXELS output pixels at a time (small workspace).
 * The patch matrix is written straight into the GEMM's packed panel format (tb_gemm.h), so the GEMM reads both
 * operands in place. The output layout picks the GEMM operand order:
 *   out CHW / HCW: out_g[mg][pixels] = W_g[mg][K] . patches[K][pixels]   (patches as B panels, k = c, ki, kj),
 *   out HWC:       out_g[pixels][mg] = patches[pixels][K] . W_g^T[K][mg] (patches as A panels, k = ki, kj, c),
 * so a CHW-in / HWC-out primitive does the layout change for free inside the convolution. HCW output is not one
 * matrix over pixels (rows of different oh are M*out_w apart), so its GEMM is issued per output row of the block.
 * The patch writers read any input layout through its strides (tb_conv_layout.h).
 * A row view [oh_begin, oh_end) is the pixel range [oh_begin*out_w, oh_end*out_w): blocks run over it only, so
 * only the input rows it needs are read and a block is never larger than in the whole call (same workspace). */
#include "tb_kernels.h"
#include "tb_gemm.h"
#include "tb_conv_layout.h"
#include "tb_conv_families.h"
#ifdef __AVX512F__
#include <immintrin.h>
#endif

#define MR TB_GEMM_MR
#define NR TB_GEMM_NR

/* tb_put_a_run (A panels) or tb_put_b_run (B panels): the two patch writers share their walk over pixels. */
static inline void put_run(int a_panels, float *restrict dk, long ps, int j, int count, const float *restrict src,
                           long stride)
{
    if (a_panels)
        tb_put_a_run(dk, ps, j, count, src, stride);
    else
        tb_put_b_run(dk, ps, j, count, src, stride);
}

/* One patch-matrix row (B panels) or column (A panels) over pixels [n0, n1): input channel c's tap at offset
 * (off_h, off_w) for each pixel (xc = x + c*s.c; lo, hi = tb_valid_range of off_w), zero where it falls in the
 * padding, written in runs along output rows (dk, ps as for tb_put_b_run / tb_put_a_run). */
static inline void put_tap(const tb_conv *p, const float *restrict xc, tb_strides s, int off_h, int off_w, int lo,
                           int hi, int n0, int n1, float *restrict dk, long ps, int a_panels)
{
    const int OW = p->out_w, nb = n1 - n0;
    int oh = n0 / OW, ow = n0 % OW, j = 0; /* pixel n0 + j is (oh, ow): one division per call, none per row */
    while (j < nb) {
        const int len = tb_min(OW - ow, nb - j), ih = oh * p->stride_h + off_h;
        const int a = tb_min(tb_max(lo, ow), ow + len), b = tb_max(tb_min(hi, ow + len), a);
        if (ih < 0 || ih >= p->in_h) {
            put_run(a_panels, dk, ps, j, len, 0, 0);
        } else {
            put_run(a_panels, dk, ps, j, a - ow, 0, 0);
            if (b > a)
                put_run(a_panels, dk, ps, j + a - ow, b - a, xc + ih * s.h + ((long)a * p->stride_w + off_w) * s.w,
                        (long)p->stride_w * s.w);
            put_run(a_panels, dk, ps, j + b - ow, ow + len - b, 0, 0);
        }
        j += len;
        ++oh;
        ow = 0;
    }
}

/* Patches of pixels [n0, n1) of one group (x = its first input channel) as B panels: (k, j) at
 * (j/NR)*K*NR + k*NR + j%NR, k = (c, ki, kj), j = n - n0; columns up to the next multiple of NR are zero. */
static void pack_patches_b(const tb_conv *p, const float *restrict x, tb_strides s, int cg, int n0, int n1,
                           float *restrict ws)
{
    const int K = cg * p->k_h * p->k_w, nb = n1 - n0, npad = (nb + NR - 1) / NR * NR, OW = p->out_w;
    const long ps = (long)K * NR;
    int c, ki, kj, k = 0;
    for (c = 0; c < cg; ++c)
        for (ki = 0; ki < p->k_h; ++ki)
            for (kj = 0; kj < p->k_w; ++kj, ++k) {
                float *restrict dk = ws + (long)k * NR;
                const int off_h = ki * p->dil_h - p->pad_top, off_w = kj * p->dil_w - p->pad_left;
                int lo, hi;
                tb_valid_range(OW, p->stride_w, off_w, p->in_w, &lo, &hi);
                put_tap(p, x + c * s.c, s, off_h, off_w, lo, hi, n0, n1, dk, ps, 0);
                tb_put_b_run(dk, ps, nb, npad - nb, 0, 0);
            }
}

/* pack_patches_a for an input whose rows are contiguous (CHW, HCW: s.w == 1), one MR-pixel panel at a time: each
 * panel's K x MR floats are written in order, so the writes stay in a few cache lines, where a pass per tap over
 * all the block's pixels (put_tap) would revisit every panel K times (a 3-channel stem's 7x7 taps: 147 passes over
 * a 7 MiB patch matrix). A panel whose pixels share an output row and whose taps all fall inside the input (most of
 * them) reads each tap's MR values from one row: on AVX-512 one masked load, one permute, one masked store;
 * elsewhere each value is checked against the padding. Same values either way, so the same GEMM bits. */
static void pack_patches_a_panels(const tb_conv *p, const float *restrict x, tb_strides s, int cg, int n0, int n1,
                                  float *restrict ws)
{
    const int taps = p->k_h * p->k_w, K = taps * cg, nb = n1 - n0, OW = p->out_w, sw = p->stride_w;
    const int span_w = (p->k_w - 1) * p->dil_w; /* a tap row's reach past its first column */
#ifdef __AVX512F__
    const int vec = sw * (MR - 1) < 16; /* a panel's MR values of one tap lie in one 16-float load */
    const __m512i idx = _mm512_setr_epi32(0, sw, 2 * sw, 3 * sw, 4 * sw, 5 * sw, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __mmask16 load_mask = (__mmask16)(vec ? (1u << (sw * (MR - 1) + 1)) - 1u : 0u);
    const __mmask16 store_mask = (__mmask16)((1u << MR) - 1u);
#endif
    int j0;
    for (j0 = 0; j0 < nb; j0 += MR) {
        float *restrict d = ws + (long)j0 * K; /* panel j0 / MR: (k, r) at k*MR + r */
        const int oh = (n0 + j0) / OW, ow = (n0 + j0) % OW;
        const int iw0 = ow * sw - p->pad_left, ih0 = oh * p->stride_h - p->pad_top;
        const int inside = j0 + MR <= nb && ow + MR <= OW && iw0 >= 0 && iw0 + sw * (MR - 1) + span_w < p->in_w &&
                           ih0 >= 0 && ih0 + (p->k_h - 1) * p->dil_h < p->in_h;
        int ki, kj, c, r;
        if (inside) {
            for (c = 0; c < cg; ++c)
                for (ki = 0; ki < p->k_h; ++ki) {
                    const float *restrict row = x + c * s.c + (long)(ih0 + ki * p->dil_h) * s.h + iw0;
                    float *restrict dk = d + (long)(ki * p->k_w * cg + c) * MR; /* tap (ki, 0), channel c */
                    for (kj = 0; kj < p->k_w; ++kj, row += p->dil_w, dk += cg * MR) {
#ifdef __AVX512F__
                        if (vec) { /* a whole load where 16 floats stay inside the input row */
                            const __m512 v = iw0 + kj * p->dil_w + 16 <= p->in_w ? _mm512_loadu_ps(row)
                                                                                 : _mm512_maskz_loadu_ps(load_mask, row);
                            _mm512_mask_storeu_ps(dk, store_mask, _mm512_permutexvar_ps(idx, v));
                            continue;
                        }
#endif
                        for (r = 0; r < MR; ++r) dk[r] = row[(long)r * sw];
                    }
                }
            continue;
        }
        for (r = 0; r < MR; ++r) { /* an edge panel: each pixel on its own, zeros in the padding and past nb */
            const int n = n0 + j0 + r, ohr = n / OW, owr = n % OW;
            for (ki = 0; ki < p->k_h; ++ki) {
                const int ih = ohr * p->stride_h + ki * p->dil_h - p->pad_top;
                for (kj = 0; kj < p->k_w; ++kj) {
                    const int iw = owr * sw + kj * p->dil_w - p->pad_left;
                    const int valid = j0 + r < nb && ih >= 0 && ih < p->in_h && iw >= 0 && iw < p->in_w;
                    float *restrict dk = d + (long)(ki * p->k_w + kj) * cg * MR + r;
                    for (c = 0; c < cg; ++c) dk[c * MR] = valid ? x[c * s.c + (long)ih * s.h + iw] : 0.0f;
                }
            }
        }
    }
}

/* Patches of pixels [n0, n1) of one group as A panels: (j, k) at (j/MR)*K*MR + k*MR + j%MR, k = (ki, kj, c);
 * rows up to the next multiple of MR are zero. Channel-contiguous inputs (HWC) are read pixel by pixel, the others
 * tap by tap along output rows, so the reads stay sequential either way. */
static void pack_patches_a(const tb_conv *p, const float *restrict x, tb_strides s, int cg, int n0, int n1,
                           float *restrict ws)
{
    const int taps = p->k_h * p->k_w, K = taps * cg, nb = n1 - n0, npad = (nb + MR - 1) / MR * MR, OW = p->out_w;
    const long ps = (long)K * MR;
    int j, k;
    if (s.c == 1) {
        for (j = 0; j < nb; ++j) {
            const int oh = (n0 + j) / OW, ow = (n0 + j) % OW;
            float *restrict dn = ws + (long)(j / MR) * ps + j % MR;
            int ki, kj, c;
            for (ki = 0; ki < p->k_h; ++ki) {
                const int ih = oh * p->stride_h + ki * p->dil_h - p->pad_top;
                for (kj = 0; kj < p->k_w; ++kj) {
                    const int iw = ow * p->stride_w + kj * p->dil_w - p->pad_left;
                    float *restrict d = dn + (long)(ki * p->k_w + kj) * cg * MR;
                    if (ih < 0 || ih >= p->in_h || iw < 0 || iw >= p->in_w) {
                        for (c = 0; c < cg; ++c) d[c * MR] = 0.0f;
                    } else {
                        const float *restrict src = x + ih * s.h + iw * s.w;
                        for (c = 0; c < cg; ++c) d[c * MR] = src[c];
                    }
                }
            }
        }
    } else if (s.w == 1) {
        pack_patches_a_panels(p, x, s, cg, n0, n1, ws);
        return; /* the panels it writes include the zero rows past nb */
    } else {
        int ki, kj, c;
        for (ki = 0; ki < p->k_h; ++ki)
            for (kj = 0; kj < p->k_w; ++kj) {
                const int off_h = ki * p->dil_h - p->pad_top, off_w = kj * p->dil_w - p->pad_left;
                int lo, hi;
                tb_valid_range(OW, p->stride_w, off_w, p->in_w, &lo, &hi);
                for (c = 0; c < cg; ++c)
                    put_tap(p, x + c * s.c, s, off_h, off_w, lo, hi, n0, n1,
                            ws + (long)((ki * p->k_w + kj) * cg + c) * MR, ps, 1);
            }
    }
    for (j = nb; j < npad; ++j) {
        float *restrict dn = ws + (long)(j / MR) * ps + j % MR;
        for (k = 0; k < K; ++k) dn[(long)k * MR] = 0.0f;
    }
}

/* The convolution of the view's pixels, `block` output pixels at a time (block >= out_h*out_w: the copy
 * variant). */
static void im2col_any(const tb_conv *p, const float *restrict in, const float *restrict w,
                       const float *restrict bias, float *restrict out, float *restrict ws, int in_layout,
                       int out_layout, int block)
{
    const int cg = p->in_c / p->groups, mg = p->out_c / p->groups, K = cg * p->k_h * p->k_w;
    const int n_end = p->oh_end * p->out_w, OW = p->out_w; /* the view's pixels: [oh_begin*OW, n_end) */
    const tb_strides s = tb_layout_strides(in_layout, p->in_c, p->in_h, p->in_w);
    const tb_strides o = tb_layout_strides(out_layout, p->out_c, p->out_h, p->out_w);
    const int rows = out_layout == TB_LAYOUT_HWC; /* patches as A panels, output transposed */
    const int mgpad = rows ? (mg + NR - 1) / NR * NR : (mg + MR - 1) / MR * MR;
    int g, n0;
    for (g = 0; g < p->groups; ++g) {
        const float *x = in + (long)g * cg * s.c;
        const float *wg = w + (long)g * mgpad * K;
        int m0, m1;
        if (!tb_group_range(p, g, mg, &m0, &m1)) continue;
        for (n0 = p->oh_begin * OW; n0 < n_end; n0 += block) {
            const int n1 = tb_min(n_end, n0 + block);
            tb_gemm_job job = tb_conv_job(p);
            job.k = K;
            if (rows) {
                pack_patches_a(p, x, s, cg, n0, n1, ws);
                job.m0 = 0; job.m1 = n1 - n0; job.n0 = m0; job.n1 = m1;
                job.a = ws; job.lda = K; job.a_packed = 1;
                job.b = wg; job.ldb = mg; job.b_packed = 1;
                job.ldc = p->out_ps ? p->out_ps : (int)o.w; /* a concat slice's pixel stride */
                job.c = out + (long)n0 * job.ldc + (long)g * mg;
                job.bias_n = bias + g * mg;
                tb_gemm(&job, 0);
                continue;
            }
            pack_patches_b(p, x, s, cg, n0, n1, ws);
            job.m0 = m0; job.m1 = m1;
            job.a = wg; job.lda = K; job.a_packed = 1;
            job.b = ws; job.ldb = n1 - n0; job.b_packed = 1;
            job.bias_m = bias + g * mg;
            job.ldc = (int)o.c;
            if (o.h == OW) { /* CHW: the block's pixels are contiguous */
                job.n0 = 0; job.n1 = n1 - n0;
                job.c = out + (long)g * mg * o.c + n0;
                tb_gemm(&job, 0);
            } else { /* HCW: one GEMM per output row the block touches; c is offset so column j lands at ow */
                int n = n0;
                while (n < n1) {
                    const int oh = n / OW, ow = n % OW, len = tb_min(OW - ow, n1 - n);
                    job.n0 = n - n0; job.n1 = n - n0 + len;
                    job.c = out + (long)g * mg * o.c + oh * o.h + ow - (n - n0);
                    tb_gemm(&job, 0);
                    n += len;
                }
            }
        }
    }
}

/* Copy: one block of all the call's pixels. */
static void im2col_copy(const tb_conv *p, const float *restrict in, const float *restrict w,
                        const float *restrict bias, float *restrict out, float *restrict ws, int in_layout,
                        int out_layout)
{
    im2col_any(p, in, w, bias, out, ws, in_layout, out_layout, p->out_h * p->out_w);
}

/* Scan: blocks of TB_SCAN_PIXELS pixels. */
static void im2col_scan(const tb_conv *p, const float *restrict in, const float *restrict w,
                        const float *restrict bias, float *restrict out, float *restrict ws, int in_layout,
                        int out_layout)
{
    im2col_any(p, in, w, bias, out, ws, in_layout, out_layout, TB_SCAN_PIXELS);
}

/* The exported kernels: every (input layout, output layout) pair of each variant. Output CHW or HCW is im2col,
 * output HWC im2row. */
TB_CONV_LAYOUT_KERNEL(tb_conv_im2col_gemm_chw, im2col_copy, CHW, CHW)
TB_CONV_LAYOUT_KERNEL(tb_conv_im2col_gemm_hwc_to_chw, im2col_copy, HWC, CHW)
TB_CONV_LAYOUT_KERNEL(tb_conv_im2col_gemm_hcw_to_chw, im2col_copy, HCW, CHW)
TB_CONV_LAYOUT_KERNEL(tb_conv_im2col_gemm_hcw, im2col_copy, HCW, HCW)
TB_CONV_LAYOUT_KERNEL(tb_conv_im2col_gemm_chw_to_hcw, im2col_copy, CHW, HCW)
TB_CONV_LAYOUT_KERNEL(tb_conv_im2col_gemm_hwc_to_hcw, im2col_copy, HWC, HCW)
TB_CONV_LAYOUT_KERNEL(tb_conv_im2row_gemm_hwc, im2col_copy, HWC, HWC)
TB_CONV_LAYOUT_KERNEL(tb_conv_im2row_gemm_chw_to_hwc, im2col_copy, CHW, HWC)
TB_CONV_LAYOUT_KERNEL(tb_conv_im2row_gemm_hcw_to_hwc, im2col_copy, HCW, HWC)

TB_CONV_LAYOUT_KERNEL(tb_conv_im2col_scan_chw, im2col_scan, CHW, CHW)
TB_CONV_LAYOUT_KERNEL(tb_conv_im2col_scan_hwc_to_chw, im2col_scan, HWC, CHW)
TB_CONV_LAYOUT_KERNEL(tb_conv_im2col_scan_hcw_to_chw, im2col_scan, HCW, CHW)
TB_CONV_LAYOUT_KERNEL(tb_conv_im2col_scan_hcw, im2col_scan, HCW, HCW)
TB_CONV_LAYOUT_KERNEL(tb_conv_im2col_scan_chw_to_hcw, im2col_scan, CHW, HCW)
TB_CONV_LAYOUT_KERNEL(tb_conv_im2col_scan_hwc_to_hcw, im2col_scan, HWC, HCW)
TB_CONV_LAYOUT_KERNEL(tb_conv_im2row_scan_hwc, im2col_scan, HWC, HWC)
TB_CONV_LAYOUT_KERNEL(tb_conv_im2row_scan_chw_to_hwc, im2col_scan, CHW, HWC)
TB_CONV_LAYOUT_KERNEL(tb_conv_im2row_scan_hcw_to_hwc, im2col_scan, HCW, HWC)
