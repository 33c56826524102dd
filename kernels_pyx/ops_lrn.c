/* ONNX LRN: y = x / (bias + alpha / size * sum of x^2 over channels [c - (size-1)/2, c + ceil((size-1)/2)])^beta. */
#include "tb_kernels.h"
#include "ops_act.h"

static int lo_channel(int c, int size) { int lo = c - (size - 1) / 2; return lo > 0 ? lo : 0; }
static int hi_channel(int c, int size, int C) { int hi = c + size / 2; return hi < C - 1 ? hi : C - 1; }

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
        for (long i = 0; i < hw; ++i) dst[i] = in[c * hw + i] / powf(p->bias + a * dst[i], p->beta);
    }
}

void tb_lrn_chw(const tb_lrn *p, const float *restrict in, float *restrict out) { lrn_chw(p, 0, p->c, in, out); }

/* Output channels [c_begin, c_end) of tb_lrn_chw: a thread's part of a split call (primitives/parallel.py). */
void tb_lrn_chw_channels(const tb_lrn_view *p, const float *restrict in, float *restrict out)
{
    const tb_lrn whole = {p->c, p->h, p->w, p->size, p->alpha, p->beta, p->bias};
    lrn_chw(&whole, p->c_begin, p->c_end, in, out);
}

void tb_lrn_hwc(const tb_lrn *p, const float *restrict in, float *restrict out)
{
    const long hw = (long)p->h * p->w;
    const int C = p->c;
    const float a = p->alpha / (float)p->size;
    for (long i = 0; i < hw; ++i) {
        const float *src = in + i * C;
        float *dst = out + i * C;
        for (int c = 0; c < C; ++c) {
            float s = 0.0f;
            for (int j = lo_channel(c, p->size); j <= hi_channel(c, p->size, C); ++j) s += src[j] * src[j];
            dst[c] = src[c] / powf(p->bias + a * s, p->beta);
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
            for (long i = 0; i < hw; ++i) dst[i] = keep[i] / powf(p->bias + a * acc[i], p->beta);
        } else {
            for (long i = 0; i < hw; ++i) dst[i] = dst[i] / powf(p->bias + a * acc[i], p->beta);
        }
    }
}
