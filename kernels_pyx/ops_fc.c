/* Fully connected layer on vectors. */
#include "tb_kernels.h"
#include "ops_act.h"

#define TB_FC_PANEL 16
#define TB_FC_STREAMS 4

/* out = act(W in + b). The weights come in panels of TB_FC_PANEL outputs (the last one narrower), each [in_n][its
 * outputs], one after another (packed at build time). A large layer is bound by reading its weights (VGG-16's fc6
 * is 411 MB): four panels are read side by side, four sequential streams the hardware prefetchers run ahead of
 * (rows of the transposed matrix, a page apart, each read for eight values at a time, they did not). Each output
 * adds its terms in order k = 0, 1, ...; the four panels' sums are the independent chains that keep the
 * multiply-adds busy. */
void tb_fc_gemv(const tb_fc *p, const float *restrict in, const float *restrict wt, const float *restrict bias,
                float *restrict out)
{
    const int N = p->out_n, K = p->in_n;
    const int whole = N / (TB_FC_PANEL * TB_FC_STREAMS) * (TB_FC_PANEL * TB_FC_STREAMS);
    int n0, k, j, q;
    for (n0 = 0; n0 < whole; n0 += TB_FC_PANEL * TB_FC_STREAMS) { /* four whole panels */
        const float *restrict w = wt + (long)n0 * K;
        float sum[TB_FC_STREAMS][TB_FC_PANEL] = {{0}};
        for (k = 0; k < K; ++k)
            for (q = 0; q < TB_FC_STREAMS; ++q)
                for (j = 0; j < TB_FC_PANEL; ++j)
                    sum[q][j] += w[(long)q * K * TB_FC_PANEL + (long)k * TB_FC_PANEL + j] * in[k];
        for (q = 0; q < TB_FC_STREAMS; ++q)
            for (j = 0; j < TB_FC_PANEL; ++j) out[n0 + q * TB_FC_PANEL + j] = sum[q][j];
    }
    for (; n0 < N; n0 += TB_FC_PANEL) { /* the rest, a panel at a time */
        const int width = N - n0 < TB_FC_PANEL ? N - n0 : TB_FC_PANEL;
        const float *restrict w = wt + (long)n0 * K;
        float sum[TB_FC_PANEL] = {0};
        for (k = 0; k < K; ++k)
            for (j = 0; j < width; ++j) sum[j] += w[(long)k * width + j] * in[k];
        for (j = 0; j < width; ++j) out[n0 + j] = sum[j];
    }
    for (j = 0; j < N; ++j) out[j] += bias[j];
    tb_ops_activate(out, N, p->act, p->act_a, p->act_b);
}
