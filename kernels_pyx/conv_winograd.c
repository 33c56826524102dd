/* Winograd convolutions, CHW and HWC (see tb_winograd.h for the contract, tb_winograd_tf.h for the transforms).
 *
 * One algorithm for both layouts, which differ only in the strides of a channel and of a pixel. Per block of tiles
 * [t0, t0 + nb):
 *   1. input transform: V_xi[tile][c] = (BT d B)[xi] of every tile and input channel, row-major (channels padded
 *      to whole lanes) in the workspace;
 *   2. alpha^2 GEMMs over the input channels with the shared tb_gemm, Y_xi[tile][m] = V_xi . U_xi^T, the weights
 *      U_xi^T pre-packed at build time as the B operand: its 16-wide panels are loaded as vectors and reused across
 *      every tile of the block, which is what keeps deep layers with few tiles (weights >> activations) fast;
 *   3. output transform AT Y A of every tile and output channel, + bias, activation, clipped to the output edges.
 * The transforms run on `lanes` channels at a time, one vector of them (a zmm on AVX-512), and are inlined into
 * each kernel with its variant's constants (TB_WINO_INLINE). An HWC tile row inside the input with all `lanes`
 * channels live is transformed straight from the input; any other row is first gathered onto the stack (zeros
 * outside). The half-transformed tile sits in a scratch area at the start of the workspace (2 alpha^2 lanes floats).
 *
 * A row view [oh_begin, oh_end) runs only the tile rows that intersect it and stores only its rows. The input
 * transform reads only the input rows the view needs, zero beyond them as in the padding: a tile straddling the
 * view's edge then computes its rows outside the view from zeros (never stored), and those inside correctly (up to
 * rounding), since an output row depends only on the r input rows under it. */
#include "tb_kernels.h"
#include "tb_gemm.h"
#include "tb_winograd.h"
#include "tb_winograd_tf.h"

#define MR TB_GEMM_MR
#define NR TB_GEMM_NR
#define MAX_ROW 112 /* alpha * lanes: at most 7 * 16 */

/* The per-variant helpers are inlined into each kernel, so the variant's transforms (reached through constant
 * function pointers) are inlined too and every count (alpha, lanes) is a constant. */
#if defined(__GNUC__)
#define TB_WINO_INLINE static inline __attribute__((always_inline))
#else
#define TB_WINO_INLINE static
#endif

static long round_up(long x, long to) { return (x + to - 1) / to * to; }

/* Where element (c, y, x) of a (channels, h, w) tensor lives: c * chan + (y * w + x) * pixel. */
typedef struct {
    int w;
    long chan, pixel;
} wino_tensor;

TB_WINO_INLINE wino_tensor tensor_of(int hwc, int c, int h, int w)
{
    wino_tensor t;
    t.w = w;
    t.chan = hwc ? 1 : (long)h * w;
    t.pixel = hwc ? c : 1;
    return t;
}

/* The tile geometry and the workspace carving of one call. */
typedef struct {
    int alpha, m, lanes, tiles_w, tile0, tile1, block;
    int in_y0, in_y1; /* the input rows the view reads, clipped to the input; the others read as zero */
    long cpad, mpad;  /* in_c and out_c rounded up to whole lanes: the row lengths of V and Y */
} wino_plan;

TB_WINO_INLINE wino_plan plan_of(const tb_wino_variant *v, const tb_conv *p, int max_block)
{
    wino_plan q;
    q.alpha = v->alpha;
    q.m = v->m;
    q.lanes = v->lanes;
    q.tiles_w = (p->out_w + v->m - 1) / v->m;
    /* tiles [tile0, tile1): the tile rows that intersect the row view. The block size stays the whole call's. */
    q.tile0 = q.tiles_w * (p->oh_begin / v->m);
    q.tile1 = q.tiles_w * ((p->oh_end + v->m - 1) / v->m);
    q.block = tb_min(q.tiles_w * ((p->out_h + v->m - 1) / v->m), max_block);
    q.in_y0 = tb_max(p->oh_begin - p->pad_top, 0);
    q.in_y1 = tb_min(p->oh_end - 1 - p->pad_top + v->alpha - v->m + 1, p->in_h);
    q.cpad = round_up(p->in_c, v->lanes);
    q.mpad = round_up(p->out_c, v->lanes);
    return q;
}

