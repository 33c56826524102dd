/* ONNX LRN: y = x / (bias + alpha / size * sum of x^2 over channels [c - (size-1)/2, c + ceil((size-1)/2)])^beta.
 * Every layout sums an output's window in ascending channel order from zero, so all three kernels give the same
 * bits; the divisor's power goes through lrn_normalise. */
#include <math.h>
#include "tb_kernels.h"
#include "ops_act.h"

static int lo_channel(int c, int size) { int lo = c - (size - 1) / 2; return lo > 0 ? lo : 0; }
static int hi_channel(int c, int size, int C) { int hi = c + size / 2; return hi < C - 1 ? hi : C - 1; }

/* dst[i] = x[i] / (bias + a * acc[i])^beta. powf is a library call no loop vectorises, so the exponents networks
 * use (0.75: GoogLeNet, AlexNet; 0.5; 1) go through square roots and a division, which vectorise: d^-0.75 is
 * r * sqrt(r) with r = 1 / sqrt(d). Element i is read before it is written, and any two buffers may be one. */
static void lrn_normalise(const float *x, const float *acc, float *dst, long n, float bias, float a, float beta)
{
    if (beta == 0.75f) {
        for (long i = 0; i < n; ++i) {
            const float r = 1.0f / sqrtf(bias + a * acc[i]);
            dst[i] = x[i] * (r * sqrtf(r));
        }
    } else if (beta == 0.5f) {
        for (long i = 0; i < n; ++i) dst[i] = x[i] / sqrtf(bias + a * acc[i]);
    } else if (beta == 1.0f) {
        for (long i = 0; i < n; ++i) dst[i] = x[i] / (bias + a * acc[i]);
    } else {
        for (long i = 0; i < n; ++i) dst[i] = x[i] / powf(bias + a * acc[i], beta);
    }
}

/* CHW: accumulate the squared neighbour planes into the output plane, then normalise it in place; output channels
 * [c0, c1) only (each reads its neighbours from the whole input, so a range computes what the whole call does). */
static void lrn_chw(const tb_lrn *p, int c0, int c1, const float *restrict in, float *restrict out)
{
    const long hw = (long)p->h * p->w;
    const float a = p->alpha / (float)p->size;
    for (int c = c0; c < c1; ++c) {
        float *dst = out + c * hw;
        for (long i = 0; i < hw; ++i) dst[i] = 0.0f;
        for (int j = lo_channel(c, p->size); j <= hi_channel(c, p->size, p->c); ++j) {
            const float *src = in + j * hw;
            for (long i = 0; i < hw; ++i) dst[i] += src[i] * src[i];
        }
        lrn_normalise(in + c * hw, dst, dst, hw, p->bias, a, p->beta);
    }
}

void tb_lrn_chw(const tb_lrn *p, const float *restrict in, float *restrict out) { lrn_chw(p, 0, p->c, in, out); }

/* Output channels [c_begin, c_end) of tb_lrn_chw: a thread's part of a split call (primitives/parallel.py). */
void tb_lrn_chw_channels(const tb_lrn_view *p, const float *restrict in, float *restrict out)
{
    const tb_lrn whole = {p->c, p->h, p->w, p->size, p->alpha, p->beta, p->bias};
    lrn_chw(&whole, p->c_begin, p->c_end, in, out);
}

/* HWC: per pixel, a chunk of channels at a time; the window's offsets k run outermost, so each output still adds
 * its channels in ascending order, and the inner loop runs across channels (vectorised). */
void tb_lrn_hwc(const tb_lrn *p, const float *restrict in, float *restrict out)
{
    enum { CHUNK = 64 };
    const long hw = (long)p->h * p->w;
    const int C = p->c, back = (p->size - 1) / 2, fwd = p->size / 2;
    const float a = p->alpha / (float)p->size;
    float acc[CHUNK];
    for (long i = 0; i < hw; ++i) {
        const float *src = in + i * C;
        float *dst = out + i * C;
        for (int c0 = 0; c0 < C; c0 += CHUNK) {
            const int n = C - c0 < CHUNK ? C - c0 : CHUNK;
            for (int c = 0; c < n; ++c) acc[c] = 0.0f;
            for (int k = -back; k <= fwd; ++k) { /* channel c0 + c reads c0 + c + k where that is in [0, C) */
                const int lo = -k - c0 > 0 ? -k - c0 : 0, hi = C - k - c0 < n ? C - k - c0 : n;
                for (int c = lo; c < hi; ++c) acc[c] += src[c0 + c + k] * src[c0 + c + k];
            }
            lrn_normalise(src + c0, acc, dst + c0, n, p->bias, a, p->beta);
        }
    }
}

/* CHW, in place: x holds the input and receives the output. Output channel c reads input channels down to
 * c - (size-1)/2, which earlier outputs overwrote: ws keeps the originals of the last (size-1)/2 channels (a ring,
 * channel j in plane j % back) and one accumulation plane. The sums run in tb_lrn_chw's order: the same bits. */
void tb_lrn_chw_inplace(const tb_lrn *p, float *restrict x, float *restrict ws)
{
    const long hw = (long)p->h * p->w;
    const float a = p->alpha / (float)p->size;
    const int back = (p->size - 1) / 2;
    float *acc = ws + back * hw;
    for (int c = 0; c < p->c; ++c) {
        for (long i = 0; i < hw; ++i) acc[i] = 0.0f;
        for (int j = lo_channel(c, p->size); j <= hi_channel(c, p->size, p->c); ++j) {
            const float *src = j < c ? ws + (j % back) * hw : x + j * hw; /* j < c only when back > 0 */
            for (long i = 0; i < hw; ++i) acc[i] += src[i] * src[i];
        }
        float *dst = x + c * hw;
        if (back > 0) {
            float *keep = ws + (c % back) * hw; /* held channel c - back, which no later output reads */
            for (long i = 0; i < hw; ++i) keep[i] = dst[i];
            lrn_normalise(keep, acc, dst, hw, p->bias, a, p->beta);
        } else {
            lrn_normalise(dst, acc, dst, hw, p->bias, a, p->beta);
        }
    }
}
