/* The int8 inner products of the int8 kernels on Arm: tb_q8_dot.h includes this header when the compiler targets
 * NEON, the DSP extension or Helium, and these two functions replace its portable ones.
 *
 *   tb_q8_dot(a, b, n)                   = sum_{i<n} a[i] * b[i]
 *   tb_q8_dot4(x, w, w_stride, n, acc4):   acc4[j] += sum_{i<n} x[i] * w[j * w_stride + i], j < 4
 *
 * Exact in int32 (the sums the portable loops compute) for any n >= 0 (n <= 0 sums nothing) and any pointer
 * alignment: every vector load is an unaligned one, and the last n % (vector width) elements go through a smaller
 * step or a scalar loop, never past the end. The paths, by the compiler's feature macros (TB_Q8_DOT_ARM_PATH names
 * the one compiled):
 *
 *   "mve"          Cortex-M55 (Helium): vmladavaq_s8 sums 16 products into a scalar int32 per instruction; the
 *                  tail is one predicated step (vctp8q, zeroing loads: nothing past the end is read).
 *   "neon-dotprod" NEON with the Armv8.2-A dot product (__ARM_FEATURE_DOTPROD: Cortex-A55, A76 and later, in
 *                  AArch64 or AArch32): vdotq_s32, four products into each int32 lane.
 *   "neon"         AArch64 without it (Cortex-A53, A72) and 32-bit NEON (Cortex-A15): vmull_s8 widens 8 products
 *                  to int16, vpadalq_s16 adds them pairwise into int32 lanes. Never two products summed in int16:
 *                  -128 * -128 is 16384 and two of them overflow int16 (32768).
 *   "dsp"          Cortex-M4/M7 (and other cores with the DSP extension, no NEON, no MVE): four bytes per 32-bit
 *                  load, __sxtb16 sign-extends bytes 0 and 2 (then, rotated by 8, bytes 1 and 3) into two int16
 *                  halves, __smlad adds both 16 x 16 products to the int32 sum: two multiply-accumulates each
 *                  (tb_q8_dot4's loop is the same instructions as inline assembly, for its register allocation).
 * TB_Q8_DOT_ARM_PATH is defined exactly when the two functions are; for any other compiler the header defines
 * nothing.
 */
#ifndef TB_Q8_DOT_ARM_H
#define TB_Q8_DOT_ARM_H

#include <stdint.h>

#if defined(__ARM_FEATURE_MVE) || defined(__ARM_NEON) || defined(__ARM_FEATURE_DSP) /* tb_q8_dot.h's condition */

/* The scalar loop the vector paths end with: the last elements, fewer than one vector step. */
static inline int32_t tb_q8_dot_arm_tail(const int8_t *restrict a, const int8_t *restrict b, int from, int n)
{
    int32_t sum = 0;
    for (int i = from; i < n; ++i) sum += (int32_t)a[i] * (int32_t)b[i];
    return sum;
}

#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define TB_Q8_DOT_ARM_PATH "mve"
#include <arm_mve.h>

static inline int32_t tb_q8_dot(const int8_t *restrict a, const int8_t *restrict b, int n)
{
    int32_t sum = 0;
    int i = 0;
    for (; i + 16 <= n; i += 16) sum = vmladavaq_s8(sum, vld1q_s8(a + i), vld1q_s8(b + i));
    if (i < n) { /* the inactive lanes load as zero and are not read */
        const mve_pred16_t p = vctp8q((uint32_t)(n - i));
        sum = vmladavaq_s8(sum, vldrbq_z_s8(a + i, p), vldrbq_z_s8(b + i, p));
    }
    return sum;
}

