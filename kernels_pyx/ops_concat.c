/* Concat along channels: each input is copied into its channel slice of the output, one call per input. */
#include "tb_kernels.h"

void tb_copy_channels_chw(const tb_channels *p, const float *restrict in, float *restrict out)
{
    const long n = (long)p->c * p->h * p->w;
    float *dst = out + (long)p->c_offset * p->h * p->w; /* the slice is one contiguous block */
    for (long i = 0; i < n; ++i) dst[i] = in[i];
}

void tb_copy_channels_hwc(const tb_channels *p, const float *restrict in, float *restrict out)
{
    const long hw = (long)p->h * p->w;
    const int C = p->c;
    for (long i = 0; i < hw; ++i) {
        float *dst = out + i * p->out_c + p->c_offset;
        const float *src = in + i * C;
        for (int c = 0; c < C; ++c) dst[c] = src[c];
    }
}

void tb_copy_channels_hcw(const tb_channels *p, const float *restrict in, float *restrict out)
{
    const long rows = (long)p->c * p->w; /* per h, the input's channels are one contiguous block of rows */
    for (int h = 0; h < p->h; ++h) {
        float *dst = out + ((long)h * p->out_c + p->c_offset) * p->w;
        const float *src = in + h * rows;
        for (long i = 0; i < rows; ++i) dst[i] = src[i];
    }
}
