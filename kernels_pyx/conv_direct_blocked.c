/* Register-blocked direct convolution into HWC. It reads the input in place, so it needs no workspace: a network's
 * first layer (3 -> 32, 3x3 stride 2 at 224x224), where a GEMM-based kernel spends more building its patch matrix (the
 * input times the taps) than multiplying, and pointwise (1x1) layers, where packing the GEMM's operands costs as much
 * as the few multiplications per element.
 *
 * A block is up to 12 neighbouring output pixels of one row x NV (1 or 2) vectors of output channels (on AVX-512
 * with at most 16 input channels, 6 pixels x 4 vectors: two whole panels), held in
 * registers for the whole reduction: per (tap, input channel) it loads NV weight vectors once and multiplies them by
 * the pixels' broadcast input values (fused multiply-add where the ISA has it, as in gemm.c); sums start from the
 * bias and a relu or clip is applied in registers, so each output is stored once. A row's pixels go in the fewest
 * blocks of at most PX1 or PX2 pixels (the most the register file holds), of near-equal size. Channels go in blocks
 * of 2 vectors, then the tail: where the ISA has masked loads and stores (AVX-512, AVX2) one block of a vector and a
 * masked one, one vector, or one masked vector; elsewhere vectors, then one channel at a time. On AVX-512 a panel 8
 * or 24 channels wide over an HWC input runs as vectors of channel pairs instead (pair_block). Pixels whose window
 * crosses the left or right edge of the input take the per-pixel path, which checks every tap; rows outside the
 * input are skipped a tap row at a time on both paths. A 1x1, stride 1, unpadded convolution whose input rows follow
 * each other in memory is run as one long row, so blocks do not stop at row ends.
 *
 * Weights in panels of 32 output channels (tb_conv_blocked.h), so a block's weights for one (tap, channel) are one
 * contiguous run and a panel one sequential stream; a block never crosses a panel (but the
 * 4-vector one, which reads its two panels side by side). The input is read through its
 * layout's strides (tb_layout_strides), so one body serves CHW, HWC and HCW inputs. groups == 1. No workspace. Views
 * (tb_kernels.h): output channels [oc_begin, oc_end) x rows [oh_begin, oh_end), reading only the input rows they
 * need; accumulate adds the raw convolution. */
#include "tb_kernels.h"
#include "tb_conv_layout.h"