/* One row of an input tile for `live` channels from c0 into d[j * lanes + l] (zero outside the input rows the
 * view reads, outside the input and past the live channels). */
TB_WINO_INLINE void gather_row(const wino_plan *q, const tb_conv *p, const float *restrict in, wino_tensor ti,
                               int c0, int live, int y, int x0, float *restrict d)
{
    const int L = q->lanes;
    int j, l;
    if (y < q->in_y0 || y >= q->in_y1) {
        for (l = 0; l < q->alpha * L; ++l) d[l] = 0.0f;
        return;
    }
    for (j = 0; j < q->alpha; ++j) {
        const int x = x0 + j;
        const float *restrict src = in + (long)c0 * ti.chan + ((long)y * ti.w + x) * ti.pixel;
        float *restrict dj = d + j * L;
        l = 0;
        if (x >= 0 && x < p->in_w) {
            if (ti.chan == 1)
                for (; l < live; ++l) dj[l] = src[l];
            else
                for (; l < live; ++l) dj[l] = src[l * ti.chan];
        }
        for (; l < L; ++l) dj[l] = 0.0f;
    }
}

/* V[tile][xi][cpad] for tiles [t0, t0 + nb): one tile's transform is one contiguous run. */
TB_WINO_INLINE void input_transform(const tb_wino_variant *v, const wino_plan *q, const tb_conv *p,
                                    const float *restrict in, wino_tensor ti, int t0, int nb, float *restrict vbuf,
                                    float *restrict r)
{
    const int a = q->alpha, L = q->lanes;
    float d[MAX_ROW];
    int t, c0, i;
    for (t = 0; t < nb; ++t) {
        const int y0 = ((t0 + t) / q->tiles_w) * q->m - p->pad_top;
        const int x0 = ((t0 + t) % q->tiles_w) * q->m - p->pad_left;
        /* HWC rows of this tile read in place: all alpha pixels inside the input */
        const int in_place_x = ti.chan == 1 && x0 >= 0 && x0 + a <= p->in_w;
        for (c0 = 0; c0 < q->cpad; c0 += L) {
            const int live = tb_min(L, p->in_c - c0);
            for (i = 0; i < a; ++i) {
                const int y = y0 + i;
                if (in_place_x && live == L && y >= q->in_y0 && y < q->in_y1) {
                    tb_wino_in_row(v->id, in + c0 + ((long)y * ti.w + x0) * ti.pixel, ti.pixel, r + i * a * L);
                } else {
                    gather_row(q, p, in, ti, c0, live, y, x0, d);
                    tb_wino_in_row(v->id, d, L, r + i * a * L);
                }
            }
            tb_wino_in_col(v->id, r, vbuf + (long)t * a * a * q->cpad + c0, q->cpad);
        }
    }
}

/* Bias + activation on the first n lanes of `pixels` runs of `lanes` results (the biases of those n channels; n is
 * short at the last channel), one loop per kind so it vectorises. */
TB_WINO_INLINE void bias_act_tile(const tb_conv *p, float *restrict o, int pixels, int lanes,
                                  const float *restrict bias, int n)
{
    int k, l;
    for (k = 0; k < pixels; ++k) {
        float *restrict ok = o + k * lanes;
        switch (p->act) {
        case TB_ACT_RELU: for (l = 0; l < n; ++l) { float x = ok[l] + bias[l]; ok[l] = x > 0.0f ? x : 0.0f; } break;
        default: tb_bias_act_vec(ok, n, bias, p->act, p->act_a, p->act_b); break;
        }
    }
}

#ifdef TB_WV_VECTORS
typedef int tb_wi16 __attribute__((vector_size(64)));
typedef int tb_wi8 __attribute__((vector_size(32)));
#endif

/* dst[l] = act(src[l] + bias[l]) for the L (8 or 16) lanes of one output pixel. Relu and none as vectors, with
 * the bits of the scalar code (relu keeps x where x > 0, else +0: x & (x > 0)); the others through
 * tb_bias_act_vec. */
