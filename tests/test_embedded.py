"""Embedded targets on emulated hardware: the Cortex-M microcontrollers (targets/cortex-m4, -m7, -m55.toml) and the
32- and 64-bit Cortex-A Linux boards (cortex-a15, cortex-a53).

* Microcontrollers: `tasobuild build` with no memory budget (the budget is the device's RAM), the emitted Makefile
  (with -Wall -Wextra added: not one warning) links `<name>_main.elf` for QEMU's board, `make run` runs it under
  qemu-system-arm (in.bin and out.bin through semihosting) and the output matches ONNX Runtime. The RAM and flash the
  build estimates are checked against what `size` measures in the .elf. MobileNetV1-0.25 does not fit the M4's RAM
  untiled: the build says so in one line, and with fused tiling it fits and runs.
* Linux boards: the hosted runner, cross-compiled, under qemu-user with the same arguments as on the host.
* A plan larger than the device is refused in one line, the previous outputs intact; a cross target's predicted
  costs say they are the host model's, a microcontroller's its own calibrated model's, and `--frozen` rebuilds from
  such a lock.
* Emulated costs: instruction counts on the emulated board (qemu-system-arm -icount), hand-checked conversion,
  deterministic and growing with the work; `costs = "profile"` on the M4 counts every call, labelled as emulated and
  cached apart from the host's times.
* SIMD: the A15's 32-bit NEON and the M55's Helium GEMM and depthwise paths are the ones compiled; the NEON GEMM
  against NumPy; GEMM- and depthwise-only plans against ONNX Runtime on both.
Each group skips, naming the Debian packages, when its compiler or emulator is missing (.ci/run installs them).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tasobuild.costs.cache import Cost, CostCache
from tasobuild.costs.emulated import board_of, count_calls, emulated_fingerprint, instructions, to_costs
from tasobuild.costs.provenance import EMULATED, HOST_MODEL, TARGET_MODEL, describe, source_of
from tasobuild.costs.stage import has_target_model
from tasobuild.primitives import KernelCall
from tasobuild.resources import kernels_dir
from tasobuild.target import Target, host_fingerprint, load_target
from tests.e2e import assert_matches, run_binary, tasobuild, wrap_binary, write_target_spec
from tests.zoo import ensure_model
from tests.zoo.reference import random_input, run_onnxruntime

MCUS = ("cortex-m4", "cortex-m7", "cortex-m55")
LINUX_BOARDS = ("cortex-a15", "cortex-a53")
TINY = ("ds_cnn_tf", "resnet8_tf", "mobilenet_v1_vww_tf")  # MLPerf Tiny's image and audio networks, TF exports
MLPERF_TINY = (*TINY, "fc_autoencoder_tf")
NAME = "net"
WARNING_FLAGS = "-Wall -Wextra"


def target(name: str) -> Target:
    return load_target(name, Path("."))


def missing_tools(t: Target) -> list[str]:
    return [tool for tool in (t.cc_argv[0], t.emulator_argv[0]) if shutil.which(tool) is None]


def needs_tools(name: str) -> pytest.MarkDecorator:
    t = target(name)
    missing = missing_tools(t)
    return pytest.mark.skipif(bool(missing), reason=f"{name} needs {', '.join(missing)} (apt-get install "
                                                    f"{t.cc_package} {t.emulator_package})")


def write_spec(directory: Path, model: str, target_name: str, extra: str = "") -> Path:
    """A spec with no memory budget: the target's RAM is the budget."""
    spec = write_target_spec(directory, ensure_model(model), target_name, costs="model", name=NAME, extra=extra)
    text = spec.read_text()
    without_budget = text.replace('[constraints]\nmemory = "2 GiB"\n', "")
    assert without_budget != text, "SPEC_TEMPLATE moved"
    spec.write_text(without_budget)
    return spec


# Kernel objects already compiled (and found warning-free) in this session, by compiler, flags and source bytes: as
# ccache would, so each target compiles a kernel once (the vectorised ones take GCC 10-30 s for AArch64).
_KERNEL_OBJECTS: dict[str, tuple[bytes, bytes]] = {}


def _kernel_object_key(out_dir: Path, source: Path, makefile: str) -> str:
    settings = [line for line in makefile.splitlines() if line.startswith(("CC = ", "CFLAGS = "))]
    return hashlib.sha256(repr((settings, source.read_bytes())).encode()).hexdigest()