#if defined(__AVX512F__) && !defined(TB_GEMM_SCALAR)
#include <immintrin.h>
typedef __m512 vec;
enum { VW = 16 };
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VZERO() _mm512_setzero_ps()
#define VFMA(acc, x, w) _mm512_fmadd_ps(_mm512_set1_ps(x), w, acc)
#define VMAX(a, b) _mm512_max_ps(a, b)
#define VMIN(a, b) _mm512_min_ps(a, b)
#define VSET(x) _mm512_set1_ps(x)
typedef __mmask16 vmask;
#define TB_MASKED 1
#define VMASK(n) ((__mmask16)((1u << (n)) - 1u))
#define VLOADM(p, m) _mm512_maskz_loadu_ps(m, p)
#define VSTOREM(p, v, m) _mm512_mask_storeu_ps(p, m, v)
enum { PX1 = 12, PX2 = 12 };
#elif defined(__AVX2__) && defined(__FMA__) && !defined(TB_GEMM_SCALAR)
#include <immintrin.h>
typedef __m256 vec;
enum { VW = 8 };
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VZERO() _mm256_setzero_ps()
#define VFMA(acc, x, w) _mm256_fmadd_ps(_mm256_set1_ps(x), w, acc)
#define VMAX(a, b) _mm256_max_ps(a, b)
#define VMIN(a, b) _mm256_min_ps(a, b)
#define VSET(x) _mm256_set1_ps(x)
typedef __m256i vmask;
#define TB_MASKED 1
#define VMASK(n) _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define VLOADM(p, m) _mm256_maskload_ps(p, m)
#define VSTOREM(p, v, m) _mm256_maskstore_ps(p, m, v)
enum { PX1 = 12, PX2 = 6 };  /* 16 registers: 12 or 6 x 2 accumulators, the weights and a broadcast */
#elif defined(__ARM_NEON) && defined(__aarch64__) && !defined(TB_GEMM_SCALAR)
#include <arm_neon.h>
typedef float32x4_t vec;
enum { VW = 4 };
#define VLOAD(p) vld1q_f32(p)
#define VSTORE(p, v) vst1q_f32(p, v)
#define VZERO() vdupq_n_f32(0.0f)
#define VFMA(acc, x, w) vfmaq_n_f32(acc, w, x)
#define VMAX(a, b) vmaxq_f32(a, b)
#define VMIN(a, b) vminq_f32(a, b)
#define VSET(x) vdupq_n_f32(x)
enum { PX1 = 12, PX2 = 12 };
#else
/* Plain C: a one-float "vector", so the same blocking serves as a register-blocked scalar kernel. */
typedef float vec;
enum { VW = 1 };
#define VLOAD(p) (*(p))
#define VSTORE(p, v) (*(p) = (v))
#define VZERO() 0.0f
#define VFMA(acc, x, w) ((acc) + (x) * (w))
#define VMAX(a, b) ((a) > (b) ? (a) : (b))
#define VMIN(a, b) ((a) < (b) ? (a) : (b))
#define VSET(x) (x)
enum { PX1 = 6, PX2 = 6 };
#endif
#ifndef TB_MASKED
typedef int vmask;  /* no masked loads: a channel tail narrower than a vector takes the one-pixel path */
#define VMASK(n) (n)
#define VLOADM(p, m) ((void)(m), VLOAD(p))
#define VSTOREM(p, v, m) ((void)(m), VSTORE(p, v))
#endif
/* PX1, PX2: pixels per block with 1 or 2 vectors of channels; 2 x 12 accumulators where there are 32 registers.
 * PX4: with 4 vectors (two whole panels, AVX-512 only): 6 x 4 accumulators. */
enum { PXMAX = PX1 > PX2 ? PX1 : PX2, PX4 = 6 };

/* Weights (floats) above which a block prefetches the next panel: 64 KiB, more than L1 holds. */
enum { PREFETCH_WEIGHTS = 16384 };
/* Whether act(acc) is done in registers (a max/min: relu, clip); the others are applied after the store. */
static inline int in_registers(int act) { return act == TB_ACT_NONE || act == TB_ACT_RELU || act == TB_ACT_CLIP; }

/* Weights come in panels of TB_BLOCKED_PANEL output channels (the last one narrower): panel q holds channels
 * [qP, qP + width) as [k_h][k_w][in_c][width], so a block of channels reads one contiguous run per tap and
 * channel, and a panel is one sequential stream (the prefetchers follow it; rows M floats apart they do not). */
static inline int panel_width(int M, int m)
{
    return tb_min(TB_BLOCKED_PANEL, M - m / TB_BLOCKED_PANEL * TB_BLOCKED_PANEL);
}
/* Where weight (tap, channel 0, output channel m) lives. */
static inline long panel_at(const tb_conv *p, int tap, int m)
{
    const int first = m / TB_BLOCKED_PANEL * TB_BLOCKED_PANEL;
    return (long)first * p->k_h * p->k_w * p->in_c + (long)tap * p->in_c * panel_width(p->out_c, m) + (m - first);
}

/* Where input element (ch, ih, iw) lives, through the layout's strides. */
static inline long at(tb_strides s, int ch, int ih, int iw) { return ch * s.c + ih * s.h + iw * s.w; }

/* NP pixels ow.. of row oh x NV vectors of channels from m0, every tap column inside the input. With `masked`, the
 * last vector covers only the lanes in `mask` (a channel tail narrower than a vector): the others are neither read
 * nor written. Sums start from the bias (accumulate: from the output) and get a relu/clip in registers before the
 * one store. NP, NV and masked are constant at each call, so the loops unroll and `acc` stays in registers. */
