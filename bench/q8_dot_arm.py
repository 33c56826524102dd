"""The int8 inner products on the microcontrollers: instructions per call of tb_q8_dot_arm.h against the plain loops.

    python bench/q8_dot_arm.py [--targets cortex-m4,cortex-m7,cortex-m55] [--lengths 64,75,144,288,576]

One program per target, built with the target's compiler and flags (tests/arm_run.py), counts on the emulated board
(qemu-system-arm -icount shift=0, the SysTick; tasobuild/costs/emulated.py's counter) RUNS calls of each function
on each length: tb_q8_dot and tb_q8_dot4 (four weight rows against one input) from the header, and the same sums
as plain C loops (int32 sums of int8 products, one loop over i, four sums in the dot4 one), compiled with the same
flags, so "plain C" is what GCC makes of the portable code for that core. Every function is called through a
wrapper the compiler may neither inline nor specialise (noipa: lengths and stride unknown to it, as in the kernels);
the count of the empty repeat loop is subtracted, so a call's count includes its call and return. The counts are
deterministic (the same binary gives the same count on any machine): one run.

    python bench/q8_dot_arm.py --networks ds_cnn_tf,resnet8_tf [--targets cortex-m4,cortex-m55]

also counts whole int8 networks (the float fixture quantised by onnxruntime.quantization, QDQ per channel; built for
the target with costs = "model", no budget): net_run of the emitted project as it is, and again with
src/kernels/tb_q8_dot_arm.h deleted, so that tb_q8_dot.h's portable loops take its place (the same plan both times).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

from common import ROOT as REPO
from common import record, table

from tasobuild.costs.emulated import ICOUNT, TICKS
from tasobuild.resources import kernels_dir
from tests.arm_run import arm_build, compile_program, run_program

TARGETS = ("cortex-m4", "cortex-m7", "cortex-m55")
LENGTHS = (64, 75, 144, 288, 576)  # 75: a 5x5x3 patch, not a multiple of any vector width; 576: 3x3x64
RUNS = 1024
FUNCTIONS = ("plain_dot", "tb_q8_dot", "plain_dot4", "tb_q8_dot4")

PROGRAM = """/* bench/q8_dot_arm.py: instructions per call, on the emulated board. */
#include <stdint.h>
#include "tb_q8_dot_arm.h"
#include "semihosting.h"
%(ticks)s
#define RUNS %(runs)du
#define MAX_N %(max_n)d
#define STRIDE (MAX_N + 3)

static int8_t x[MAX_N + 3], w[4 * STRIDE];
static int32_t acc4[4];
static volatile int32_t sink;
static const int LENGTHS[] = {%(lengths)s};

__attribute__((noipa)) static int32_t plain_dot(const int8_t *restrict a, const int8_t *restrict b, int n)
{
    int32_t sum = 0;
    for (int i = 0; i < n; ++i) sum += (int32_t)a[i] * (int32_t)b[i];
    return sum;
}

__attribute__((noipa)) static void plain_dot4(const int8_t *restrict x, const int8_t *restrict w, long stride,
                                                 int n, int32_t *restrict acc)
{
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int i = 0; i < n; ++i) {
        const int32_t xi = x[i];
        s0 += xi * w[i];
        s1 += xi * w[stride + i];
        s2 += xi * w[2 * stride + i];
        s3 += xi * w[3 * stride + i];
    }
    acc[0] += s0;
    acc[1] += s1;
    acc[2] += s2;
    acc[3] += s3;
}

__attribute__((noipa)) static int32_t arm_dot(const int8_t *restrict a, const int8_t *restrict b, int n)
{
    return tb_q8_dot(a, b, n);
}

__attribute__((noipa)) static void arm_dot4(const int8_t *restrict x, const int8_t *restrict w, long stride, int n,
                                               int32_t *restrict acc)
{
    tb_q8_dot4(x, w, stride, n, acc);
}

static uint64_t count(int function, int n)
{
    const uint64_t start = ticks();
    for (uint32_t r = 0; r < RUNS; ++r) {
        switch (function) {
        case 0: sink = plain_dot(x, w + 1, n); break; /* w + 1: the rows as unaligned as they come */
        case 1: sink = arm_dot(x, w + 1, n); break;
        case 2: plain_dot4(x, w + 1, STRIDE, n, acc4); break;
        case 3: arm_dot4(x, w + 1, STRIDE, n, acc4); break;
        default: sink = 0; break; /* the empty loop */
        }
    }
    return ticks() - start;
}

