/* Depthwise convolution (groups == in_c, out_c = in_c * multiplier; output m reads input channel m / multiplier).
 * CHW: one output row at a time (it and the k_h input rows it reads stay in L1); each tap adds a shifted, scaled
 * input row over the contiguous outputs. HWC: per output pixel each tap is an element-wise multiply-add across the
 * contiguous channels. Both inner loops vectorise (stride 1 in CHW; any stride in HWC with multiplier 1).
 * A row view [oh_begin, oh_end) only narrows the output-row loops (so only the input rows they need are read). */
#include "tb_kernels.h"
#include "tb_gemm.h"

/* One output value from every valid tap (the border path). */
static float dw_point(const tb_conv *p, const float *restrict x, const float *restrict wk, int oh, int ow)
{
    float s = 0.0f;
    int ki, kj;
    for (ki = 0; ki < p->k_h; ++ki) {
        const int ih = oh * p->stride_h + ki * p->dil_h - p->pad_top;
        if (ih < 0 || ih >= p->in_h) continue;
        for (kj = 0; kj < p->k_w; ++kj) {
            const int iw = ow * p->stride_w + kj * p->dil_w - p->pad_left;
            if (iw >= 0 && iw < p->in_w) s += wk[ki * p->k_w + kj] * x[(long)ih * p->in_w + iw];
        }
    }
    return s;
}

/* out[o] += the nine taps of a 3x3 window at input column o*sw (rows r0, r0+dh, r0+2dh); inlined with constant
 * sw, dw for the common cases so the loop vectorises. */
static inline void dw3x3_row(const float *restrict r0, long dh, const float *restrict wk, float *restrict out, int n,
                             int sw, int dw)
{
    const float *restrict r1 = r0 + dh, *restrict r2 = r0 + 2 * dh;
    const float w00 = wk[0], w01 = wk[1], w02 = wk[2], w10 = wk[3], w11 = wk[4], w12 = wk[5];
    const float w20 = wk[6], w21 = wk[7], w22 = wk[8];
    int o;
    for (o = 0; o < n; ++o) {
        const long i = (long)o * sw;
        out[o] += w00 * r0[i] + w01 * r0[i + dw] + w02 * r0[i + 2 * dw] + w10 * r1[i] + w11 * r1[i + dw] +
                  w12 * r1[i + 2 * dw] + w20 * r2[i] + w21 * r2[i + dw] + w22 * r2[i + 2 * dw];
    }
}

/* Interior outputs [lo, hi) of row oh (every tap inside the input): 3x3 fuses all nine taps in one pass (one store
 * per output); other sizes add one tap at a time. */
static void dw_interior(const tb_conv *p, const float *restrict x, const float *restrict wk, int oh, int lo, int hi,
                        float *restrict orow)
{
    const int sw = p->stride_w, dw = p->dil_w;
    const float *row0 = x + (long)(oh * p->stride_h - p->pad_top) * p->in_w + (long)lo * sw - p->pad_left;
    const long dh = (long)p->dil_h * p->in_w;
    int ki, kj, o;
    if (p->k_h == 3 && p->k_w == 3) {
        if (sw == 1 && dw == 1)
            dw3x3_row(row0, dh, wk, orow + lo, hi - lo, 1, 1);
        else if (sw == 2 && dw == 1)
            dw3x3_row(row0, dh, wk, orow + lo, hi - lo, 2, 1);
        else
            dw3x3_row(row0, dh, wk, orow + lo, hi - lo, sw, dw);
        return;
    }
    for (ki = 0; ki < p->k_h; ++ki)
        for (kj = 0; kj < p->k_w; ++kj) {
            const float wv = wk[ki * p->k_w + kj];
            const float *restrict r = row0 + ki * dh + (long)kj * dw;
            float *restrict out = orow + lo;
            for (o = 0; o < hi - lo; ++o) out[o] += wv * r[(long)o * sw];
        }
}