static inline __attribute__((always_inline)) void block(const tb_conv *p, const float *restrict in, tb_strides s,
                                                        const float *restrict w, const float *restrict bias,
                                                        float *restrict out, int oh, int ow, int m0, const int NP,
                                                        const int NV, const int masked, vmask mask)
{
    const int M = p->out_c, C = p->in_c, wp = panel_width(M, m0);
    const long step = (long)p->stride_w * s.w;  /* input distance between neighbouring output pixels */
    /* Weights past L2 (in a network they come from L3 or memory, read once per panel by the first block and then
     * from L2) are fetched a panel ahead: every block of a panel asks for the next panel's lines at its own
     * position, so they are in L2 when its blocks start, however few there are. */
    const int panels = NV > 2 ? 2 : 1; /* NV = 4: two whole panels side by side */
    const long panel_floats = (long)TB_BLOCKED_PANEL * C * p->k_h * p->k_w;
    const long ahead = m0 / TB_BLOCKED_PANEL * TB_BLOCKED_PANEL + panels * TB_BLOCKED_PANEL < M &&
                       (long)M * C * p->k_h * p->k_w > PREFETCH_WEIGHTS
                           ? panels * panel_floats : 0;
    const long ps = p->out_ps ? p->out_ps : M; /* the output pixel stride: a concat slice's, or dense */
    float *restrict o = out + ((long)oh * p->out_w + ow) * ps + m0;
    vec acc[PXMAX][4], start[4];
    int px, v, ki, kj, c;
#define TB_LAST_MASKED(v) (masked && (v) == NV - 1)
    for (v = 0; v < NV; ++v)
        start[v] = p->accumulate ? VZERO() : TB_LAST_MASKED(v) ? VLOADM(bias + m0 + v * VW, mask)
                                                               : VLOAD(bias + m0 + v * VW);
    for (px = 0; px < NP; ++px)
        for (v = 0; v < NV; ++v)
            acc[px][v] = !p->accumulate ? start[v] : TB_LAST_MASKED(v) ? VLOADM(o + px * ps + v * VW, mask)
                                                                       : VLOAD(o + px * ps + v * VW);
    for (ki = 0; ki < p->k_h; ++ki) {
        const int ih = oh * p->stride_h + ki * p->dil_h - p->pad_top;
        if (ih < 0 || ih >= p->in_h) continue;
        for (kj = 0; kj < p->k_w; ++kj) {
            const float *restrict wr = w + panel_at(p, ki * p->k_w + kj, m0);
            /* the pixels four by four from three pointers: pixel px at quad[px / 4] + (px % 4) * step, which
             * addressing modes reach with two offsets; twelve offsets would not fit the integer registers */
            const float *quad[(PXMAX + 3) / 4];
            for (px = 0; px < NP; px += 4)
                quad[px / 4] = in + at(s, 0, ih, (ow + px) * p->stride_w + kj * p->dil_w - p->pad_left);
            for (c = 0; c < C; ++c, wr += wp) {
                vec wv[4];
                if (ahead) { /* the next panel's two cache lines at this (tap, channel) */
                    __builtin_prefetch(wr + ahead, 0, 2);
                    __builtin_prefetch(wr + ahead + 16, 0, 2);
                }
                for (v = 0; v < NV; ++v)
                    wv[v] = TB_LAST_MASKED(v) ? VLOADM(wr + v * VW, mask)
                                              : VLOAD(wr + v / 2 * panel_floats + v % 2 * VW); /* NV = 4: 2 panels */
                for (px = 0; px < NP; ++px)
                    for (v = 0; v < NV; ++v) acc[px][v] = VFMA(acc[px][v], quad[px / 4][(px % 4) * step], wv[v]);
                for (px = 0; px < NP; px += 4) quad[px / 4] += s.c;
            }
        }
    }
    if (!p->accumulate && (p->act == TB_ACT_RELU || p->act == TB_ACT_CLIP)) {
        const vec lo = VSET(p->act == TB_ACT_CLIP ? p->act_a : 0.0f), hi = VSET(p->act_b);
        for (px = 0; px < NP; ++px)
            for (v = 0; v < NV; ++v) {
                acc[px][v] = VMAX(acc[px][v], lo);
                if (p->act == TB_ACT_CLIP) acc[px][v] = VMIN(acc[px][v], hi);
            }
    }
    for (px = 0; px < NP; ++px)
        for (v = 0; v < NV; ++v) {
            if (TB_LAST_MASKED(v)) VSTOREM(o + px * ps + v * VW, acc[px][v], mask);
            else VSTORE(o + px * ps + v * VW, acc[px][v]);
        }
#undef TB_LAST_MASKED
}

