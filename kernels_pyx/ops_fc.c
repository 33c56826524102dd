/* Fully connected layer on vectors. */
#include "tb_kernels.h"
#include "ops_act.h"

/* out = act(W in + b), with wt = W^T ([in_n][out_n], transposed at build time): an axpy per input element, whose
 * inner loop over contiguous outputs vectorises without reassociating any sum. */
void tb_fc_gemv(const tb_fc *p, const float *restrict in, const float *restrict wt, const float *restrict bias,
                float *restrict out)
{
    const int N = p->out_n;
    for (int n = 0; n < N; ++n) out[n] = 0.0f;
    for (int k = 0; k < p->in_n; ++k) {
        const float x = in[k];
        const float *row = wt + (long)k * N;
        for (int n = 0; n < N; ++n) out[n] += row[n] * x;
    }
    for (int n = 0; n < N; ++n) out[n] += bias[n];
    tb_ops_activate(out, N, p->act, p->act_a, p->act_b);
}