static char line[256];

int main(void)
{
    uint32_t seed = 7u;
    for (int i = 0; i < (int)sizeof w; ++i) {
        seed = seed * 1103515245u + 12345u;
        w[i] = (int8_t)(seed >> 24);
        if (i < (int)sizeof x) x[i] = (int8_t)(seed >> 16);
    }
    start_ticks();
    uint64_t start = ticks();
    spin(1u << 22);
    char *at = put_number(put_text(put_number(put_text(line, "calibration,"), 2ull << 22), ","), ticks() - start);
    at = put_number(put_text(put_number(put_text(at, "\\nempty,"), RUNS), ","), count(-1, 0));
    *at++ = '\\n';
    *at = '\\0';
    sh_write0(line);
    for (unsigned k = 0; k < sizeof LENGTHS / sizeof LENGTHS[0]; ++k) {
        at = put_number(put_text(line, "n,"), (uint64_t)LENGTHS[k]);
        for (int f = 0; f < 4; ++f) at = put_number(put_text(at, ","), count(f, LENGTHS[k]));
        *at++ = '\\n';
        *at = '\\0';
        sh_write0(line);
    }
    return (int)(sink & 0) + (int)(acc4[0] & 0);
}
"""


def count_target(target_name: str, lengths: tuple[int, ...]) -> dict[int, dict[str, float]]:
    """Instructions per call, by length and function."""
    build = arm_build(target_name, emulator_options=ICOUNT)
    with tempfile.TemporaryDirectory(prefix="tasobuild-q8dot-") as tmp:
        work = Path(tmp)
        source = work / "count.c"
        source.write_text(PROGRAM % {"ticks": TICKS, "runs": RUNS, "max_n": max(lengths),
                                     "lengths": ", ".join(map(str, lengths))})
        done = run_program(build, compile_program(build, [source], work), work, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{target_name}: the counting program failed: {done.stdout}{done.stderr}")
    rows = [line.split(",") for line in done.stderr.splitlines() if re.match(r"^(calibration|empty|n),", line)]
    (_, instructions, calibration_ticks), (_, runs, empty_ticks), *counted = rows
    per_tick = int(instructions) / int(calibration_ticks)
    out = {}
    for _, n, *ticks in counted:
        out[int(n)] = {f: (int(t) - int(empty_ticks)) * per_tick / int(runs) for f, t in zip(FUNCTIONS, ticks)}
    return out


def count_networks(target_name: str, networks: list[str]) -> dict[str, dict[str, float]]:
    """net_run's instructions per int8 network, with the Arm paths and with the portable loops."""
    from costs_emulated import count_net_run

    from tests.e2e import tasobuild, write_target_spec
    from tests.int8_models import quantise

    target = arm_build(target_name).target
    out = {}
    for network in networks:
        with tempfile.TemporaryDirectory(prefix="tasobuild-q8dot-net-") as tmp:
            work = Path(tmp)
            model = quantise(REPO / "tests" / "fixtures" / "models" / f"{network}.onnx", work / "int8.onnx")
            spec = write_target_spec(work, model, target_name, costs="model")
            spec.write_text(spec.read_text().replace('[constraints]\nmemory = "2 GiB"\n', ""))
            tasobuild("build", "-c", str(spec))
            project = work / "out"
            arm = count_net_run(target, project, work)
            (project / "src" / "kernels" / "tb_q8_dot_arm.h").unlink()
            subprocess.run(["make", "-s", "-C", str(project), "clean"], check=True, capture_output=True)
            out[network] = {"arm": arm, "plain": count_net_run(target, project, work)}
        print(f"# {target_name} {network}: {out[network]}", flush=True)
    return out


def networks_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    rows = [[t, net, f"{c['plain'] / 1e6:.2f}", f"{c['arm'] / 1e6:.2f}", f"{c['plain'] / c['arm']:.2f}x"]
            for t, nets in results.items() for net, c in nets.items()]
    return "\n".join([
        "Whole int8 networks (net_run, onnxruntime-quantised MLPerf Tiny fixtures, the plan costs = \"model\" makes "
        "for the device), in million instructions: with tb_q8_dot.h's portable loops and with tb_q8_dot_arm.h. "
        "Only the layers whose kernels sum through tb_q8_dot.h change (convolutions other than depthwise, fully "
        "connected); depthwise, pooling and adds count the same in both, which bounds the gain on networks with "
        "many depthwise layers (DS-CNN, MobileNet).", "",
        table(["target", "network", "portable (M instr.)", "Arm paths (M instr.)", "fewer"], rows)])