void tb_conv_depthwise_direct_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                                  const float *restrict bias, float *restrict out)
{
    const int mult = p->out_c / p->in_c, taps = p->k_h * p->k_w;
    const long in_plane = (long)p->in_h * p->in_w;
    int m, row_lo, row_hi, col_lo, col_hi, t;
    /* Interior rows/columns: those whose first and last taps are both inside the input. */
    tb_valid_range(p->out_h, p->stride_h, -p->pad_top, p->in_h, &row_lo, &row_hi);
    tb_valid_range(p->out_h, p->stride_h, (p->k_h - 1) * p->dil_h - p->pad_top, p->in_h, &t, &row_hi);
    row_lo = tb_max(row_lo, t);
    tb_valid_range(p->out_w, p->stride_w, -p->pad_left, p->in_w, &col_lo, &col_hi);
    tb_valid_range(p->out_w, p->stride_w, (p->k_w - 1) * p->dil_w - p->pad_left, p->in_w, &t, &col_hi);
    col_lo = tb_max(col_lo, t);
    if (col_hi < col_lo) col_hi = col_lo;
    for (m = p->oc_begin; m < p->oc_end; ++m) {
        const float *x = in + (long)(m / mult) * in_plane;
        const float *wk = w + (long)m * taps;
        int oh, ow;
        for (oh = p->oh_begin; oh < p->oh_end; ++oh) {
            float *restrict orow = out + ((long)m * p->out_h + oh) * p->out_w;
            const int inner = oh >= row_lo && oh < row_hi && col_lo < col_hi;
            if (!p->accumulate)
                for (ow = 0; ow < p->out_w; ++ow) orow[ow] = 0.0f;
            for (ow = 0; ow < p->out_w; ++ow) {
                if (inner && ow == col_lo) {
                    dw_interior(p, x, wk, oh, col_lo, col_hi, orow);
                    ow = col_hi - 1;
                    continue;
                }
                orow[ow] += dw_point(p, x, wk, oh, ow);
            }
            if (!p->accumulate) tb_bias_act_row(orow, p->out_w, bias[m], p->act, p->act_a, p->act_b);
        }
    }
}

static void dw_hwc_generic(const tb_conv *p, const float *restrict in, const float *restrict w,
                                  const float *restrict bias, float *restrict out)
{
    const int mult = p->out_c / p->in_c, M = p->out_c, m0 = p->oc_begin, n = p->oc_end - p->oc_begin;
    int oh, ow;
    if (n <= 0) return;
    for (oh = p->oh_begin; oh < p->oh_end; ++oh) {
        for (ow = 0; ow < p->out_w; ++ow) {
            float *restrict o = out + ((long)oh * p->out_w + ow) * M + m0;
            int ki, kj, i;
            if (!p->accumulate)
                for (i = 0; i < n; ++i) o[i] = 0.0f;
            for (ki = 0; ki < p->k_h; ++ki) {
                const int ih = oh * p->stride_h + ki * p->dil_h - p->pad_top;
                if (ih < 0 || ih >= p->in_h) continue;
                for (kj = 0; kj < p->k_w; ++kj) {
                    const int iw = ow * p->stride_w + kj * p->dil_w - p->pad_left;
                    const float *restrict x, *restrict wt;
                    if (iw < 0 || iw >= p->in_w) continue;
                    x = in + ((long)ih * p->in_w + iw) * p->in_c;
                    wt = w + (long)(ki * p->k_w + kj) * M + m0;
                    if (mult == 1)
                        for (i = 0; i < n; ++i) o[i] += wt[i] * x[m0 + i];
                    else
                        for (i = 0; i < n; ++i) o[i] += wt[i] * x[(m0 + i) / mult];
                }
            }
            if (!p->accumulate) tb_bias_act_vec(o, n, bias + m0, p->act, p->act_a, p->act_b);
        }
    }
}

#if defined(__GNUC__) && !defined(TB_GEMM_SCALAR) && \
    (defined(__SSE2__) || defined(__ARM_NEON) || (defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 2)))
#define TB_DW_VEC 1
/* HWC 3x3, multiplier 1, no dilation, stride 1 or 2: DW_CB channels per vector (16: one AVX-512 register, two AVX
 * ones; 4 on 32-bit NEON and Helium, one q register),
 * the block's nine tap weights held in registers, DW_PX output pixels along W at once so the stride-1 path loads
 * each input pixel once for three taps. Sums start from the bias (or the output when accumulating) and get the
 * activation in registers: one store per output vector. */