/* One pixel, channels [m0, m1): every tap checked against the input's edges; bias and a relu/clip included. */
static void one_pixel(const tb_conv *p, const float *restrict in, tb_strides s, const float *restrict w,
                      const float *restrict bias, float *restrict out, int oh, int ow, int m0, int m1)
{
    const int M = p->out_c, C = p->in_c;
    float *restrict o = out + ((long)oh * p->out_w + ow) * (p->out_ps ? p->out_ps : M);
    int m, ki, kj, c;
    if (!p->accumulate)
        for (m = m0; m < m1; ++m) o[m] = 0.0f;
    for (ki = 0; ki < p->k_h; ++ki) {
        const int ih = oh * p->stride_h + ki * p->dil_h - p->pad_top;
        if (ih < 0 || ih >= p->in_h) continue;
        for (kj = 0; kj < p->k_w; ++kj) {
            const int iw = ow * p->stride_w + kj * p->dil_w - p->pad_left;
            if (iw < 0 || iw >= p->in_w) continue;
            for (m = m0; m < m1;) { /* panel by panel */
                const int wp = panel_width(M, m), end = tb_min(m1, m - m % TB_BLOCKED_PANEL + wp);
                const float *restrict wr = w + panel_at(p, ki * p->k_w + kj, m) - m;
                for (c = 0; c < C; ++c, wr += wp) {
                    const float xv = in[at(s, c, ih, iw)];
                    int j;
                    for (j = m; j < end; ++j) o[j] += xv * wr[j];
                }
                m = end;
            }
        }
    }
    if (!p->accumulate) /* the activations not done in registers come after, over the whole row */
        tb_bias_act_vec(o + m0, m1 - m0, bias + m0, in_registers(p->act) ? p->act : TB_ACT_NONE, p->act_a, p->act_b);
}

/* One block of np (1 .. PXMAX) pixels: the switch gives `block` a constant pixel count. */
static inline __attribute__((always_inline)) void block_n(const tb_conv *p, const float *restrict in, tb_strides s,
                                                          const float *restrict w, const float *restrict bias,
                                                          float *restrict out, int oh, int ow, int m0, int np,
                                                          const int NV, const int masked, vmask mask)
{
    switch (np) {
#define TB_NP(n)                                                                                                   \
    case n: block(p, in, s, w, bias, out, oh, ow, m0, (n) <= (NV > 2 ? PX4 : PXMAX) ? (n) : 1, NV, masked, mask);  \
        break;
    TB_NP(1) TB_NP(2) TB_NP(3) TB_NP(4) TB_NP(5) TB_NP(6) TB_NP(7) TB_NP(8) TB_NP(9) TB_NP(10) TB_NP(11) TB_NP(12)
#undef TB_NP
    default: break;
    }
}

#if defined(__AVX512F__) && defined(__AVX512VL__) && !defined(TB_GEMM_SCALAR)
/* Channel pairs (AVX-512, input channels adjacent in memory): a panel 8 or 24 channels wide (MobileNetV2's
 * projections to 24, the last panel of 1000) as 16-lane vectors of 8 output channels x 2 input channels: lane 2j
 * sums output channel j over the even input channels (from the bias), lane 2j+1 over the odd ones; one 64-bit
 * broadcast feeds both. A 24-channel panel then takes 3 full FMAs per pixel and channel pair where the one-channel
 * blocks take 4 (16 lanes and 8 masked), and one input load where they take 2. The pairs' weights are interleaved
 * in registers from the panel's rows (one permute per 8 channels, shared by the block's pixels); the two halves are
 * added at the end, so every output channel of a pair panel sums in the same order whatever the view. A 16-wide
 * panel gains nothing (its one-channel blocks waste no lane) and lost to the permutes. */
#define TB_PAIRS 1
enum { PAIR_GROUP = 8 };  /* output channels per pair vector */
static inline int pair_panel(int width) { return width == 8 || width == 24; }
/* NP pixels ow.. of row oh x NQ pair vectors from channel mg (a multiple of 8 from its panel's start); only
 * channels [lo, hi) are read (accumulate) and written. */
