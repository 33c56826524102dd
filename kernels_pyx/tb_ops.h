/* Non-convolution kernels: pooling, fully connected, element-wise, concat, softmax, LRN, permutations and the
 * layout transforms between CHW, HWC and HCW. Parameter structs are in tb_kernels.h, which includes this file.
 * A layout names the memory order of the logical (C, H, W) axes: HWC means in[(h * W + w) * C + c]. */
#ifndef TB_OPS_H
#define TB_OPS_H

/* Max / average pooling. out_h may exceed the padded input (ceil mode): windows are clipped to the input for
 * reading; with count_include_pad the average divides by the window clipped to the padded input (ONNX Runtime). */
void tb_maxpool_chw(const tb_pool *p, const float *restrict in, float *restrict out);
void tb_maxpool_hwc(const tb_pool *p, const float *restrict in, float *restrict out);
void tb_maxpool_hcw(const tb_pool *p, const float *restrict in, float *restrict out);
void tb_avgpool_chw(const tb_pool *p, const float *restrict in, float *restrict out);
void tb_avgpool_hwc(const tb_pool *p, const float *restrict in, float *restrict out);
void tb_avgpool_hcw(const tb_pool *p, const float *restrict in, float *restrict out);

/* Global average pool (c,h,w) -> (c,1,1); the output is a vector, the same in every layout. */
void tb_gap_chw(const tb_tensor *p, const float *restrict in, float *restrict out);
void tb_gap_hwc(const tb_tensor *p, const float *restrict in, float *restrict out);
void tb_gap_hwc_channels(const tb_tensor_channels *p, const float *restrict in, float *restrict out);
void tb_gap_hcw(const tb_tensor *p, const float *restrict in, float *restrict out);

/* Fully connected on vectors; wt is W transposed, [in_n][out_n] (so the inner loop runs over contiguous outputs). */
void tb_fc_gemv(const tb_fc *p, const float *restrict in, const float *restrict wt, const float *restrict bias,
                float *restrict out);

/* Layout-free element-wise ops on n floats: out = act(a + b), out = act(in), softmax over the vector. */
void tb_add(const tb_flat *p, const float *restrict a, const float *restrict b, float *restrict out);
void tb_act(const tb_flat *p, const float *restrict in, float *restrict out);
void tb_softmax(const tb_flat *p, const float *restrict in, float *restrict out);

/* Per-channel affine out = act(in * s[c] + t[c]). */
void tb_scale_chw(const tb_tensor *p, const float *restrict in, const float *restrict s, const float *restrict t,
                  float *restrict out);
void tb_scale_hwc(const tb_tensor *p, const float *restrict in, const float *restrict s, const float *restrict t,
                  float *restrict out);
void tb_scale_hcw(const tb_tensor *p, const float *restrict in, const float *restrict s, const float *restrict t,
                  float *restrict out);

/* The same, in place: written over an input no later layer reads (acc = act(acc + x), x = act(x),
 * x = act(x * s[c] + t[c])). */
void tb_add_inplace(const tb_flat *p, float *restrict acc, const float *restrict x);
void tb_act_inplace(const tb_flat *p, float *restrict x);
void tb_scale_chw_inplace(const tb_tensor *p, float *restrict x, const float *restrict s, const float *restrict t);
void tb_scale_hwc_inplace(const tb_tensor *p, float *restrict x, const float *restrict s, const float *restrict t);
void tb_scale_hcw_inplace(const tb_tensor *p, float *restrict x, const float *restrict s, const float *restrict t);

/* Concat: copy one (c,h,w) input into channels [c_offset, c_offset + c) of the (out_c,h,w) output. */
void tb_copy_channels_chw(const tb_channels *p, const float *restrict in, float *restrict out);
void tb_copy_channels_hwc(const tb_channels *p, const float *restrict in, float *restrict out);
void tb_copy_channels_hcw(const tb_channels *p, const float *restrict in, float *restrict out);

/* A patch copy: `rows` rows of `row_floats` floats, read `in_stride` floats apart and written `out_stride`
 * floats apart (a patch of an HWC tensor copied into a buffer of its own and back: tiling.patches). */
typedef struct { int rows, row_floats, in_stride, out_stride; } tb_patch_copy;
void tb_copy_patch(const tb_patch_copy *p, const float *restrict in, float *restrict out);

/* ONNX LRN across channels. */
void tb_lrn_chw(const tb_lrn *p, const float *restrict in, float *restrict out);
void tb_lrn_chw_channels(const tb_lrn_view *p, const float *restrict in, float *restrict out);
void tb_lrn_hwc(const tb_lrn *p, const float *restrict in, float *restrict out);
void tb_lrn_chw_inplace(const tb_lrn *p, float *restrict x, float *restrict ws);

/* General permutation of a row-major (d0,d1,d2) tensor (the copy fallback of transpose). */
void tb_permute_copy(const tb_permute *p, const float *restrict in, float *restrict out);

/* Layout transforms of a logical (c,h,w) tensor (act fields unused). */
void tb_layout_chw_to_hwc(const tb_tensor *p, const float *restrict in, float *restrict out);
void tb_layout_chw_to_hwc_rows(const tb_tensor_rows *p, const float *restrict in, float *restrict out);
void tb_layout_chw_to_hcw(const tb_tensor *p, const float *restrict in, float *restrict out);
void tb_layout_chw_to_hcw_rows(const tb_tensor_rows *p, const float *restrict in, float *restrict out);
void tb_layout_hwc_to_chw(const tb_tensor *p, const float *restrict in, float *restrict out);
void tb_layout_hwc_to_chw_rows(const tb_tensor_rows *p, const float *restrict in, float *restrict out);
void tb_layout_hwc_to_hcw(const tb_tensor *p, const float *restrict in, float *restrict out);
void tb_layout_hcw_to_chw(const tb_tensor *p, const float *restrict in, float *restrict out);
void tb_layout_hcw_to_chw_rows(const tb_tensor_rows *p, const float *restrict in, float *restrict out);
void tb_layout_hcw_to_hwc(const tb_tensor *p, const float *restrict in, float *restrict out);

#endif
