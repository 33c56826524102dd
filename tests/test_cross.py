"""The emitted library builds with a freestanding embedded compiler: Arm Cortex-M4F (targets/cortex-m4.toml).

DESIGN: the library part of the emitted project (not the `<name>_main` runner) uses no heap, no stdio and no globals
that change. Here the real arm-none-eabi-gcc compiles it with the target's flags plus -Wall -Wextra, binutils list
what it needs from outside (only libm and compiler helpers) and its writable data (none), and a bare-metal program
links the whole library against newlib's nosys stubs. The M4 cannot run kernels here, so its costs come from the
performance model calibrated to its emulated counts (or are counted on its emulated board: "auto"). Skipped when
the cross toolchain is missing (.ci/run installs gcc-arm-none-eabi and libnewlib-arm-none-eabi).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasobuild.costs.provenance import EMULATED, TARGET_MODEL
from tasobuild.resources import kernels_dir
from tasobuild.target import Target, load_target
from tests.e2e import tasobuild, write_target_spec
from tests.zoo import ensure_model

TARGET = "cortex-m4"
NAME = "net"
RAM_BUDGET = "240 KiB"  # the target's 256 KiB less its stack and static data: the plan must fit the device

# ds_cnn: the DS-CNN the brief names (conv, depthwise, 1x1, pool, fc, softmax). mobilenet_v1_vww at the device's RAM
# picks the most kernel files (1x1, depthwise, direct, im2col, im2col-scan, MEC, GEMM, pool, fc, softmax, layout
# transforms). fc_autoencoder's weights exceed 1 MiB, so they take the .S/.incbin path instead of C arrays.
MODELS = ("ds_cnn_torch", "mobilenet_v1_vww_tf", "fc_autoencoder_tf")

# What the library may need from outside: libm, and what GCC may call even in freestanding code (mem*) or emit
# itself (__aeabi_* helpers). Never the heap, stdio, files or time.
LIBM = {"expf", "expm1f", "logf", "log1pf", "powf", "sqrtf", "tanhf", "erff", "fabsf", "floorf", "ceilf", "roundf",
        "fmaxf", "fminf", "sinf", "cosf", "exp", "log", "pow", "sqrt", "tanh"}
COMPILER_HELPERS = {"memcpy", "memmove", "memset", "memcmp"}
FORBIDDEN = {"malloc", "calloc", "realloc", "free", "_sbrk", "sbrk", "printf", "fprintf", "sprintf", "snprintf",
             "puts", "putchar", "fopen", "fclose", "fread", "fwrite", "fputs", "abort", "exit", "_exit", "clock",
             "clock_gettime", "time", "__errno"}
# Double-precision arithmetic has no hardware on the M4F (single-precision FPU): GCC emulates it in these calls.
SOFT_DOUBLE = re.compile(r"^__aeabi_(d\w+|f2d|u?[il]2d)$")
WRITABLE_SYMBOL_TYPES = set("BbCDdGgSs")  # nm: bss, common, data, small data/bss

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                reason="arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi "
                                       "libnewlib-arm-none-eabi)")


# ------------------------------------------------------------------------------------------------ toolchain


@dataclass(frozen=True)
class Toolchain:
    """The target's compiler and flags, and the binutils that come with it (same prefix)."""

    target: Target

    def tool(self, name: str) -> str:
        cc = self.target.cc_argv[0]
        assert cc.endswith("gcc"), cc
        return cc[: -len("gcc")] + name

    def run(self, name: str, *args: str, cwd: Path | None = None) -> str:
        return subprocess.run([self.tool(name), *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def m4() -> Toolchain:
    return Toolchain(load_target(TARGET, Path(".")))


def symbols(tc: Toolchain, path: Path) -> tuple[set[str], set[str], set[str]]:
    """(undefined, defined, writable) symbol names of an object, archive or executable."""
    undefined, defined, writable = set(), set(), set()
    for line in tc.run("nm", str(path)).splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "U":
            undefined.add(fields[1])
        elif len(fields) == 3:
            defined.add(fields[2])
            if fields[1] in WRITABLE_SYMBOL_TYPES:
                writable.add(fields[2])
    return undefined, defined, writable


def writable_sections(tc: Toolchain, path: Path) -> dict[str, int]:
    """{"member: section": bytes} of every non-empty section with the write flag (.data*, .bss*, ...)."""
    found, member = {}, str(path.name)
    header = re.compile(r"^\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+[0-9a-f]+\s+(\S*)")
    for line in tc.run("readelf", "-S", "-W", str(path)).splitlines():
        if line.startswith("File: "):
            member = line[len("File: "):]
        elif (m := header.match(line)) and "W" in m.group(3) and int(m.group(2), 16) > 0:
            found[f"{member}: {m.group(1)}"] = int(m.group(2), 16)
    return found


def assert_freestanding(tc: Toolchain, path: Path) -> set[str]:
    """The library-level contract on an archive or object; returns what it needs from outside."""
    undefined, defined, writable = symbols(tc, path)
    external = undefined - defined
    assert not external & FORBIDDEN, f"{path.name} calls {sorted(external & FORBIDDEN)}"
    soft = sorted(s for s in external if SOFT_DOUBLE.match(s))
    assert not soft, f"{path.name} does double-precision math in software on the M4F: {soft}"
    unexpected = sorted(s for s in external if s not in LIBM | COMPILER_HELPERS and not s.startswith("__aeabi_"))
    assert not unexpected, f"{path.name} needs symbols outside libm and compiler helpers: {unexpected}"
    assert not writable, f"{path.name} has writable globals: {sorted(writable)}"
    assert not writable_sections(tc, path), f"{path.name} has writable data: {writable_sections(tc, path)}"
    return external


# ------------------------------------------------------------------------------------------------ the emitted project


@dataclass(frozen=True)
class CrossBuild:
    model: str
    out_dir: Path
    report: dict
    make: subprocess.CompletedProcess

    @property
    def library(self) -> Path:
        return self.out_dir / f"lib{NAME}.a"


@pytest.fixture(scope="module", params=MODELS)
def cross_build(request: pytest.FixtureRequest, m4: Toolchain, tmp_path_factory: pytest.TempPathFactory) -> CrossBuild:
    """`tasobuild build` for the M4 (costs from the model), then the emitted Makefile's library target with
    warnings on."""
    work = tmp_path_factory.mktemp(request.param)
    # MobileNet's smallest untiled arena (252 KiB) leaves no room for the stack: tiled, as a user would build it.
    extra = "tiling = true\n" if request.param == "mobilenet_v1_vww_tf" else ""
    spec = write_target_spec(work, ensure_model(request.param), TARGET, costs="model", name=NAME, memory=RAM_BUDGET,
                             extra=extra)
    report = json.loads(tasobuild("build", "-c", str(spec), "--json").stdout)
    out_dir = work / "out"
    makefile = (out_dir / "Makefile").read_text()
    # Build what the project would: its Makefile names the target's compiler and flags; only warnings are added.
    assert f"\nCC = {m4.target.cc}\n" in makefile
    assert f"\nCFLAGS = {' '.join(m4.target.cflags)}\n" in makefile
    make = subprocess.run(["make", "-j2", "-C", str(out_dir), f"lib{NAME}.a",
                           f"CFLAGS={' '.join(m4.target.cflags)} -Wall -Wextra"], capture_output=True, text=True)
    return CrossBuild(request.param, out_dir, report, make)


def test_costs_come_from_the_model_without_running_anything(cross_build: CrossBuild) -> None:
    report = cross_build.report
    assert report["profiled"] == 0
    sources = {source for node in report["nodes"] for source in node["cost_source"]}
    assert "measured" not in sources and TARGET_MODEL in sources, sources  # the M4's calibration of the model
    assert report["predicted_ms"] > 0
    assert 0 < report["arena_bytes"] <= report["budget_bytes"] == 240 * 1024


def test_auto_costs_count_only_the_contested_calls(m4: Toolchain, tmp_path: Path, monkeypatch) -> None:
    """"auto" on the M4 predicts every call and counts the contested few on its emulated board (11 % of the calls
    at most); without qemu-system-arm it cannot count, and plans as "model" does."""
    from tasobuild.costs.stage import AutoPolicy

    monkeypatch.setenv("TASOBUILD_CACHE_DIR", str(tmp_path / "cache"))  # nothing counted before
    plans = {}
    for costs in ("model", "auto"):
        (tmp_path / costs).mkdir()
        spec = write_target_spec(tmp_path / costs, ensure_model("ds_cnn_torch"), TARGET, costs=costs, name=NAME,
                                 memory=RAM_BUDGET)
        plans[costs] = json.loads(tasobuild("plan", "-c", str(spec), "--json").stdout)
    assert plans["model"]["profiled"] == 0
    if shutil.which("qemu-system-arm") is None:
        assert plans["auto"]["profiled"] == 0 and plans["auto"]["nodes"] == plans["model"]["nodes"]
        return
    calls = json.loads(tasobuild("profile", "-c", str(spec), "--emit-harness", str(tmp_path / "h"),
                                 "--json").stdout)["calls"]
    policy = AutoPolicy()  # the first choice's share of the calls, then what the counts made contested
    counted = plans["auto"]["profiled"]
    assert 0 < counted <= (policy.fraction + policy.reveal) * calls, (counted, calls)
    sources = {source for node in plans["auto"]["nodes"] for source in node["cost_source"]}
    assert sources <= {TARGET_MODEL, EMULATED, "none"}, sources


def test_library_compiles_warning_free(cross_build: CrossBuild, m4: Toolchain) -> None:
    out = cross_build.make.stdout + cross_build.make.stderr
    assert cross_build.make.returncode == 0, out
    assert "warning" not in out.lower(), out
    # Every library source is in the archive: the top-level sources, the weights (.c or .S) and the kernels.
    src = cross_build.out_dir / "src"
    sources = sorted(p.stem + ".o" for p in [*src.glob("*.c"), *src.glob("*.S"), *(src / "kernels").glob("*.c")])
    assert sorted(m4.run("ar", "t", str(cross_build.library)).split()) == sources
    if cross_build.model == "fc_autoencoder_tf":
        assert (src / f"{NAME}_weights.S").is_file() and not (src / f"{NAME}_weights.c").exists()


def test_library_needs_only_libm_and_compiler_helpers(cross_build: CrossBuild, m4: Toolchain) -> None:
    external = assert_freestanding(m4, cross_build.library)
    _, defined, _ = symbols(m4, cross_build.library)
    assert {f"{NAME}_input", f"{NAME}_run", f"{NAME}_output", f"{NAME}_infer"} <= defined
    assert external  # at least memset/memcpy: the check above saw real undefined symbols


# A main as an M4 firmware would write it: the input in flash, the arena the only RAM the network touches.
BARE_METAL_MAIN = """\
#include <stdint.h>
#include "{name}.h"

static const float input[{up}_INPUT_COUNT];
static float output[{up}_OUTPUT_COUNT];
static unsigned char arena_storage[{up}_ARENA_BYTES + {up}_ARENA_ALIGN];

int main(void)
{{
    void *arena = (void *)(((uintptr_t)arena_storage + {up}_ARENA_ALIGN - 1) & ~(uintptr_t)({up}_ARENA_ALIGN - 1));
    return {name}_infer(input, output, arena) != 0 || output[0] != output[0];
}}
"""


def test_whole_library_links_into_a_bare_metal_program(cross_build: CrossBuild, m4: Toolchain) -> None:
    assert cross_build.make.returncode == 0, cross_build.make.stderr
    out = cross_build.out_dir
    (out / "firmware.c").write_text(BARE_METAL_MAIN.format(name=NAME, up=NAME.upper()))
    link = subprocess.run([*m4.target.cc_argv, *m4.target.cflags, "-Wall", "-Wextra", "-Werror", "-Iinclude",
                           "firmware.c", f"lib{NAME}.a", *m4.target.ldflags, "-lm", "-o", "firmware.elf"],
                          cwd=out, capture_output=True, text=True)
    assert link.returncode == 0, link.stderr
    assert not link.stderr, link.stderr  # no warning at all (e.g. none about an executable stack)
    elf = out / "firmware.elf"
    _, defined, _ = symbols(m4, elf)
    assert f"{NAME}_infer" in defined and f"{NAME}_run" in defined
    assert not defined & {"malloc", "free", "_sbrk", "printf", "fopen"}, sorted(defined & FORBIDDEN)
    # Hard-float Thumb-2 for v7E-M: the flags took effect and the matching newlib multilib was linked.
    attributes = m4.run("readelf", "-A", str(elf))
    for tag in ("Tag_CPU_arch: v7E-M", "Tag_FP_arch: VFPv4-D16", "Tag_ABI_HardFP_use: SP only",
                "Tag_ABI_VFP_args: VFP registers"):
        assert tag in attributes, attributes
    # Static RAM (the arena, the 8-byte output, newlib's ~1 KiB) fits the device; the stack comes on top.
    berkeley = m4.run("size", "-B", str(elf)).splitlines()[1].split()
    data, bss = int(berkeley[1]), int(berkeley[2])
    assert cross_build.report["arena_bytes"] <= data + bss <= m4.target.ram, (data, bss)


# ------------------------------------------------------------------------------------------------ every kernel


def test_every_kernel_compiles_freestanding_for_the_m4(m4: Toolchain, tmp_path: Path) -> None:
    """Plans pick kernels by cost, so the fixtures above need not use them all: compile each one directly."""
    sources = sorted(kernels_dir().glob("*.c"))
    done = subprocess.run([*m4.target.cc_argv, *m4.target.cflags, "-Wall", "-Wextra", "-I", str(kernels_dir()), "-c",
                           *map(str, sources)], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr, done.stderr
    objects = [tmp_path / (s.stem + ".o") for s in sources]
    subprocess.run([m4.tool("ar"), "rcs", "kernels.a", *map(str, objects)], cwd=tmp_path, check=True)
    assert_freestanding(m4, tmp_path / "kernels.a")


@pytest.mark.parametrize("body,complaint", [
    ("#include <stdlib.h>\nvoid *f(void) { return malloc(4); }", r"calls \['malloc'\]"),
    ("int counter; int f(void) { return ++counter; }", r"writable globals: \['counter'\]"),
    ("static float last; float f(float x) { float y = last; last = x; return y; }", r"writable globals: \['last'\]"),
    ("double f(double x, double y) { return x * y; }", r"software on the M4F: \['__aeabi_dmul'\]"),
    ("int g(int); int f(int x) { return g(x); }", r"outside libm and compiler helpers: \['g'\]"),
])
def test_the_freestanding_check_catches(body: str, complaint: str, m4: Toolchain, tmp_path: Path) -> None:
    """The checks above can fail: each of these small objects breaks one rule."""
    (tmp_path / "bad.c").write_text(body + "\n")
    subprocess.run([*m4.target.cc_argv, *m4.target.cflags, "-c", "bad.c"], cwd=tmp_path, check=True)
    with pytest.raises(AssertionError, match=complaint):
        assert_freestanding(m4, tmp_path / "bad.o")
