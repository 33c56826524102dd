/* Winograd convolutions (tb_conv parameters): stride 1, dilation 1, groups 1, a square 3x3 or 5x5 kernel as the
 * variant says, any padding. F(m x m, r x r) cuts the output into m x m tiles (alpha = m + r - 1, the input tile
 * side) and processes them in blocks of `block` tiles: the input tiles are transformed into the workspace, one GEMM
 * per transformed-tile element xi (alpha^2 of them) multiplies them with the pre-transformed weights over the input
 * channels, and the results are transformed back into the output with bias and activation. Channel ranges
 * (oc_begin/oc_end) and accumulate are honoured as in tb_conv.h.
 *
 * Weights (w0), U_xi = (G g GT)[xi] per output/input channel pair, from tasobuild/primitives/conv_winograd.py:
 *   CHW: per xi, U_xi [out_c][in_c] packed as GEMM A panels (tb_gemm.h), ceil(out_c/MR)*MR * in_c floats each;
 *   HWC: per xi, U_xi^T [in_c][out_c] packed as GEMM B panels, in_c * ceil(out_c/NR)*NR floats each.
 * Blocks: TB_WINO_BLOCK tiles for the default kernels, TB_WINO_LOWMEM_BLOCK for the _lowmem ones; with
 * T = ceil(out_h/m) * ceil(out_w/m) tiles, block = min(T, TB_WINO_*BLOCK). Workspace floats (lanes = 16 for
 * alpha <= 6, else 8):
 *   CHW: alpha^2 * ceil(block/NR)*NR * (in_c + out_c)
 *   HWC: alpha^2 * block * (ceil(in_c/lanes) + ceil(out_c/lanes))*lanes + ceil(min(MC, block)/MR)*MR * min(in_c, KC)
 */
#ifndef TB_WINOGRAD_H
#define TB_WINOGRAD_H

#ifndef TB_WINO_BLOCK
#define TB_WINO_BLOCK 128
#endif
#ifndef TB_WINO_LOWMEM_BLOCK
#define TB_WINO_LOWMEM_BLOCK 16
#endif

void tb_conv_winograd_f2x2_3x3_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f3x3_3x3_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f4x4_3x3_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f2x2_5x5_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f3x3_5x5_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f2x2_3x3_lowmem_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f3x3_3x3_lowmem_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f4x4_3x3_lowmem_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f2x2_5x5_lowmem_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f3x3_5x5_lowmem_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f2x2_3x3_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f3x3_3x3_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f4x4_3x3_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f2x2_5x5_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f3x3_5x5_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                   const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f2x2_3x3_lowmem_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f3x3_3x3_lowmem_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f4x4_3x3_lowmem_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f2x2_5x5_lowmem_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws);
void tb_conv_winograd_f3x3_5x5_lowmem_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                          const float *restrict bias, float *restrict out, float *restrict ws);

#endif
