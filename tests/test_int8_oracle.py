"""The int8 oracle itself (tests/int8_oracle.py), on small models and values worked by hand: it must pass what is
within one step of the range and fail what is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests import int8_oracle as oracle


def _save(path: Path, nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
          outputs: list[onnx.ValueInfoProto], inits: list[onnx.TensorProto]) -> Path:
    graph = helper.make_graph(nodes, "oracle_case", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _qdq_model(path: Path, dequantize: bool) -> Path:
    """x (float, 1x4) -> QuantizeLinear(scale 0.5, zero point 3) -> [DequantizeLinear ->] Flatten -> y."""
    inits = [numpy_helper.from_array(np.array(0.5, np.float32), "scale"),
             numpy_helper.from_array(np.array(3, np.int8), "zero_point")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zero_point"], ["q"])]
    if dequantize:
        nodes.append(helper.make_node("DequantizeLinear", ["q", "scale", "zero_point"], ["dq"]))
    nodes.append(helper.make_node("Flatten", ["dq" if dequantize else "q"], ["y"]))
    out_type = TensorProto.FLOAT if dequantize else TensorProto.INT8
    return _save(path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                 [helper.make_tensor_value_info("y", out_type, [1, 4])], inits)


# x / 0.5 = [0.5, 1.5, -6, 200] rounds half to even to [0, 2, -6, 200]; + 3, saturated: [3, 5, -3, 127]
X = np.array([[0.25, 0.75, -3.0, 100.0]], np.float32)
Q = np.array([[3, 5, -3, 127]], np.int8)
DQ = (Q.astype(np.float32) - 3) * 0.5  # [0, 1, -3, 62]


def test_int8_output_range_is_what_onnxruntime_computes_by_hand(tmp_path: Path) -> None:
    model = _qdq_model(tmp_path / "q.onnx", dequantize=False)
    assert oracle.output_steps(model) == [1.0]
    (env,) = oracle.envelope(model, X)
    np.testing.assert_array_equal(env.lo, Q)
    np.testing.assert_array_equal(env.hi, Q)
    assert env.sources == (oracle.ORT_OPTIMIZED, oracle.ORT_UNOPTIMIZED)


def test_int8_within_one_unit_passes_two_units_fails(tmp_path: Path) -> None:
    model = _qdq_model(tmp_path / "q.onnx", dequantize=False)
    oracle.assert_matches(model, X, [Q])
    oracle.assert_matches(model, X, [np.array([[4, 4, -2, 126]], np.int8)])  # every element one unit off
    with pytest.raises(AssertionError, match=r"1 of 4 elements .* worst at \(0, 1\): 7 vs \[5, 5\], 2 steps out"):
        oracle.assert_matches(model, X, [np.array([[3, 7, -3, 127]], np.int8)])


def test_int8_distance_cannot_wrap_around(tmp_path: Path) -> None:
    """-128 against 127 is 255 units apart, not 1 (int8 arithmetic would wrap)."""
    model = _qdq_model(tmp_path / "q.onnx", dequantize=False)
    with pytest.raises(AssertionError, match="255 steps out"):
        oracle.assert_matches(model, X, [np.array([[3, 5, -3, -128]], np.int8)])


def test_float_output_step_is_the_dequantize_scale(tmp_path: Path) -> None:
    """The step of a float output is found through the Flatten behind it: 0.5, so 0.5 off passes, 1.0 off fails."""
    model = _qdq_model(tmp_path / "dq.onnx", dequantize=True)
    assert oracle.output_steps(model) == [0.5]
    (env,) = oracle.envelope(model, X)
    np.testing.assert_array_equal(env.lo, DQ)
    oracle.assert_matches(model, X, [DQ + np.float32(0.5)])
    oracle.assert_matches(model, X, [DQ - np.float32(0.5)])
    with pytest.raises(AssertionError, match=r"1 of 4 elements more than one step \(0.5\)"):
        oracle.assert_matches(model, X, [DQ + np.array([[0.0, 0.0, 1.0, 0.0]], np.float32)])


def test_tflite_reference_widens_the_range(tmp_path: Path) -> None:
    """ORT gives [3, 5, -3, 127]; a reference of [5, 5, -5, 127] makes the range [3..5, 5, -5..-3, 127]."""
    model = _qdq_model(tmp_path / "q.onnx", dequantize=False)
    reference = np.array([[5, 5, -5, 127]], np.int8)
    (env,) = oracle.envelope(model, X, [reference])
    np.testing.assert_array_equal(env.lo, [[3, 5, -5, 127]])
    np.testing.assert_array_equal(env.hi, [[5, 5, -3, 127]])
    assert oracle.TFLITE_REFERENCE in env.sources
    oracle.assert_within([np.array([[6, 6, -6, 126]], np.int8)], [env])
    oracle.assert_within([np.array([[2, 4, -2, 127]], np.int8)], [env])
    with pytest.raises(AssertionError, match=r"worst at \(0, 0\): 7 vs \[3, 5\]"):
        oracle.assert_within([np.array([[7, 5, -4, 127]], np.int8)], [env])
    with pytest.raises(AssertionError, match="shape"):
        oracle.assert_within([np.zeros((4,), np.int8)], [env])


def test_float_output_without_a_quantisation_step_is_refused(tmp_path: Path) -> None:
    model = _save(tmp_path / "relu.onnx", [helper.make_node("Relu", ["x"], ["y"])],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [])
    with pytest.raises(ValueError, match="'y' does not come from a per-tensor DequantizeLinear"):
        oracle.output_steps(model)
    (env,) = oracle.envelope(model, X, steps=[0.25])  # an explicit step still works
    oracle.assert_within([np.maximum(X, 0) + np.float32(0.25)], [env])
    with pytest.raises(AssertionError):
        oracle.assert_within([np.maximum(X, 0) + np.float32(0.5)], [env])


def test_bit_exact() -> None:
    reference = np.array([[-128, 0, 127]], np.int8)
    oracle.assert_bit_exact(reference.copy(), reference)
    with pytest.raises(AssertionError, match=r"1 of 3 elements differ from the reference \(by up to 1\); first at "
                                             r"\(0, 2\): 126 vs 127"):
        oracle.assert_bit_exact(np.array([[-128, 0, 126]], np.int8), reference)
    with pytest.raises(AssertionError, match="by up to 255"):  # no int8 wrap-around in the message either
        oracle.assert_bit_exact(np.array([[127, 0, 127]], np.int8), reference)
    with pytest.raises(AssertionError, match=r"int16\[1, 3\] vs the reference's int8\[1, 3\]"):
        oracle.assert_bit_exact(reference.astype(np.int16), reference)
    with pytest.raises(AssertionError, match=r"int8\[3\] vs the reference's int8\[1, 3\]"):
        oracle.assert_bit_exact(reference.reshape(3), reference)


def test_disagreement_in_steps() -> None:
    assert oracle.disagreement(np.array([-128, 5], np.int8), np.array([127, 4], np.int8)) == 255.0
    assert oracle.disagreement(np.array([0.5, 1.0]), np.array([0.0, 1.0]), step=0.25) == 2.0