TB_WINO_INLINE void bias_act_store(const tb_conv *p, const float *restrict src, const float *restrict bias,
                                   float *restrict dst, int L)
{
    int l;
#ifdef TB_WV_VECTORS
    if (p->act == TB_ACT_RELU || p->act == TB_ACT_NONE) {
        const int relu = p->act == TB_ACT_RELU;
        if (L == 16) {
            tb_wv16 x = tb_wv16_ld(src) + tb_wv16_ld(bias);
            if (relu) x = (tb_wv16)((tb_wi16)x & (x > 0.0f));
            tb_wv16_st(dst, x);
        } else
            for (l = 0; l < L; l += 8) {
                tb_wv8 x = tb_wv8_ld(src + l) + tb_wv8_ld(bias + l);
                if (relu) x = (tb_wv8)((tb_wi8)x & (x > 0.0f));
                tb_wv8_st(dst + l, x);
            }
        return;
    }
#endif
    for (l = 0; l < L; ++l) dst[l] = src[l];
    tb_bias_act_vec(dst, L, bias, p->act, p->act_a, p->act_b);
}

/* Out channels [oc_begin, oc_end) x rows [oh_begin, oh_end) of tiles [t0, t0 + nb) from Y[tile][xi][mpad], whose
 * lane chunks [n0, n1) cover the channel range. */
TB_WINO_INLINE void output_transform(const tb_wino_variant *v, const wino_plan *q, const tb_conv *p,
                                     const float *restrict bias, float *restrict out, wino_tensor to, int t0,
                                     int nb, const float *restrict ybuf, int n0, int n1, float *restrict r)
{
    const int mo = q->m, L = q->lanes;
    float *restrict o = r + mo * q->alpha * L;
    int t, m0, i, j, k;
    for (t = 0; t < nb; ++t) {
        const int oy0 = ((t0 + t) / q->tiles_w) * mo, ox0 = ((t0 + t) % q->tiles_w) * mo;
        /* the tile's rows inside the view */
        const int row0 = tb_max(p->oh_begin - oy0, 0), rows = tb_min(mo, p->oh_end - oy0);
        const int cols = tb_min(mo, p->out_w - ox0);
        for (m0 = n0; m0 < n1; m0 += L) {
            const int lo = tb_max(m0, p->oc_begin), n = tb_min(m0 + L, p->oc_end) - lo;
            tb_wino_out_col(v->id, ybuf + (long)t * q->alpha * q->alpha * q->mpad + m0, q->mpad, r);
            tb_wino_out_row(v->id, r, o);
            if (n == L && !p->accumulate && to.chan == 1) { /* HWC, every lane: whole vectors */
                for (i = row0; i < rows; ++i)
                    for (j = 0; j < cols; ++j)
                        bias_act_store(p, o + (i * mo + j) * L, bias + lo,
                                       out + lo + ((long)(oy0 + i) * to.w + ox0 + j) * to.pixel, L);
                continue;
            }
            if (!p->accumulate) bias_act_tile(p, o + (lo - m0), mo * mo, L, bias + lo, n);
            for (i = row0; i < rows; ++i)
                for (j = 0; j < cols; ++j) {
                    const float *restrict src = o + (i * mo + j) * L + (lo - m0);
                    float *restrict dst = out + lo * to.chan + ((long)(oy0 + i) * to.w + ox0 + j) * to.pixel;
                    if (p->accumulate)
                        for (k = 0; k < n; ++k) dst[k * to.chan] += src[k];
                    else if (to.chan == 1)
                        for (k = 0; k < n; ++k) dst[k] = src[k];
                    else
                        for (k = 0; k < n; ++k) dst[k * to.chan] = src[k];
                }
        }
    }
}

