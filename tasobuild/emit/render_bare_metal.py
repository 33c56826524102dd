"""A microcontroller's runner: `main/<name>_main.c` over semihosting, the startup code and the board's linker script,
and the Makefile that links `<name>_main.elf` and runs it under QEMU (`make run`).

The program reads `in.bin` and writes `out.bin` in the folder QEMU runs in, through the Arm semihosting calls
(SYS_OPEN, SYS_FLEN, SYS_READ, SYS_WRITE, SYS_CLOSE, then SYS_EXIT_EXTENDED with its status): a few `bkpt 0xab`
instructions, so neither newlib's stdio nor its syscalls are linked. The library itself stays as on any target.
"""

from __future__ import annotations

import shlex

from tasobuild.emit import render_build
from tasobuild.emit.program import BareMetal, Program
from tasobuild.emit.render_build import makefile_variables, object_list
from tasobuild.emit.render_c import GENERATED
from tasobuild.text import comment_text

STARTUP = "main/startup.c"
SEMIHOSTING = "main/semihosting.h"
VECTOR_TABLE_BYTES = 1024  # room for the 16 system vectors and the board's interrupts, were any used


def bare_metal_of(p: Program) -> BareMetal:
    assert p.toolchain.bare_metal is not None, "a hosted program has no board"
    return p.toolchain.bare_metal


def linker_script_path(p: Program) -> str:
    return f"main/{bare_metal_of(p).machine}.ld"


def bare_metal_files(p: Program) -> dict[str, str]:
    """The runner's files, by path relative to the project root."""
    return {
        f"main/{p.name}_main.c": render_main(p),
        SEMIHOSTING: render_semihosting(),
        STARTUP: render_startup(),
        linker_script_path(p): render_linker_script(p),
    }


def render_makefile(p: Program) -> str:
    board = bare_metal_of(p)
    objs = object_list(p)
    elf = f"{p.name}_main.elf"
    runner = [f"obj/main/{p.name}_main.o", "obj/main/startup.o"]
    return f"""# {GENERATED}
# `make` builds {elf} for QEMU's {board.machine} board; `make run` runs it there: it reads in.bin and writes
# out.bin in this folder (semihosting) and exits with its status. `make lib{p.name}.a` builds just the library.
# Compiler and flags are the target's.
{makefile_variables(p)}
QEMU = {shlex.join(board.run)}

OBJS = \\
    {objs}

all: {elf}

# -nostartfiles: the reset handler in main/startup.c is the entry point, not the C library's crt0.
{elf}: {' '.join(runner)} lib{p.name}.a {linker_script_path(p)}
\t$(CC) $(CFLAGS) $(LDFLAGS) -nostartfiles -T {linker_script_path(p)} -o $@ {' '.join(runner)} lib{p.name}.a $(LDLIBS)

run: {elf}
\t$(QEMU) {elf}

{render_build.library_rules(p)}
clean:
\trm -rf obj lib{p.name}.a {elf}

.PHONY: all run clean
-include $(OBJS:.o=.d) {' '.join(o.replace('.o', '.d') for o in runner)}
"""


def render_cmake(p: Program) -> str:
    """The hosted CMakeLists with the runner swapped for the board's: configure with the target's compiler and
    -DCMAKE_SYSTEM_NAME=Generic."""
    hosted = render_build.render_cmake(p)
    runner = hosted.index(f"add_executable({p.name}_main ")
    flags = " ".join(f'"{f}"' for f in p.toolchain.cflags)
    ldflags = " ".join(f'"{f}"' for f in p.toolchain.ldflags)
    return hosted[:runner] + f"""add_executable({p.name}_main.elf main/{p.name}_main.c {STARTUP})
target_compile_options({p.name}_main.elf PRIVATE {flags})
target_link_options({p.name}_main.elf PRIVATE {flags} {ldflags} "-nostartfiles"
    "-T${{CMAKE_CURRENT_SOURCE_DIR}}/{linker_script_path(p)}")
target_link_libraries({p.name}_main.elf PRIVATE {p.name})
"""


