/* Internal to the conv kernels (conv_im2col.c, conv_mec.c, conv_kn2row.c, conv_hcw.c, conv_direct.c): a tensor's
 * element strides in each layout, small writers into the GEMM's packed panel formats (tb_gemm.h), and the macro
 * that defines a family's per-layout entry points. Not part of the kernel API (tb_conv_families.h is). */
#ifndef TB_CONV_LAYOUT_H
#define TB_CONV_LAYOUT_H

#include "tb_kernels.h"
#include "tb_gemm.h"

enum { TB_LAYOUT_CHW = 0, TB_LAYOUT_HWC = 1, TB_LAYOUT_HCW = 2 };

/* Defines the workspace-taking tb_conv kernel `name` (declared in tb_conv.h or tb_conv_families.h) as a call of
 * `body`, a static function taking the kernel's arguments and then its input and output layouts (CHW, HWC or HCW):
 * the families that read and write any layout (conv_im2col.c, conv_mec.c) have one body and define an entry point
 * per layout pair with it, one line each. Write it at file scope without a semicolon. tasobuild/native/headers.py
 * recognises this form as a kernel definition. */
#define TB_CONV_LAYOUT_KERNEL(name, body, in_layout, out_layout)                                                   \
    void name(const tb_conv *p, const float *restrict in, const float *restrict w, const float *restrict bias,   \
              float *restrict out, float *restrict ws)                                                            \
    {                                                                                                             \
        body(p, in, w, bias, out, ws, TB_LAYOUT_##in_layout, TB_LAYOUT_##out_layout);                             \
    }

/* Element (c, h, w) of a (C, H, W) tensor lives at c*c + h*h + w*w in the given layout. */
typedef struct { long c, h, w; } tb_strides;

static inline tb_strides tb_layout_strides(int layout, int C, int H, int W)
{
    tb_strides s;
    switch (layout) {
    case TB_LAYOUT_HWC: s.c = 1; s.h = (long)W * C; s.w = C; break;
    case TB_LAYOUT_HCW: s.c = W; s.h = (long)C * W; s.w = 1; break;
    default: s.c = (long)H * W; s.h = W; s.w = 1; break;
    }
    return s;
}

/* Write `count` consecutive columns j.. of row k of a B-panel matrix (dk = row k's start in panel 0, ps = K*NR):
 * src[i * stride] for each, or zeros when src is null. Runs stay inside a panel so the inner loops are simple. */
static inline void tb_put_b_run(float *restrict dk, long ps, int j, int count, const float *restrict src, long stride)
{
    while (count > 0) {
        const int r = j % TB_GEMM_NR, len = tb_min(TB_GEMM_NR - r, count);
        float *restrict d = dk + (long)(j / TB_GEMM_NR) * ps + r;
        int i;
        if (src) {
            if (stride == 1)
                for (i = 0; i < len; ++i) d[i] = src[i];
            else
                for (i = 0; i < len; ++i) d[i] = src[(long)i * stride];
            src += (long)len * stride;
        } else {
            for (i = 0; i < len; ++i) d[i] = 0.0f;
        }
        j += len;
        count -= len;
    }
}

/* Write `count` consecutive rows j.. of column k of an A-panel matrix (dk = column k's start in panel 0,
 * ps = K*MR): src[i * stride] for each, or zeros when src is null. */
static inline void tb_put_a_run(float *restrict dk, long ps, int j, int count, const float *restrict src, long stride)
{
    float *restrict d = dk + (long)(j / TB_GEMM_MR) * ps;
    int r = j % TB_GEMM_MR, i;
    for (i = 0; i < count; ++i) {
        d[r] = src ? src[(long)i * stride] : 0.0f;
        if (++r == TB_GEMM_MR) {
            r = 0;
            d += ps;
        }
    }
}

/* orow[o] += wv * xrow[o * sw] for o in [0, n) (the direct kernels' inner loop; stride 1 gets its own loop so it
 * vectorises). */
static inline void tb_axpy_strided(float *restrict orow, const float *restrict xrow, int n, int sw, float wv)
{
    int o;
    if (sw == 1)
        for (o = 0; o < n; ++o) orow[o] += wv * xrow[o];
    else
        for (o = 0; o < n; ++o) orow[o] += wv * xrow[(long)o * sw];
}

/* A GEMM job with the conv's activation and accumulate flag, every other field zero. */
static inline tb_gemm_job tb_conv_job(const tb_conv *p)
{
    tb_gemm_job job;
    job.m0 = job.m1 = job.n0 = job.n1 = job.k = 0;
    job.a = 0; job.lda = 0; job.a_packed = 0;
    job.b = 0; job.ldb = 0; job.b_packed = 0;
    job.c = 0; job.ldc = 0;
    job.accumulate = p->accumulate;
    job.bias_m = 0; job.bias_n = 0;
    job.act = p->act; job.act_a = p->act_a; job.act_b = p->act_b;
    return job;
}

/* The output channel range [*m0, *m1) of group g (group-local indices); empty when the range misses the group. */
static inline int tb_group_range(const tb_conv *p, int g, int mg, int *m0, int *m1)
{
    *m0 = tb_max(p->oc_begin - g * mg, 0);
    *m1 = tb_min(p->oc_end - g * mg, mg);
    return *m0 < *m1;
}

#endif
