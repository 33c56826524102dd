/* Internal to the ops_*.c kernels: apply a fused activation to a run of floats in place, one loop per kind so the
 * loops vectorise (no switch inside the element loop). */
#ifndef TB_OPS_ACT_H
#define TB_OPS_ACT_H

#include <math.h>
#include "tb_kernels.h"

static inline void tb_ops_activate(float *restrict x, long n, int act, float a, float b)
{
    long i;
    switch (act) {
    case TB_ACT_RELU:
        for (i = 0; i < n; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case TB_ACT_CLIP: /* ONNX Clip: min(max(x, a), b) */
        for (i = 0; i < n; ++i) {
            float v = x[i] < a ? a : x[i];
            x[i] = v > b ? b : v;
        }
        break;
    case TB_ACT_LEAKY_RELU:
        for (i = 0; i < n; ++i) x[i] = x[i] < 0.0f ? a * x[i] : x[i];
        break;
    case TB_ACT_SIGMOID:
        for (i = 0; i < n; ++i) x[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    default:
        break;
    }
}

#endif
