/* Max / average pooling and global average pooling in CHW, HWC and HCW. */
#include <float.h>
#include "tb_kernels.h"

/* One axis of the window of output index o: the input range [lo, hi) that is read, and `padded`, the window's
 * extent clipped to the padded input (the count_include_pad divisor, as ONNX Runtime computes it). */
typedef struct { int lo, hi, padded; } tb_window;

static tb_window window_at(int o, int stride, int k, int pad_before, int in, int pad_after)
{
    tb_window win;
    int start = o * stride - pad_before, end = start + k, padded_end = in + pad_after;
    win.padded = (end < padded_end ? end : padded_end) - start;
    win.lo = start > 0 ? start : 0;
    win.hi = end < in ? end : in;
    if (win.hi < win.lo) win.hi = win.lo;
    return win;
}

static float divisor(const tb_pool *p, tb_window wh, tb_window ww)
{
    int n = p->count_include_pad ? wh.padded * ww.padded : (wh.hi - wh.lo) * (ww.hi - ww.lo);
    return n > 0 ? (float)n : 1.0f; /* an empty window (impossible with sane pads) yields 0, not NaN */
}

#define WIN_H(p, oh) window_at(oh, (p)->stride_h, (p)->k_h, (p)->pad_top, (p)->in_h, (p)->pad_bottom)
#define WIN_W(p, ow) window_at(ow, (p)->stride_w, (p)->k_w, (p)->pad_left, (p)->in_w, (p)->pad_right)

void tb_maxpool_chw(const tb_pool *p, const float *restrict in, float *restrict out)
{
    for (int c = 0; c < p->c; ++c) {
        const float *src = in + (long)c * p->in_h * p->in_w;
        for (int oh = 0; oh < p->out_h; ++oh) {
            tb_window wh = WIN_H(p, oh);
            for (int ow = 0; ow < p->out_w; ++ow) {
                tb_window ww = WIN_W(p, ow);
                float m = -FLT_MAX;
                for (int ih = wh.lo; ih < wh.hi; ++ih)
                    for (int iw = ww.lo; iw < ww.hi; ++iw) {
                        float v = src[(long)ih * p->in_w + iw];
                        m = v > m ? v : m;
                    }
                *out++ = m;
            }
        }
    }
}

void tb_avgpool_chw(const tb_pool *p, const float *restrict in, float *restrict out)
{
    for (int c = 0; c < p->c; ++c) {
        const float *src = in + (long)c * p->in_h * p->in_w;
        for (int oh = 0; oh < p->out_h; ++oh) {
            tb_window wh = WIN_H(p, oh);
            for (int ow = 0; ow < p->out_w; ++ow) {
                tb_window ww = WIN_W(p, ow);
                float s = 0.0f;
                for (int ih = wh.lo; ih < wh.hi; ++ih)
                    for (int iw = ww.lo; iw < ww.hi; ++iw) s += src[(long)ih * p->in_w + iw];
                *out++ = s / divisor(p, wh, ww);
            }
        }
    }
}

/* HWC: each output pixel is a channel vector; reduce whole input pixel vectors into it (contiguous, vectorises).
 * The channels go in chunks of POOL_CHUNK, whose running maxima stay in registers over the window (a constant
 * count: four zmm on AVX-512) and are stored once, instead of a load and a store of the output per window pixel.
 * Each value is still max(src, running) in window order from -FLT_MAX, so the bits are the same. */
#define POOL_CHUNK 64

/* Channels [0, POOL_CHUNK) of one output pixel (no indexing by a variable: the maxima stay in registers). */
static inline void maxpool_hwc_chunk(const tb_pool *p, tb_window wh, tb_window ww, const float *restrict in,
                                     float *restrict dst)
{
    float m[POOL_CHUNK];
    for (int c = 0; c < POOL_CHUNK; ++c) m[c] = -FLT_MAX;
    for (int ih = wh.lo; ih < wh.hi; ++ih)
        for (int iw = ww.lo; iw < ww.hi; ++iw) {
            const float *src = in + ((long)ih * p->in_w + iw) * p->c;
            for (int c = 0; c < POOL_CHUNK; ++c) m[c] = src[c] > m[c] ? src[c] : m[c];
        }
    for (int c = 0; c < POOL_CHUNK; ++c) dst[c] = m[c];
}

void tb_maxpool_hwc(const tb_pool *p, const float *restrict in, float *restrict out)
{
    const int C = p->c;
    for (int oh = 0; oh < p->out_h; ++oh) {
        tb_window wh = WIN_H(p, oh);
        for (int ow = 0; ow < p->out_w; ++ow) {
            tb_window ww = WIN_W(p, ow);
            float *dst = out + ((long)oh * p->out_w + ow) * (p->out_ps ? p->out_ps : C);
            int c0 = 0;
            for (; c0 + POOL_CHUNK <= C; c0 += POOL_CHUNK) maxpool_hwc_chunk(p, wh, ww, in + c0, dst + c0);
            for (int c = c0; c < C; ++c) dst[c] = -FLT_MAX; /* the last channels, fewer than a chunk */
            for (int ih = wh.lo; ih < wh.hi; ++ih)
                for (int iw = ww.lo; iw < ww.hi; ++iw) {
                    const float *src = in + ((long)ih * p->in_w + iw) * C;
                    for (int c = c0; c < C; ++c) dst[c] = src[c] > dst[c] ? src[c] : dst[c];
                }
        }
    }
}

