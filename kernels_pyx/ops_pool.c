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

/* HWC: each output pixel is a channel vector; reduce whole input pixel vectors into it (contiguous, vectorises). */
void tb_maxpool_hwc(const tb_pool *p, const float *restrict in, float *restrict out)
{
    const int C = p->c;
    for (int oh = 0; oh < p->out_h; ++oh) {
        tb_window wh = WIN_H(p, oh);
        for (int ow = 0; ow < p->out_w; ++ow) {
            tb_window ww = WIN_W(p, ow);
            float *dst = out + ((long)oh * p->out_w + ow) * (p->out_ps ? p->out_ps : C);
            for (int c = 0; c < C; ++c) dst[c] = -FLT_MAX;
            for (int ih = wh.lo; ih < wh.hi; ++ih)
                for (int iw = ww.lo; iw < ww.hi; ++iw) {
                    const float *src = in + ((long)ih * p->in_w + iw) * C;
                    for (int c = 0; c < C; ++c) dst[c] = src[c] > dst[c] ? src[c] : dst[c];
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
    for (int c = c0; c < c1; ++c) out[c] = 0.0f;
    for (long i = 0; i < hw; ++i)
        for (int c = c0; c < c1; ++c) out[c] += in[i * C + c];
    for (int c = c0; c < c1; ++c) out[c] /= (float)hw;
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
