"""Costs measured on the emulated microcontroller: the device harness, built bare metal for the target's board, run
under qemu-system-arm in instruction-counting mode, its counts converted to time with the target's clock.

How a call is counted. `-icount shift=0,align=off,sleep=off` makes QEMU's virtual clock advance exactly 1 ns per
guest instruction executed, whatever the host does, so every timer the board has counts instructions. The harness
reads the core's own SysTick (every Cortex-M has it, at the same address), clocked by the board's system clock
(25 MHz on the MPS2 boards: one tick per 40 instructions). Its 24-bit counter wraps every 2^24 ticks; the SysTick
interrupt counts the wraps, so a call of any length is counted. At start the harness calibrates instructions per
tick on a loop of known length (two instructions per iteration), and every call is repeated until it spans at
least TB_EMULATED_MIN_TICKS ticks, so the tick's granularity is below 0.1 % of the count. The count is that of
the target's compiled code, with the target's compiler and flags, on one run of the call: the same bytes give the
same count on any machine (the emulator's speed does not matter), so a cost is measured once ("reps" = 1, spread 0).

Time = instructions / clock. What that misses, and so how far to trust it (BENCHMARKS.md, "Emulated costs"):
every instruction counts one cycle, so a floating-point divide or square root (14 cycles on the M4), a load that
waits on flash (wait states at 180 MHz), a multi-cycle load/store multiple, a pipeline stall or, on the M7, a cache
miss, are all as cheap as an add; the M55's Helium instructions count one each though they take two beats on its
64-bit datapath. The counts rank primitives that do the same work in different ways by the work they do, not by
how memory serves them: good for choosing among primitives, optimistic (low) as absolute times.

The costs go into the cost cache under `emulated_fingerprint(target)`: the target's compiler, flags and clock plus
"qemu icount" and the board, never the host's fingerprint, so emulated counts and host timings never mix.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tasobuild.costs.cache import Cost, kernel_digest
from tasobuild.costs.harness import CALL_TYPE, NOT_KERNELS, call_table, unique_calls
from tasobuild.emit.program import BareMetal
from tasobuild.emit.render_bare_metal import board_linker_script, render_semihosting, render_startup
from tasobuild.errors import UserError
from tasobuild.native.headers import own_prototypes
from tasobuild.primitives import KernelCall
from tasobuild.resources import cache_dir, kernels_dir
from tasobuild.target import Target, host_fingerprint

log = logging.getLogger("tasobuild.costs")

QEMU = "qemu-system-arm"
ICOUNT = ("-icount", "shift=0,align=off,sleep=off")  # 1 ns of virtual time per instruction, deterministic
COUNTS_FILE = "emulated.csv"
CALIBRATION_ITERATIONS = 1 << 22  # two instructions each
MIN_TICKS = 4096  # a count spans at least this many timer ticks: granularity below 1/4096
ALIGN = 16  # every buffer starts on 16 bytes (the kernels' vector loads)
DATA_RESERVE = 64 * 1024  # RAM left for the harness's own data, the C library's and the stack
TIMEOUT_S = 1800.0
STACK_BYTES = 8192


@dataclass(frozen=True)
class Emulated:
    """What the emulated harness needs of a microcontroller target."""

    machine: str
    vector_table: int
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int  # the board's RAM the harness may use: its buffers need not fit the device's
    clock_mhz: int
    cc: tuple[str, ...]
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...]


def board_of(target: Target) -> Emulated | None:
    """The board `target`'s kernels can be counted on here, or None (no [board], or no clock to convert with)."""
    b = target.board
    if b is None or target.clock_mhz is None or target.flash is None or target.ram is None:
        return None
    return Emulated(b.machine, b.flash_origin if b.vector_table is None else b.vector_table, b.flash_origin,
                 target.flash, b.ram_origin, b.harness_ram or target.ram, target.clock_mhz,
                 tuple(target.cc_argv), tuple(target.cflags), tuple(target.ldflags))