void tb_avgpool_hwc(const tb_pool *p, const float *restrict in, float *restrict out)
{
    const int C = p->c;
    for (int oh = 0; oh < p->out_h; ++oh) {
        tb_window wh = WIN_H(p, oh);
        for (int ow = 0; ow < p->out_w; ++ow) {
            tb_window ww = WIN_W(p, ow);
            float *dst = out + ((long)oh * p->out_w + ow) * (p->out_ps ? p->out_ps : C);
            float d = divisor(p, wh, ww);
            for (int c = 0; c < C; ++c) dst[c] = 0.0f;
            for (int ih = wh.lo; ih < wh.hi; ++ih)
                for (int iw = ww.lo; iw < ww.hi; ++iw) {
                    const float *src = in + ((long)ih * p->in_w + iw) * C;
                    for (int c = 0; c < C; ++c) dst[c] += src[c];
                }
            for (int c = 0; c < C; ++c) dst[c] /= d;
        }
    }
}

/* HCW: rows of W per (h, c); pool each channel's rows like CHW with a row stride of C * in_w. */
void tb_maxpool_hcw(const tb_pool *p, const float *restrict in, float *restrict out)
{
    const long row = (long)p->c * p->in_w;
    for (int oh = 0; oh < p->out_h; ++oh) {
        tb_window wh = WIN_H(p, oh);
        for (int c = 0; c < p->c; ++c) {
            const float *src = in + (long)c * p->in_w;
            float *dst = out + ((long)oh * p->c + c) * p->out_w;
            for (int ow = 0; ow < p->out_w; ++ow) {
                tb_window ww = WIN_W(p, ow);
                float m = -FLT_MAX;
                for (int ih = wh.lo; ih < wh.hi; ++ih)
                    for (int iw = ww.lo; iw < ww.hi; ++iw) {
                        float v = src[ih * row + iw];
                        m = v > m ? v : m;
                    }
                dst[ow] = m;
            }
        }
    }
}

void tb_avgpool_hcw(const tb_pool *p, const float *restrict in, float *restrict out)
{
    const long row = (long)p->c * p->in_w;
    for (int oh = 0; oh < p->out_h; ++oh) {
        tb_window wh = WIN_H(p, oh);
        for (int c = 0; c < p->c; ++c) {
            const float *src = in + (long)c * p->in_w;
            float *dst = out + ((long)oh * p->c + c) * p->out_w;
            for (int ow = 0; ow < p->out_w; ++ow) {
                tb_window ww = WIN_W(p, ow);
                float s = 0.0f;
                for (int ih = wh.lo; ih < wh.hi; ++ih)
                    for (int iw = ww.lo; iw < ww.hi; ++iw) s += src[ih * row + iw];
                dst[ow] = s / divisor(p, wh, ww);
            }
        }
    }
}

void tb_gap_chw(const tb_tensor *p, const float *restrict in, float *restrict out)
{
    const long hw = (long)p->h * p->w;
    for (int c = 0; c < p->c; ++c) {
        float s = 0.0f;
        for (long i = 0; i < hw; ++i) s += in[c * hw + i];
        out[c] = s / (float)hw;
    }
}

/* Channels [c0, c1) of the HWC global average (each channel's sum runs over the pixels in order, whatever the
 * range: a thread's part computes what the whole call does). */
static void gap_hwc(const tb_tensor *p, int c0, int c1, const float *restrict in, float *restrict out)
{
    const long hw = (long)p->h * p->w;
    const int C = p->c;
    int c = c0;
    for (; c + POOL_CHUNK <= c1; c += POOL_CHUNK) { /* sums in registers, as maxpool_hwc_chunk's maxima */
        float s[POOL_CHUNK];
        for (int l = 0; l < POOL_CHUNK; ++l) s[l] = 0.0f;
        for (long i = 0; i < hw; ++i)
            for (int l = 0; l < POOL_CHUNK; ++l) s[l] += in[i * C + c + l];
        for (int l = 0; l < POOL_CHUNK; ++l) out[c + l] = s[l] / (float)hw;
    }
    for (int k = c; k < c1; ++k) out[k] = 0.0f;
    for (long i = 0; i < hw; ++i)
        for (int k = c; k < c1; ++k) out[k] += in[i * C + k];
    for (int k = c; k < c1; ++k) out[k] /= (float)hw;
}

void tb_gap_hwc(const tb_tensor *p, const float *restrict in, float *restrict out) { gap_hwc(p, 0, p->c, in, out); }

/* Channels [c_begin, c_end) of tb_gap_hwc: a thread's part of a split call (primitives/parallel.py). */
void tb_gap_hwc_channels(const tb_tensor_channels *p, const float *restrict in, float *restrict out)
{
    const tb_tensor whole = {p->c, p->h, p->w, p->act, p->act_a, p->act_b};
    gap_hwc(&whole, p->c_begin, p->c_end, in, out);
}

void tb_gap_hcw(const tb_tensor *p, const float *restrict in, float *restrict out)
{
    const int C = p->c, W = p->w;
    for (int c = 0; c < C; ++c) out[c] = 0.0f;
    for (int h = 0; h < p->h; ++h)
        for (int c = 0; c < C; ++c) {
            const float *src = in + ((long)h * C + c) * W;
            float s = 0.0f;
            for (int w = 0; w < W; ++w) s += src[w];
            out[c] += s;
        }
    for (int c = 0; c < C; ++c) out[c] /= (float)((long)p->h * W);
}
