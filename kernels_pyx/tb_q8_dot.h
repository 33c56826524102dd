/* int8 inner products, the building block of the int8 GEMM-like kernels (q8_conv.c, q8_ops.c):
 *   tb_q8_dot(a, b, n)                 = sum_i a[i] * b[i]
 *   tb_q8_dot4(x, w, w_stride, n, acc4): acc4[j] += sum_i x[i] * w[j * w_stride + i], j < 4
 * exact in int32 (each product is at most 2^14, so n up to 2^16 cannot overflow). One version per architecture,
 * chosen by the compiler's target macros: ARM's in tb_q8_dot_arm.h (NEON dot product, Cortex-M DSP, Helium), the
 * AVX-512 VNNI / AVX-VNNI and AVX2 ones here, and a portable C one. Every version gives the same sums.
 *
 * Not included by tb_kernels.h: only projects that run int8 layers carry this header. */
#ifndef TB_Q8_DOT_H
#define TB_Q8_DOT_H

#include <stdint.h>

/* The portable C versions (loops compilers vectorise where they can), also the x86 versions' short-run path. */
static inline int32_t tb_q8_dot_c(const int8_t *restrict a, const int8_t *restrict b, int n)
{
    int32_t sum = 0;
    for (int i = 0; i < n; ++i) sum += (int32_t)a[i] * (int32_t)b[i];
    return sum;
}

static inline void tb_q8_dot4_c(const int8_t *restrict x, const int8_t *restrict w, long w_stride, int n,
                                int32_t *restrict acc4)
{
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int i = 0; i < n; ++i) {
        const int32_t xi = x[i];
        s0 += xi * w[i];
        s1 += xi * w[w_stride + i];
        s2 += xi * w[2 * w_stride + i];
        s3 += xi * w[3 * w_stride + i];
    }
    acc4[0] += s0;
    acc4[1] += s1;
    acc4[2] += s2;
    acc4[3] += s3;
}

#if defined(__ARM_NEON) || defined(__ARM_FEATURE_DSP) || defined(__ARM_FEATURE_MVE)
#include "tb_q8_dot_arm.h"
#ifdef TB_Q8_DOT_ARM_PATH
#define TB_Q8_DOT_ARM 1
#endif
#endif

#ifndef TB_Q8_DOT_ARM
#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__) || defined(__AVX2__)
#include <immintrin.h>

/* 32 and 16 int8 lanes multiplied and summed in fours (VNNI) or twos (AVX2) into 8 or 4 int32 lanes. VNNI's
 * vpdpbusd multiplies unsigned by signed bytes: w + 128 (w ^ 0x80) as u8 times x as s8 is x * w + 128 * x, so the
 * callers take 128 * sum x (tb_q8_xsum) back out once per x. AVX2 sign-extends to int16 and uses vpmaddwd. */
#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__)
#define TB_Q8_DOT_VNNI 1
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define TB_Q8_DPBUSD256(acc, u, s) _mm256_dpbusd_epi32((acc), (u), (s))
#define TB_Q8_DPBUSD128(acc, u, s) _mm_dpbusd_epi32((acc), (u), (s))
#else
#define TB_Q8_DPBUSD256(acc, u, s) _mm256_dpbusd_avx_epi32((acc), (u), (s))
#define TB_Q8_DPBUSD128(acc, u, s) _mm_dpbusd_avx_epi32((acc), (u), (s))
#endif
static inline __m256i tb_q8_mac32(__m256i acc, __m256i x, __m256i w)
{
    return TB_Q8_DPBUSD256(acc, _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80)), x);
}
static inline __m128i tb_q8_mac16(__m128i acc, __m128i x, __m128i w)
{
    return TB_Q8_DPBUSD128(acc, _mm_xor_si128(w, _mm_set1_epi8((char)0x80)), x);
}
/* sum x over 32 / 16 lanes, in int32 lanes: ones (u8) times x (s8) */
static inline __m256i tb_q8_xsum32(__m256i acc, __m256i x)
{
    return TB_Q8_DPBUSD256(acc, _mm256_set1_epi8(1), x);
}
static inline __m128i tb_q8_xsum16(__m128i acc, __m128i x)
{
    return TB_Q8_DPBUSD128(acc, _mm_set1_epi8(1), x);
}
#else
static inline __m256i tb_q8_mac32(__m256i acc, __m256i x, __m256i w)
{
    const __m256i lo = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(x)),
                                         _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w)));
    const __m256i hi = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(x, 1)),
                                         _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w, 1)));
    return _mm256_add_epi32(acc, _mm256_add_epi32(lo, hi));
}
static inline __m128i tb_q8_mac16(__m128i acc, __m128i x, __m128i w)
{
    const __m256i p = _mm256_madd_epi16(_mm256_cvtepi8_epi16(x), _mm256_cvtepi8_epi16(w));
    return _mm_add_epi32(acc, _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1)));
}
#endif

static inline int32_t tb_q8_hsum128(__m128i v)
{
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0x4e));
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0xb1));
    return _mm_cvtsi128_si32(v);
}