static inline __attribute__((always_inline)) void pair_block(const tb_conv *p, const float *restrict in, tb_strides s,
                                                             const float *restrict w, const float *restrict bias,
                                                             float *restrict out, int oh, int ow, int mg, int lo,
                                                             int hi, const int NP, const int NQ)
{
    const int M = p->out_c, C = p->in_c, wp = panel_width(M, mg);
    const long step = (long)p->stride_w * s.w;
    const __m512i interleave = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512 zero = _mm512_setzero_ps();
    /* channel mg + 8q + j is written where bit j of keep[q] is set */
    __mmask8 keep[3];
    const long ps = p->out_ps ? p->out_ps : M; /* the output pixel stride: a concat slice's, or dense */
    float *restrict o = out + ((long)oh * p->out_w + ow) * ps + mg;
    __m512 acc[12][3], start[3];
    int px, q, ki, kj, c;
    for (q = 0; q < NQ; ++q) {
        const int first = tb_max(0, lo - mg - q * PAIR_GROUP), last = tb_min(PAIR_GROUP, hi - mg - q * PAIR_GROUP);
        keep[q] = (__mmask8)(((1u << last) - 1u) & ~((1u << first) - 1u));
        start[q] = p->accumulate ? zero
                                 : _mm512_permutex2var_ps(_mm512_castps256_ps512(_mm256_maskz_loadu_ps(
                                                              keep[q], bias + mg + q * PAIR_GROUP)), interleave, zero);
    }
    for (px = 0; px < NP; ++px)
        for (q = 0; q < NQ; ++q)
            acc[px][q] = !p->accumulate ? start[q]
                                        : _mm512_permutex2var_ps(_mm512_castps256_ps512(_mm256_maskz_loadu_ps(
                                                                     keep[q], o + px * ps + q * PAIR_GROUP)),
                                                                 interleave, zero);
    for (ki = 0; ki < p->k_h; ++ki) {
        const int ih = oh * p->stride_h + ki * p->dil_h - p->pad_top;
        if (ih < 0 || ih >= p->in_h) continue;
        for (kj = 0; kj < p->k_w; ++kj) {
            const float *restrict wr = w + panel_at(p, ki * p->k_w + kj, mg);
            const float *quad[3];
            for (px = 0; px < NP; px += 4)
                quad[px / 4] = in + at(s, 0, ih, (ow + px) * p->stride_w + kj * p->dil_w - p->pad_left);
            for (c = 0; c + 1 < C; c += 2, wr += 2 * wp) {
                __m512 wv[3];
                for (q = 0; q < NQ; ++q)
                    wv[q] = _mm512_permutex2var_ps(_mm512_castps256_ps512(_mm256_loadu_ps(wr + q * PAIR_GROUP)),
                                                   interleave,
                                                   _mm512_castps256_ps512(_mm256_loadu_ps(wr + wp + q * PAIR_GROUP)));
                for (px = 0; px < NP; ++px) {
                    double both;  /* input channels c and c + 1 of the pixel, one 64-bit broadcast */
                    __m512 x;
                    __builtin_memcpy(&both, quad[px / 4] + (px % 4) * step, sizeof both);
                    x = _mm512_castpd_ps(_mm512_set1_pd(both));
                    for (q = 0; q < NQ; ++q) acc[px][q] = _mm512_fmadd_ps(x, wv[q], acc[px][q]);
                }
                for (px = 0; px < NP; px += 4) quad[px / 4] += 2;
            }
            if (c < C) { /* an odd channel count: the last channel in the even lanes only */
                __m512 wv[3];
                for (q = 0; q < NQ; ++q)
                    wv[q] = _mm512_permutex2var_ps(_mm512_castps256_ps512(_mm256_loadu_ps(wr + q * PAIR_GROUP)),
                                                   interleave, zero);
                for (px = 0; px < NP; ++px)
                    for (q = 0; q < NQ; ++q)
                        acc[px][q] = _mm512_mask3_fmadd_ps(_mm512_set1_ps(quad[px / 4][(px % 4) * step]), wv[q],
                                                           acc[px][q], 0x5555);
            }
        }
    }
    for (px = 0; px < NP; ++px)
        for (q = 0; q < NQ; q += 2) { /* even + odd halves, two pair vectors into one vector of 16 channels */
            const __m512 a = _mm512_add_ps(acc[px][q], _mm512_permute_ps(acc[px][q], 0xB1));
            const __m512 b = q + 1 < NQ ? _mm512_add_ps(acc[px][q + 1], _mm512_permute_ps(acc[px][q + 1], 0xB1)) : a;
            const __mmask16 m = (__mmask16)(keep[q] | (q + 1 < NQ ? (unsigned)keep[q + 1] << 8 : 0u));
            __m512 v = _mm512_permutex2var_ps(a, evens, b);
            if (!p->accumulate && (p->act == TB_ACT_RELU || p->act == TB_ACT_CLIP)) {
                v = _mm512_max_ps(v, _mm512_set1_ps(p->act == TB_ACT_CLIP ? p->act_a : 0.0f));
                if (p->act == TB_ACT_CLIP) v = _mm512_min_ps(v, _mm512_set1_ps(p->act_b));
            }
            _mm512_mask_storeu_ps(o + px * ps + q * PAIR_GROUP, m, v);
        }
}

