/* int8 kernels besides convolution (see tb_q8.h): fully connected, max / average pooling, add, quantize,
 * dequantize, the int8 layout transforms and the patch copy. */
#include <math.h>
#include "tb_kernels.h"
#include "tb_q8.h"
#include "tb_q8_dot.h"

void tb_q8_fc_gemv(const tb_q8_fc *p, const int8_t *restrict in, const int8_t *restrict w, const int32_t *restrict bias,
                   const int32_t *restrict rq, int8_t *restrict out)
{
    tb_q8_gemv_rows(in, w, p->in_n, p->out_n, bias, rq, p->out_zp, p->act_min, p->act_max, out);
}

/* The input range [lo, hi) one axis of an output's window reads, and its extent clipped to the padded input. */
typedef struct { int lo, hi, padded; } tb_q8_window;

static tb_q8_window window_at(int o, int stride, int k, int pad_before, int in, int pad_after)
{
    tb_q8_window win;
    int start = o * stride - pad_before, end = start + k, padded_end = in + pad_after;
    win.padded = (end < padded_end ? end : padded_end) - start;
    win.lo = start > 0 ? start : 0;
    win.hi = end < in ? end : in;
    if (win.hi < win.lo) win.hi = win.lo;
    return win;
}

/* TFLite's Mean (reference_integer_ops::Mean): the multiplier divided by the count in fixed point. */
static int32_t mean_of(const tb_q8_pool *p, int32_t sum, int count)
{
    int shift = 63;
    uint64_t n = (uint64_t)count;
    while (shift > 0 && !(n >> shift)) --shift; /* floor(log2(count)) */
    if (shift > 32) shift = 32;
    if (shift > 31 + p->shift) shift = 31 + p->shift;
    int32_t mult = (int32_t)(((int64_t)p->mult << shift) / count);
    return tb_q8_requant(sum, mult, p->shift - shift) + p->out_zp;
}

static void pool(const tb_q8_pool *p, const int8_t *restrict in, int8_t *restrict out, int hwc, int is_max)
{
    const long isc = hwc ? 1 : (long)p->in_h * p->in_w, isy = hwc ? (long)p->in_w * p->c : p->in_w;
    const long isx = hwc ? p->c : 1;
    const long osc = hwc ? 1 : (long)p->out_h * p->out_w, osy = hwc ? (long)p->out_w * p->c : p->out_w;
    const long osx = hwc ? p->c : 1;
    for (int oy = 0; oy < p->out_h; ++oy) {
        tb_q8_window wy = window_at(oy, p->stride_h, p->k_h, p->pad_top, p->in_h, p->pad_bottom);
        for (int ox = 0; ox < p->out_w; ++ox) {
            tb_q8_window wx = window_at(ox, p->stride_w, p->k_w, p->pad_left, p->in_w, p->pad_right);
            int count = p->count_include_pad ? wy.padded * wx.padded : (wy.hi - wy.lo) * (wx.hi - wx.lo);
            if (count < 1) count = 1;
            for (int c = 0; c < p->c; ++c) {
                int32_t acc = is_max ? -128 : 0, v;
                for (int iy = wy.lo; iy < wy.hi; ++iy)
                    for (int ix = wx.lo; ix < wx.hi; ++ix) {
                        int32_t x = in[c * isc + iy * isy + ix * isx];
                        if (is_max) acc = x > acc ? x : acc;
                        else acc += p->same_quant ? x : x - p->in_zp;
                    }
                if (is_max) v = acc;
                else if (p->same_quant) /* TFLite's AveragePool: rounded half away from zero */
                    v = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                else
                    v = mean_of(p, acc, count);
                out[c * osc + oy * osy + ox * osx] = tb_q8_clamp(v, p->act_min, p->act_max);
            }
        }
    }
}

void tb_q8_maxpool_hwc(const tb_q8_pool *p, const int8_t *restrict in, int8_t *restrict out) { pool(p, in, out, 1, 1); }
void tb_q8_maxpool_chw(const tb_q8_pool *p, const int8_t *restrict in, int8_t *restrict out) { pool(p, in, out, 0, 1); }
void tb_q8_avgpool_hwc(const tb_q8_pool *p, const int8_t *restrict in, int8_t *restrict out) { pool(p, in, out, 1, 0); }
void tb_q8_avgpool_chw(const tb_q8_pool *p, const int8_t *restrict in, int8_t *restrict out) { pool(p, in, out, 0, 0); }

