/* Element-wise kernels: add and standalone activation (layout-free), per-channel scale (per layout). */
#include "tb_kernels.h"
#include "ops_act.h"

void tb_add(const tb_flat *p, const float *restrict a, const float *restrict b, float *restrict out)
{
    for (int i = 0; i < p->n; ++i) out[i] = a[i] + b[i];
    tb_ops_activate(out, p->n, p->act, p->act_a, p->act_b);
}

void tb_act(const tb_flat *p, const float *restrict in, float *restrict out)
{
    for (int i = 0; i < p->n; ++i) out[i] = in[i];
    tb_ops_activate(out, p->n, p->act, p->act_a, p->act_b);
}

void tb_scale_chw(const tb_tensor *p, const float *restrict in, const float *restrict s, const float *restrict t,
                  float *restrict out)
{
    const long hw = (long)p->h * p->w;
    for (int c = 0; c < p->c; ++c) {
        const float sc = s[c], tc = t[c];
        for (long i = c * hw; i < (c + 1) * hw; ++i) out[i] = in[i] * sc + tc;
    }
    tb_ops_activate(out, p->c * hw, p->act, p->act_a, p->act_b);
}

void tb_scale_hwc(const tb_tensor *p, const float *restrict in, const float *restrict s, const float *restrict t,
                  float *restrict out)
{
    const long hw = (long)p->h * p->w;
    const int C = p->c;
    for (long i = 0; i < hw; ++i)
        for (int c = 0; c < C; ++c) out[i * C + c] = in[i * C + c] * s[c] + t[c];
    tb_ops_activate(out, C * hw, p->act, p->act_a, p->act_b);
}

void tb_scale_hcw(const tb_tensor *p, const float *restrict in, const float *restrict s, const float *restrict t,
                  float *restrict out)
{
    const int C = p->c, W = p->w;
    for (int h = 0; h < p->h; ++h)
        for (int c = 0; c < C; ++c) {
            const long base = ((long)h * C + c) * W;
            const float sc = s[c], tc = t[c];
            for (int w = 0; w < W; ++w) out[base + w] = in[base + w] * sc + tc;
        }
    tb_ops_activate(out, (long)p->h * C * W, p->act, p->act_a, p->act_b);
}

/* In place (tasobuild/primitives/sharing.py): the output is written over an input that no later layer reads. Each
 * loop reads element i, then writes element i, so `acc`/`x` is both; the other buffers are distinct from it. */
void tb_add_inplace(const tb_flat *p, float *restrict acc, const float *restrict x)
{
    for (int i = 0; i < p->n; ++i) acc[i] += x[i]; /* a + b == b + a exactly: either input may be acc */
    tb_ops_activate(acc, p->n, p->act, p->act_a, p->act_b);
}

void tb_act_inplace(const tb_flat *p, float *restrict x)
{
    tb_ops_activate(x, p->n, p->act, p->act_a, p->act_b);
}

void tb_scale_chw_inplace(const tb_tensor *p, float *restrict x, const float *restrict s, const float *restrict t)
{
    const long hw = (long)p->h * p->w;
    for (int c = 0; c < p->c; ++c) {
        const float sc = s[c], tc = t[c];
        for (long i = c * hw; i < (c + 1) * hw; ++i) x[i] = x[i] * sc + tc;
    }
    tb_ops_activate(x, p->c * hw, p->act, p->act_a, p->act_b);
}

void tb_scale_hwc_inplace(const tb_tensor *p, float *restrict x, const float *restrict s, const float *restrict t)
{
    const long hw = (long)p->h * p->w;
    const int C = p->c;
    for (long i = 0; i < hw; ++i)
        for (int c = 0; c < C; ++c) x[i * C + c] = x[i * C + c] * s[c] + t[c];
    tb_ops_activate(x, C * hw, p->act, p->act_a, p->act_b);
}

void tb_scale_hcw_inplace(const tb_tensor *p, float *restrict x, const float *restrict s, const float *restrict t)
{
    const int C = p->c, W = p->w;
    for (int h = 0; h < p->h; ++h)
        for (int c = 0; c < C; ++c) {
            const long base = ((long)h * C + c) * W;
            const float sc = s[c], tc = t[c];
            for (int w = 0; w < W; ++w) x[base + w] = x[base + w] * sc + tc;
        }
    tb_ops_activate(x, (long)p->h * C * W, p->act, p->act_a, p->act_b);
}