static inline __attribute__((always_inline)) void pair_block_n(const tb_conv *p, const float *restrict in,
                                                               tb_strides s, const float *restrict w,
                                                               const float *restrict bias, float *restrict out,
                                                               int oh, int ow, int mg, int lo, int hi, int np,
                                                               const int NQ)
{
    switch (np) {
#define TB_NP(n) case n: pair_block(p, in, s, w, bias, out, oh, ow, mg, lo, hi, n, NQ); break;
    TB_NP(1) TB_NP(2) TB_NP(3) TB_NP(4) TB_NP(5) TB_NP(6) TB_NP(7) TB_NP(8) TB_NP(9) TB_NP(10) TB_NP(11) TB_NP(12)
#undef TB_NP
    default: break;
    }
}

/* Row oh, channels [lo, hi) of a pair panel, in pair vectors from mg: blocks of up to 12 pixels (8 with 3 pair
 * vectors: 24 sums, the weights and a broadcast in the 32 registers), single checked pixels outside them. */
static inline __attribute__((always_inline)) void pair_row(const tb_conv *p, const float *restrict in, tb_strides s,
                                                           const float *restrict w, const float *restrict bias,
                                                           float *restrict out, int oh, int mg, int lo, int hi,
                                                           int inner_lo, int inner_hi, const int NQ)
{
    const int NPX = NQ == 3 ? 8 : 12, n = inner_hi - inner_lo, blocks = (n + NPX - 1) / NPX;
    int ow, b;
    for (ow = 0; ow < inner_lo; ++ow) one_pixel(p, in, s, w, bias, out, oh, ow, lo, hi);
    for (b = 0; b < blocks; ++b) {
        const int np = n / blocks + (b < n % blocks);
        pair_block_n(p, in, s, w, bias, out, oh, ow, mg, lo, hi, np, NQ);
        ow += np;
    }
    for (; ow < p->out_w; ++ow) one_pixel(p, in, s, w, bias, out, oh, ow, lo, hi);
}

/* Not inlined: conv_blocked's other paths keep the code (and the speed) they had without this one. */
static __attribute__((noinline)) void pair_rows(const tb_conv *p, const float *restrict in, tb_strides s,
                                                const float *restrict w, const float *restrict bias,
                                                float *restrict out, int oh, int mg, int lo, int hi, int inner_lo,
                                                int inner_hi)
{
    const int nq = (hi - mg + PAIR_GROUP - 1) / PAIR_GROUP;
    if (nq == 3) pair_row(p, in, s, w, bias, out, oh, mg, lo, hi, inner_lo, inner_hi, 3);
    else if (nq == 2) pair_row(p, in, s, w, bias, out, oh, mg, lo, hi, inner_lo, inner_hi, 2);
    else pair_row(p, in, s, w, bias, out, oh, mg, lo, hi, inner_lo, inner_hi, 1);
}
#endif

