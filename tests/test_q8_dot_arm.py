"""The int8 inner products on Arm (kernels_pyx/tb_q8_dot_arm.h): tb_q8_dot and tb_q8_dot4 on every Arm target,
built with the target's compiler and flags and run under its emulator, against the plain loops.

* tests/q8_dot_arm_check.c on each target: hand-checked sums (the int16 overflow of two -128 * -128 products among
  them), seeded random data and extreme values for every length from 0 to 80 and longer ones, every pointer offset,
  several row strides, acc4 accumulated into and nothing written around it; on the Linux boards also the operands
  ending at an unmapped page (a read past the end faults). The program says which path it compiled, and the test
  that it is the target's: NEON (vmull_s8 + vpadalq_s16) on the A53 and A72, the dot product (vdotq_s32) on a core
  that has it (the A55's flags, AArch64 and AArch32, run under qemu's `-cpu max`), 32-bit NEON on the A15, the DSP
  extension (sxtb16 + smlad) on the M4 and M7 (and unoptimised, and on an A15 without NEON), Helium
  (vmladavaq_s8) on the M55; the assembly shows them.
* The check fails when the header sums two products in int16 (a copy of it with that error).
* An int8 project for a microcontroller ships the header next to tb_q8.h, builds warning-free and matches ONNX
  Runtime on the board; a float project carries neither.
Each case skips, naming the Debian packages, when its compiler or emulator is missing (.ci/run installs them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tasobuild.importer import import_onnx
from tasobuild.resources import kernels_dir
from tests.arm_run import ArmBuild, arm_build, compile_program, run_program
from tests.e2e import tasobuild, write_target_spec
from tests.test_embedded import make, needs_tools, run_on_board

CHECK = Path(__file__).parent / "q8_dot_arm_check.c"
WARNINGS = ("-Wall", "-Wextra", "-Werror")
# Checks the program makes on any target (the Linux boards add the page-end ones): it prints how many it made.
MIN_CHECKS = 300_000

SADALP = r"\bsadalp\s+v\d+\.4s, v\d+\.8h"  # AArch64: int16 products added pairwise into int32 lanes
SDOT = r"\bsdot\s+v\d+\.[24]s, v\d+\.(8|16)b, v\d+\.(8|16)b"
VPADAL = r"\bvpadal\.s16\s+q\d+, q\d+"  # 32-bit NEON's sadalp
VSDOT = r"\bvsdot\.s8\s+[qd]\d+, [qd]\d+, [qd]\d+"
SMLAD = r"\bsmlad\s+r\d+, r\d+, r\d+, r\d+"
SXTB16_ROR = r"\bsxtb16\s+r\d+, r\d+, ror #8"  # bytes 1 and 3, the rotation inside the extension
VMLADAVA = r"\bvmladava\.s8\s+r\d+, q\d+, q\d+"


@dataclass(frozen=True)
class Variant:
    """A target (or another core on a target's toolchain), the path it must compile and the instructions that
    show it, and those that must not appear."""

    name: str
    target: str
    path: str
    shown_by: tuple[str, ...]
    absent: tuple[str, ...] = ()
    replaced: dict[str, str] = field(default_factory=dict)
    emulator_options: tuple[str, ...] = ()

    def build(self) -> ArmBuild:
        return arm_build(self.target, self.replaced, self.emulator_options)


VARIANTS = (
    Variant("cortex-a53", "cortex-a53", "neon", (SADALP,), (SDOT,)),
    Variant("cortex-a72", "cortex-a72", "neon", (SADALP,), (SDOT,)),
    # A55 flags on the AArch64 toolchain: Armv8.2-A with the dot product; qemu's "max" core has it
    Variant("cortex-a55", "cortex-a53", "neon-dotprod", (SDOT,), (SADALP,),
            {"-mcpu=cortex-a53": "-mcpu=cortex-a55"}, ("-cpu", "max")),
    Variant("cortex-a15", "cortex-a15", "neon", (VPADAL,)),
    # ... and in 32-bit mode on the A15's toolchain
    Variant("cortex-a55-aarch32", "cortex-a15", "neon-dotprod", (VSDOT,), (VPADAL,),
            {"-mcpu=cortex-a15": "-mcpu=cortex-a55", "-mfpu=neon-vfpv4": "-mfpu=neon-fp-armv8"}, ("-cpu", "max")),
    Variant("cortex-m4", "cortex-m4", "dsp", (SMLAD, SXTB16_ROR)),
    # unoptimised, tb_q8_dot4 takes its C loop rather than the hand-allocated one
    Variant("cortex-m4-O0", "cortex-m4", "dsp", (SMLAD,), (), {"-O2": "-O0"}),
    # a 32-bit Cortex-A without NEON has the DSP extension too (in Arm and Thumb code)
    Variant("cortex-a15-without-neon", "cortex-a15", "dsp", (SMLAD, SXTB16_ROR), (VPADAL,),
            {"-mfpu=neon-vfpv4": "-mfpu=vfpv4-d16"}),
    Variant("cortex-m7", "cortex-m7", "dsp", (SMLAD, SXTB16_ROR)),
    Variant("cortex-m55", "cortex-m55", "mve", (VMLADAVA,), (SMLAD,)),
)


def variants() -> list:  # type: ignore[type-arg]
    return [pytest.param(v, id=v.name, marks=needs_tools(v.target)) for v in VARIANTS]


def run_check(build: ArmBuild, work: Path, header_dir: Path | None = None) -> tuple[int, str]:
    """The check program built (warnings are errors) and run: (exit status, its text)."""
    flags = (*WARNINGS, *(("-I", str(header_dir)) if header_dir else ()))
    program = compile_program(build, [CHECK], work, flags)
    done = run_program(build, program, work)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("variant", variants())
def test_dot_products_match_the_plain_loops(variant: Variant, tmp_path: Path) -> None:
    status, text = run_check(variant.build(), tmp_path)
    assert status == 0, text
    lines = text.splitlines()
    assert lines[0] == f"path {variant.path}", text
    checked = re.fullmatch(r"checked (\d+)", lines[-1])
    assert checked and int(checked.group(1)) >= MIN_CHECKS, text


@pytest.mark.parametrize("variant", variants())
def test_the_targets_instructions_are_compiled(variant: Variant, tmp_path: Path) -> None:
    text = compile_program(variant.build(), [CHECK], tmp_path, assembly=True).read_text()
    for pattern in variant.shown_by:
        assert re.search(pattern, text), f"{variant.name}: no {pattern} in the assembly"
    for pattern in variant.absent:
        assert not re.search(pattern, text), f"{variant.name}: {pattern} in the assembly"


@needs_tools("cortex-a53")
def test_the_check_catches_products_summed_in_int16(tmp_path: Path) -> None:
    """A copy of the header whose 16-byte NEON step adds the high half's products to the low half's in int16
    (vmlal_s8) before widening: right but for two -128 * -128 products (32768), which the check must find."""
    header = (kernels_dir() / "tb_q8_dot_arm.h").read_text()
    right = "    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));\n" \
            "    return vpadalq_s16(acc, vmull_s8(vget_high_s8(a), vget_high_s8(b)));\n"
    wrong = "    return vpadalq_s16(acc, vmlal_s8(vmull_s8(vget_low_s8(a), vget_low_s8(b)), vget_high_s8(a),\n" \
            "                                     vget_high_s8(b)));\n"
    assert right in header, "the NEON step moved: update this test"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tb_q8_dot_arm.h").write_text(header.replace(right, wrong))
    status, text = run_check(arm_build("cortex-a53"), tmp_path, header_dir=broken)
    assert status == 1 and "FAIL tb_q8_dot n=16" in text, text


# ------------------------------------------------------------------------------------------------ emitted projects


def conv_model(path: Path, quantised: Path | None) -> Path:
    """A 3x3 convolution, 16 channels in and 8 out on 8x8 with ReLU (patches of 144 bytes: nine vector steps
    of 16), float or, with `quantised`, int8 by onnxruntime.quantization (QDQ, per channel)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tests.int8_models import quantise

    rng = np.random.default_rng(17)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 16, 3, 3)).astype(np.float32) * 0.2, "w"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return quantise(path, quantised) if quantised else path