#if defined(__ARM_NEON) && !defined(__aarch64__)
#define DW_CB 4 /* 32-bit NEON has 16 q registers: one each for the 9 weights, 4 sums and an input, 4 channels wide */
#define DW_MIN_W 0
#elif defined(__ARM_FEATURE_MVE)
/* Helium (Cortex-M55): 8 q registers, 4 channels wide (the weights spill). On rows narrower than 8 outputs the
 * border pixels dominate and the generic loop counts fewer instructions (BENCHMARKS.md, "Helium"). */
#define DW_CB 4
#define DW_MIN_W 8
#else
#define DW_CB 16
#define DW_MIN_W 0
#endif
typedef float tb_v16 __attribute__((vector_size(4 * DW_CB)));
typedef int tb_vi16 __attribute__((vector_size(4 * DW_CB)));
#define DW_PX 4

/* Vectors never cross a function boundary by value (that would tie the ABI to the vector ISA): macros and
 * pointers only. */
#define V16_LOAD(v, p) __builtin_memcpy(&(v), (p), sizeof(tb_v16))
#define V16_STORE(p, v) __builtin_memcpy((p), &(v), sizeof(tb_v16))
#if defined(__AVX512F__)
#include <immintrin.h>
/* acc += w * x: fused on AVX-512 (one rounding, as in the GEMM), multiply then add elsewhere */
#define V16_MADD(acc, w, x) ((acc) = (tb_v16)_mm512_fmadd_ps((__m512)(w), (__m512)(x), (__m512)(acc)))
#elif defined(__ARM_NEON) && !defined(__aarch64__)
#include <arm_neon.h>
/* 32-bit NEON flushes subnormals, so GCC lowers float vector arithmetic to scalar VFP code: the multiply-add and
 * the activations are NEON intrinsics (vmla multiplies then adds, as elsewhere) */
#define TB_DW_NEON32 1
#define V16_MADD(acc, w, x) ((acc) = (tb_v16)vmlaq_f32((float32x4_t)(acc), (float32x4_t)(w), (float32x4_t)(x)))
#else
#define V16_MADD(acc, w, x) ((acc) += (w) * (x))
#endif
#define V16_SELECT(keep, a, b) ((tb_v16)(((tb_vi16)(a) & (keep)) | ((tb_vi16)(b) & ~(keep))))

/* *v = act(*v), in place. */
static inline __attribute__((always_inline)) void v16_act(tb_v16 *v, int act, float a, float b)
{
    const tb_v16 zero = {0};
    switch (act) {
    case TB_ACT_NONE: return;
#ifdef TB_DW_NEON32
    case TB_ACT_RELU: *v = (tb_v16)vmaxq_f32((float32x4_t)*v, (float32x4_t)zero); return;
    case TB_ACT_CLIP: *v = (tb_v16)vminq_f32(vmaxq_f32((float32x4_t)*v, vdupq_n_f32(a)), vdupq_n_f32(b)); return;
#else
    case TB_ACT_RELU: *v = V16_SELECT(*v > zero, *v, zero); return;
    case TB_ACT_CLIP:
        *v = V16_SELECT(*v < zero + a, zero + a, *v);
        *v = V16_SELECT(*v > zero + b, zero + b, *v);
        return;
#endif
    default: { /* leaky relu, sigmoid: rare after a depthwise conv, one value at a time */
        float t[DW_CB];
        int i;
        __builtin_memcpy(t, v, sizeof t);
        for (i = 0; i < DW_CB; ++i) t[i] = tb_act_value(t[i], act, a, b);
        __builtin_memcpy(v, t, sizeof t);
        return;
    }
    }
}

/* Output pixels [ow, ow+n) (n <= DW_PX) of row oh for channels [c, c+DW_CB): taps rows [k0, k1) are inside the
 * input; columns are checked only when `edge` (the border pixels). S is the stride (constant after inlining). */