def make(out_dir: Path, *goals: str) -> subprocess.CompletedProcess:
    """The emitted Makefile with its own flags plus warnings; fails on any warning."""
    makefile = (out_dir / "Makefile").read_text()
    cflags = next(line for line in makefile.splitlines() if line.startswith("CFLAGS = "))
    kernels = sorted((out_dir / "src" / "kernels").glob("*.c"))
    objects = {source: out_dir / "obj" / "src" / "kernels" / f"{source.stem}.o" for source in kernels}
    for source, obj in objects.items():  # newer than its source and headers: make keeps it
        known = _KERNEL_OBJECTS.get(_kernel_object_key(out_dir, source, makefile))
        if known:
            obj.parent.mkdir(parents=True, exist_ok=True)
            obj.write_bytes(known[0])
            obj.with_suffix(".d").write_bytes(known[1])
    done = subprocess.run(["make", "-j2", "-C", str(out_dir), *goals,
                           f"CFLAGS={cflags.removeprefix('CFLAGS = ')} {WARNING_FLAGS}"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "warning" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
    for source, obj in objects.items():
        if obj.is_file():
            _KERNEL_OBJECTS[_kernel_object_key(out_dir, source, makefile)] = (obj.read_bytes(),
                                                                              obj.with_suffix(".d").read_bytes())
    return done


@dataclass(frozen=True)
class Measured:
    """`arm-none-eabi-size -A` of the .elf: flash (what is loaded: vectors, code, constants, .data's image) and RAM
    (.data, .bss, the stack)."""

    flash_bytes: int
    ram_bytes: int


def measured(elf: Path) -> Measured:
    sections = {}
    for line in subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True,
                               check=True).stdout.splitlines()[2:]:
        fields = line.split()
        if len(fields) == 3 and fields[1].isdigit():
            sections[fields[0]] = int(fields[1])
    flash = sum(sections.get(s, 0) for s in (".vectors", ".text", ".rodata", ".ARM.exidx", ".data"))
    ram = sum(sections.get(s, 0) for s in (".data", ".bss", ".stack"))
    return Measured(flash, ram)


def run_on_board(out_dir: Path, x: np.ndarray) -> np.ndarray:
    """What a user does: in.bin in the project folder, `make run`, out.bin back."""
    out = out_dir / "out.bin"
    out.unlink(missing_ok=True)
    x.astype("<f4").tofile(out_dir / "in.bin")
    done = subprocess.run(["make", "-s", "-C", str(out_dir), "run"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return np.fromfile(out, "<f4")


# ------------------------------------------------------------------------------------------------ `tasobuild targets`


def test_targets_say_which_tools_are_installed() -> None:
    listed = {t["name"]: t for t in json.loads(tasobuild("targets", "--json").stdout)}
    assert {*MCUS, *LINUX_BOARDS, "cortex-a72", "host"} <= set(listed)
    for name in (*MCUS, *LINUX_BOARDS):
        row, t = listed[name], target(name)
        assert row["compiler"] == ("found" if shutil.which(t.cc_argv[0]) else "missing"), row
        assert row["emulator"] == ("found" if shutil.which(t.emulator_argv[0]) else "missing"), row
        assert (row["install"] == []) == (row["compiler"] == row["emulator"] == "found"), row
        assert t.cc_package and t.emulator_package and t.ram and t.profile is False
    assert listed["host"]["emulator"] is None  # the host runs its own programs
    for name in MCUS:
        t = target(name)
        assert t.board is not None and t.flash and t.stack and t.emulator_argv[:3] == ("qemu-system-arm", "-M",
                                                                                        t.board.machine)
    assert {target(name).board.machine for name in MCUS} == {"mps2-an386", "mps2-an500", "mps3-an547"}  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------------ microcontrollers


@pytest.mark.parametrize("target_name", [pytest.param(t, marks=needs_tools(t)) for t in MCUS])
@pytest.mark.parametrize("model", TINY)
def test_microcontroller_runs_under_qemu(model: str, target_name: str, tmp_path: Path) -> None:
    t = target(target_name)
    spec = write_spec(tmp_path, model, target_name)
    report = json.loads(tasobuild("build", "-c", str(spec), "--json").stdout)
    if model == "mobilenet_v1_vww_tf" and target_name == "cortex-m4":
        # 256 KiB: untiled, it fits only because placement reaches the live-set bound (greedy's arena: 258,048)
        assert report["arena_bytes"] == report["lower_bound_bytes"] == 221_184
    out_dir = tmp_path / "out"
    make(out_dir)
    elf = out_dir / f"{NAME}_main.elf"

    # RAM and flash: within the device, and the estimates cover what the linker placed.
    memory = report["memory"]
    assert memory["target_ram_bytes"] == t.ram and memory["target_flash_bytes"] == t.flash
    assert report["budget_bytes"] < t.ram  # no budget in the spec: the RAM less the stack and static data
    assert report["arena_bytes"] <= report["budget_bytes"]
    size = measured(elf)
    assert size.ram_bytes <= memory["ram_bytes"] <= t.ram, (size, memory)
    assert size.flash_bytes <= memory["flash_bytes"] <= t.flash, (size, memory)
    assert memory["ram_bytes"] - size.ram_bytes < 4096  # the arena and stack are exact; the rest is close

    x = random_input(ensure_model(model), seed=0)
    assert_matches(run_on_board(out_dir, x), run_onnxruntime(ensure_model(model), x))


@needs_tools("cortex-m4")
def test_microcontroller_runner_reports_a_bad_input(tmp_path: Path) -> None:
    """The runner's own error path: an in.bin of the wrong size is named, and the exit status is 1."""
    spec = write_spec(tmp_path, "ds_cnn_tf", "cortex-m4")
    tasobuild("build", "-c", str(spec))
    out_dir = tmp_path / "out"
    make(out_dir)
    (out_dir / "in.bin").write_bytes(b"\0" * 12)
    done = subprocess.run(["make", "-s", "-C", str(out_dir), "run"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"{NAME}_main: in.bin must hold exactly" in done.stdout + done.stderr
    assert not (out_dir / "out.bin").exists()


# ------------------------------------------------------------------------------------------------ Linux boards


def run_linux_board(target_name: str, model: str, tmp_path: Path) -> None:
    t = target(target_name)
    spec = write_target_spec(tmp_path, ensure_model(model), target_name, costs="model", name=NAME)
    report = json.loads(tasobuild("build", "-c", str(spec), "--json").stdout)
    assert report["memory"]["target_ram_bytes"] == t.ram and report["memory"]["target_flash_bytes"] is None
    out_dir = tmp_path / "out"
    make(out_dir)
    x = random_input(ensure_model(model), seed=0)
    ours, _ = run_binary(wrap_binary(out_dir / f"{NAME}_main", t.emulator_argv), x, tmp_path)
    assert_matches(ours, run_onnxruntime(ensure_model(model), x))


@pytest.mark.parametrize("target_name", [pytest.param(t, marks=needs_tools(t)) for t in LINUX_BOARDS])
@pytest.mark.parametrize("model", MLPERF_TINY)
def test_linux_board_runs_under_qemu_user(model: str, target_name: str, tmp_path: Path) -> None:
    run_linux_board(target_name, model, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("target_name", [pytest.param(t, marks=needs_tools(t)) for t in LINUX_BOARDS])
def test_resnet18_runs_under_qemu_user(target_name: str, tmp_path: Path) -> None:
    run_linux_board(target_name, "resnet18", tmp_path)


# ------------------------------------------------------------------------------------------------ refusals and labels


def test_a_plan_larger_than_the_device_is_refused_and_the_last_build_kept(tmp_path: Path) -> None:
    """A budget larger than the M4's 256 KiB lets the solver pick ResNet-8's fastest plan (about 500 KiB of arena):
    the footprint check refuses it, and the tree and lock of the last build stay as they were."""
    spec = write_spec(tmp_path, "resnet8_tf", "cortex-m4")
    tasobuild("build", "-c", str(spec))
    before = {p: p.read_bytes() for p in sorted((tmp_path / "out").rglob("*")) if p.is_file()}
    lock = (tmp_path / "taso.lock").read_bytes()
    refused = tasobuild("build", "-c", str(spec), "--memory", "4MiB", check=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "command line: the plan needs" in refused.stderr and "of RAM (arena" in refused.stderr
    assert "more than target 'cortex-m4' has (256 KiB)" in refused.stderr, refused.stderr
    assert {p: p.read_bytes() for p in sorted((tmp_path / "out").rglob("*")) if p.is_file()} == before
    assert (tmp_path / "taso.lock").read_bytes() == lock


def test_a_target_without_ram_needs_a_budget(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "ds_cnn_tf", "cortex-m4")
    spec.write_text(spec.read_text().replace('name = "cortex-m4"', 'name = "host"').replace('"model"', '"profile"'))
    refused = tasobuild("build", "-c", str(spec), check=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "constraints.memory is not set and target 'host' states no RAM" in refused.stderr


@needs_tools("cortex-a15")
def test_cross_target_costs_say_they_are_the_host_models(tmp_path: Path) -> None:
    """The A15 has no calibration of its own: its predictions are the host model's, and say so."""
    spec = write_target_spec(tmp_path, ensure_model("ds_cnn_tf"), "cortex-a15", costs="model", name=NAME)
    report = json.loads(tasobuild("build", "-c", str(spec), "--json").stdout)
    assert {s for n in report["nodes"] for s in n["cost_source"]} - {"none"} == {HOST_MODEL}
    assert f"times '{HOST_MODEL}' are the host's" in tasobuild("plan", "-c", str(spec)).stdout


@needs_tools("cortex-m55")
def test_microcontroller_predictions_say_they_are_the_targets_model(tmp_path: Path) -> None:
    """The built-in microcontrollers ship a calibration to their emulated counts: "predicted (target model)" in
    --json, the lock and the plan, read back by --frozen."""
    assert has_target_model(target("cortex-m55"))
    spec = write_spec(tmp_path, "ds_cnn_tf", "cortex-m55")
    report = json.loads(tasobuild("build", "-c", str(spec), "--json").stdout)
    assert {s for n in report["nodes"] for s in n["cost_source"]} - {"none"} == {TARGET_MODEL}
    lock_path = tmp_path / "taso.lock"
    lock = tomllib.loads(lock_path.read_text())
    assert {row["source"] for row in lock["cost"]} == {TARGET_MODEL}
    assert lock["plan"]["target_ram_bytes"] == 1024 ** 2 and lock["plan"]["ram_bytes"] <= 1024 ** 2
    table = tasobuild("plan", "-c", str(spec)).stdout
    assert f"times '{TARGET_MODEL}' are the performance model's, calibrated to this target's counts" in table
    text = lock_path.read_bytes()
    shutil.rmtree(tmp_path / "out")
    tasobuild("build", "-c", str(spec), "--frozen")  # the labels read back
    assert lock_path.read_bytes() == text and (tmp_path / "out" / "Makefile").is_file()


# ------------------------------------------------------------------------------------------------ emulated costs


def test_emulated_counts_become_milliseconds_at_the_targets_clock() -> None:
    """Hand-checked: 800 instructions in 20 ticks calibrate 40 per tick; 100 ticks over 2 runs are 2,000
    instructions a run, which at 100 MHz take 0.02 ms."""
    costs = to_costs([["calibration", "800", "20"], ["tb_add", "n=4", "100", "2"]], clock_mhz=100)
    assert costs == {"tb_add(n=4)": Cost(0.02, 0.0, 1, "emulated")}
    assert instructions(costs["tb_add(n=4)"], 100) == pytest.approx(2000)
    assert describe("emulated", True) == EMULATED and source_of(EMULATED) == "emulated"


def _add(n: int) -> KernelCall:
    return KernelCall("tb_add", "tb_flat", (("n", n), ("act", 0), ("act_a", 0.0), ("act_b", 0.0)),
                      ("in0", "in1", "out"), (("in0", 4 * n), ("in1", 4 * n), ("out", 4 * n)))


@needs_tools("cortex-m4")
def test_emulated_counts_are_deterministic_and_grow_with_the_work() -> None:
    """The same calls counted twice give the same counts; an element-wise add's count grows by the same step per
    doubling of its length (its loop body is fixed), and one float add is a handful of instructions."""
    board = board_of(target("cortex-m4"))
    assert board is not None and board.machine == "mps2-an386" and board.clock_mhz == 180
    calls = [_add(n) for n in (1024, 2048, 4096)]
    first, second = count_calls(calls, board), count_calls(calls, board)
    assert first == second and not first.too_large
    count = [instructions(first.costs[c.key()], board.clock_mhz) for c in calls]
    step = count[1] - count[0]
    assert count[2] - count[1] == pytest.approx(2 * step, rel=0.01)
    assert 2 <= step / 1024 <= 20, count


@needs_tools("cortex-m4")
def test_profile_on_a_microcontroller_counts_on_its_emulated_board(tmp_path: Path, monkeypatch) -> None:
    """costs = "profile" on the M4: every call counted under qemu-system-arm, labelled as emulated in the plan,
    --json and the lock, kept in the cost cache under the emulated board's fingerprint (never the host's), and
    `--frozen` rebuilds from the lock; the program still matches ONNX Runtime."""
    monkeypatch.setenv("TASOBUILD_CACHE_DIR", str(tmp_path / "cache"))
    spec = write_target_spec(tmp_path, ensure_model("ds_cnn_tf"), "cortex-m4", costs="profile", name=NAME,
                             memory="200 KiB")
    report = json.loads(tasobuild("build", "-c", str(spec), "--json").stdout)
    assert report["profiled"] > 100
    assert {s for n in report["nodes"] for s in n["cost_source"]} - {"none"} == {EMULATED}
    lock_path = tmp_path / "taso.lock"
    assert {row["source"] for row in tomllib.loads(lock_path.read_text())["cost"]} == {EMULATED}
    assert "are instructions counted on the emulated board" in tasobuild("plan", "-c", str(spec)).stdout

    t = target("cortex-m4")
    with CostCache(tmp_path / "cache") as cache:
        fingerprints = {key.fingerprint for key, cost in cache.rows() if cost.source == "emulated"}
    assert fingerprints == {emulated_fingerprint(t)} and emulated_fingerprint(t) != host_fingerprint(t).digest
    again = json.loads(tasobuild("build", "-c", str(spec), "--json", "--memory", "199 KiB").stdout)
    assert again["profiled"] == 0  # all from the cache

    text = lock_path.read_bytes()
    shutil.rmtree(tmp_path / "out")
    tasobuild("build", "-c", str(spec), "--frozen", "--memory", "199 KiB")  # the labels read back
    assert lock_path.read_bytes() == text
    make(tmp_path / "out")
    x = random_input(ensure_model("ds_cnn_tf"), seed=0)
    assert_matches(run_on_board(tmp_path / "out", x), run_onnxruntime(ensure_model("ds_cnn_tf"), x))


# ------------------------------------------------------------------------------------------------ SIMD kernels

# The instruction that shows a target's SIMD GEMM micro-kernel was compiled (in gemm.c's assembly): 32-bit NEON's
# multiply-accumulate by lane, Helium's fused multiply-add by a scalar.
SIMD_GEMM = {"cortex-a15": re.compile(r"\bvmla\.f32\s+q\d+, q\d+, d\d+\[[01]\]"),
             "cortex-m55": re.compile(r"\bvfma\.f32\s+q\d+, q\d+, \w+")}
# ... and the depthwise kernel's vector path: NEON's multiply-accumulate, Helium's multiply (GCC's vectors, which it
# does not contract with -ffp-contract=off).
SIMD_DEPTHWISE = {"cortex-a15": re.compile(r"\bvmla\.f32\s+q\d+, q\d+, q\d+"),
                  "cortex-m55": re.compile(r"\bvmul\.f32\s+q\d+, q\d+, q\d+")}
GEMM_AND_DEPTHWISE = ("1x1", "im2col", "im2row", "depthwise")


def assembly(t: Target, kernel: str, *flags: str) -> str:
    done = subprocess.run([*t.cc_argv, *t.cflags, *flags, "-I", str(kernels_dir()), "-S", "-o", "-",
                           str(kernels_dir() / kernel)], capture_output=True, text=True, check=True, timeout=600)
    return done.stdout


def only_gemm_and_depthwise() -> str:
    """An allow-list that leaves every convolution to the GEMM-based and depthwise families (the SIMD paths)."""
    listed = json.loads(tasobuild("primitives", "--json").stdout)
    names = sorted(p["name"] for p in listed if not p["name"].startswith("conv_") or p["family"] in GEMM_AND_DEPTHWISE)
    return "primitives = [" + ", ".join(f'"{n}"' for n in names) + "]\n"


@pytest.mark.parametrize("target_name", [pytest.param(t, marks=needs_tools(t)) for t in SIMD_GEMM])
def test_simd_gemm_path_is_the_one_compiled(target_name: str) -> None:
    """The target's flags select its SIMD GEMM micro-kernel (12 multiply-adds per 6x8 half on NEON, 6 per 4-column
    strip on Helium) and the depthwise kernel's vector path; -DTB_GEMM_SCALAR selects the plain ones, which have
    neither."""
    t = target(target_name)
    assert len(SIMD_GEMM[target_name].findall(assembly(t, "gemm.c"))) >= (12 if target_name == "cortex-a15" else 6)
    assert not SIMD_GEMM[target_name].findall(assembly(t, "gemm.c", "-DTB_GEMM_SCALAR"))
    # the 3x3 depthwise kernel's vector path: multiplies of four channels in a q register
    q_multiplies = SIMD_DEPTHWISE[target_name]
    assert len(q_multiplies.findall(assembly(t, "conv_depthwise.c"))) >= 9  # the nine taps, at least
    assert not q_multiplies.findall(assembly(t, "conv_depthwise.c", "-DTB_GEMM_SCALAR"))


@pytest.mark.parametrize("target_name", [pytest.param(t, marks=needs_tools(t)) for t in SIMD_GEMM])
@pytest.mark.parametrize("model", ["ds_cnn_tf", "mobilenet_v1_vww_tf"])
def test_simd_kernels_match_onnxruntime(model: str, target_name: str, tmp_path: Path) -> None:
    """Every convolution through the SIMD GEMM or the depthwise kernel (MobileNet's 3x3 depthwise layers in HWC
    take the vector path on the A15), built for the target, run under its emulator, against ONNX Runtime."""
    t = target(target_name)
    spec = write_target_spec(tmp_path, ensure_model(model), target_name, costs="model", name=NAME,
                             memory="1 MiB" if t.board else "64 MiB", extra=only_gemm_and_depthwise())
    report = json.loads(tasobuild("build", "-c", str(spec), "--json").stdout)
    convs = [n["primitive"] for n in report["nodes"] if n["op"] == "conv"]
    assert convs and all(p.split("_")[1] in ("1x1", "im2col", "im2row", "depthwise") for p in convs), convs
    assert any("gemm" in p for p in convs)
    out_dir = tmp_path / "out"
    make(out_dir)
    x = random_input(ensure_model(model), seed=0)
    if t.board:
        ours = run_on_board(out_dir, x)
    else:
        ours, _ = run_binary(wrap_binary(out_dir / f"{NAME}_main", t.emulator_argv), x, tmp_path)
    assert_matches(ours, run_onnxruntime(ensure_model(model), x))


@needs_tools("cortex-a15")
def test_arm32_neon_gemm_matches_numpy(tmp_path: Path) -> None:
    """The 32-bit NEON micro-kernel on the GEMM jobs of tests/test_aarch64.py (every micro-tile and cache-block
    edge, packed and row-major operands, accumulate, each activation) under qemu-arm, against float64 NumPy."""
    from tests.test_aarch64 import GEMM_DRIVER, GEMM_JOBS, gemm_data, gemm_reference, job_file

    t = target("cortex-a15")
    (tmp_path / "driver.c").write_text(GEMM_DRIVER)
    flags = [*t.cflags, "-Wall", "-Wextra", "-Werror", "-I", str(kernels_dir())]
    done = subprocess.run([*t.cc_argv, *flags, "driver.c", str(kernels_dir() / "gemm.c"), *t.ldflags, "-o", "gemm"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr, done.stderr
    datas = [gemm_data(job, seed) for seed, job in enumerate(GEMM_JOBS)]
    argv = []
    for job, data in zip(GEMM_JOBS, datas):
        (tmp_path / f"{job.name}.job").write_bytes(job_file(job, data))
        argv += [f"{job.name}.job", f"{job.name}.out"]
    subprocess.run([*t.emulator_argv, "./gemm", *argv], cwd=tmp_path, check=True, timeout=300)
    for job, data in zip(GEMM_JOBS, datas):
        got = np.fromfile(tmp_path / f"{job.name}.out", "<f4").reshape(data.c.shape).astype(np.float64)
        expected, bound = gemm_reference(job, data)
        assert np.all(np.abs(got - expected) <= bound), job.name
        outside = bound == 0
        assert np.array_equal(got[outside], data.c.astype(np.float64)[outside]), job.name
