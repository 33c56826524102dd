/* Fully connected layer on vectors. */
#include "tb_kernels.h"
#include "ops_act.h"

/* out = act(W in + b), with wt = W^T ([in_n][out_n], transposed at build time): axpys over contiguous outputs, which
 * vectorise without reassociating any sum. Eight input elements at a time: out[n] is loaded and stored once per eight
 * weight rows instead of once per row, and the eight rows stream from memory side by side, which is what bounds a
 * large layer (VGG-16's fc6 is 411 MB of weights). Each out[n] still adds its terms in order k = 0, 1, 2, ... */
void tb_fc_gemv(const tb_fc *p, const float *restrict in, const float *restrict wt, const float *restrict bias,
                float *restrict out)
{
    const int N = p->out_n;
    const long rows = N;
    int k = 0;
    for (int n = 0; n < N; ++n) out[n] = 0.0f;
    for (; k + 8 <= p->in_n; k += 8) {
        const float *restrict r = wt + (long)k * N, *restrict x = in + k;
        for (int n = 0; n < N; ++n) {
            float v = out[n];
            v += r[n] * x[0];
            v += r[n + rows] * x[1];
            v += r[n + 2 * rows] * x[2];
            v += r[n + 3 * rows] * x[3];
            v += r[n + 4 * rows] * x[4];
            v += r[n + 5 * rows] * x[5];
            v += r[n + 6 * rows] * x[6];
            v += r[n + 7 * rows] * x[7];
            out[n] = v;
        }
    }
    for (; k < p->in_n; ++k) {
        const float x = in[k];
        const float *restrict row = wt + (long)k * N;
        for (int n = 0; n < N; ++n) out[n] += row[n] * x;
    }
    for (int n = 0; n < N; ++n) out[n] += bias[n];
    tb_ops_activate(out, N, p->act, p->act_a, p->act_b);
}