TB_WINO_INLINE void winograd(const tb_wino_variant *v, int max_block, const tb_conv *p, wino_tensor ti,
                             wino_tensor to, const float *restrict in, const float *restrict u,
                             const float *restrict bias, float *restrict out, float *restrict ws)
{
    const wino_plan q = plan_of(v, p, max_block);
    const int aa = q.alpha * q.alpha;
    const long u_size = (long)p->in_c * round_up(p->out_c, NR);
    /* whole lane chunks around the channel range: within the B panels' zero padding, so the GEMM fills them */
    const int n0 = p->oc_begin / q.lanes * q.lanes, n1 = (int)round_up(p->oc_end, q.lanes);
    float *restrict scratch = ws, *restrict vbuf = ws + 2 * aa * q.lanes;
    float *restrict ybuf = vbuf + aa * q.block * q.cpad;
    float *restrict gemm_ws = ybuf + aa * q.block * q.mpad;
    int t0, xi;
    if (p->oc_begin >= p->oc_end || p->oh_begin >= p->oh_end) return;
    for (t0 = q.tile0; t0 < q.tile1; t0 += q.block) {
        const int nb = tb_min(q.block, q.tile1 - t0);
        input_transform(v, &q, p, in, ti, t0, nb, vbuf, scratch);
        for (xi = 0; xi < aa; ++xi) {
            tb_gemm_job job;
            job.m0 = 0; job.m1 = nb; job.n0 = n0; job.n1 = n1; job.k = p->in_c;
            job.a = vbuf + xi * q.cpad; job.lda = aa * (int)q.cpad; job.a_packed = 0;
            job.b = u + xi * u_size; job.ldb = p->out_c; job.b_packed = 1;
            job.c = ybuf + xi * q.mpad; job.ldc = aa * (int)q.mpad;
            job.accumulate = 0; job.bias_m = 0; job.bias_n = 0;
            job.act = 0; job.act_a = 0.0f; job.act_b = 0.0f;
            tb_gemm(&job, gemm_ws);
        }
        output_transform(v, &q, p, bias, out, to, t0, nb, ybuf, n0, n1, scratch);
    }
}

TB_WINO_INLINE void winograd_layout(const tb_wino_variant *v, int max_block, int hwc, const tb_conv *p,
                                    const float *restrict in, const float *restrict u, const float *restrict bias,
                                    float *restrict out, float *restrict ws)
{
    const int out_pixel = hwc && p->out_ps ? p->out_ps : p->out_c; /* HWC: a concat slice's pixel stride */
    winograd(v, max_block, p, tensor_of(hwc, p->in_c, p->in_h, p->in_w), tensor_of(hwc, out_pixel, p->out_h, p->out_w),
             in, u, bias, out, ws);
}

/* Written out (not macro-generated): tasobuild/native.py finds kernels by their definitions. */
void tb_conv_winograd_f2x2_3x3_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f2x2_3x3, TB_WINO_BLOCK, 0, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f2x2_3x3_lowmem_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f2x2_3x3, TB_WINO_LOWMEM_BLOCK, 0, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f3x3_3x3_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f3x3_3x3, TB_WINO_BLOCK, 0, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f3x3_3x3_lowmem_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f3x3_3x3, TB_WINO_LOWMEM_BLOCK, 0, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f4x4_3x3_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f4x4_3x3, TB_WINO_BLOCK, 0, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f4x4_3x3_lowmem_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f4x4_3x3, TB_WINO_LOWMEM_BLOCK, 0, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f2x2_5x5_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f2x2_5x5, TB_WINO_BLOCK, 0, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f2x2_5x5_lowmem_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f2x2_5x5, TB_WINO_LOWMEM_BLOCK, 0, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f3x3_5x5_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f3x3_5x5, TB_WINO_BLOCK, 0, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f3x3_5x5_lowmem_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f3x3_5x5, TB_WINO_LOWMEM_BLOCK, 0, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f2x2_3x3_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f2x2_3x3, TB_WINO_BLOCK, 1, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f2x2_3x3_lowmem_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f2x2_3x3, TB_WINO_LOWMEM_BLOCK, 1, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f3x3_3x3_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f3x3_3x3, TB_WINO_BLOCK, 1, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f3x3_3x3_lowmem_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f3x3_3x3, TB_WINO_LOWMEM_BLOCK, 1, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f4x4_3x3_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f4x4_3x3, TB_WINO_BLOCK, 1, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f4x4_3x3_lowmem_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f4x4_3x3, TB_WINO_LOWMEM_BLOCK, 1, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f2x2_5x5_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f2x2_5x5, TB_WINO_BLOCK, 1, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f2x2_5x5_lowmem_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f2x2_5x5, TB_WINO_LOWMEM_BLOCK, 1, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f3x3_5x5_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f3x3_5x5, TB_WINO_BLOCK, 1, p, in, w, bias, out, ws);
}

void tb_conv_winograd_f3x3_5x5_lowmem_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws)
{
    winograd_layout(&tb_wino_f3x3_5x5, TB_WINO_LOWMEM_BLOCK, 1, p, in, w, bias, out, ws);
}