static inline void tb_q8_dot4(const int8_t *restrict x, const int8_t *restrict w, long w_stride, int n,
                              int32_t *restrict acc4)
{
    const int8_t *w0 = w, *w1 = w + w_stride, *w2 = w + 2 * w_stride, *w3 = w + 3 * w_stride;
    int32_t s0 = acc4[0], s1 = acc4[1], s2 = acc4[2], s3 = acc4[3];
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const int8x16_t xv = vld1q_s8(x + i);
        s0 = vmladavaq_s8(s0, xv, vld1q_s8(w0 + i));
        s1 = vmladavaq_s8(s1, xv, vld1q_s8(w1 + i));
        s2 = vmladavaq_s8(s2, xv, vld1q_s8(w2 + i));
        s3 = vmladavaq_s8(s3, xv, vld1q_s8(w3 + i));
    }
    if (i < n) {
        const mve_pred16_t p = vctp8q((uint32_t)(n - i));
        const int8x16_t xv = vldrbq_z_s8(x + i, p);
        s0 = vmladavaq_s8(s0, xv, vldrbq_z_s8(w0 + i, p));
        s1 = vmladavaq_s8(s1, xv, vldrbq_z_s8(w1 + i, p));
        s2 = vmladavaq_s8(s2, xv, vldrbq_z_s8(w2 + i, p));
        s3 = vmladavaq_s8(s3, xv, vldrbq_z_s8(w3 + i, p));
    }
    acc4[0] = s0;
    acc4[1] = s1;
    acc4[2] = s2;
    acc4[3] = s3;
}

#elif defined(__ARM_NEON)
#include <arm_neon.h>

/* Lane sums: one int32, and four int32x4 sums side by side. */
#if defined(__aarch64__)
static inline int32_t tb_q8_dot_arm_sum(int32x4_t v) { return vaddvq_s32(v); }

static inline int32x4_t tb_q8_dot_arm_sum4(int32x4_t s0, int32x4_t s1, int32x4_t s2, int32x4_t s3)
{
    return vpaddq_s32(vpaddq_s32(s0, s1), vpaddq_s32(s2, s3));
}
#else
static inline int32_t tb_q8_dot_arm_sum(int32x4_t v)
{
    const int32x2_t half = vadd_s32(vget_low_s32(v), vget_high_s32(v));
    return vget_lane_s32(vpadd_s32(half, half), 0);
}

static inline int32x4_t tb_q8_dot_arm_sum4(int32x4_t s0, int32x4_t s1, int32x4_t s2, int32x4_t s3)
{
    const int32x2_t h0 = vadd_s32(vget_low_s32(s0), vget_high_s32(s0));
    const int32x2_t h1 = vadd_s32(vget_low_s32(s1), vget_high_s32(s1));
    const int32x2_t h2 = vadd_s32(vget_low_s32(s2), vget_high_s32(s2));
    const int32x2_t h3 = vadd_s32(vget_low_s32(s3), vget_high_s32(s3));
    return vcombine_s32(vpadd_s32(h0, h1), vpadd_s32(h2, h3));
}
#endif

#if defined(__ARM_FEATURE_DOTPROD)
#define TB_Q8_DOT_ARM_PATH "neon-dotprod"

/* acc's lanes += the sums of four products each, 16 bytes of a and b. */
static inline int32x4_t tb_q8_dot_arm_step16(int32x4_t acc, int8x16_t a, int8x16_t b) { return vdotq_s32(acc, a, b); }

/* ... and of 8 bytes, into two lanes (the other two are left as they were). */
static inline int32x4_t tb_q8_dot_arm_step8(int32x4_t acc, int8x8_t a, int8x8_t b)
{
    return vcombine_s32(vdot_s32(vget_low_s32(acc), a, b), vget_high_s32(acc));
}
#else
#define TB_Q8_DOT_ARM_PATH "neon"

static inline int32x4_t tb_q8_dot_arm_step16(int32x4_t acc, int8x16_t a, int8x16_t b)
{
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_s8(vget_high_s8(a), vget_high_s8(b)));
}

static inline int32x4_t tb_q8_dot_arm_step8(int32x4_t acc, int8x8_t a, int8x8_t b)
{
    return vpadalq_s16(acc, vmull_s8(a, b));
}
#endif

static inline int32_t tb_q8_dot(const int8_t *restrict a, const int8_t *restrict b, int n)
{
    /* two sums, so that consecutive steps do not wait on each other's accumulation */
    int32x4_t s0 = vdupq_n_s32(0), s1 = s0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = tb_q8_dot_arm_step16(s0, vld1q_s8(a + i), vld1q_s8(b + i));
        s1 = tb_q8_dot_arm_step16(s1, vld1q_s8(a + i + 16), vld1q_s8(b + i + 16));
    }
    if (i + 16 <= n) {
        s0 = tb_q8_dot_arm_step16(s0, vld1q_s8(a + i), vld1q_s8(b + i));
        i += 16;
    }
    if (i + 8 <= n) {
        s1 = tb_q8_dot_arm_step8(s1, vld1_s8(a + i), vld1_s8(b + i));
        i += 8;
    }
    return tb_q8_dot_arm_sum(vaddq_s32(s0, s1)) + tb_q8_dot_arm_tail(a, b, i, n);
}