/* Output row oh, channels [m0, m0 + width): the inner columns in ceil(n / NPX) blocks of near-equal size (49
 * pixels as 10+10+10+10+9, not 12+12+12+12+1: a one-pixel block leaves the FMA units waiting on two sums), single
 * checked pixels outside them. */
static inline __attribute__((always_inline)) void row(const tb_conv *p, const float *restrict in, tb_strides s,
                                                      const float *restrict w, const float *restrict bias,
                                                      float *restrict out, int oh, int m0, int inner_lo,
                                                      int inner_hi, const int NV, const int NPX, const int masked,
                                                      int width)
{
    const vmask mask = VMASK(width - (NV - 1) * VW);
    const int n = inner_hi - inner_lo, blocks = (n + NPX - 1) / NPX;
    int ow, b;
    for (ow = 0; ow < inner_lo; ++ow) one_pixel(p, in, s, w, bias, out, oh, ow, m0, m0 + width);
    for (b = 0; b < blocks; ++b) {
        const int np = n / blocks + (b < n % blocks);
        block_n(p, in, s, w, bias, out, oh, ow, m0, np, NV, masked, mask);
        ow += np;
    }
    for (; ow < p->out_w; ++ow) one_pixel(p, in, s, w, bias, out, oh, ow, m0, m0 + width);
}

static void conv_blocked(const tb_conv *p, const float *restrict in, tb_strides s, const float *restrict w,
                         const float *restrict bias, float *restrict out)
{
    int lo_first, hi_first, lo_last, hi_last, inner_lo, inner_hi, oh;
    /* The output columns whose every tap column is inside the input: those of the first and of the last tap. */
    tb_valid_range(p->out_w, p->stride_w, -p->pad_left, p->in_w, &lo_first, &hi_first);
    tb_valid_range(p->out_w, p->stride_w, (p->k_w - 1) * p->dil_w - p->pad_left, p->in_w, &lo_last, &hi_last);
    inner_lo = tb_max(lo_first, lo_last);
    inner_hi = tb_max(inner_lo, tb_min(hi_first, hi_last));
    for (oh = p->oh_begin; oh < p->oh_end; ++oh) {
        int q, ow;
        for (q = p->oc_begin / TB_BLOCKED_PANEL; q * TB_BLOCKED_PANEL < p->oc_end; ++q) {
            const int end = tb_min(p->oc_end, (q + 1) * TB_BLOCKED_PANEL); /* blocks stay inside the panel */
            int m0 = tb_max(p->oc_begin, q * TB_BLOCKED_PANEL);
#ifdef TB_PAIRS
            if (s.c == 1 && pair_panel(panel_width(p->out_c, m0))) {
                const int first = q * TB_BLOCKED_PANEL + (m0 - q * TB_BLOCKED_PANEL) / PAIR_GROUP * PAIR_GROUP;
                pair_rows(p, in, s, w, bias, out, oh, first, m0, end, inner_lo, inner_hi);
                continue;
            }
#endif
#if defined(__AVX512F__) && !defined(TB_GEMM_SCALAR)
            /* few input channels (a stem's 3, an expansion's 16): two whole panels at once, 6 pixels x 64 channels,
             * so each pixel's inputs are read once for both (measured: bench/direct_ab.py; from 32 channels up the
             * 12 x 32 blocks stay faster) */
            if (p->in_c <= 16 && m0 == q * TB_BLOCKED_PANEL && end == m0 + 2 * VW &&
                (q + 2) * TB_BLOCKED_PANEL <= p->oc_end) {
                row(p, in, s, w, bias, out, oh, m0, inner_lo, inner_hi, 4, PX4, 0, 4 * VW);
                ++q;
                continue;
            }
#endif
            for (; m0 + 2 * VW <= end; m0 += 2 * VW)
                row(p, in, s, w, bias, out, oh, m0, inner_lo, inner_hi, 2, PX2, 0, 2 * VW);
#ifdef TB_MASKED
            /* the tail: one vector and a masked one (24 of 32 lanes), one vector, or one masked vector */
            if (end - m0 > VW) row(p, in, s, w, bias, out, oh, m0, inner_lo, inner_hi, 2, PX2, 1, end - m0);
            else if (end - m0 == VW) row(p, in, s, w, bias, out, oh, m0, inner_lo, inner_hi, 1, PX1, 0, VW);
            else if (m0 < end) row(p, in, s, w, bias, out, oh, m0, inner_lo, inner_hi, 1, PX1, 1, end - m0);
#else
            for (; m0 + VW <= end; m0 += VW) row(p, in, s, w, bias, out, oh, m0, inner_lo, inner_hi, 1, PX1, 0, VW);
            for (ow = 0; m0 < end && ow < p->out_w; ++ow) one_pixel(p, in, s, w, bias, out, oh, ow, m0, end);
#endif
        }
        if (!p->accumulate && !in_registers(p->act))
            for (ow = 0; ow < p->out_w; ++ow) { /* leaky relu, sigmoid: after the store (the blocks added the bias) */
                float *o = out + ((long)oh * p->out_w + ow) * (p->out_ps ? p->out_ps : p->out_c) + p->oc_begin;
                int m;
                for (m = 0; m < p->oc_end - p->oc_begin; ++m) o[m] = tb_act_value(o[m], p->act, p->act_a, p->act_b);
            }
    }
}

