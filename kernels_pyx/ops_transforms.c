/* Layout transforms between CHW, HWC and HCW. Each is, per row h, either a row copy (CHW <-> HCW) or a 2-D
 * transpose of a (C x W) or (W x C) matrix, done in cache-sized tiles. */
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

void tb_layout_chw_to_hwc(const tb_tensor *p, const float *restrict in, float *restrict out)
{
    const long C = p->c, H = p->h, W = p->w;
    for (long h = 0; h < H; ++h) transpose_2d(p->c, p->w, in + h * W, H * W, out + h * W * C, C);
}

void tb_layout_hwc_to_chw(const tb_tensor *p, const float *restrict in, float *restrict out)
{
    const long C = p->c, H = p->h, W = p->w;
    for (long h = 0; h < H; ++h) transpose_2d(p->w, p->c, in + h * W * C, C, out + h * W, H * W);
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

void tb_layout_chw_to_hcw(const tb_tensor *p, const float *restrict in, float *restrict out)
{
    const long C = p->c, H = p->h, W = p->w;
    for (long h = 0; h < H; ++h)
        for (long c = 0; c < C; ++c) copy_row(p->w, in + (c * H + h) * W, out + (h * C + c) * W);
}

void tb_layout_hcw_to_chw(const tb_tensor *p, const float *restrict in, float *restrict out)
{
    const long C = p->c, H = p->h, W = p->w;
    for (long h = 0; h < H; ++h)
        for (long c = 0; c < C; ++c) copy_row(p->w, in + (h * C + c) * W, out + (c * H + h) * W);
}
