/* Convolution kernels (tb_conv parameters, see tb_kernels.h). Buffers: in, w (the weights as the registry's build-time
 * transform left them), bias [out_c], out, and for GEMM-based kernels a workspace of exactly the registry's size.
 *
 * Views (for fused tiling): only output channels [oc_begin, oc_end) x output rows [oh_begin, oh_end) are computed;
 * `in` and `out` are always the whole tensors in the kernel's layouts and each output element is written at its own
 * place, nothing outside the view. Only the input rows the view needs are read: oh_begin*stride_h - pad_top ..
 * (oh_end-1)*stride_h - pad_top + dil_h*(k_h-1), clipped to the input. accumulate=1 adds the raw convolution to what
 * is in `out` (no bias, no activation). The whole call's workspace is enough for any view. The direct and depthwise
 * kernels narrow their output-row loops; the GEMM-based ones multiply over the view's pixel slab only
 * [oh_begin*out_w, oh_end*out_w), building patches for it alone, so a view's summation order per element is the
 * whole call's: tiling an output into views reproduces the whole call bit for bit. One exception, for channel ranges
 * only: depthwise_direct_hwc 3x3 runs 16-channel vectors from oc_begin (sums start from the bias; FMA on AVX-512) and
 * the remaining channels through a scalar path, so a channel range that moves that boundary rounds differently.
 *
 * Weight formats (w0), MR = 6 / NR = 16 panels as in tb_gemm.h, per group g of mg = out_c/groups outputs:
 *   direct_chw, depthwise_direct_chw: W as ONNX stores it, [out_c][cg][k_h][k_w]
 *   direct_hwc:                       [k_h][k_w][cg][out_c]
 *   depthwise_direct_hwc:             [k_h][k_w][out_c]
 *   im2col_gemm_chw, 1x1_gemm_chw:    per group, W_g [mg][cg*k_h*k_w] (k = (c, ki, kj)) packed as A
 *   im2row_gemm_hwc, 1x1_gemm_hwc:    per group, W_g^T [k_h*k_w*cg][mg] (k = (ki, kj, c)) packed as B */
#ifndef TB_CONV_H
#define TB_CONV_H

#include "tb_kernels.h"

/* Any kernel size, stride, padding, dilation, groups. No workspace. */
void tb_conv_direct_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                        const float *restrict bias, float *restrict out);
void tb_conv_direct_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                        const float *restrict bias, float *restrict out);

/* groups == in_c (depthwise, any channel multiplier out_c / in_c). No workspace. */
void tb_conv_depthwise_direct_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                  const float *restrict bias, float *restrict out);
void tb_conv_depthwise_direct_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                  const float *restrict bias, float *restrict out);

/* Any convolution, one group at a time: the patch matrix of a group is built in the workspace, already in the GEMM's
 * packed panel format, then multiplied with the packed weights.
 * im2col (CHW): ws = cg*k_h*k_w * ceil(out_h*out_w / NR)*NR floats.
 * im2row (HWC): ws = ceil(out_h*out_w / MR)*MR * k_h*k_w*cg floats. */
void tb_conv_im2col_gemm_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                             const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_im2row_gemm_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                             const float *restrict bias, float *restrict out, float *restrict ws);

/* 1x1, stride 1, no padding: the input is the GEMM operand as it is (no patch matrix); the workspace only holds
 * the GEMM's packing of one block of it. CHW: min(cg, KC) * ceil(min(NC, h*w) / NR)*NR floats;
 * HWC: ceil(min(MC, h*w) / MR)*MR * min(cg, KC) floats. */
void tb_conv_1x1_gemm_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                          const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_1x1_gemm_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                          const float *restrict bias, float *restrict out, float *restrict ws);

#endif
