/* The convolution families beyond tb_conv.h's: im2col/im2row copy and scan between any layouts, MEC, kn2row /
 * kn2col, and the HCW kernels. Same conventions as tb_conv.h (tb_conv parameters; views: channel range x row
 * range, reading only the input rows the view's output rows need and writing only inside the view, within the
 * whole call's workspace; accumulate).
 * Kernels named <family>_<in>_to_<out> read layout <in> and write layout <out>; the others keep one layout.
 * Exact workspace formulas (floats) live in tasobuild/primitives/conv_{variants,mec,kn2row}.py; summary below with
 * K = cg*k_h*k_w, N = out_h*out_w, ru(x, r) = x rounded up to a multiple of r, MR = 6, NR = 16, KC = 384, MC = 96,
 * NC = 4080 (tb_gemm.h).
 *
 * Weight formats (w0), per group g of mg = out_c/groups outputs, groups one after another:
 *   im2col_* (out CHW/HCW), mec_*_to_chw/hcw: W_g [mg][K] packed as A, k = (c, ki, kj) for im2col,
 *                                           k = (ki, kj, c) for mec
 *   im2row_* (out HWC), mec_*_to_hwc / mec_hwc: W_g^T [K][mg] packed as B, k = (ki, kj, c)
 *   kn2row_chw*:     the taps stacked, [k_h*k_w*mg][cg] (row tap*mg + m) packed as A
 *   kn2row_acc_chw*: per tap, W_tap [mg][cg] packed as A
 *   kn2col_hwc:      [cg][k_h*k_w*mg] (column tap*mg + m) packed as B
 *   kn2col_acc_hwc:  per tap, W_tap^T [cg][mg] packed as B
 *   direct_hcw, depthwise_direct_hcw: W as ONNX stores it; 1x1_gemm_hcw: W_g [mg][cg] packed as A */
#ifndef TB_CONV_FAMILIES_H
#define TB_CONV_FAMILIES_H

#include "tb_kernels.h"

/* Output pixels per block of the scan variants. A multiple of MR and NR: blocks are whole GEMM panels. */
#define TB_SCAN_PIXELS 96

/* im2col / im2row copy: the patch matrix of all pixels (ws = K*ru(N, NR) for B-panel im2col, ru(N, MR)*K for
 * A-panel im2row). Any kernel, stride, padding, dilation, groups. The same-layout im2col_gemm_chw and
 * im2row_gemm_hwc are declared in tb_conv.h; conv_im2col.c defines all of them and the scan variants. */
void tb_conv_im2col_gemm_hwc_to_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                    const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_im2col_gemm_hcw_to_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                    const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_im2col_gemm_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                             const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_im2col_gemm_chw_to_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                    const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_im2col_gemm_hwc_to_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                    const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_im2row_gemm_chw_to_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                    const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_im2row_gemm_hcw_to_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                    const float *restrict bias, float *restrict out, float *restrict ws);

/* im2col / im2row scan: the patch matrix of TB_SCAN_PIXELS pixels at a time (ws = K*ru(min(N, 96), NR) or
 * ru(min(N, 96), MR)*K). Any kernel, stride, padding, dilation, groups. */
void tb_conv_im2col_scan_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                             const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_im2col_scan_hwc_to_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                    const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_im2col_scan_hcw_to_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                    const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_im2col_scan_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                             const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_im2col_scan_chw_to_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                    const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_im2col_scan_hwc_to_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                    const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_im2row_scan_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                             const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_im2row_scan_chw_to_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                    const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_im2row_scan_hcw_to_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                    const float *restrict bias, float *restrict out, float *restrict ws);

/* MEC: dil_h == 1; a row view lowers only its rows' part of the lowered matrix. ws = Hl*k_w*cg*out_w
 * (Hl = (out_h-1)*stride_h + k_h) + the GEMM's packing of one block of the lowered matrix (K' = k_h*k_w*cg):
 * out CHW/HCW min(K', KC)*ru(min(NC, out_w), NR), out HWC ru(min(MC, out_w), MR)*min(K', KC). */
void tb_conv_mec_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                     const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_mec_chw_to_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                            const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_mec_chw_to_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                            const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_mec_hwc_to_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                            const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_mec_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                     const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_mec_hwc_to_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                            const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_mec_hcw_to_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                            const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_mec_hcw_to_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                            const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_mec_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                     const float *restrict bias, float *restrict out, float *restrict ws);

/* kn2row (CHW in; CHW or HCW out) and kn2col (HWC): full ws = k_h*k_w*mg*in_h*in_w, acc ws = mg*in_h*in_w, plus
 * the GEMM's packing of one block of the input: CHW min(cg, KC)*ru(min(NC, in_h*in_w), NR), HWC
 * ru(min(MC, in_h*in_w), MR)*min(cg, KC). Any stride, padding, dilation, groups (offered for stride 1). A row view
 * multiplies only the input rows it needs. */
void tb_conv_kn2row_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                        const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_kn2row_acc_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                            const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_kn2row_chw_to_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                               const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_kn2row_acc_chw_to_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_kn2col_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                        const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_kn2col_acc_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                            const float *restrict bias, float *restrict out, float *restrict ws);

/* HCW: direct (any conv, no workspace), depthwise direct (groups == in_c, no workspace), 1x1 GEMM (1x1, stride 1,
 * no padding; ws = min(cg, KC)*ru(min(NC, in_w), NR)). */
void tb_conv_direct_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                        const float *restrict bias, float *restrict out);
void tb_conv_depthwise_direct_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                  const float *restrict bias, float *restrict out);
void tb_conv_1x1_gemm_hcw(const tb_conv *p, const float *restrict in, const float *restrict w,
                          const float *restrict bias, float *restrict out, float *restrict ws);

#endif
