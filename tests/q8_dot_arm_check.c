/* tb_q8_dot_arm.h against the plain loops, on one Arm target (tests/test_q8_dot_arm.py builds and runs it per
 * target: under qemu-user for the Linux boards, on the emulated board for the microcontrollers, where it is built
 * with -DTB_CHECK_BARE_METAL and linked with the emitted projects' startup code and semihosting).
 *
 * Checks, each of tb_q8_dot and tb_q8_dot4:
 *   - hand-checked sums, the int16 overflow among them (-128 * -128 twice is 32768);
 *   - seeded random data and extreme values (all -128, -128 against 127, alternating signs) for every n from 0 to
 *     80 and longer ones around the vector widths, both pointers at every offset from an aligned address;
 *   - tb_q8_dot4 with several row strides, adding to what acc4 held and writing nothing around it;
 *   - hosted only: the data ending where an unmapped page begins, so a read past the end would fault.
 * Prints "path <TB_Q8_DOT_ARM_PATH>", then "checked <count>" and exits 0, or names the first failure and exits 1. */
#include <stdint.h>

#include "tb_q8_dot_arm.h"

#ifdef TB_CHECK_BARE_METAL
#include "semihosting.h"
static void say(const char *text) { sh_write0(text); }
#else
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
static void say(const char *text) { fputs(text, stdout); }
#endif

#define MAX_N 4096
#define MAX_STRIDE (MAX_N + 19)
#define PAD 16

static int8_t a_data[MAX_N + PAD], b_data[MAX_N + PAD], w_data[4 * MAX_STRIDE + PAD];
static unsigned long checked;
static int failed;

static uint32_t seed = 2024u;
static uint32_t next_random(void) /* xorshift32 */
{
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    return seed;
}

static void say_number(long value)
{
    char text[24], *at = text + sizeof text - 1;
    unsigned long magnitude = value < 0 ? 0ul - (unsigned long)value : (unsigned long)value;
    *at = '\0';
    do { *--at = (char)('0' + magnitude % 10u); magnitude /= 10u; } while (magnitude);
    if (value < 0) *--at = '-';
    say(at);
}

static int32_t plain_dot(const int8_t *a, const int8_t *b, int n)
{
    int32_t sum = 0;
    for (int i = 0; i < n; ++i) sum += (int32_t)a[i] * (int32_t)b[i];
    return sum;
}

static void expect(const char *what, int n, long offset_a, long offset_b, long got, long expected)
{
    ++checked;
    if (got == expected || failed) return;
    failed = 1;
    say("FAIL ");
    say(what);
    say(" n=");
    say_number(n);
    say(" offsets=");
    say_number(offset_a);
    say(",");
    say_number(offset_b);
    say(": got ");
    say_number(got);
    say(", expected ");
    say_number(expected);
    say("\n");
}

enum { RANDOM, ALL_MIN, MIN_AGAINST_MAX, ALTERNATING, EXTREMES, PATTERNS };

static int8_t value_of(int pattern, int which, int i)
{
    static const int8_t extremes[4] = {-128, 127, -127, 0};
    switch (pattern) {
    case ALL_MIN: return -128;
    case MIN_AGAINST_MAX: return which ? 127 : -128;
    case ALTERNATING: return (int8_t)((i + which) % 2 ? 127 : -128);
    case EXTREMES: return extremes[next_random() % 4u];
    default: return (int8_t)(next_random() >> 24);
    }
}

static void fill(int8_t *data, long count, int pattern, int which)
{
    for (long i = 0; i < count; ++i) data[i] = value_of(pattern, which, (int)i);
}

static void check_dot(const int8_t *a, const int8_t *b, int n, long offset_a, long offset_b)
{
    expect("tb_q8_dot", n, offset_a, offset_b, tb_q8_dot(a, b, n), plain_dot(a, b, n));
}

/* acc4 starts from values of its own and sits between two sentinels that must stay as they were. */
static void check_dot4(const int8_t *x, const int8_t *w, long stride, int n, long offset_x, long offset_w)
{
    int32_t acc[6], expected[4];
    for (int j = 0; j < 6; ++j) acc[j] = (int32_t)(next_random() >> 8) - (1 << 23);
    for (int j = 0; j < 4; ++j) expected[j] = acc[j + 1] + plain_dot(x, w + j * stride, n);
    const int32_t before = acc[0], after = acc[5];
    tb_q8_dot4(x, w, stride, n, acc + 1);
    for (int j = 0; j < 4; ++j) expect("tb_q8_dot4", n, offset_x, offset_w + j * stride, acc[j + 1], expected[j]);
    expect("tb_q8_dot4 (left of acc4)", n, offset_x, offset_w, acc[0], before);
    expect("tb_q8_dot4 (right of acc4)", n, offset_x, offset_w, acc[5], after);
}

