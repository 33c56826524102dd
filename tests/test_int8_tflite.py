"""The MLPerf Tiny networks as TensorFlow quantises them (int8 .tflite, converted by tf2onnx, tests/fixtures/int8/):
built, compiled and run, against TensorFlow Lite's reference kernels (what TFLM computes) and ONNX Runtime.

The runner reads and writes float32 files (through `<name>_infer_float`); the fixtures' int8 inputs go in as
(q - zero point) * scale, which quantises back to q exactly, and our float output is quantised back the same way, so
what is compared is the int8 the network computed. (tf2onnx drops the bias of three of these networks' fully
connected layers; the fixtures have it back: tests/zoo/int8_tflite.restore_fc_bias.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.e2e import build_and_compile, run_binary, write_target_spec
from tests.int8_oracle import assert_bit_exact, assert_matches
from tests.zoo.int8 import TFLITE_INT8, tflite_fixture


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], list[np.ndarray]]:
    """Our int8 outputs for a fixture's reference inputs (each network built once for the module)."""
    found: dict[str, list[np.ndarray]] = {}

    def outputs(name: str) -> list[np.ndarray]:
        if name not in found:
            found[name] = _ours(name, tmp_path_factory.mktemp(name))
        return found[name]

    return outputs


def _ours(name: str, tmp_path: Path) -> list[np.ndarray]:
    fixture = tflite_fixture(name)
    built = build_and_compile(write_target_spec(tmp_path, fixture.onnx, "host", costs="model"))
    outputs = []
    for q in fixture.inputs:
        x = ((q.astype(np.float32) - fixture.input_zero_point) * np.float32(fixture.input_scale)).astype(np.float32)
        y, _ = run_binary(built.binary, x, tmp_path)  # q and x: the model's input shape, batch included
        q_out = np.round(y / np.float32(fixture.output_scale)) + fixture.output_zero_point
        outputs.append(q_out.astype(np.int8).reshape(fixture.outputs.shape[1:]))
    return outputs


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


def test_verify_takes_a_quantised_network_as_it_is(tmp_path: Path) -> None:
    """`tasobuild verify` on the int8-in, int8-out DS-CNN: ONNX Runtime gets the int8 input the runner makes from the
    float file, its int8 output is dequantised as the runner's is, and the default tolerance is one output step."""
    import json

    from tests.e2e import tasobuild

    fixture = tflite_fixture("ds_cnn")
    spec = write_target_spec(tmp_path, fixture.onnx, "host", costs="model")
    result = json.loads(tasobuild("verify", "-c", str(spec), "--json").stdout)
    assert result["passed"] and result["errors"]["count"] == 12
    assert result["atol"] == pytest.approx(fixture.output_scale)