def render_main(p: Program) -> str:
    up = p.name.upper()
    # an int8 input or output (a model with one of each) is read and written as the model's own int8 values
    in_size, out_size = (1 if p.input_quant else 4), (1 if p.output_quant else 4)
    input_bytes = in_size * p.input_total
    in_type = "int8" if p.input_quant else "little-endian float32"
    in_word = in_type.split()[-1]
    inputs = ", then ".join(f"{b.count} of {comment_text(b.desc)}" for b in p.inputs)
    outputs = ", then ".join(comment_text(b.desc) for b in p.outputs)
    reads = " && ".join(f"sh_read(file, {p.name}_input{k or ''}(arena), {in_size * b.count}) == 0"
                        for k, b in enumerate(p.inputs))
    writes = " || ".join(f"sh_write(file, {p.name}_output{k or ''}(arena), {out_size * b.count}) != 0"
                         for k, b in enumerate(p.outputs))
    return f"""/* {GENERATED}
 * Bare-metal runner (`make run`): reads in.bin ({in_type} values: {inputs})
 * from the host's current folder through semihosting, runs the network and writes out.bin ({outputs}).
 * Exits with 0, or 1 naming the problem. The inputs are read straight into the arena: no other buffer.
 */
#include <stdint.h>

#include "{p.name}.h"
#include "semihosting.h"

static unsigned char arena_storage[{up}_ARENA_BYTES + {up}_ARENA_ALIGN];

static int fail(const char *message)
{{
    sh_write0(message);
    return 1;
}}

int main(void)
{{
    void *arena = (void *)(((uintptr_t)arena_storage + {up}_ARENA_ALIGN - 1) & ~(uintptr_t)({up}_ARENA_ALIGN - 1));
    long file = sh_open("in.bin", SH_OPEN_READ_BINARY);
    int read_ok;
    if (file < 0) return fail("{p.name}_main: cannot open in.bin\\n");
    read_ok = sh_flen(file) == {input_bytes} && {reads};
    sh_close(file);
    if (!read_ok) return fail("{p.name}_main: in.bin must hold exactly {p.input_total} {in_word} values\\n");
    if ({p.name}_run(arena) != 0) return fail("{p.name}_main: inference failed\\n");
    file = sh_open("out.bin", SH_OPEN_WRITE_BINARY);
    if (file < 0) return fail("{p.name}_main: cannot open out.bin\\n");
    if ({writes}) {{
        sh_close(file);
        return fail("{p.name}_main: cannot write out.bin\\n");
    }}
    return sh_close(file) == 0 ? 0 : fail("{p.name}_main: cannot write out.bin\\n");
}}
"""


def render_semihosting() -> str:
    return f"""/* {GENERATED}
 * The Arm semihosting calls the runner needs, each a `bkpt 0xab` with the operation in r0 and a pointer to its
 * arguments in r1 (the answer comes back in r0). A debugger or QEMU (-semihosting-config enable=on) serves them.
 */
#ifndef TB_SEMIHOSTING_H
#define TB_SEMIHOSTING_H

#include <stdint.h>

enum {{
    SH_SYS_OPEN = 0x01, SH_SYS_CLOSE = 0x02, SH_SYS_WRITE0 = 0x04, SH_SYS_WRITE = 0x05, SH_SYS_READ = 0x06,
    SH_SYS_FLEN = 0x0c, SH_SYS_EXIT_EXTENDED = 0x20
}};
enum {{ SH_OPEN_READ_BINARY = 1, SH_OPEN_WRITE_BINARY = 5 }}; /* fopen modes "rb" and "wb" */
#define SH_ADP_STOPPED_APPLICATION_EXIT 0x20026u

static inline long sh_call(long operation, const void *arguments)
{{
    register long r0 __asm__("r0") = operation;
    register const void *r1 __asm__("r1") = arguments;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}}

static inline unsigned long sh_length(const char *text)
{{
    unsigned long n = 0;
    while (text[n]) ++n;
    return n;
}}

/* A handle, or -1. */
static inline long sh_open(const char *path, unsigned long mode)
{{
    const uintptr_t arguments[3] = {{(uintptr_t)path, mode, sh_length(path)}};
    return sh_call(SH_SYS_OPEN, arguments);
}}

static inline long sh_close(long file)
{{
    const uintptr_t arguments[1] = {{(uintptr_t)file}};
    return sh_call(SH_SYS_CLOSE, arguments);
}}

/* The file's length in bytes, or -1. */
static inline long sh_flen(long file)
{{
    const uintptr_t arguments[1] = {{(uintptr_t)file}};
    return sh_call(SH_SYS_FLEN, arguments);
}}

/* The number of bytes NOT read: 0 when all were. */
static inline long sh_read(long file, void *buffer, unsigned long bytes)
{{
    const uintptr_t arguments[3] = {{(uintptr_t)file, (uintptr_t)buffer, bytes}};
    return sh_call(SH_SYS_READ, arguments);
}}

/* The number of bytes NOT written: 0 when all were. */
static inline long sh_write(long file, const void *buffer, unsigned long bytes)
{{
    const uintptr_t arguments[3] = {{(uintptr_t)file, (uintptr_t)buffer, bytes}};
    return sh_call(SH_SYS_WRITE, arguments);
}}

/* Text on the host's console (QEMU: its stderr). */
static inline void sh_write0(const char *text)
{{
    sh_call(SH_SYS_WRITE0, text);
}}

/* Ends the emulation; the host process exits with `status`. */
static inline void sh_exit(int status)
{{
    const uintptr_t arguments[2] = {{SH_ADP_STOPPED_APPLICATION_EXIT, (uintptr_t)status}};
    for (;;) sh_call(SH_SYS_EXIT_EXTENDED, arguments);
}}

#endif
"""