static void hand_checked(void)
{
    static const int8_t mins[4] = {-128, -128, -128, -128};
    static const int8_t ramp[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    static const int8_t signs[9] = {-1, 1, -1, 1, -1, 1, -1, 1, -1};
    static const int8_t rows[4 * 3] = {-128, -128, -128, 127, 127, 127, 1, 2, 3, 0, 0, -1};
    int32_t acc[4] = {10, 20, 30, 40};
    expect("hand: -128 * -128 twice", 2, 0, 0, tb_q8_dot(mins, mins, 2), 32768);
    expect("hand: -128 * -128 four times", 4, 0, 0, tb_q8_dot(mins, mins, 4), 65536);
    expect("hand: 1..9 against -1, 1, ...", 9, 0, 0, tb_q8_dot(ramp, signs, 9), -5);
    expect("hand: n = 0", 0, 0, 0, tb_q8_dot(ramp, signs, 0), 0);
    /* x = (-128, -128, -128) against the rows (-128 x3), (127 x3), (1, 2, 3), (0, 0, -1), stride 3 */
    tb_q8_dot4(mins, rows, 3, 3, acc);
    expect("hand: dot4 row 0", 3, 0, 0, acc[0], 10 + 49152);
    expect("hand: dot4 row 1", 3, 0, 3, acc[1], 20 - 48768);
    expect("hand: dot4 row 2", 3, 0, 6, acc[2], 30 - 768);
    expect("hand: dot4 row 3", 3, 0, 9, acc[3], 40 + 128);
}

/* n in [0, 80] and longer lengths around the vector widths (8, 16, 32) and the convolutions' patch sizes. */
static const int LONG_N[] = {95, 96, 97, 127, 128, 129, 255, 256, 257, 288, 300, 511, 512, 513, 576, 577, 1000, 1023,
                             1152, 2304, 4095, 4096};

static void check_length(int n, int all_offsets)
{
    const long strides[] = {n, n + 1, n + 7, MAX_STRIDE};
    for (int pattern = 0; pattern < PATTERNS; ++pattern) {
        fill(a_data, MAX_N + PAD, pattern, 0);
        fill(b_data, MAX_N + PAD, pattern, 1);
        fill(w_data, 4 * MAX_STRIDE + PAD, pattern, 1);
        for (int oa = 0; oa < 8; ++oa)
            for (int ob = 0; ob < 8; ++ob) {
                if (!all_offsets && oa != ob && (oa + 3 * ob) % 5 != 0) continue;
                check_dot(a_data + oa, b_data + ob, n, oa, ob);
                for (int s = 0; s < 4; ++s)
                    if (s == (oa + ob) % 4 || all_offsets == 2)
                        check_dot4(a_data + oa, w_data + ob, strides[s], n, oa, ob);
            }
    }
}

#ifndef TB_CHECK_BARE_METAL
/* The operands' last byte just before a page that is not mapped: a read past the end faults. */
static void check_at_a_page_end(void)
{
    const long page = sysconf(_SC_PAGESIZE);
    const long span = (4 * MAX_STRIDE / page + 2) * page;
    int8_t *region = mmap(0, (size_t)(span + page), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED || mprotect(region + span, (size_t)page, PROT_NONE) != 0) {
        say("FAIL mmap\n");
        failed = 1;
        return;
    }
    int8_t *end = region + span;
    for (int k = 0; k < 81 + (int)(sizeof LONG_N / sizeof LONG_N[0]); ++k) {
        const int n = k <= 80 ? k : LONG_N[k - 81];
        /* x: the last n bytes; w: four rows of stride n + 3, the last row ending at the page */
        const long stride = n + 3;
        int8_t *x = end - n, *w = end - 3 * stride - n;
        fill(w, 3 * stride + n, RANDOM, 1);
        fill(x, n, RANDOM, 0);
        int8_t copy[MAX_N];
        for (int i = 0; i < n; ++i) copy[i] = x[i];
        check_dot(copy, x, n, 0, -n);
        check_dot(x, copy, n, -n, 0);
        int32_t acc[4] = {0, 0, 0, 0};
        for (int i = 0; i < n; ++i) copy[i] = (int8_t)(next_random() >> 24);
        tb_q8_dot4(copy, w, stride, n, acc);
        for (int j = 0; j < 4; ++j)
            expect("tb_q8_dot4 at a page end", n, 0, -(3 - j) * stride - n, acc[j], plain_dot(copy, w + j * stride, n));
    }
    munmap(region, (size_t)(span + page));
}
#endif

int main(void)
{
    say("path " TB_Q8_DOT_ARM_PATH "\n");
    hand_checked();
    for (int n = 0; n <= 80; ++n) check_length(n, n <= 20 ? 2 : 1);
    for (unsigned k = 0; k < sizeof LONG_N / sizeof LONG_N[0]; ++k) check_length(LONG_N[k], 0);
#ifndef TB_CHECK_BARE_METAL
    check_at_a_page_end();
#endif
    if (failed) return 1;
    say("checked ");
    say_number((long)checked);
    say("\n");
    return 0;
}
