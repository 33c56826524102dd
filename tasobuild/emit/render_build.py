"""Render the project's build files and its command-line runner (`<name>_main IN.bin OUT.bin [--bench N]`)."""

from __future__ import annotations

from tasobuild.emit.program import Program
from tasobuild.emit.render_c import GENERATED, uses_blob
from tasobuild.text import comment_text


def library_sources(p: Program) -> list[str]:
    """The library's translation units, relative to the project root."""
    sources = [f"src/{p.name}.c", f"src/{p.name}_weights.{'S' if uses_blob(p) else 'c'}"]
    sources += [f"src/kernels/{f}" for f in p.kernel_sources if f.endswith(".c")]
    return sources


def archiver(cc: str) -> str:
    """The archiver that goes with a compiler: arm-none-eabi-gcc -> arm-none-eabi-ar; anything else -> ar."""
    return cc[: -len("gcc")] + "ar" if cc.endswith("-gcc") else "ar"


def library_rules(p: Program) -> str:
    """The Makefile's rules for the library and its objects (every project's the same)."""
    return f"""lib{p.name}.a: $(OBJS)
\trm -f $@
\t$(AR) rcs $@ $^

obj/%.o: %.c
\t@mkdir -p $(dir $@)
\t$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

obj/%.o: %.S src/{p.name}_weights.bin
\t@mkdir -p $(dir $@)
\t$(CC) $(CPPFLAGS) $(ASFLAGS) $(CFLAGS) -c $< -o $@
"""


def makefile_variables(p: Program) -> str:
    """The Makefile's toolchain variables, hosted or bare-metal alike: the target's compiler and flags."""
    t = p.toolchain
    return f"""CC = {t.cc}
AR = {archiver(t.cc)}
CFLAGS = {' '.join(t.cflags)}
CPPFLAGS = -Iinclude -Isrc -Isrc/kernels -MMD -MP
ASFLAGS = -Wa,-Isrc
LDFLAGS = {' '.join(t.ldflags)}
LDLIBS = -lm"""


def object_list(p: Program) -> str:
    """The library's object files, one per line, as OBJS lists them."""
    return " \\\n    ".join(f"obj/{s.rsplit('.', 1)[0]}.o" for s in library_sources(p))


def render_makefile(p: Program) -> str:
    objs = object_list(p)
    return f"""# {GENERATED}
# `make` builds {p.name}_main; `make lib{p.name}.a` just the library. Compiler and flags are the target's: the
# ones the kernels were profiled with.
{makefile_variables(p)}

OBJS = \\
    {objs}

all: {p.name}_main

{p.name}_main: obj/main/{p.name}_main.o lib{p.name}.a
\t$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# `make profile` builds {p.name}_main_profile, the same program with per-layer timing (`--profile N`): the network's
# file and the runner compiled again with -DTB_PROFILE into obj/profile/. They come before the library on the link
# line, so the linker takes the network's timed copy and never the library's.
profile: {p.name}_main_profile

{p.name}_main_profile: obj/profile/main/{p.name}_main.o obj/profile/src/{p.name}.o lib{p.name}.a
\t$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

obj/profile/%.o: %.c
\t@mkdir -p $(dir $@)
\t$(CC) $(CPPFLAGS) -DTB_PROFILE $(CFLAGS) -c $< -o $@

{library_rules(p)}
clean:
\trm -rf obj lib{p.name}.a {p.name}_main {p.name}_main_profile

.PHONY: all profile clean
-include $(OBJS:.o=.d) obj/main/{p.name}_main.d obj/profile/main/{p.name}_main.d obj/profile/src/{p.name}.d
"""


def render_cmake(p: Program) -> str:
    t = p.toolchain
    sources = "\n    ".join(library_sources(p))
    flags = " ".join(f'"{f}"' for f in t.cflags)
    languages = "C ASM" if uses_blob(p) else "C"
    blob = (
        f'set_source_files_properties(src/{p.name}_weights.S PROPERTIES\n'
        f'    COMPILE_OPTIONS "-Wa,-I${{CMAKE_CURRENT_SOURCE_DIR}}/src"\n'
        f'    OBJECT_DEPENDS "${{CMAKE_CURRENT_SOURCE_DIR}}/src/{p.name}_weights.bin")\n'
        if uses_blob(p) else ""
    )
    return f"""# {GENERATED}
cmake_minimum_required(VERSION 3.13)
project({p.name} {languages})

add_library({p.name} STATIC
    {sources})
target_include_directories({p.name} PUBLIC include PRIVATE src src/kernels)
target_compile_options({p.name} PRIVATE {flags})
target_link_libraries({p.name} PUBLIC m{" -pthread" if "-pthread" in t.ldflags else ""})
{blob}
add_executable({p.name}_main main/{p.name}_main.c)
target_compile_options({p.name}_main PRIVATE {flags})
target_link_libraries({p.name}_main PRIVATE {p.name})
"""


