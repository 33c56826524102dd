/* Softmax over a flat vector (the shifted exponentials keep expf in range). */
#include "tb_kernels.h"
#include "ops_act.h"

void tb_softmax(const tb_flat *p, const float *restrict in, float *restrict out)
{
    const int n = p->n;
    float m = in[0], sum = 0.0f;
    for (int i = 1; i < n; ++i) m = in[i] > m ? in[i] : m;
    for (int i = 0; i < n; ++i) {
        out[i] = expf(in[i] - m);
        sum += out[i];
    }
    for (int i = 0; i < n; ++i) out[i] /= sum;
    tb_ops_activate(out, n, p->act, p->act_a, p->act_b);
}
