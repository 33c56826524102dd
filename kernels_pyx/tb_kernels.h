/* tasobuild kernels: the one copy of every kernel, profiled through the Cython bindings and shipped in the emitted
 * project. Every kernel is `void tb_<name>(const <params> *p, <buffers...>)`: a parameter struct holding only
 * 4-byte int/float fields (so it can be built from Python field by field) followed by the buffers.
 *
 * Rules every kernel obeys: no heap, no stdio, no mutable globals, stack use under 4 KiB; it reads only its inputs
 * and weights, writes only its output and its declared workspace (exact size given by the Python registry).
 * Buffer order: inputs, weights (in the order the registry's weight transform returns them), output, workspace.
 */
#ifndef TB_KERNELS_H
#define TB_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Fused activation, applied to each output element after bias. */
enum { TB_ACT_NONE = 0, TB_ACT_RELU = 1, TB_ACT_CLIP = 2, TB_ACT_LEAKY_RELU = 3, TB_ACT_SIGMOID = 4 };

/* Convolution. Output size is given (the IR computed it); pad_bottom/pad_right follow from it.
 * Tiling views (for fused tiling): only output channels [oc_begin, oc_end) and output rows [oh_begin, oh_end) are
 * computed, reading only the input rows those output rows need; with accumulate=1 the result is added to `out` (no
 * bias, no activation: the caller applies them once at the end). */
typedef struct {
    int in_c, in_h, in_w;
    int out_c, out_h, out_w;
    int k_h, k_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, groups;
    int act; float act_a, act_b;
    int oc_begin, oc_end, oh_begin, oh_end, accumulate;
    /* HWC output only: floats from one output pixel to the next; 0 is the dense out_c. A producer writing its
     * channel slice of a zero-copy concat's output sets it (out then points at the slice's first channel). Only
     * the kernels that honour it are offered with it (primitives/sharing.py). */
    int out_ps;
} tb_conv;

/* Pooling (max / average). count_include_pad: average divides by the window clipped to the padded input. */
typedef struct {
    int c, in_h, in_w, out_h, out_w;
    int k_h, k_w, stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right, count_include_pad;
    int out_ps; /* HWC output only: floats from one output pixel to the next; 0 is the dense c (as tb_conv's) */
} tb_pool;

/* Whole-tensor shape for layout-aware element-wise ops (gap, scale, lrn, transforms). */
typedef struct { int c, h, w; int act; float act_a, act_b; } tb_tensor;
/* tb_tensor and a range of rows [h_begin, h_end): a thread's part of a split CHW layout transform. */
typedef struct { int c, h, w; int act; float act_a, act_b; int h_begin, h_end; } tb_tensor_rows;
/* tb_tensor and a range of channels [c_begin, c_end): a thread's part of a split HWC global average pooling. */
typedef struct { int c, h, w; int act; float act_a, act_b; int c_begin, c_end; } tb_tensor_channels;

/* Flat vectors: add, standalone activation, softmax, copy. n elements. */
typedef struct { int n; int act; float act_a, act_b; } tb_flat;

/* Fully connected: out[n] = act(sum_k W[n][k] in[k] + b[n]). */
typedef struct { int in_n, out_n; int act; float act_a, act_b; } tb_fc;

/* Concat input: copy a (c,h,w) tensor into channels [c_offset, c_offset+c) of an (out_c,h,w) tensor. */
typedef struct { int c, h, w, out_c, c_offset; } tb_channels;

/* Local response normalisation across channels (ONNX LRN semantics). */
typedef struct { int c, h, w, size; float alpha, beta, bias; } tb_lrn;
/* tb_lrn and a range of output channels [c_begin, c_end): a thread's part of a split LRN. */
typedef struct { int c, h, w, size; float alpha, beta, bias; int c_begin, c_end; } tb_lrn_view;

/* General permutation of a (d0,d1,d2) row-major tensor: out axis i is in axis perm_i. */
typedef struct { int d0, d1, d2, perm0, perm1, perm2; } tb_permute;

#include "tb_ops.h"
#include "tb_conv.h"
#include "tb_conv_families.h"
#include "tb_winograd.h"
#include "tb_conv_blocked.h"

#ifdef __cplusplus
}
#endif
#endif