static inline int32_t tb_q8_hsum256(__m256i v)
{
    return tb_q8_hsum128(_mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
}

/* The four sums of a0..a3, in order: two rounds of pairwise adds within each 128-bit half, then the halves. */
static inline __m128i tb_q8_hsum4(__m256i a0, __m256i a1, __m256i a2, __m256i a3)
{
    const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
    return _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

static inline __m256i tb_q8_load32(const int8_t *p) { return _mm256_loadu_si256((const __m256i *)(const void *)p); }
static inline __m128i tb_q8_load16(const int8_t *p) { return _mm_loadu_si128((const __m128i *)(const void *)p); }
static inline __m128i tb_q8_load8(const int8_t *p) { return _mm_loadl_epi64((const __m128i *)(const void *)p); }

static inline int32_t tb_q8_dot(const int8_t *restrict a, const int8_t *restrict b, int n)
{
    if (n < 8) return tb_q8_dot_c(a, b, n); /* no vector step would run: skip the reductions */
    __m256i acc = _mm256_setzero_si256(), xs = _mm256_setzero_si256();
    __m128i acc16 = _mm_setzero_si128(), xs16 = _mm_setzero_si128();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i x = tb_q8_load32(a + i);
        acc = tb_q8_mac32(acc, x, tb_q8_load32(b + i));
#ifdef TB_Q8_DOT_VNNI
        xs = tb_q8_xsum32(xs, x);
#endif
    }
    for (; i + 8 <= n; i += i + 16 <= n ? 16 : 8) {
        /* 16 bytes, or 8 with the upper half zero: x = 0 there, so the pair contributes nothing */
        const __m128i x = i + 16 <= n ? tb_q8_load16(a + i) : tb_q8_load8(a + i);
        const __m128i w = i + 16 <= n ? tb_q8_load16(b + i) : tb_q8_load8(b + i);
        acc16 = tb_q8_mac16(acc16, x, w);
#ifdef TB_Q8_DOT_VNNI
        xs16 = tb_q8_xsum16(xs16, x);
#endif
    }
    int32_t sum = tb_q8_hsum256(acc) + tb_q8_hsum128(acc16);
#ifdef TB_Q8_DOT_VNNI
    sum -= 128 * (tb_q8_hsum256(xs) + tb_q8_hsum128(xs16));
#else
    (void)xs;
    (void)xs16;
#endif
    return sum + tb_q8_dot_c(a + i, b + i, n - i);
}

static inline void tb_q8_dot4(const int8_t *restrict x, const int8_t *restrict w, long w_stride, int n,
                              int32_t *restrict acc4)
{
    if (n < 8) {
        tb_q8_dot4_c(x, w, w_stride, n, acc4);
        return;
    }
    const int8_t *w0 = w, *w1 = w + w_stride, *w2 = w + 2 * w_stride, *w3 = w + 3 * w_stride;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, xs = a0;
    __m128i b0 = _mm_setzero_si128(), b1 = b0, b2 = b0, b3 = b0, xs16 = b0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i xv = tb_q8_load32(x + i);
        a0 = tb_q8_mac32(a0, xv, tb_q8_load32(w0 + i));
        a1 = tb_q8_mac32(a1, xv, tb_q8_load32(w1 + i));
        a2 = tb_q8_mac32(a2, xv, tb_q8_load32(w2 + i));
        a3 = tb_q8_mac32(a3, xv, tb_q8_load32(w3 + i));
#ifdef TB_Q8_DOT_VNNI
        xs = tb_q8_xsum32(xs, xv);
#endif
    }
    for (; i + 8 <= n; i += i + 16 <= n ? 16 : 8) {
        const int full = i + 16 <= n;
        const __m128i xv = full ? tb_q8_load16(x + i) : tb_q8_load8(x + i);
        b0 = tb_q8_mac16(b0, xv, full ? tb_q8_load16(w0 + i) : tb_q8_load8(w0 + i));
        b1 = tb_q8_mac16(b1, xv, full ? tb_q8_load16(w1 + i) : tb_q8_load8(w1 + i));
        b2 = tb_q8_mac16(b2, xv, full ? tb_q8_load16(w2 + i) : tb_q8_load8(w2 + i));
        b3 = tb_q8_mac16(b3, xv, full ? tb_q8_load16(w3 + i) : tb_q8_load8(w3 + i));
#ifdef TB_Q8_DOT_VNNI
        xs16 = tb_q8_xsum16(xs16, xv);
#endif
    }
    __m128i sums = _mm_add_epi32(tb_q8_hsum4(a0, a1, a2, a3), _mm_hadd_epi32(_mm_hadd_epi32(b0, b1),
                                                                             _mm_hadd_epi32(b2, b3)));
#ifdef TB_Q8_DOT_VNNI
    sums = _mm_sub_epi32(sums, _mm_set1_epi32(128 * (tb_q8_hsum256(xs) + tb_q8_hsum128(xs16))));
#else
    (void)xs;
    (void)xs16;
#endif
    _mm_storeu_si128((__m128i *)(void *)acc4, _mm_add_epi32(_mm_loadu_si128((const __m128i *)(const void *)acc4), sums));
    tb_q8_dot4_c(x + i, w + i, w_stride, n - i, acc4);
}

#else /* portable C */

static inline int32_t tb_q8_dot(const int8_t *restrict a, const int8_t *restrict b, int n)
{
    return tb_q8_dot_c(a, b, n);
}

static inline void tb_q8_dot4(const int8_t *restrict x, const int8_t *restrict w, long w_stride, int n,
                              int32_t *restrict acc4)
{
    tb_q8_dot4_c(x, w, w_stride, n, acc4);
}

#endif /* x86 / portable */
#endif /* !TB_Q8_DOT_ARM */
#endif
