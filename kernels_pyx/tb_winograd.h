/* Winograd convolutions (tb_conv parameters): stride 1, dilation 1, groups 1, a square 3x3 or 5x5 kernel as the
 * variant says, any padding. F(m x m, r x r) cuts the output into m x m tiles (alpha = m + r - 1, the input tile
 * side) and processes them in blocks of `block` tiles: the input tiles are transformed into the workspace, one GEMM
 * per transformed-tile element xi (alpha^2 of them) multiplies them with the pre-transformed weights over the input
 * channels, and the results are transformed back into the output with bias and activation. Views (channel range
 * oc_begin/oc_end, row range oh_begin/oh_end) and accumulate are honoured as in tb_conv.h: a row view runs only
 * the tile rows that intersect it, reads only the input rows it needs (a tile straddling its edge reads zeros for
 * the rest) and stores only its rows. The workspace below, sized for the whole call, is enough for any view.
 *
 * The same algorithm and weight format in both layouts (see conv_winograd.c); the layout only changes where a
 * channel and a pixel live in `in` and `out`.
 *
 * Weights (w0), from tasobuild/primitives/conv_winograd.py: U_xi = (G g GT)[xi] for every output/input channel
 * pair; per xi, U_xi^T [in_c][out_c] packed as GEMM B panels (tb_gemm.h), in_c * ceil(out_c/NR)*NR floats each.
 * Blocks: T = ceil(out_h/m) * ceil(out_w/m) tiles, block = min(T, TB_WINO_BLOCK) for the default kernels and
 * min(T, TB_WINO_LOWMEM_BLOCK) for the _lowmem ones. With lanes = 16 for alpha <= 6, else 8, the workspace is
 *   2 * alpha^2 * lanes                                              (transform scratch)
 *   + alpha^2 * block * (ceil(in_c/lanes) + ceil(out_c/lanes)) * lanes (transformed input and GEMM results)
 *   + ceil(min(MC, block)/MR)*MR * tb_gemm_kc(in_c)                    (tb_gemm's packing of the input)
 * floats. */
#ifndef TB_WINOGRAD_H
#define TB_WINOGRAD_H

/* Tiles per block. 96 = the GEMM's MC: one packed cache block of transformed tiles, each weight panel reused
 * across all of them (deep layers with large weights gain most). 12 = two MR panels: the smallest block that keeps
 * the micro-kernel's rows full; as fast or faster on wide layers, where the transformed block then stays in L2. */
#define TB_WINO_BLOCK 96
#define TB_WINO_LOWMEM_BLOCK 12

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