void tb_q8_add_flat(const tb_q8_add *p, const int8_t *restrict a, const int8_t *restrict b, int8_t *restrict out)
{
    int i = 0;
#ifdef __AVX2__
    {
        const __m256i zp0 = _mm256_set1_epi32(p->in0_zp), zp1 = _mm256_set1_epi32(p->in1_zp);
        const __m256i m0 = _mm256_set1_epi32(p->in0_mult), s0 = _mm256_set1_epi32(p->in0_shift);
        const __m256i m1 = _mm256_set1_epi32(p->in1_mult), s1 = _mm256_set1_epi32(p->in1_shift);
        const __m256i out_zp = _mm256_set1_epi32(p->out_zp), lo = _mm256_set1_epi32(p->act_min);
        const __m256i hi = _mm256_set1_epi32(p->act_max);
        const __m128i left = _mm_cvtsi32_si128(p->left_shift);
        int32_t sum[8];
        for (; i + 8 <= p->n; i += 8) {
            const __m256i x = _mm256_sll_epi32(
                _mm256_sub_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(a + i))), zp0), left);
            const __m256i y = _mm256_sll_epi32(
                _mm256_sub_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(b + i))), zp1), left);
            _mm256_storeu_si256((__m256i *)(void *)sum, _mm256_add_epi32(tb_q8_requant8(x, m0, s0), tb_q8_requant8(y, m1, s1)));
            tb_q8_requant8_store(sum, _mm256_set1_epi32(p->out_mult), _mm256_set1_epi32(p->out_shift), out_zp, lo, hi,
                                 out + i);
        }
    }
#endif
    for (; i < p->n; ++i) {
        const int32_t x = (int32_t)((uint32_t)((int32_t)a[i] - p->in0_zp) << p->left_shift);
        const int32_t y = (int32_t)((uint32_t)((int32_t)b[i] - p->in1_zp) << p->left_shift);
        const int32_t sum = tb_q8_requant(x, p->in0_mult, p->in0_shift) + tb_q8_requant(y, p->in1_mult, p->in1_shift);
        out[i] = tb_q8_clamp(tb_q8_requant(sum, p->out_mult, p->out_shift) + p->out_zp, p->act_min, p->act_max);
    }
}

void tb_q8_quantize(const tb_q8_quant *p, const float *restrict in, int8_t *restrict out)
{
    for (int i = 0; i < p->n; ++i) {
        float q = roundf(in[i] / p->scale);
        q = q < -1e6f ? -1e6f : q > 1e6f ? 1e6f : q; /* NaN stays NaN: the comparison below sends it to -128 */
        int32_t v = q == q ? (int32_t)q + p->zp : -128;
        out[i] = tb_q8_clamp(v, -128, 127);
    }
}

void tb_q8_dequantize(const tb_q8_quant *p, const int8_t *restrict in, float *restrict out)
{
    for (int i = 0; i < p->n; ++i) out[i] = p->scale * (float)((int32_t)in[i] - p->zp);
}

/* out(c, y, x) = in(c, y, x) between two layouts, by strides: s[0] for C, s[1] for H, s[2] for W. */
static void relayout(const tb_tensor *p, const int8_t *restrict in, int8_t *restrict out, const char *src,
                     const char *dst)
{
    long si[3], so[3];
    const int ext[3] = {p->c, p->h, p->w};
    const char *names = "CHW";
    for (int k = 0; k < 2; ++k) {
        const char *order = k ? dst : src;
        long *s = k ? so : si, step = 1;
        for (int j = 2; j >= 0; --j) {
            int axis = (int)(order[j] == names[0] ? 0 : order[j] == names[1] ? 1 : 2);
            s[axis] = step;
            step *= ext[axis];
        }
    }
    for (int c = 0; c < p->c; ++c)
        for (int y = 0; y < p->h; ++y)
            for (int x = 0; x < p->w; ++x)
                out[c * so[0] + y * so[1] + x * so[2]] = in[c * si[0] + y * si[1] + x * si[2]];
}

void tb_q8_layout_chw_to_hwc(const tb_tensor *p, const int8_t *restrict in, int8_t *restrict out)
{
    relayout(p, in, out, "CHW", "HWC");
}
void tb_q8_layout_chw_to_hcw(const tb_tensor *p, const int8_t *restrict in, int8_t *restrict out)
{
    relayout(p, in, out, "CHW", "HCW");
}
void tb_q8_layout_hwc_to_chw(const tb_tensor *p, const int8_t *restrict in, int8_t *restrict out)
{
    relayout(p, in, out, "HWC", "CHW");
}
void tb_q8_layout_hwc_to_hcw(const tb_tensor *p, const int8_t *restrict in, int8_t *restrict out)
{
    relayout(p, in, out, "HWC", "HCW");
}
void tb_q8_layout_hcw_to_chw(const tb_tensor *p, const int8_t *restrict in, int8_t *restrict out)
{
    relayout(p, in, out, "HCW", "CHW");
}
void tb_q8_layout_hcw_to_hwc(const tb_tensor *p, const int8_t *restrict in, int8_t *restrict out)
{
    relayout(p, in, out, "HCW", "HWC");
}

void tb_q8_copy_patch(const tb_q8_patch_copy *p, const int8_t *restrict in, int8_t *restrict out)
{
    for (int r = 0; r < p->rows; ++r) {
        const int8_t *src = in + (long)r * p->in_stride;
        int8_t *dst = out + (long)r * p->out_stride;
        for (int i = 0; i < p->row_bytes; ++i) dst[i] = src[i];
    }
}