def render_startup() -> str:
    return f"""/* {GENERATED}
 * Reset: copy .data from flash, zero .bss, give the FPU (and on Armv8.1-M, Helium) its coprocessor access, run
 * main and exit with its status through semihosting. A fault prints its name and exits with status 3.
 */
#include <stdint.h>

#include "semihosting.h"

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _estack[];
int main(void);

void reset_handler(void);
void reset_handler(void)
{{
    uint32_t *from = _sidata, *to = _sdata;
    while (to < _edata) *to++ = *from++;
    for (to = _sbss; to < _ebss; ++to) *to = 0;
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    /* CPACR (0xE000ED88): full access to CP10 and CP11, which cover the FPU and, on Armv8.1-M, MVE (Helium). */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\\n\\tisb" ::: "memory");
#endif
    sh_exit(main());
}}

static void fault(const char *name)
{{
    sh_write0(name);
    sh_exit(3);
}}

static void nmi_handler(void) {{ fault("NMI\\n"); }}
static void hard_fault_handler(void) {{ fault("HardFault\\n"); }}
static void mem_manage_handler(void) {{ fault("MemManage fault\\n"); }}
static void bus_fault_handler(void) {{ fault("BusFault\\n"); }}
static void usage_fault_handler(void) {{ fault("UsageFault (on an FPU instruction: is CP10/CP11 enabled?)\\n"); }}
static void other_handler(void) {{ fault("unexpected exception\\n"); }}

typedef void (*handler)(void);

/* The initial stack pointer, then the system exceptions; the board's interrupts are never enabled. */
__attribute__((section(".vectors"), used)) static const handler vectors[16] = {{
    (handler)(uintptr_t)_estack, reset_handler, nmi_handler, hard_fault_handler, mem_manage_handler,
    bus_fault_handler, usage_fault_handler, other_handler, 0, 0, 0, other_handler, other_handler, 0, other_handler,
    other_handler,
}};
"""


def render_linker_script(p: Program) -> str:
    return board_linker_script(bare_metal_of(p), f"{p.name}_main.elf")


def board_linker_script(board: BareMetal, program: str) -> str:
    """The linker script of `program` (its file name, for the comment) on `board`."""
    separate_vectors = board.vector_table != board.flash_origin
    vectors_region = "VECTORS" if separate_vectors else "FLASH"
    vectors_line = (f"    VECTORS (rx) : ORIGIN = {board.vector_table:#010x}, LENGTH = {VECTOR_TABLE_BYTES}\n"
                    if separate_vectors else "")
    return f"""/* {GENERATED}
 * {program} on QEMU's {board.machine}: flash and RAM have the device's sizes, so a program that links here fits
 * the device; the stack ({board.stack_bytes} bytes) is placed after .bss and counts against the RAM.
 */
MEMORY
{{
{vectors_line}    FLASH (rx) : ORIGIN = {board.flash_origin:#010x}, LENGTH = {board.flash_bytes}
    RAM (rw) : ORIGIN = {board.ram_origin:#010x}, LENGTH = {board.ram_bytes}
}}

ENTRY(reset_handler)

SECTIONS
{{
    .vectors : {{ KEEP(*(.vectors)) }} > {vectors_region}
    .text : {{ *(.text .text.*) }} > FLASH
    .rodata : {{ *(.rodata .rodata.*) }} > FLASH
    .ARM.exidx : {{ *(.ARM.exidx .ARM.exidx.* .gnu.linkonce.armexidx.*) }} > FLASH
    .data : ALIGN(4) {{ _sdata = .; *(.data .data.*) . = ALIGN(4); _edata = .; }} > RAM AT > FLASH
    _sidata = LOADADDR(.data);
    .bss (NOLOAD) : ALIGN(4) {{ _sbss = .; *(.bss .bss.* COMMON) . = ALIGN(4); _ebss = .; }} > RAM
    .stack (NOLOAD) : ALIGN(8) {{ . += {board.stack_bytes}; _estack = .; }} > RAM
}}
"""
