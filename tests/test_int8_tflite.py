"""The MLPerf Tiny networks as TensorFlow quantises them (int8 .tflite, converted by tf2onnx, tests/fixtures/int8/):
built, compiled and run, against TensorFlow Lite's reference kernels (what TFLM computes) and ONNX Runtime.

The runner reads and writes float32 files (through `<name>_infer_float`); the fixtures' int8 inputs go in as
(q - zero point) * scale, which quantises back to q exactly, and our float output is quantised back the same way, so
what is compared is the int8 the network computed. The same networks cross-built for the Cortex-M4 and run under
qemu-system-arm (`make run` on the MPS2-AN386 board) give the host program's outputs bit for bit. (tf2onnx drops
the bias of three of these networks' fully connected layers; the fixtures have it back:
tests/zoo/int8_tflite.restore_fc_bias.)
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.e2e import build_and_compile, run_binary, tasobuild, write_target_spec
from tests.int8_oracle import assert_bit_exact, assert_matches
from tests.zoo.int8 import TFLITE_INT8, TfliteFixture, tflite_fixture


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], list[np.ndarray]]:
    """Our int8 outputs for a fixture's reference inputs (each network built once for the module)."""
    found: dict[str, list[np.ndarray]] = {}

    def outputs(name: str) -> list[np.ndarray]:
        if name not in found:
            found[name] = _ours(name, tmp_path_factory.mktemp(name))
        return found[name]

    return outputs


def _real_input(fixture: TfliteFixture, q: np.ndarray) -> np.ndarray:
    """A reference input as the runner's float file: (q - zero point) * scale, which quantises back to q exactly."""
    return ((q.astype(np.float32) - fixture.input_zero_point) * np.float32(fixture.input_scale)).astype(np.float32)


def _int8_output(fixture: TfliteFixture, y: np.ndarray) -> np.ndarray:
    """The runner's float output quantised back to the int8 the network computed."""
    q_out = np.round(y / np.float32(fixture.output_scale)) + fixture.output_zero_point
    return q_out.astype(np.int8).reshape(fixture.outputs.shape[1:])


def _ours(name: str, tmp_path: Path) -> list[np.ndarray]:
    fixture = tflite_fixture(name)
    built = build_and_compile(write_target_spec(tmp_path, fixture.onnx, "host", costs="model"))
    # q and x: the model's input shape, batch included
    return [_int8_output(fixture, run_binary(built.binary, _real_input(fixture, q), tmp_path)[0])
            for q in fixture.inputs]


@pytest.mark.parametrize("name", TFLITE_INT8)
def test_within_the_oracle(name: str, ours: Callable[[str], list[np.ndarray]]) -> None:
    """Every output within one unit of what ORT (optimisations on, off) and TFLite's reference kernels span."""
    fixture = tflite_fixture(name)
    for k, got in enumerate(ours(name)):
        assert_matches(fixture.onnx, fixture.inputs[k], [got], tflite_outputs=[fixture.outputs[k]])


@pytest.mark.parametrize("name", TFLITE_INT8)
def test_bit_exact_with_tflite_reference_kernels(name: str, ours: Callable[[str], list[np.ndarray]]) -> None:
    fixture = tflite_fixture(name)
    for k, (got, reference) in enumerate(zip(ours(name), fixture.outputs)):
        try:
            assert_bit_exact(got, reference)
        except AssertionError as error:
            raise AssertionError(f"{name}, reference input {k}: {error}") from None