static inline void tb_q8_dot4(const int8_t *restrict x, const int8_t *restrict w, long w_stride, int n,
                              int32_t *restrict acc4)
{
    const int8_t *w0 = w, *w1 = w + w_stride, *w2 = w + 2 * w_stride, *w3 = w + 3 * w_stride;
    int32x4_t s0 = vdupq_n_s32(0), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const int8x16_t xv = vld1q_s8(x + i);
        s0 = tb_q8_dot_arm_step16(s0, xv, vld1q_s8(w0 + i));
        s1 = tb_q8_dot_arm_step16(s1, xv, vld1q_s8(w1 + i));
        s2 = tb_q8_dot_arm_step16(s2, xv, vld1q_s8(w2 + i));
        s3 = tb_q8_dot_arm_step16(s3, xv, vld1q_s8(w3 + i));
    }
    if (i + 8 <= n) {
        const int8x8_t xv = vld1_s8(x + i);
        s0 = tb_q8_dot_arm_step8(s0, xv, vld1_s8(w0 + i));
        s1 = tb_q8_dot_arm_step8(s1, xv, vld1_s8(w1 + i));
        s2 = tb_q8_dot_arm_step8(s2, xv, vld1_s8(w2 + i));
        s3 = tb_q8_dot_arm_step8(s3, xv, vld1_s8(w3 + i));
        i += 8;
    }
    int32x4_t sums = tb_q8_dot_arm_sum4(s0, s1, s2, s3);
    if (i < n) {
        const int32_t tails[4] = {tb_q8_dot_arm_tail(x, w0, i, n), tb_q8_dot_arm_tail(x, w1, i, n),
                                  tb_q8_dot_arm_tail(x, w2, i, n), tb_q8_dot_arm_tail(x, w3, i, n)};
        sums = vaddq_s32(sums, vld1q_s32(tails));
    }
    vst1q_s32(acc4, vaddq_s32(vld1q_s32(acc4), sums));
}

#elif defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
#define TB_Q8_DOT_ARM_PATH "dsp"
#include <arm_acle.h>

/* Four bytes as one word, from any address (the M4 and M7 load unaligned words; memcpy says so to the compiler). */
static inline uint32_t tb_q8_dot_arm_word(const int8_t *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

/* Bytes 0 and 2 of v, and bytes 1 and 3, sign-extended into the two int16 halves of a word. */
static inline int32_t tb_q8_dot_arm_even(uint32_t v) { return __sxtb16((int32_t)v); }

static inline int32_t tb_q8_dot_arm_odd(uint32_t v)
{
#if defined(__GNUC__)
    /* sxtb16's own rotation of its operand: GCC does not fold a separate rotate into it (one instruction less) */
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
#else
    return __sxtb16((int32_t)((v >> 8) | (v << 24)));
#endif
}

/* sum + the four products of a word of four bytes, given extended (a_even, a_odd), and the word b: bytes 0 and 2
 * as int16 pairs in one __smlad, bytes 1 and 3 in the other. Each 16 x 16 product is exact in int32. */
static inline int32_t tb_q8_dot_arm_mac4(int32_t sum, int32_t a_even, int32_t a_odd, uint32_t b)
{
    return __smlad(a_odd, tb_q8_dot_arm_odd(b), __smlad(a_even, tb_q8_dot_arm_even(b), sum));
}

static inline int32_t tb_q8_dot_arm_mac4_words(int32_t sum, uint32_t a, uint32_t b)
{
    return tb_q8_dot_arm_mac4(sum, tb_q8_dot_arm_even(a), tb_q8_dot_arm_odd(a), b);
}

static inline int32_t tb_q8_dot(const int8_t *restrict a, const int8_t *restrict b, int n)
{
    int32_t sum = 0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        sum = tb_q8_dot_arm_mac4_words(sum, tb_q8_dot_arm_word(a + i), tb_q8_dot_arm_word(b + i));
        sum = tb_q8_dot_arm_mac4_words(sum, tb_q8_dot_arm_word(a + i + 4), tb_q8_dot_arm_word(b + i + 4));
    }
    if (i + 4 <= n) {
        sum = tb_q8_dot_arm_mac4_words(sum, tb_q8_dot_arm_word(a + i), tb_q8_dot_arm_word(b + i));
        i += 4;
    }
    return sum + tb_q8_dot_arm_tail(a, b, i, n);
}