def ratios(by_length: dict[int, dict[str, float]], function: str) -> str:
    values = [c[f"plain_{function.removeprefix('tb_q8_')}"] / c[function] for c in by_length.values()]
    return f"{min(values):.1f}-{max(values):.1f}x"


def compiler(target_name: str) -> str:
    cc = arm_build(target_name).target.cc_argv[0]
    return subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def body(results: dict[str, dict[int, dict[str, float]]]) -> str:
    rows = []
    for target_name, by_length in results.items():
        for n, c in sorted(by_length.items()):
            rows.append([target_name, str(n), f"{c['plain_dot']:.0f}", f"{c['tb_q8_dot']:.0f}",
                         f"{c['plain_dot'] / c['tb_q8_dot']:.2f}x", f"{c['plain_dot4']:.0f}",
                         f"{c['tb_q8_dot4']:.0f}", f"{c['plain_dot4'] / c['tb_q8_dot4']:.2f}x"])
    return "\n".join([
        "Instructions per call of the int8 inner products (kernels_pyx/tb_q8_dot_arm.h) against the same sums as "
        "plain C loops compiled with the target's flags, counted on the emulated board (qemu-system-arm -icount "
        "shift=0; the empty repeat loop subtracted, the call and return counted). The M4 and M7 run the DSP "
        "extension's path (per four bytes of each operand a 32-bit load and two `sxtb16` into int16 pairs, then "
        "two `smlad` for the four products), the M55 Helium's (`vmladava.s8`: sixteen products per instruction, "
        "the tail one predicated step). tb_q8_dot4 is four rows of weights against one input vector, whose bytes "
        "it loads and extends once for the four rows.",
        "",
        table(["target", "n", "dot: plain C", "dot: Arm", "fewer", "dot4: plain C", "dot4: Arm", "fewer"], rows),
        "",
        "Fewer instructions, over the lengths: " + "; ".join(
            f"{t} tb_q8_dot {ratios(r, 'tb_q8_dot')}, tb_q8_dot4 {ratios(r, 'tb_q8_dot4')}"
            for t, r in results.items()) + f" ({'; '.join(sorted({compiler(t) for t in results}))}). "
        "On the M4 and M7 tb_q8_dot4's loop is inline assembly (25 instructions per four bytes and four rows): "
        "written in C it needs nearly all of Thumb-2's registers and GCC spilled 2 to 7 values per four bytes "
        "depending on how the loop was written and where it was inlined (27 to 33 instructions).",
        "",
        "What the counts miss (BENCHMARKS.md, \"Emulated costs\"): every instruction counts one cycle. On the M4 "
        "`sxtb16` and `smlad` take one cycle, as counted, and loads two unless they follow another; the plain loops "
        "load a byte per operand and product where these load a word per four products, so the cycles' ratio is "
        "likely no smaller than the count's. On the M55 a Helium instruction takes two beats on its 64-bit "
        "datapath (overlapping the next), so a `vmladava` counts one but costs about two cycles: the time saved "
        "there is about half the count's ratio. The M7 dual-issues and caches; its counts are those of the code "
        "GCC schedules for it. The Linux boards' NEON and dot-product "
        "paths are checked under qemu-user (tests/test_q8_dot_arm.py), which counts nothing.",
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    ap.add_argument("--networks", default="", help="also count these int8 networks whole (fixture names)")
    ap.add_argument("--no-record", action="store_true", help="print the table, leave BENCHMARKS.md as it is")
    args = ap.parse_args()
    if args.networks and not (kernels_dir() / "tb_q8_dot.h").is_file():
        raise SystemExit("--networks: this tree's int8 kernels do not call tb_q8_dot.h, so there is nothing to compare")
    lengths = tuple(int(n) for n in args.lengths.split(","))
    results = {t: count_target(t, lengths) for t in args.targets.split(",")}
    command = "python bench/q8_dot_arm.py" + "".join(
        f" --{k} {v}" for k, v in (("targets", args.targets), ("lengths", args.lengths), ("networks", args.networks))
        if v and v != ",".join(TARGETS if k == "targets" else map(str, LENGTHS)))
    text = body(results)
    if args.networks:
        nets = args.networks.split(",")
        text += "\n\n" + networks_table({t: count_networks(t, nets) for t in args.targets.split(",")})
    if args.no_record:
        print(text)
    else:
        record("q8-dot-arm", "int8 on Arm: the inner products' instruction counts (emulated)", command, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
