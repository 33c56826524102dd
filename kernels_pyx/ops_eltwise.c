/* Element-wise kernels: add and standalone activation (layout-free), per-channel scale (per layout). */
#include "tb_kernels.h"
#include "ops_act.h"

/* In place (tasobuild/primitives/sharing.py) the output is one of the inputs. Each loop reads element i before it
 * writes element i, and the restrict-qualified loops below only ever get pointers that do not alias. */
static void tb_add_to(const float *restrict a, const float *restrict b, float *restrict out, long n)
{
    for (long i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

static void tb_add_into(float *restrict acc, const float *restrict x, long n)
{
    for (long i = 0; i < n; ++i) acc[i] += x[i]; /* a + b == b + a exactly: which input is acc does not matter */
}

void tb_add(const tb_flat *p, const float *a, const float *b, float *out)
{
    if (out == a && out == b)
        for (long i = 0; i < p->n; ++i) out[i] += out[i];
    else if (out == a)
        tb_add_into(out, b, p->n);
    else if (out == b)
        tb_add_into(out, a, p->n);
    else
        tb_add_to(a, b, out, p->n);
    tb_ops_activate(out, p->n, p->act, p->act_a, p->act_b);
}

void tb_act(const tb_flat *p, const float *in, float *out)
{
    if (out != in) /* in place the values are where they must be */
        for (int i = 0; i < p->n; ++i) out[i] = in[i];
    tb_ops_activate(out, p->n, p->act, p->act_a, p->act_b);
}

/* x[i] * s + t over n contiguous values, from `in` (or, in place, from out itself) */
static void tb_scale_to(const float *restrict in, float *restrict out, long n, float s, float t)
{
    for (long i = 0; i < n; ++i) out[i] = in[i] * s + t;
}

static void tb_scale_into(float *restrict x, long n, float s, float t)
{
    for (long i = 0; i < n; ++i) x[i] = x[i] * s + t;
}

static void tb_scale_run(const float *in, float *out, long n, float s, float t)
{
    if (in == out)
        tb_scale_into(out, n, s, t);
    else
        tb_scale_to(in, out, n, s, t);
}

void tb_scale_chw(const tb_tensor *p, const float *in, const float *restrict s, const float *restrict t, float *out)
{
    const long hw = (long)p->h * p->w;
    for (int c = 0; c < p->c; ++c) tb_scale_run(in + c * hw, out + c * hw, hw, s[c], t[c]);
    tb_ops_activate(out, p->c * hw, p->act, p->act_a, p->act_b);
}

static void tb_scale_pixels_to(const float *restrict in, const float *restrict s, const float *restrict t,
                               float *restrict out, long hw, int C)
{
    for (long i = 0; i < hw; ++i)
        for (int c = 0; c < C; ++c) out[i * C + c] = in[i * C + c] * s[c] + t[c];
}

static void tb_scale_pixels_into(float *restrict x, const float *restrict s, const float *restrict t, long hw, int C)
{
    for (long i = 0; i < hw; ++i)
        for (int c = 0; c < C; ++c) x[i * C + c] = x[i * C + c] * s[c] + t[c];
}

void tb_scale_hwc(const tb_tensor *p, const float *in, const float *restrict s, const float *restrict t, float *out)
{
    const long hw = (long)p->h * p->w;
    if (in == out)
        tb_scale_pixels_into(out, s, t, hw, p->c);
    else
        tb_scale_pixels_to(in, s, t, out, hw, p->c);
    tb_ops_activate(out, p->c * hw, p->act, p->act_a, p->act_b);
}

void tb_scale_hcw(const tb_tensor *p, const float *in, const float *restrict s, const float *restrict t, float *out)
{
    const int C = p->c, W = p->w;
    for (int h = 0; h < p->h; ++h)
        for (int c = 0; c < C; ++c) {
            const long base = ((long)h * C + c) * W;
            tb_scale_run(in + base, out + base, W, s[c], t[c]);
        }
    tb_ops_activate(out, (long)p->h * C * W, p->act, p->act_a, p->act_b);
}