/* A 1x1, stride 1, unpadded convolution whose input rows follow each other in memory (HWC; CHW too, as one
 * channel's rows do) is one long row of pixels: blocks then run across row ends, which matters for 7x7 maps. When
 * the weights are small (an expansion such as 16 -> 96 channels at 112x112) the row goes in chunks of about 16 KiB
 * of input, each through every panel: the output is then written as one sequential stream, pixel after pixel, and
 * not once per panel across the whole tensor (which in a network runs slower than alone: the output is far
 * larger than L2). Large weights are better read once per panel, so their rows are not chunked. */
enum { CHUNK_INPUT_BYTES = 16384, CHUNK_WEIGHT_BYTES = 65536 };
static void conv_blocked_or_flat(const tb_conv *p, const float *restrict in, tb_strides s,
                                 const float *restrict w, const float *restrict bias, float *restrict out)
{
    if (p->k_h == 1 && p->k_w == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_top == 0 &&
        p->pad_left == 0 && p->in_w == p->out_w && p->in_h == p->out_h && s.h == p->in_w * s.w) {
        const long end = (long)p->oh_end * p->out_w;
        const int small = (long)p->in_c * p->out_c * (long)sizeof(float) <= CHUNK_WEIGHT_BYTES;
        const long chunk = small ? tb_max(PXMAX, CHUNK_INPUT_BYTES / (p->in_c * (int)sizeof(float)) / PXMAX * PXMAX)
                                 : end;
        long first;
        tb_conv flat = *p;
        flat.in_h = flat.out_h = 1;
        flat.oh_begin = 0; flat.oh_end = 1;
        for (first = (long)p->oh_begin * p->out_w; first < end; first += chunk) {
            flat.in_w = flat.out_w = (int)(chunk < end - first ? chunk : end - first);
            conv_blocked(&flat, in + first * s.w, s, w, bias, out + first * (p->out_ps ? p->out_ps : p->out_c));
        }
        return;
    }
    conv_blocked(p, in, s, w, bias, out);
}

void tb_conv_direct_blocked_chw_to_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                       const float *restrict bias, float *restrict out)
{
    conv_blocked_or_flat(p, in, tb_layout_strides(TB_LAYOUT_CHW, p->in_c, p->in_h, p->in_w), w, bias, out);
}

void tb_conv_direct_blocked_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                const float *restrict bias, float *restrict out)
{
    conv_blocked_or_flat(p, in, tb_layout_strides(TB_LAYOUT_HWC, p->in_c, p->in_h, p->in_w), w, bias, out);
}

void tb_conv_direct_blocked_hcw_to_hwc(const tb_conv *p, const float *restrict in, const float *restrict w,
                                       const float *restrict bias, float *restrict out)
{
    conv_blocked_or_flat(p, in, tb_layout_strides(TB_LAYOUT_HCW, p->in_c, p->in_h, p->in_w), w, bias, out);
}