def _run_int8_on_board(out_dir: Path, q: np.ndarray) -> np.ndarray:
    """`make run` with in.bin holding the int8 input itself: the bare-metal runner of a model with int8 input and
    output reads and writes the model's own int8 values."""
    out = out_dir / "out.bin"
    out.unlink(missing_ok=True)
    q.astype(np.int8).tofile(out_dir / "in.bin")
    done = subprocess.run(["make", "-s", "-C", str(out_dir), "run"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return np.fromfile(out, np.int8)


# Each 10-30 s here, with the host build it compares with (build from the M4's model, compile, three runs under QEMU).
@pytest.mark.parametrize(("name", "tiled"), [*((n, False) for n in TFLITE_INT8), ("mobilenet_v2_035", True)])
def test_bit_exact_on_cortex_m4_under_emulation(name: str, tiled: bool, ours: Callable[[str], list[np.ndarray]],
                                                tmp_path: Path) -> None:
    """Cross-built for the Cortex-M4 with no budget (its 256 KiB RAM is the budget, the weights go to its 2 MiB
    flash), compiled warning-free, run by `make run` under qemu-system-arm on the int8 input itself: the host
    program's int8 outputs and TFLite's reference, bit for bit, on every reference input. All four fit the M4; the
    RAM and flash the build estimates cover what the linker placed. `tiled`: the smallest plan with fused row
    tiling (objective "memory"), its int8 bands run on the board."""
    from tests.test_embedded import make, measured, missing_tools, target

    board = target("cortex-m4")
    if missing_tools(board):
        pytest.skip(f"cortex-m4 needs {', '.join(missing_tools(board))} (apt-get install {board.cc_package} "
                    f"{board.emulator_package})")
    fixture = tflite_fixture(name)
    spec = write_target_spec(tmp_path, fixture.onnx, "cortex-m4", costs="model",
                             extra="tiling = true\n" if tiled else "")
    spec.write_text(spec.read_text().replace('[constraints]\nmemory = "2 GiB"\n',
                                             '[constraints]\nobjective = "memory"\n' if tiled else ""))
    report = json.loads(tasobuild("build", "-c", str(spec), "--json").stdout)
    assert any(node["tiling"] for node in report["nodes"]) == tiled
    make(tmp_path / "out")
    size = measured(tmp_path / "out" / "net_main.elf")
    memory = report["memory"]
    assert size.ram_bytes <= memory["ram_bytes"] <= board.ram and size.flash_bytes <= memory["flash_bytes"] <= \
        board.flash, (size, memory)
    for k, (q, on_host, reference) in enumerate(zip(fixture.inputs, ours(name), fixture.outputs)):
        on_board = _run_int8_on_board(tmp_path / "out", q).reshape(reference.shape)
        try:
            assert_bit_exact(on_board, on_host)
            assert_bit_exact(on_board, reference)
        except AssertionError as error:
            raise AssertionError(f"{name} on cortex-m4 (tiled: {tiled}), reference input {k}: {error}") from None


def test_verify_takes_a_quantised_network_as_it_is(tmp_path: Path) -> None:
    """`tasobuild verify` on the int8-in, int8-out DS-CNN: ONNX Runtime gets the int8 input the runner makes from the
    float file, its int8 output is dequantised as the runner's is, and the default tolerance is one output step."""
    fixture = tflite_fixture("ds_cnn")
    spec = write_target_spec(tmp_path, fixture.onnx, "host", costs="model")
    result = json.loads(tasobuild("verify", "-c", str(spec), "--json").stdout)
    assert result["passed"] and result["errors"]["count"] == 12
    assert result["atol"] == pytest.approx(fixture.output_scale)


# With fused tiling, objective "memory": DS-CNN, MobileNetV1-0.25 and MobileNetV2-0.35 run chains in bands
# (int8 windows of a few rows) or patches (tests/test_patches.py), each writing its output over the input only it
# reads (memory.Overlap), below the untiled live-set bound; ResNet-8 gains nothing (its untiled arena is at the bound
# and TFLM's head). Each 10-40 s.
TILED_GAINS = ("ds_cnn", "mobilenet_v1_vww", "mobilenet_v2_035")


@pytest.mark.parametrize("name", TFLITE_INT8)
def test_fused_row_tiling_is_bit_exact(name: str, tmp_path: Path) -> None:
    """`tiling = true` on an int8 network: the smallest plan tiles where it gains (below the untiled arena and
    TFLM's head), its bands and patches are int8 convolutions requantised as the whole layer is, so the outputs are
    TFLite's reference bit for bit. TFLM's head arena: from the .tflite (tests/zoo/tflm_arena.py)."""
    from tests.zoo.tflm_arena import tflm_arena_head

    fixture = tflite_fixture(name)
    arenas = {}
    for tiling in (False, True):
        folder = tmp_path / ("tiled" if tiling else "untiled")
        folder.mkdir()
        spec = write_target_spec(folder, fixture.onnx, "host", costs="model", memory="64 MiB",
                                 extra="tiling = true\n" if tiling else "")
        spec.write_text(spec.read_text().replace('memory = "64 MiB"\n', 'memory = "64 MiB"\nobjective = "memory"\n'))
        built = build_and_compile(spec)
        arenas[tiling] = built.report["arena_bytes"]
        groups = {node["tiling"] for node in built.report["nodes"] if node["tiling"]}
        # where tiling gains nothing a group of the same arena may still be chosen (a tie the costs break)
        assert not groups if not tiling else bool(groups) or name not in TILED_GAINS, groups
        # row bands or patches: channel slices (FDT) do not apply to int8 layers
        assert all(" rows=" in g or " patches " in g for g in groups), groups
        for k, (q, reference) in enumerate(zip(fixture.inputs, fixture.outputs)):
            got = _int8_output(fixture, run_binary(built.binary, _real_input(fixture, q), folder)[0])
            try:
                assert_bit_exact(got, reference)
            except AssertionError as error:
                raise AssertionError(f"{name}, tiling {tiling}, reference input {k}: {error}") from None
    assert arenas[False] <= tflm_arena_head(fixture.tflite)
    if name in TILED_GAINS:
        assert arenas[True] < arenas[False]
    else:  # ResNet-8: its chains' inputs are read by the residual adds too, so no chain writes over its input
        assert arenas[True] <= arenas[False]


def test_chained_row_groups_alternate_down_and_up_and_place_at_their_peak(tmp_path: Path) -> None:
    """DS-CNN int8, rows only: four row groups in a chain, each output over its input. Top to bottom only, each
    output started below its input and the arena ended 2,240 B above the peak (11,840 B for 9,600); with groups
    that run bottom to top where the placement puts their output above their input, the arena is the peak, and
    the program is still TFLite's reference bit for bit."""
    fixture = tflite_fixture("ds_cnn")
    spec = write_target_spec(tmp_path, fixture.onnx, "host", costs="model", memory="64 MiB",
                             extra="tiling = true\n")
    spec.write_text(spec.read_text().replace('memory = "64 MiB"\n', 'memory = "64 MiB"\nobjective = "memory"\n'))
    built = build_and_compile(spec)
    assert built.report["arena_bytes"] == built.report["lower_bound_bytes"] == 9_600
    source = (built.out_dir / "src" / "net.c").read_text()
    assert "bottom to top" in source and source.count("fused row tiling") >= 2
    for q, reference in zip(fixture.inputs, fixture.outputs):
        assert_bit_exact(_int8_output(fixture, run_binary(built.binary, _real_input(fixture, q), tmp_path)[0]),
                         reference)


@pytest.mark.parametrize("name", TFLITE_INT8)
def test_tflite_arithmetic_port_reproduces_the_reference(name: str) -> None:
    """tests/q8_interpreter.py (TFLite's reference kernels ported to NumPy, run on the imported graph), the
    stand-in for TFLite where no .tflite exists (tests/test_int8_ort.py), gives the real reference kernels'
    outputs bit for bit on the networks where both exist."""
    from tasobuild.importer import import_onnx
    from tests import q8_interpreter

    fixture = tflite_fixture(name)
    graph = import_onnx(fixture.onnx)
    for k, (q, reference) in enumerate(zip(fixture.inputs, fixture.outputs)):
        try:
            assert_bit_exact(q8_interpreter.run(graph, q).reshape(reference.shape), reference)
        except AssertionError as error:
            raise AssertionError(f"{name}, reference input {k}: {error}") from None


def test_int8_band_pointers_and_halo_copies_by_hand() -> None:
    """What row tiling writes for an int8 window, worked by hand: byte offsets cast to the kernel's element type
    (a float buffer keeps `A + floats`), and a halo of 2 rows of an 8-channel, 5-wide int8 window copied as the
    identity HWC->CHW transform of one 2 x 40 channel: 80 bytes."""
    from tasobuild.ir import Shape
    from tasobuild.tiling.rows import arena_pointer, carry_call

    assert arena_pointer(64, 0, "float") == "A + 16"
    assert arena_pointer(64, 160, "float") == "A + 16 + 40 * band"
    assert arena_pointer(65, 40, "int8_t") == "(int8_t *)((char *)A + 65 + 40 * band)"
    assert arena_pointer(128, 0, "int32_t") == "(int32_t *)((char *)A + 128)"
    copy = carry_call(Shape(8, 6, 5), 2, "int8")
    assert copy.function == "tb_q8_layout_hwc_to_chw" and copy.arg_types == ("int8_t", "int8_t")
    assert dict(copy.params)["c"] == 1 and dict(copy.params)["h"] == 2 and dict(copy.params)["w"] == 40
    assert dict(copy.buffer_bytes) == {"in0": 80, "out": 80}
    assert dict(carry_call(Shape(8, 6, 5), 2).buffer_bytes) == {"in0": 320, "out": 320}  # float: 4 bytes each
