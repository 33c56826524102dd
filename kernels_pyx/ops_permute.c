/* General axis permutation of a row-major 3-D tensor: the copy fallback of transpose. */
#include "tb_kernels.h"

void tb_permute_copy(const tb_permute *p, const float *restrict in, float *restrict out)
{
    const int dims[3] = {p->d0, p->d1, p->d2};
    const long strides[3] = {(long)p->d1 * p->d2, p->d2, 1};
    const int perm[3] = {p->perm0, p->perm1, p->perm2};
    /* out axis i walks in axis perm[i] */
    const int n0 = dims[perm[0]], n1 = dims[perm[1]], n2 = dims[perm[2]];
    const long s0 = strides[perm[0]], s1 = strides[perm[1]], s2 = strides[perm[2]];
    for (int i0 = 0; i0 < n0; ++i0)
        for (int i1 = 0; i1 < n1; ++i1) {
            const float *src = in + i0 * s0 + i1 * s1;
            for (int i2 = 0; i2 < n2; ++i2) *out++ = src[i2 * s2];
        }
}
