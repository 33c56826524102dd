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

{library_rules(p)}
clean:
\trm -rf obj lib{p.name}.a {p.name}_main

.PHONY: all clean
-include $(OBJS:.o=.d) obj/main/{p.name}_main.d
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


def render_main(p: Program) -> str:
    up, input_desc = p.name.upper(), comment_text(p.input_desc)
    return f"""/* {GENERATED}
 * Usage: {p.name}_main IN.bin OUT.bin [--bench N]
 * IN.bin holds {up}_INPUT_COUNT little-endian float32 values ({input_desc}); OUT.bin receives the output.
 * With --bench N, runs N more timed inferences and prints `median_ms: <float>`.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "{p.name}.h"

static unsigned char arena_storage[{up}_ARENA_BYTES + {up}_ARENA_ALIGN];
static float input[{up}_INPUT_COUNT];
static float output[{up}_OUTPUT_COUNT];

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

int main(int argc, char **argv)
{{
    void *arena = (void *)(((uintptr_t)arena_storage + {up}_ARENA_ALIGN - 1) & ~(uintptr_t)({up}_ARENA_ALIGN - 1));
    FILE *f;
    long bench = 0;
    if (argc == 5 && strcmp(argv[3], "--bench") == 0) bench = strtol(argv[4], NULL, 10);
    if ((argc != 3 && argc != 5) || bench < 0) {{
        fprintf(stderr, "usage: %s IN.bin OUT.bin [--bench N]\\n", argv[0]);
        return 2;
    }}
    f = fopen(argv[1], "rb");
    if (!f) {{ fprintf(stderr, "%s: cannot open %s\\n", argv[0], argv[1]); return 1; }}
    if (fread(input, sizeof(float), {up}_INPUT_COUNT, f) != {up}_INPUT_COUNT || fgetc(f) != EOF) {{
        fprintf(stderr, "%s: %s must hold exactly %d float32 values\\n", argv[0], argv[1], {up}_INPUT_COUNT);
        fclose(f);
        return 1;
    }}
    fclose(f);
    if ({p.name}_infer(input, output, arena) != 0) {{ fprintf(stderr, "%s: inference failed\\n", argv[0]); return 1; }}
    f = fopen(argv[2], "wb");
    if (!f || fwrite(output, sizeof(float), {up}_OUTPUT_COUNT, f) != {up}_OUTPUT_COUNT || fclose(f) != 0) {{
        fprintf(stderr, "%s: cannot write %s\\n", argv[0], argv[2]);
        return 1;
    }}
    if (bench > 0) {{
        double *times = malloc(sizeof(double) * (size_t)bench);
        long i;
        if (!times) return 1;
        for (i = 0; i < bench; ++i) {{
            double start = now_ms();
            {p.name}_infer(input, output, arena);
            times[i] = now_ms() - start;
        }}
        qsort(times, (size_t)bench, sizeof(double), compare_doubles);
        printf("median_ms: %.6f\\n", bench % 2 ? times[bench / 2] : 0.5 * (times[bench / 2 - 1] + times[bench / 2]));
        free(times);
    }}
    return 0;
}}
"""