def can_emulate(target: Target) -> bool:
    """The target has a board and this machine has its compiler and qemu-system-arm."""
    return board_of(target) is not None and shutil.which(QEMU) is not None \
        and shutil.which(target.cc_argv[0]) is not None


def emulated_fingerprint(target: Target) -> str:
    """The cost cache's fingerprint of the target's emulated counts: the target's (compiler, flags), the board, the
    clock the counts were converted with, and how they were counted."""
    board = board_of(target)
    assert board is not None, "only a target with a board and a clock is emulated"
    fields = {"costs": "qemu icount", "target": host_fingerprint(target).digest, "machine": board.machine,
              "clock_mhz": board.clock_mhz}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ the harness


def pool_bytes(call: KernelCall) -> int:
    """The buffer pool a call takes: each buffer rounded up to ALIGN, a zero-byte one included."""
    return sum(-(-max(size, 1) // ALIGN) * ALIGN for _, size in call.buffer_bytes)


def fits(call: KernelCall, board: Emulated) -> bool:
    return pool_bytes(call) <= board.ram_bytes - DATA_RESERVE


def harness_source(calls: Sequence[KernelCall], prototypes: Sequence[str] = ()) -> str:
    """harness.c for the board: every call counted, one row each appended to emulated.csv through semihosting."""
    unique = unique_calls(calls)
    pool = max((pool_bytes(c) for c in unique), default=ALIGN)
    return "\n".join([
        "/* Generated by tasobuild (costs/emulated.py): counts the instructions of every kernel call below on the",
        " * emulated board (qemu-system-arm -icount shift=0: the SysTick counts instructions) and appends",
        f" * `function,params,ticks,runs` rows to {COUNTS_FILE} through semihosting. */",
        "#include <stdint.h>",
        '#include "tb_kernels.h"',
        '#include "semihosting.h"',
        *prototypes,
        "",
        "#define TB_HARNESS_MAX_BUFFERS 16",
        f"#define TB_EMULATED_MIN_TICKS {MIN_TICKS}u",
        f"#define TB_EMULATED_CALIBRATION {CALIBRATION_ITERATIONS}u",
        f"#define TB_EMULATED_POOL_BYTES {pool}",
        *CALL_TYPE,
        "",
        *call_table(unique),
        "",
        TICKS,
        _MAIN,
    ]) + "\n"


# The instruction counter in C (also for benches that count a whole program): SysTick under -icount, its wraps
# counted by its interrupt (start_ticks(), ticks()); spin(n), exactly 2n instructions, to calibrate; decimal text
# without stdio (put_text, put_number).
TICKS = r"""#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_VTOR (*(volatile uint32_t *)0xE000ED08u)
#define SYST_MAX 0xFFFFFFu

static volatile uint32_t wraps;
static void systick_handler(void) { wraps++; }
/* The vector table moved to RAM, with the SysTick's handler in place (the runner's table has none). */
static void (*ram_vectors[64])(void) __attribute__((aligned(256)));

static void start_ticks(void)
{
    void (*const *flash_vectors)(void) = (void (*const *)(void))(uintptr_t)SCB_VTOR;
    int i;
    for (i = 0; i < 16; i++) ram_vectors[i] = flash_vectors[i];
    ram_vectors[15] = systick_handler;
    SCB_VTOR = (uint32_t)(uintptr_t)ram_vectors;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    SYST_RVR = SYST_MAX;
    SYST_CVR = 0;
    SYST_CSR = 7; /* the processor's clock, the wrap interrupt, enabled */
    while (SYST_CVR == 0) {} /* the first tick loads the reload value (no wrap) */
}

static uint64_t ticks(void) /* since start_ticks; the counter counts down */
{
    uint32_t before, value;
    do {
        before = wraps;
        value = SYST_CVR;
    } while (before != wraps);
    return (uint64_t)before * (SYST_MAX + 1u) + (SYST_MAX - value);
}

static void spin(uint32_t n) /* exactly 2n instructions */
{
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
}

static char *put_text(char *at, const char *text)
{
    while (*text) *at++ = *text++;
    return at;
}

static char *put_number(char *at, uint64_t value)
{
    char digits[24];
    int n = 0;
    do { digits[n++] = (char)('0' + value % 10u); value /= 10u; } while (value);
    while (n) *at++ = digits[--n];
    return at;
}

"""

_MAIN = r"""static float pool[TB_EMULATED_POOL_BYTES / 4] __attribute__((aligned(16)));

static uint32_t seed = 12345u;
static float random_value(void) /* uniform in [-1, 1) */
{
    seed = seed * 1103515245u + 12345u;
    return (float)((seed >> 8) & 0xFFFFu) / 32768.0f - 1.0f;
}

static char line[1024];

int main(void)
{
    const int count = (int)(sizeof CALLS / sizeof CALLS[0]);
    long file = sh_open("emulated.csv", SH_OPEN_WRITE_BINARY);
    uint64_t start, spent;
    char *at;
    int i, k;
    if (file < 0) return 1;
    start_ticks();
    start = ticks();
    spin(TB_EMULATED_CALIBRATION);
    spent = ticks() - start;
    at = put_number(put_text(put_number(put_text(line, "calibration,"), 2ull * TB_EMULATED_CALIBRATION), ","),
                    spent);
    *at++ = '\n';
    if (sh_write(file, line, (unsigned long)(at - line)) != 0) return 1;
    for (i = 0; i < count; i++) {
        const tb_harness_call *c = &CALLS[i];
        float *b[TB_HARNESS_MAX_BUFFERS];
        float *next = pool;
        uint32_t runs = 1, r;
        for (k = 0; k < c->n; k++) {
            long floats = (c->bytes[k] + 15) / 16 * 4, j;
            b[k] = next;
            next += floats > 0 ? floats : 4;
            for (j = 0; j < floats; j++) b[k][j] = random_value();
        }
        start = ticks();
        c->run(b);
        spent = ticks() - start;
        if (spent < TB_EMULATED_MIN_TICKS) { /* too short to count well: repeat it */
            runs = TB_EMULATED_MIN_TICKS / (uint32_t)(spent + 1u) + 1u;
            start = ticks();
            for (r = 0; r < runs; r++) c->run(b);
            spent = ticks() - start;
        }
        at = put_text(put_text(put_text(put_text(line, c->function), ",\""), c->params), "\",");
        at = put_number(put_text(put_number(at, spent), ","), runs);
        *at++ = '\n';
        if (sh_write(file, line, (unsigned long)(at - line)) != 0) return 1;
    }
    return sh_close(file) == 0 ? 0 : 1;
}
"""


def linker_script(board: Emulated) -> str:
    """The runner's linker script with the board's RAM (the harness's buffers need not fit the device's)."""
    layout = BareMetal(board.machine, board.vector_table, board.flash_origin, board.flash_bytes, board.ram_origin,
                       board.ram_bytes, STACK_BYTES, ())
    return board_linker_script(layout, "harness.elf")


def harness_files(calls: Sequence[KernelCall], board: Emulated) -> dict[str, str]:
    """The harness's own files (the kernels are compiled apart, see kernel_objects), by name."""
    functions = {c.function for c in calls}
    return {
        "harness.c": harness_source(calls, own_prototypes(kernels_dir(), functions)),
        "semihosting.h": render_semihosting(),
        "startup.c": render_startup(),
        "harness.ld": linker_script(board),
    }


def _compile(board: Emulated, argv: Sequence[str], cwd: Path) -> None:
    done = subprocess.run([*board.cc, *board.cflags, *argv], cwd=cwd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise UserError(f"{board.cc[0]}: the emulated profiling harness does not compile for {board.machine} "
                        f"({(done.stderr.strip().splitlines() or ['no output'])[0]}); report it as a bug")


def kernel_objects(board: Emulated) -> list[Path]:
    """Every kernel source compiled with the target's compiler and flags, once per (compiler, flags, kernel
    sources): kept in the cache folder, sorted."""
    key = hashlib.sha256(json.dumps([board.cc, board.cflags, kernel_digest()]).encode()).hexdigest()[:20]
    folder = cache_dir() / "emulated" / key
    sources = sorted(s for s in kernels_dir().iterdir()
                     if s.is_file() and s.suffix == ".c" and not s.stem.startswith(NOT_KERNELS))
    objects = [folder / f"{s.stem}.o" for s in sources]
    if all(o.is_file() for o in objects):
        return objects
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as work:
        for source, obj in zip(sources, objects):
            if not obj.is_file():
                built = Path(work) / obj.name
                _compile(board, ["-I", str(kernels_dir()), "-c", str(source), "-o", str(built)], Path(work))
                os.replace(built, obj)  # whole or not at all: a build interrupted here leaves no half object
    return objects


@dataclass(frozen=True)
class Counted:
    """The emulated costs of the calls that fit the board, and the keys of those that did not."""

    costs: Mapping[str, Cost]
    too_large: tuple[str, ...]


def count_calls(calls: Sequence[KernelCall], board: Emulated) -> Counted:
    """Build the harness for `calls`, run it on the emulated board, and convert its counts to costs."""
    unique = unique_calls(calls)
    runnable = [c for c in unique if fits(c, board)]
    too_large = tuple(c.key() for c in unique if not fits(c, board))
    if not runnable:
        return Counted({}, too_large)
    objects = kernel_objects(board)
    with tempfile.TemporaryDirectory(prefix="tasobuild-emulated-") as tmp:
        work = Path(tmp)
        for name, text in harness_files(runnable, board).items():
            (work / name).write_text(text, encoding="utf-8")
        _compile(board, ["-I", str(kernels_dir()), "-I", ".", "-nostartfiles", "-T", "harness.ld", "-o",
                         "harness.elf", "harness.c", "startup.c", *map(str, objects), *board.ldflags], work)
        argv = [QEMU, "-M", board.machine, "-nographic", "-semihosting-config", "enable=on,target=native",
                *ICOUNT, "-kernel", "harness.elf"]
        try:
            done = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise UserError(f"{QEMU} -M {board.machine}: the emulated profiling harness ran past {TIMEOUT_S:.0f} s; "
                            f"use optimizer.costs = \"model\"") from None
        rows = _read_counts(work / COUNTS_FILE)
        if done.returncode != 0 or len(rows) != len(runnable) + 1:
            said = (done.stdout + done.stderr).strip().splitlines()
            raise UserError(f"{QEMU} -M {board.machine}: the emulated profiling harness stopped after "
                            f"{max(0, len(rows) - 1)} of {len(runnable)} calls (exit {done.returncode}: "
                            f"{said[-1] if said else 'no output'}); report it as a bug")
    return Counted(to_costs(rows, board.clock_mhz), too_large)


def _read_counts(path: Path) -> list[list[str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [row for row in csv.reader(f) if row]


def to_costs(rows: Sequence[Sequence[str]], clock_mhz: int) -> dict[str, Cost]:
    """The harness's rows as costs: the calibration row first (instructions, ticks), then (function, params,
    ticks, runs) per call; milliseconds = instructions / (clock_mhz * 1000)."""
    (label, instructions, calibration_ticks), *calls = rows
    assert label == "calibration", rows[0]
    per_tick = int(instructions) / int(calibration_ticks)
    costs = {}
    for function, params, ticks, runs in calls:
        count = int(ticks) * per_tick / int(runs)
        costs[f"{function}({params})"] = Cost(count / (clock_mhz * 1e3), 0.0, 1, "emulated")
    return costs


def instructions(cost: Cost, clock_mhz: int) -> float:
    """An emulated cost back as the instruction count it was made from."""
    return cost.median_ms * clock_mhz * 1e3


__all__ = ["ICOUNT", "QEMU", "TICKS", "Counted", "Emulated", "board_of", "can_emulate", "count_calls",
           "emulated_fingerprint", "harness_files", "instructions", "to_costs"]