# Timed runs one option may ask for: a typo ("--bench 1e9") is refused rather than left running for hours.
MAX_RUNS = 1_000_000


def _file_args(p: Program) -> str:
    """The runner's file arguments: `IN.bin OUT.bin` for one input and output, else one file per input, then one per
    output, numbered as the accessors are."""
    if len(p.inputs) == len(p.outputs) == 1:
        return "IN.bin OUT.bin"
    return " ".join([f"IN{k}.bin" for k in range(len(p.inputs))] + [f"OUT{k}.bin" for k in range(len(p.outputs))])


def render_main(p: Program) -> str:
    up, files = p.name.upper(), len(p.inputs) + len(p.outputs)
    infer = f"{p.name}_infer_float" if p.int8_io else f"{p.name}_infer"  # the files hold float32 either way
    names = [f"IN{k}.bin" for k in range(len(p.inputs))] if len(p.inputs) > 1 else ["IN.bin"]
    what = "\n".join(f" * {name} holds {b.count} little-endian float32 values ({comment_text(b.desc)});"
                     for name, b in zip(names, p.inputs))
    input_counts = ", ".join(str(b.count) for b in p.inputs)
    output_counts = ", ".join(str(b.count) for b in p.outputs)
    return f"""/* {GENERATED}
 * Usage: {p.name}_main {_file_args(p)} [--bench N] [--profile N]
{what}
 * {"OUT.bin receives the output" if len(p.outputs) == 1 else "OUTk.bin receives output k"} (ONNX layout), and one
 * line on stdout sums up output 0: `{p.name}_main: wrote <count> float32 values to <file>; the largest is <value> at
 * index <i>`.
 * With --bench N, runs N more timed inferences and prints `median_ms: <float>`.
 * With --profile N (a build with -DTB_PROFILE: `make profile` builds {p.name}_main_profile), runs N more inferences
 * and prints each layer's median time and interquartile range, `profile_layer: <k> <ms> ms (IQR <ms> ms)  <name>`,
 * in the order the layers run, then `profile_total: <ms> ms`, the median of the whole runs.
 * A bad argument is a usage error: a line saying what is expected, exit status 2.
 */
#define _POSIX_C_SOURCE 199309L
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "{p.name}.h"

#define MAX_RUNS {MAX_RUNS}L

static unsigned char arena_storage[{up}_ARENA_BYTES + {up}_ARENA_ALIGN];
static float input[{p.input_total}];  /* every input, one after another */
static float output[{p.output_total}];
static const size_t input_counts[{up}_INPUTS] = {{{input_counts}}};
static const size_t output_counts[{up}_OUTPUTS] = {{{output_counts}}};

static double now_ms(void)
{{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}}

static int compare_doubles(const void *a, const void *b)
{{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}}

/* The median of `count` values (sorts them). */
static double median(double *values, long count)
{{
    qsort(values, (size_t)count, sizeof(double), compare_doubles);
    return count % 2 ? values[count / 2] : 0.5 * (values[count / 2 - 1] + values[count / 2]);
}}

static int usage(void)
{{
    fprintf(stderr, "usage: {p.name}_main {_file_args(p)} [--bench N] [--profile N]\\n");
    return 2;
}}

/* The N of `--bench N` or `--profile N`, or -1 (said on stderr) if `text` is not a whole number in 1..MAX_RUNS. */
static long runs_of(const char *option, const char *text)
{{
    char *end;
    long value;
    errno = 0;
    value = strtol(text, &end, 10);
    if (end == text || *end != '\\0' || errno != 0 || value < 1 || value > MAX_RUNS) {{
        fprintf(stderr, "{p.name}_main: %s takes a whole number of runs from 1 to %ld, got '%s'\\n", option, MAX_RUNS,
                text);
        return -1;
    }}
    return value;
}}

#ifdef TB_PROFILE
static double layer_started[{up}_PROFILE_LAYERS + 1];

void {p.name}_profile_mark(int layer)
{{
    layer_started[layer] = now_ms();
}}

/* Runs `runs` inferences and prints each layer's median time, then the whole run's. */
static int profile_layers(long runs)
{{
    void *arena = (void *)(((uintptr_t)arena_storage + {up}_ARENA_ALIGN - 1) & ~(uintptr_t)({up}_ARENA_ALIGN - 1));
    double *times = malloc(sizeof(double) * (size_t)runs * ({up}_PROFILE_LAYERS + 1));
    long r;
    int k;
    if (!times) {{ fprintf(stderr, "{p.name}_main: out of memory for %ld runs\\n", runs); return 1; }}
    for (r = 0; r < runs; ++r) {{
        {infer}(input, output, arena);
        for (k = 0; k < {up}_PROFILE_LAYERS; ++k) times[k * runs + r] = layer_started[k + 1] - layer_started[k];
        times[{up}_PROFILE_LAYERS * runs + r] = layer_started[{up}_PROFILE_LAYERS] - layer_started[0];
    }}
    printf("profile: %d layers, median (and interquartile range) of %ld runs each, in the order they run\\n",
           {up}_PROFILE_LAYERS, runs);
    for (k = 0; k < {up}_PROFILE_LAYERS; ++k) {{
        double *layer = times + k * runs;
        double middle = median(layer, runs);  /* sorts the layer's times */
        printf("profile_layer: %3d %12.6f ms (IQR %.6f ms)  %s\\n", k, middle,
               layer[(3 * runs) / 4] - layer[runs / 4], {p.name}_profile_layer_names[k]);
    }}
    printf("profile_total: %.6f ms\\n", median(times + {up}_PROFILE_LAYERS * runs, runs));
    free(times);
    return 0;
}}
#endif

int main(int argc, char **argv)
{{
    void *arena = (void *)(((uintptr_t)arena_storage + {up}_ARENA_ALIGN - 1) & ~(uintptr_t)({up}_ARENA_ALIGN - 1));
    FILE *f;
    long bench = 0, profile = 0;
    size_t k, at;
    int i, top;
    if (argc < {files + 1}) return usage();
    for (i = 1; i <= {files}; ++i)
        if (argv[i][0] == '-') return usage();
    for (i = {files + 1}; i < argc; i += 2) {{
        long *runs = strcmp(argv[i], "--bench") == 0 ? &bench : strcmp(argv[i], "--profile") == 0 ? &profile : NULL;
        if (!runs) {{
            fprintf(stderr, "{p.name}_main: unknown argument '%s'\\n", argv[i]);
            return usage();
        }}
        if (i + 1 == argc) {{
            fprintf(stderr, "{p.name}_main: %s needs a number of runs\\n", argv[i]);
            return usage();
        }}
        if ((*runs = runs_of(argv[i], argv[i + 1])) < 0) return usage();
    }}
#ifndef TB_PROFILE
    if (profile) {{
        fprintf(stderr, "{p.name}_main: --profile: this program was built without per-layer timing; `make profile` "
                        "builds {p.name}_main_profile, which has it\\n");
        return 2;
    }}
#endif
    for (k = 0, at = 0; k < {up}_INPUTS; at += input_counts[k], ++k) {{
        const char *name = argv[1 + k];
        f = fopen(name, "rb");
        if (!f) {{ fprintf(stderr, "{p.name}_main: cannot open %s\\n", name); return 1; }}
        if (fread(input + at, sizeof(float), input_counts[k], f) != input_counts[k] || fgetc(f) != EOF) {{
            fprintf(stderr, "{p.name}_main: %s must hold exactly %lu float32 values\\n", name,
                    (unsigned long)input_counts[k]);
            fclose(f);
            return 1;
        }}
        fclose(f);
    }}
    if ({infer}(input, output, arena) != 0) {{
        fprintf(stderr, "{p.name}_main: inference failed\\n");
        return 1;
    }}
    for (k = 0, at = 0; k < {up}_OUTPUTS; at += output_counts[k], ++k) {{
        const char *name = argv[1 + {up}_INPUTS + k];
        f = fopen(name, "wb");
        if (!f || fwrite(output + at, sizeof(float), output_counts[k], f) != output_counts[k] || fclose(f) != 0) {{
            fprintf(stderr, "{p.name}_main: cannot write %s\\n", name);
            return 1;
        }}
    }}
    for (top = 0, i = 1; i < {up}_OUTPUT_COUNT; ++i)
        if (output[i] > output[top]) top = i;
    printf("{p.name}_main: wrote %d float32 values to %s; the largest is %g at index %d\\n", {up}_OUTPUT_COUNT,
           argv[1 + {up}_INPUTS], (double)output[top], top);
    if (bench > 0) {{
        double *times = malloc(sizeof(double) * (size_t)bench);
        long r;
        if (!times) {{ fprintf(stderr, "{p.name}_main: out of memory for %ld runs\\n", bench); return 1; }}
        for (r = 0; r < bench; ++r) {{
            double start = now_ms();
            {infer}(input, output, arena);
            times[r] = now_ms() - start;
        }}
        printf("median_ms: %.6f\\n", median(times, bench));
        free(times);
    }}
#ifdef TB_PROFILE
    if (profile > 0 && profile_layers(profile) != 0) return 1;
#endif
    return 0;
}}
"""