static inline __attribute__((always_inline)) void dw_hwc_px(const tb_conv *p, const float *restrict in, const tb_v16 *wv, const tb_v16 *init, int oh,
                             int ow, int n, int c, int k0, int k1, int edge, int S, float *restrict out)
{
    const long C = p->in_c, M = p->out_c;
    tb_v16 acc[DW_PX];
    int j, ki, kj;
    float *o = out + ((long)oh * p->out_w + ow) * M + c;
    for (j = 0; j < DW_PX; ++j) {
        if (p->accumulate && j < n) V16_LOAD(acc[j], o + j * M);
        else acc[j] = *init;
    }
    for (ki = k0; ki < k1; ++ki) {
        const float *row = in + (long)(oh * S + ki - p->pad_top) * p->in_w * C + c;
        for (kj = 0; kj < 3; ++kj)
            for (j = 0; j < DW_PX; ++j) {
                const int iw = (ow + j) * S + kj - p->pad_left;
                tb_v16 x;
                if (edge && (j >= n || iw < 0 || iw >= p->in_w)) continue;
                V16_LOAD(x, row + iw * C);
                V16_MADD(acc[j], wv[ki * 3 + kj], x);
            }
    }
    for (j = 0; j < n; ++j) {
        if (!p->accumulate) v16_act(&acc[j], p->act, p->act_a, p->act_b);
        V16_STORE(o + j * M, acc[j]);
    }
}

/* Four interior output pixels [ow, ow+4) of rows oh .. oh+R-1 (R = 1 or 2: two rows share their input rows while
 * they are in L1), channels [c, c+16): every tap inside the input. The input pixel q places right of the group's
 * first one (q = S*j + kj for output j and tap kj) is read as base[q / 3] + (q % 3) * C: three pointers per row and
 * one offset register, as addressing modes take them; twelve multiples of C would not fit the integer registers
 * and the compiler would spill them. */
#define DW_AT(r, q) (((q) < 3 ? r##0 : (q) < 6 ? r##1 : r##2) + ((q) % 3) * C)
#define DW_T(acc, wt, ptr) do { tb_v16 x_; V16_LOAD(x_, ptr); V16_MADD(acc, wt, x_); } while (0)
#define DW_ROW(r, wa, wb, wc, a0, a1, a2, a3)                                                                  \
    do {                                                                                                      \
        DW_T(a0, wa, DW_AT(r, 0)); DW_T(a0, wb, DW_AT(r, 1)); DW_T(a0, wc, DW_AT(r, 2));                      \
        DW_T(a1, wa, DW_AT(r, S)); DW_T(a1, wb, DW_AT(r, S + 1)); DW_T(a1, wc, DW_AT(r, S + 2));              \
        DW_T(a2, wa, DW_AT(r, 2 * S)); DW_T(a2, wb, DW_AT(r, 2 * S + 1)); DW_T(a2, wc, DW_AT(r, 2 * S + 2));  \
        DW_T(a3, wa, DW_AT(r, 3 * S)); DW_T(a3, wb, DW_AT(r, 3 * S + 1)); DW_T(a3, wc, DW_AT(r, 3 * S + 2));  \
    } while (0)
/* The three bases of input row `row` (a pointer to its position 0). The empty asm hides how they were computed,
 * so the compiler keeps each in a register instead of rewriting every address as its own loop-invariant base plus
 * one shared induction variable (which spills them all). */
