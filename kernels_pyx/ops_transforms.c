/* Layout transforms between CHW, HWC and HCW. Each is, per row h, either a row copy (CHW <-> HCW) or a 2-D
 * transpose of a (C x W) or (W x C) matrix, done in cache-sized tiles. The CHW ones index channels by the whole
 * height, so a thread's part (primitives/parallel.py) is a call of their `_rows` wrapper: the whole tensor's shape
 * and a range of rows. */
#include "tb_kernels.h"

enum { TB_TILE = 16 };

/* dst[j * dst_stride + i] = src[i * src_stride + j] for i < rows, j < cols. */
static void transpose_2d(int rows, int cols, const float *restrict src, long src_stride, float *restrict dst,
                         long dst_stride)
{
    for (int i0 = 0; i0 < rows; i0 += TB_TILE) {
        const int i1 = i0 + TB_TILE < rows ? i0 + TB_TILE : rows;
        for (int j0 = 0; j0 < cols; j0 += TB_TILE) {
            const int j1 = j0 + TB_TILE < cols ? j0 + TB_TILE : cols;
            for (int j = j0; j < j1; ++j)
                for (int i = i0; i < i1; ++i) dst[j * dst_stride + i] = src[i * src_stride + j];
        }
    }
}

static void copy_row(int n, const float *restrict src, float *restrict dst)
{
    for (int i = 0; i < n; ++i) dst[i] = src[i];
}

/* Rows [h0, h1) of the CHW -> HWC transform (the whole call's, or a thread's part). */
static void chw_to_hwc(const tb_tensor *p, long h0, long h1, const float *restrict in, float *restrict out)
{
    const long C = p->c, H = p->h, W = p->w;
    for (long h = h0; h < h1; ++h) transpose_2d(p->c, p->w, in + h * W, H * W, out + h * W * C, C);
}

void tb_layout_chw_to_hwc(const tb_tensor *p, const float *restrict in, float *restrict out)
{
    chw_to_hwc(p, 0, p->h, in, out);
}

void tb_layout_chw_to_hwc_rows(const tb_tensor_rows *p, const float *restrict in, float *restrict out)
{
    const tb_tensor whole = {p->c, p->h, p->w, p->act, p->act_a, p->act_b};
    chw_to_hwc(&whole, p->h_begin, p->h_end, in, out);
}

/* Rows [h0, h1) of the HWC -> CHW transform (the whole call's, or a thread's part). */
static void hwc_to_chw(const tb_tensor *p, long h0, long h1, const float *restrict in, float *restrict out)
{
    const long C = p->c, H = p->h, W = p->w;
    for (long h = h0; h < h1; ++h) transpose_2d(p->w, p->c, in + h * W * C, C, out + h * W, H * W);
}

void tb_layout_hwc_to_chw(const tb_tensor *p, const float *restrict in, float *restrict out)
{
    hwc_to_chw(p, 0, p->h, in, out);
}

void tb_layout_hwc_to_chw_rows(const tb_tensor_rows *p, const float *restrict in, float *restrict out)
{
    const tb_tensor whole = {p->c, p->h, p->w, p->act, p->act_a, p->act_b};
    hwc_to_chw(&whole, p->h_begin, p->h_end, in, out);
}

void tb_layout_hwc_to_hcw(const tb_tensor *p, const float *restrict in, float *restrict out)
{
    const long C = p->c, H = p->h, W = p->w;
    for (long h = 0; h < H; ++h) transpose_2d(p->w, p->c, in + h * W * C, C, out + h * C * W, W);
}

void tb_layout_hcw_to_hwc(const tb_tensor *p, const float *restrict in, float *restrict out)
{
    const long C = p->c, H = p->h, W = p->w;
    for (long h = 0; h < H; ++h) transpose_2d(p->c, p->w, in + h * C * W, W, out + h * W * C, C);
}

/* Rows [h0, h1) of the CHW -> HCW transform (the whole call's, or a thread's part). */
static void chw_to_hcw(const tb_tensor *p, long h0, long h1, const float *restrict in, float *restrict out)
{
    const long C = p->c, H = p->h, W = p->w;
    for (long h = h0; h < h1; ++h)
        for (long c = 0; c < C; ++c) copy_row(p->w, in + (c * H + h) * W, out + (h * C + c) * W);
}

void tb_layout_chw_to_hcw(const tb_tensor *p, const float *restrict in, float *restrict out)
{
    chw_to_hcw(p, 0, p->h, in, out);
}

void tb_layout_chw_to_hcw_rows(const tb_tensor_rows *p, const float *restrict in, float *restrict out)
{
    const tb_tensor whole = {p->c, p->h, p->w, p->act, p->act_a, p->act_b};
    chw_to_hcw(&whole, p->h_begin, p->h_end, in, out);
}

/* Rows [h0, h1) of the HCW -> CHW transform (the whole call's, or a thread's part). */
static void hcw_to_chw(const tb_tensor *p, long h0, long h1, const float *restrict in, float *restrict out)
{
    const long C = p->c, H = p->h, W = p->w;
    for (long h = h0; h < h1; ++h)
        for (long c = 0; c < C; ++c) copy_row(p->w, in + (h * C + c) * W, out + (c * H + h) * W);
}

void tb_layout_hcw_to_chw(const tb_tensor *p, const float *restrict in, float *restrict out)
{
    hcw_to_chw(p, 0, p->h, in, out);
}

void tb_layout_hcw_to_chw_rows(const tb_tensor_rows *p, const float *restrict in, float *restrict out)
{
    const tb_tensor whole = {p->c, p->h, p->w, p->act, p->act_a, p->act_b};
    hcw_to_chw(&whole, p->h_begin, p->h_end, in, out);
}
