/* Register-blocked direct convolution into HWC (conv_direct_blocked.c): any kernel, stride, padding and dilation,
 * groups == 1; the input in any layout, the output HWC. No workspace. Weights w0 in panels of TB_BLOCKED_PANEL
 * output channels, the last one narrower: panel q, channels [qP, qP + n), is [k_h][k_w][in_c][n] at offset
 * qP * k_h * k_w * in_c (tasobuild/primitives/conv_direct_blocked.py packs them). */
#ifndef TB_CONV_BLOCKED_H
#define TB_CONV_BLOCKED_H

#include "tb_kernels.h"

#define TB_BLOCKED_PANEL 32

void tb_conv_direct_blocked_chw_to_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                       const float *restrict bias, float *restrict out);
void tb_conv_direct_blocked_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                const float *restrict bias, float *restrict out);
void tb_conv_direct_blocked_hcw_to_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                       const float *restrict bias, float *restrict out);

#endif