@needs_tools("cortex-m4")
def test_int8_projects_ship_the_header_and_float_projects_do_not(tmp_path: Path) -> None:
    from tests.int8_models import assert_within_range, ort_outputs

    int8_dir, float_dir = tmp_path / "int8", tmp_path / "float"
    int8_dir.mkdir()
    float_dir.mkdir()
    model = conv_model(tmp_path / "conv.onnx", tmp_path / "conv_int8.onnx")
    tasobuild("build", "-c", str(write_target_spec(int8_dir, model, "cortex-m4", memory="64 KiB")))
    tasobuild("build", "-c", str(write_target_spec(float_dir, tmp_path / "conv.onnx", "cortex-m4", memory="64 KiB")))
    int8_kernels = {f.name for f in (int8_dir / "out" / "src" / "kernels").iterdir()}
    float_kernels = {f.name for f in (float_dir / "out" / "src" / "kernels").iterdir()}
    assert {"tb_q8.h", "tb_q8_dot_arm.h"} <= int8_kernels, sorted(int8_kernels)
    assert not {"tb_q8.h", "tb_q8_dot_arm.h"} & float_kernels, sorted(float_kernels)

    make(int8_dir / "out")  # warning-free with -Wall -Wextra
    unit = next(import_onnx(model).quant_of(n.inputs[0]).scale for n in import_onnx(model).nodes
                if n.op == "dequantize")
    rng = np.random.default_rng(5)
    for _ in range(2):
        x = rng.standard_normal((1, 16, 8, 8)).astype(np.float32)
        assert_within_range(run_on_board(int8_dir / "out", x), ort_outputs(model, x), unit)
