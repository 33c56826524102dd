/* Patch copy (tb_patch_copy, tb_ops.h): a spatial patch of an HWC tensor is `rows` runs of `row_floats` contiguous
 * floats (its columns times the channels), one per row of the tensor; copied into a dense patch buffer or back. */
#include "tb_kernels.h"

void tb_copy_patch(const tb_patch_copy *p, const float *restrict in, float *restrict out)
{
    for (int r = 0; r < p->rows; ++r) {
        const float *src = in + (long)r * p->in_stride;
        float *dst = out + (long)r * p->out_stride;
        for (int i = 0; i < p->row_floats; ++i) dst[i] = src[i];
    }
}
