/* 1x1 convolution (stride 1, no padding) as one GEMM per group, reading the input in place: in CHW the input is
 * already the [cg][h*w] B operand, in HWC the [h*w][in_c] A operand (row stride in_c). The weights are pre-packed;
 * the workspace only holds the GEMM's packing of one cache block of the input. A row view [oh_begin, oh_end) is a
 * slab of pixels [oh_begin*w, oh_end*w): in CHW the slab of each channel's rows (B columns, same ldb), in HWC a
 * block of A rows; either way a smaller GEMM over the same operands, so the whole-call workspace suffices. */
#include "tb_kernels.h"
#include "tb_gemm.h"

#define MR TB_GEMM_MR
#define NR TB_GEMM_NR

void tb_conv_1x1_gemm_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                          const float *restrict bias, float *restrict out, float *restrict ws)
{
    const int cg = p->in_c / p->groups, mg = p->out_c / p->groups, N = p->out_h * p->out_w;
    const int mgpad = (mg + MR - 1) / MR * MR;
    const long first = (long)p->oh_begin * p->out_w; /* the slab's first pixel (in_w == out_w) */
    int g;
    for (g = 0; g < p->groups; ++g) {
        const int m0 = tb_max(p->oc_begin - g * mg, 0), m1 = tb_min(p->oc_end - g * mg, mg);
        tb_gemm_job job;
        if (m0 >= m1) continue;
        job.m0 = m0; job.m1 = m1; job.n0 = 0; job.n1 = (p->oh_end - p->oh_begin) * p->out_w; job.k = cg;
        job.a = w + (long)g * mgpad * cg; job.lda = cg; job.a_packed = 1;
        job.b = in + (long)g * cg * N + first; job.ldb = N; job.b_packed = 0;
        job.c = out + (long)g * mg * N + first; job.ldc = N;
        job.accumulate = p->accumulate;
        job.bias_m = bias + g * mg; job.bias_n = 0;
        job.act = p->act; job.act_a = p->act_a; job.act_b = p->act_b;
        tb_gemm(&job, ws);
    }
}

void tb_conv_1x1_gemm_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                          const float *restrict bias, float *restrict out, float *restrict ws)
{
    const int cg = p->in_c / p->groups, mg = p->out_c / p->groups;
    const int mgpad = (mg + NR - 1) / NR * NR;
    int g;
    for (g = 0; g < p->groups; ++g) {
        const int n0 = tb_max(p->oc_begin - g * mg, 0), n1 = tb_min(p->oc_end - g * mg, mg);
        tb_gemm_job job;
        if (n0 >= n1) continue;
        job.m0 = p->oh_begin * p->out_w; job.m1 = p->oh_end * p->out_w; job.n0 = n0; job.n1 = n1; job.k = cg;
        job.a = in + g * cg; job.lda = p->in_c; job.a_packed = 0;
        job.b = w + (long)g * mgpad * cg; job.ldb = mg; job.b_packed = 1;
        job.c = out + g * mg; job.ldc = p->out_ps ? p->out_ps : p->out_c; /* a concat slice's pixel stride */
        job.accumulate = p->accumulate;
        job.bias_m = 0; job.bias_n = bias + g * mg;
        job.act = p->act; job.act_a = p->act_a; job.act_b = p->act_b;
        tb_gemm(&job, ws);
    }
}