#define DW_OPAQUE(ptr) __asm__("" : "+r"(ptr))
#define DW_BASES(r, row)                                                                                      \
    const float *r##0 = (row), *r##1 = r##0 + 3 * C, *r##2 = r##0 + 6 * C;                                  \
    DW_OPAQUE(r##0); DW_OPAQUE(r##1); DW_OPAQUE(r##2)
/* Output pixels o .. o+3M of one row from input rows x, y, z: start (bias or out), 9 taps, act, store. */
#define DW_PIXELS4(x, y, z, o)                                                                                \
    do {                                                                                                      \
        if (p->accumulate) {                                                                                  \
            V16_LOAD(a0, o); V16_LOAD(a1, (o) + M); V16_LOAD(a2, (o) + 2 * M); V16_LOAD(a3, (o) + 3 * M);     \
        } else {                                                                                              \
            V16_LOAD(a0, bias_c); a1 = a2 = a3 = a0;                                                          \
        }                                                                                                     \
        DW_ROW(x, w0, w1, w2, a0, a1, a2, a3);                                                                \
        DW_ROW(y, w3, w4, w5, a0, a1, a2, a3);                                                                \
        DW_ROW(z, w6, w7, w8, a0, a1, a2, a3);                                                                \
        if (!p->accumulate) {                                                                                 \
            v16_act(&a0, p->act, p->act_a, p->act_b); v16_act(&a1, p->act, p->act_a, p->act_b);               \
            v16_act(&a2, p->act, p->act_a, p->act_b); v16_act(&a3, p->act, p->act_a, p->act_b);               \
        }                                                                                                     \
        V16_STORE(o, a0); V16_STORE((o) + M, a1); V16_STORE((o) + 2 * M, a2); V16_STORE((o) + 3 * M, a3);     \
    } while (0)
static inline __attribute__((always_inline)) void dw_hwc_inner4(const tb_conv *p, const float *restrict in,
                                                                const float *restrict w, const float *bias_c, int oh,
                                                                int ow, int c, int S, int R, float *restrict out)
{
    const long C = p->in_c, M = p->out_c, rs = (long)p->in_w * C;
    const float *r0 = in + ((long)(oh * S - p->pad_top) * p->in_w + (long)ow * S - p->pad_left) * C + c;
    float *o = out + ((long)oh * p->out_w + ow) * M + c;
    tb_v16 w0, w1, w2, w3, w4, w5, w6, w7, w8, a0, a1, a2, a3;
    V16_LOAD(w0, w + c); V16_LOAD(w1, w + M + c); V16_LOAD(w2, w + 2 * M + c);
    V16_LOAD(w3, w + 3 * M + c); V16_LOAD(w4, w + 4 * M + c); V16_LOAD(w5, w + 5 * M + c);
    V16_LOAD(w6, w + 6 * M + c); V16_LOAD(w7, w + 7 * M + c); V16_LOAD(w8, w + 8 * M + c);
    {
        DW_BASES(x, r0);
        DW_BASES(y, r0 + rs);
        DW_BASES(z, r0 + 2 * rs);
        DW_PIXELS4(x, y, z, o);
    }
    if (R == 2) { /* the next output row: input rows S .. S+2 (stride 1: y, z and one more) */
        DW_BASES(x, r0 + S * rs);
        DW_BASES(y, r0 + (S + 1) * rs);
        DW_BASES(z, r0 + (S + 2) * rs);
        DW_PIXELS4(x, y, z, o + (long)p->out_w * M);
    }
}
#undef DW_PIXELS4
#undef DW_BASES
#undef DW_OPAQUE
#undef DW_ROW
#undef DW_T
#undef DW_AT

static inline __attribute__((always_inline)) void dw_hwc_3x3(const tb_conv *p, const float *restrict in, const float *restrict w,
                              const float *restrict bias, float *restrict out, int c_end, int S)
{
    const int M = p->out_c;
    int col_lo, col_hi, row_lo, row_hi, t, oh, c, rows = 1;
#define DW_INNER(R) /* the interior pixels of R rows */                                                    \
    for (ow = col_lo; ow < inner_end; ow += DW_PX)                                                            \
        for (c = p->oc_begin; c < c_end; c += DW_CB) dw_hwc_inner4(p, in, w, bias + c, oh, ow, c, S, R, out)
    tb_valid_range(p->out_h, S, -p->pad_top, p->in_h, &row_lo, &row_hi);
    tb_valid_range(p->out_h, S, 2 - p->pad_top, p->in_h, &t, &row_hi);
    row_lo = tb_max(row_lo, t);
    if (row_hi < row_lo) row_hi = row_lo;
    tb_valid_range(p->out_w, S, -p->pad_left, p->in_w, &col_lo, &col_hi);
    tb_valid_range(p->out_w, S, 2 - p->pad_left, p->in_w, &t, &col_hi);
    col_lo = tb_max(col_lo, t);
    if (col_hi < col_lo) col_hi = col_lo;
    for (oh = p->oh_begin; oh < p->oh_end; oh += rows) {
        /* rows whose three input rows are all inside: [row_lo, row_hi); pairs of them (both in the view) go
         * through together */
        const int inner = oh >= row_lo && oh < row_hi, inner_end = col_lo + (col_hi - col_lo) / DW_PX * DW_PX;
        int ow;
        rows = inner && oh + 1 < row_hi && oh + 1 < p->oh_end ? 2 : 1;
        /* The hot loop, written out so everything stays in registers: four pixels at a time, all their channel
         * vectors before the next four, so the input is read as it lies in memory (pixel after pixel, every cache
         * line whole) and not once per channel vector, a line out of every C / 16, which the prefetchers follow
         * less well once the rows come from L3 (MobileNetV2's 112x112 and 56x56 layers). */
        if (inner && rows == 2) DW_INNER(2);
        else if (inner) DW_INNER(1);
        for (c = p->oc_begin; c < c_end; c += DW_CB) {
            tb_v16 wv[9], init = {0};
            int i, r;
            for (i = 0; i < 9; ++i) V16_LOAD(wv[i], w + (long)i * M + c);
            if (!p->accumulate) V16_LOAD(init, bias + c);
            for (r = 0; inner && r < rows; ++r) /* left border pixels of interior rows */
                for (ow = 0; ow < col_lo; ++ow) dw_hwc_px(p, in, wv, &init, oh + r, ow, 1, c, 0, 3, 1, S, out);
            for (r = 0; r < rows; ++r) {
                const int top = (oh + r) * S - p->pad_top;
                const int k0 = tb_max(0, -top), k1 = tb_min(3, p->in_h - top);
                ow = inner ? inner_end : col_lo;
                if (!inner) { /* a top or bottom row: rows == 1, some input rows missing */
                    for (ow = 0; ow < col_lo; ++ow) dw_hwc_px(p, in, wv, &init, oh, ow, 1, c, k0, k1, 1, S, out);
                    for (; ow + DW_PX <= col_hi; ow += DW_PX)
                        dw_hwc_px(p, in, wv, &init, oh, ow, DW_PX, c, k0, k1, 0, S, out);
                }
                for (; ow < p->out_w; ow += DW_PX)
                    dw_hwc_px(p, in, wv, &init, oh + r, ow, tb_min(DW_PX, p->out_w - ow), c, k0, k1, 1, S, out);
            }
        }
    }
}
#undef DW_INNER

#if defined(__AVX512F__)
/* Narrow maps (MobileNetV2's 7x7 and 14x14, stride 1, padded by one on each side): a whole output row of W <= 16
 * pixels x 16 channels in W registers, so the border pixels (on a 7x7 map 29 of 49) run as fast as the others. Per
 * tap row the input pixels are loaded once each, in order, and each feeds the up to three outputs whose window holds
 * it (a third of a load per multiply-add, where the 4-pixel groups load once per multiply-add); an output thus gets
 * its taps in the order the other paths add them (row by row, left to right), so the sums are bit-identical to
 * theirs. W + 4 registers: the sums, an input pixel and the tap row's three weights. Maps up to DW_ROWS_INPUT_BYTES
 * are walked channel vector by channel vector, each over all rows, so a tap row's pixels come from L1 for the three
 * output rows using them (row by row, every channel vector of a row before the next, they came from L2 each time).
 * Wider maps keep dw_hwc_3x3: rows cut into segments ran slower there (BENCHMARKS.md, after "direct_ab_mbv2d"). */
enum { DW_ROW_MAX = 16 };
#define DW_ROWS_INPUT_BYTES (1l << 20)
static inline __attribute__((always_inline)) void dw_hwc_whole_rows(const tb_conv *p, const float *restrict in,
                                                                    const float *restrict w,
                                                                    const float *restrict bias,
                                                                    float *restrict out, int c_end, const int W)
{
    const long C = p->in_c, M = p->out_c;
    const int channels_outer = (long)p->in_h * W * C * (long)sizeof(float) <= DW_ROWS_INPUT_BYTES;
    const int c_steps = (c_end - p->oc_begin) / DW_CB, rows = p->oh_end - p->oh_begin;
    int step, ki, ix, j;
    for (step = 0; step < c_steps * rows; ++step) { /* (channel vector, row) pairs in the order chosen above */
        const int c = p->oc_begin + (channels_outer ? step / rows : step % c_steps) * DW_CB;
        const int oh = p->oh_begin + (channels_outer ? step % rows : step / c_steps);
        const int top = oh - p->pad_top, k0 = tb_max(0, -top), k1 = tb_min(3, p->in_h - top);
        float *o = out + (long)oh * W * M + c;
        tb_v16 acc[DW_ROW_MAX];
        for (j = 0; j < W; ++j) {
            if (p->accumulate) V16_LOAD(acc[j], o + j * M);
            else V16_LOAD(acc[j], bias + c);
        }
        for (ki = k0; ki < k1; ++ki) {
            const float *row = in + (long)(top + ki) * W * C + c;
            tb_v16 w0, w1, w2;
            V16_LOAD(w0, w + (long)(ki * 3) * M + c);
            V16_LOAD(w1, w + (long)(ki * 3 + 1) * M + c);
            V16_LOAD(w2, w + (long)(ki * 3 + 2) * M + c);
            for (ix = 0; ix < W; ++ix) { /* input ix is tap 0 of output ix + 1, 1 of ix, 2 of ix - 1 */
                tb_v16 x;
                V16_LOAD(x, row + ix * C);
                if (ix + 1 < W) V16_MADD(acc[ix + 1], w0, x);
                V16_MADD(acc[ix], w1, x);
                if (ix >= 1) V16_MADD(acc[ix - 1], w2, x);
            }
        }
        for (j = 0; j < W; ++j) {
            if (!p->accumulate) v16_act(&acc[j], p->act, p->act_a, p->act_b);
            V16_STORE(o + j * M, acc[j]);
        }
    }
}

/* Whether dw_hwc_whole_rows runs this 3x3, stride 1 convolution: a narrow map, padded by one left and right. */
static int dw_whole_rows(const tb_conv *p)
{
    return p->stride_w == 1 && p->pad_left == 1 && p->in_w == p->out_w && p->out_w >= 2 && p->out_w <= DW_ROW_MAX;
}

static void dw_hwc_whole_rows_n(const tb_conv *p, const float *restrict in, const float *restrict w,
                                const float *restrict bias, float *restrict out, int c_end)
{
    switch (p->out_w) { /* a constant width, so the pixel loops unroll and the sums stay in registers */
#define TB_W(n) case n: dw_hwc_whole_rows(p, in, w, bias, out, c_end, n); break;
    TB_W(2) TB_W(3) TB_W(4) TB_W(5) TB_W(6) TB_W(7) TB_W(8) TB_W(9) TB_W(10) TB_W(11) TB_W(12) TB_W(13) TB_W(14)
    TB_W(15) TB_W(16)
#undef TB_W
    default: break;
    }
}
#endif
#endif

void tb_conv_depthwise_direct_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                  const float *restrict bias, float *restrict out)
{
#ifdef TB_DW_VEC
    if (p->out_c == p->in_c && p->k_h == 3 && p->k_w == 3 && p->dil_h == 1 && p->dil_w == 1 &&
        p->stride_h == p->stride_w && (p->stride_h == 1 || p->stride_h == 2) && p->oc_end - p->oc_begin >= DW_CB &&
        p->out_w >= DW_MIN_W) {
        /* Whole vectors here; the channels past the last full vector go through the generic path. */
        const int c_end = p->oc_begin + (p->oc_end - p->oc_begin) / DW_CB * DW_CB;
        if (p->stride_h == 1)
#if defined(__AVX512F__)
            if (dw_whole_rows(p)) dw_hwc_whole_rows_n(p, in, w, bias, out, c_end);
            else
#endif
            dw_hwc_3x3(p, in, w, bias, out, c_end, 1);
        else
            dw_hwc_3x3(p, in, w, bias, out, c_end, 2);
        if (c_end < p->oc_end) {
            tb_conv rest = *p;
            rest.oc_begin = c_end;
            dw_hwc_generic(&rest, in, w, bias, out);
        }
        return;
    }
#endif
    dw_hwc_generic(p, in, w, bias, out);
}