static inline void tb_q8_dot4(const int8_t *restrict x, const int8_t *restrict w, long w_stride, int n,
                              int32_t *restrict acc4)
{
    const int8_t *w0 = w, *w2 = w + 2 * w_stride; /* rows 1 and 3 are read at w_stride past these */
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int words = n > 0 ? n >> 2 : 0;
#if defined(__GNUC__) && defined(__OPTIMIZE__)
    /* The loop by hand: its pointers, sums and operands need 13 of Thumb-2's 14 registers, and GCC's allocation of
     * the same loop in C spills 2 to 7 values per four bytes, depending on how it is written and where it is
     * inlined; here every four bytes take 25 instructions wherever the function lands: a load and two extensions
     * of x, then per row a load, two extensions and two smlad. (Unoptimised builds keep more registers to
     * themselves than the loop can spare: they take the C loop.) */
    if (words > 0) {
        int32_t x_even, x_odd, word, half;
        __asm__("1:\n\t"
                "ldr     %[x_odd], [%[x]], #4\n\t"
                "sxtb16  %[x_even], %[x_odd]\n\t"
                "sxtb16  %[x_odd], %[x_odd], ror #8\n\t"
#define TB_Q8_DOT_ARM_ROW(sum, load)                                                                                  \
                "ldr     %[word], " load "\n\t"                                                                       \
                "sxtb16  %[half], %[word]\n\t"                                                                        \
                "sxtb16  %[word], %[word], ror #8\n\t"                                                                \
                "smlad   %[" sum "], %[x_even], %[half], %[" sum "]\n\t"                                              \
                "smlad   %[" sum "], %[x_odd], %[word], %[" sum "]\n\t"
                TB_Q8_DOT_ARM_ROW("s1", "[%[w0], %[stride]]")
                TB_Q8_DOT_ARM_ROW("s0", "[%[w0]], #4")
                TB_Q8_DOT_ARM_ROW("s3", "[%[w2], %[stride]]")
                TB_Q8_DOT_ARM_ROW("s2", "[%[w2]], #4")
#undef TB_Q8_DOT_ARM_ROW
                "subs    %[words], %[words], #1\n\t"
                "bne     1b"
                : [x] "+r"(x), [w0] "+r"(w0), [w2] "+r"(w2), [words] "+r"(words), [s0] "+r"(s0), [s1] "+r"(s1),
                  [s2] "+r"(s2), [s3] "+r"(s3), [x_even] "=&r"(x_even), [x_odd] "=&r"(x_odd), [word] "=&r"(word),
                  [half] "=&r"(half)
                : [stride] "r"(w_stride)
                : "cc", "memory"); /* it reads x and the rows: no value of them may wait in a register */
    }
#else
    for (; words > 0; --words, x += 4, w0 += 4, w2 += 4) {
        const uint32_t xv = tb_q8_dot_arm_word(x);
        const int32_t x_even = tb_q8_dot_arm_even(xv), x_odd = tb_q8_dot_arm_odd(xv);
        s0 = tb_q8_dot_arm_mac4(s0, x_even, x_odd, tb_q8_dot_arm_word(w0));
        s1 = tb_q8_dot_arm_mac4(s1, x_even, x_odd, tb_q8_dot_arm_word(w0 + w_stride));
        s2 = tb_q8_dot_arm_mac4(s2, x_even, x_odd, tb_q8_dot_arm_word(w2));
        s3 = tb_q8_dot_arm_mac4(s3, x_even, x_odd, tb_q8_dot_arm_word(w2 + w_stride));
    }
#endif
    const int left = n > 0 ? n & 3 : 0; /* x, w0 and w2 are past the words summed */
    acc4[0] += s0 + tb_q8_dot_arm_tail(x, w0, 0, left);
    acc4[1] += s1 + tb_q8_dot_arm_tail(x, w0 + w_stride, 0, left);
    acc4[2] += s2 + tb_q8_dot_arm_tail(x, w2, 0, left);
    acc4[3] += s3 + tb_q8_dot_arm_tail(x, w2 + w_stride, 0, left);
}

#endif
#endif /* elsewhere (the build machine's bindings include every int8 header): nothing, tb_q8_dot.h's own apply */

#endif /* TB_Q8_DOT_ARM_H */
