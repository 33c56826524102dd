"""The int8 fixtures (tests/fixtures/int8/, tests/zoo/int8.py): what they contain, that TFLite's reference outputs
reproduce, and how ONNX Runtime runs them against the oracle (tests/int8_oracle.py)."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from tests import int8_oracle as oracle
from tests.zoo import REPO_ROOT
from tests.zoo.int8 import (
    ORT_BIG,
    ORT_FORMS,
    ORT_TINY,
    TFLITE_INT8,
    float_source,
    ort_int8,
    tf_python,
    tflite_fixture,
)
from tests.zoo.reference import random_input

# name -> (NHWC input shape, output shape)
SHAPES = {"ds_cnn": ((1, 49, 10, 1), (1, 12)), "resnet8": ((1, 32, 32, 3), (1, 10)),
          "mobilenet_v1_vww": ((1, 96, 96, 3), (1, 2)), "mobilenet_v2_035": ((1, 96, 96, 3), (1, 2))}

# The largest difference between ONNX Runtime (optimisations on or off) and TFLite's reference kernels on the
# fixtures' reference inputs, in output units, as measured (BENCHMARKS.md, "int8: TFLite Micro reference"): ORT's
# own rounding (it dequantises, computes in float and rounds once where TFLite requantises in fixed point), which
# grows with depth. The test pins them so that a fixture or ORT change that moves them is seen; the oracle
# covers them by spanning both.
ORT_VS_TFLITE_UNITS = {"ds_cnn": 1, "resnet8": 1, "mobilenet_v1_vww": 0, "mobilenet_v2_035": 13}


def _ops(model: onnx.ModelProto) -> Counter[str]:
    return Counter(node.op_type for node in model.graph.node)


def _int8_weights(model: onnx.ModelProto, op_type: str, skip: int = 0) -> list[np.ndarray]:
    """The scales of the DequantizeLinear nodes that make the weights of every `op_type` node but the first `skip`
    from int8 initializers (fails when such a weight is not an int8 initializer dequantised)."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    scales = []
    for node in [n for n in graph.node if n.op_type == op_type][skip:]:
        dq = producer[node.input[1]]
        assert dq.op_type == "DequantizeLinear", f"{node.name}: weight from {dq.op_type}"
        assert inits[dq.input[0]].data_type == TensorProto.INT8, f"{node.name}: weight is not int8"
        scales.append(numpy_helper.to_array(inits[dq.input[1]]))
    assert scales, f"no {op_type}"
    return scales


# --- TensorFlow's fixtures -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", TFLITE_INT8)
def test_tflite_fixture_is_an_int8_qdq_network(name: str) -> None:
    f = tflite_fixture(name)
    assert f.tflite.read_bytes()[4:8] == b"TFL3"
    model = onnx.load(str(f.onnx))
    onnx.checker.check_model(model)
    (given,), (wanted,) = model.graph.input, model.graph.output
    assert given.type.tensor_type.elem_type == wanted.type.tensor_type.elem_type == TensorProto.INT8
    in_shape, out_shape = SHAPES[name]
    assert tuple(d.dim_value for d in given.type.tensor_type.shape.dim) == in_shape
    assert f.inputs.shape == (3, *in_shape) and f.outputs.shape == (3, *out_shape)
    assert f.inputs.dtype == f.outputs.dtype == np.int8
    ops = _ops(model)
    assert ops["QuantizeLinear"] and ops["DequantizeLinear"] and not ops["QLinearConv"]
    # TFLite quantises convolution weights per output channel: a vector of scales, one per filter
    assert all(s.size > 1 for s in _int8_weights(model, "Conv"))
    assert 0 < f.input_scale and -128 <= f.input_zero_point <= 127
    assert f.output_scale == pytest.approx(1 / 256) and f.output_zero_point == -128  # TFLite's int8 softmax output


@pytest.mark.parametrize("name", TFLITE_INT8)
def test_tflite_reference_outputs_are_informative(name: str) -> None:
    """Inputs that use most of the int8 range, outputs away from saturation. Each input gives other outputs, but for
    MobileNetV1-0.25: with these seeded weights its float network's output hardly depends on the input (it moves by
    less than one int8 step), so its three reference outputs are equal; they still test the arithmetic (ORT's
    rounding moves them by 6 units, test_onnxruntime_against_tflite_reference_through_the_oracle)."""
    f = tflite_fixture(name)
    assert len({row.tobytes() for row in f.inputs}) == len(f.inputs)
    assert np.unique(f.inputs).size > 100
    assert (np.abs(f.outputs.astype(np.int64)) < 127).any(axis=-1).all()
    assert len({row.tobytes() for row in f.outputs}) == (1 if name == "mobilenet_v1_vww" else len(f.outputs))


@pytest.mark.parametrize("name", TFLITE_INT8)
def test_tflite_reference_tracks_the_float_network(name: str) -> None:
    """TFLite's int8 outputs, dequantised, pick the float network's class (same weights, dequantised input); the
    small ones are within one output step of it, MobileNetV2's 52 layers add up to about 19 steps."""
    f = tflite_fixture(name)
    source = float_source(name)
    limit = 20.0 if name == "mobilenet_v2_035" else 1.0
    for x, reference in zip(f.inputs, f.outputs):
        real_x = ((x.astype(np.float32) - f.input_zero_point) * f.input_scale).astype(np.float32)
        exact = oracle.run_onnxruntime(source, real_x, optimized=True)[0]
        ours = (reference.astype(np.float32) - f.output_zero_point) * f.output_scale
        assert oracle.disagreement(ours, exact, f.output_scale) <= limit
        if name != "resnet8":  # ResNet-8's ten near-uniform probabilities: a tie within one step may swap
            assert np.argmax(ours) == np.argmax(exact)


@pytest.mark.parametrize("name", TFLITE_INT8)
def test_onnxruntime_against_tflite_reference_through_the_oracle(name: str) -> None:
    """ORT runs the tf2onnx ONNX; the oracle's range (ORT on, off, TFLite) holds TFLite's outputs bit-exactly
    and rejects an output two units beyond it; ORT is its measured distance from TFLite."""
    f = tflite_fixture(name)
    farthest = 0.0
    for x, reference in zip(f.inputs, f.outputs):
        (env,) = oracle.envelope(f.onnx, x, [reference])
        assert env.step == 1.0 and env.sources[-1] == oracle.TFLITE_REFERENCE
        oracle.assert_within([reference], [env])
        beyond = np.clip(env.hi + 2, -128, 127).astype(np.int8)
        if (beyond > env.hi + 1).any():
            with pytest.raises(AssertionError, match="more than one step"):
                oracle.assert_within([beyond], [env])
        for optimized in (True, False):
            (ours,) = oracle.run_onnxruntime(f.onnx, x, optimized)
            assert ours.dtype == np.int8
            farthest = max(farthest, oracle.disagreement(ours, reference))
    assert farthest == ORT_VS_TFLITE_UNITS[name]


@pytest.mark.slow
def test_tflite_reference_outputs_reproduce() -> None:
    """The reference kernels, rerun on the committed .tflite files and inputs, give the committed outputs."""
    python = tf_python()
    if python is None:
        pytest.skip("needs TensorFlow: set TASOBUILD_TF_PYTHON or see tests/fixtures/int8/README.md")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([python, "-m", "tests.zoo.int8_tflite", "--check"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert done.stdout.count("reproduced") == len(TFLITE_INT8), done.stdout


# --- onnxruntime's quantisation ------------------------------------------------------------------------------------

def _check_ort_int8(path: Path, form: str, source: Path, worst_steps: float) -> None:
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    ops = _ops(model)
    recipe = ORT_FORMS[form]
    if recipe.qdq:
        assert ops["Conv"] and ops["QuantizeLinear"] and ops["DequantizeLinear"] and not ops["QLinearConv"]
        scales = _int8_weights(model, "Conv", skip=1 if recipe.float_stem else 0)
        assert all((s.size > 1) == recipe.per_channel for s in scales), [s.size for s in scales]
        if recipe.float_stem:  # the first Conv: float input and weights; quantised a few float ops later
            stem = next(n for n in model.graph.node if n.op_type == "Conv")
            assert stem.input[1] in {t.name for t in model.graph.initializer}
            chain, tensor = [], stem.output[0]
            while len(chain) < 3 and "QuantizeLinear" not in chain:  # e.g. Relu, Clip (ReLU6), MaxPool
                node = next(n for n in model.graph.node if tensor in n.input)
                chain, tensor = [*chain, node.op_type], node.output[0]
            assert chain[-1] == "QuantizeLinear", chain
    else:
        assert ops["QLinearConv"] and not ops["Conv"]
    assert not ops["BatchNormalization"]  # folded by ORT's pre-processing
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    (step,) = oracle.output_steps(path)
    assert 0 < step < 1
    for seed in (0, 1, 2):
        x = random_input(source, seed)
        envelopes = oracle.envelope(path, x)
        exact = oracle.run_onnxruntime(source, x, optimized=True)[0]
        # ORT with and without optimisations both within one step of the pair's range, by construction; what is
        # measured is how far apart they are, and how far quantisation moved the output from the float network
        assert oracle.disagreement(envelopes[0].lo, envelopes[0].hi, step) <= 3
        assert oracle.disagreement(envelopes[0].lo, exact, step) <= worst_steps
        assert oracle.disagreement(envelopes[0].hi, exact, step) <= worst_steps


@pytest.mark.parametrize("form", sorted(ORT_FORMS))
@pytest.mark.parametrize("name", ORT_TINY)
def test_onnxruntime_quantised_tiny(name: str, form: str) -> None:
    _check_ort_int8(ort_int8(name, form), form, float_source(name), 12.0 if name == "mobilenet_v2_035" else 2.0)


def test_onnxruntime_quantisation_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two caches, two quantisations, the same bytes (seeded calibration, ORT's own passes deterministic)."""
    made = []
    for folder in ("a", "b"):
        monkeypatch.setenv("TASOBUILD_ZOO_DIR", str(tmp_path / folder))
        made.append(ort_int8("ds_cnn", "qdq_per_channel"))
    assert made[0] != made[1] and made[0].read_bytes() == made[1].read_bytes()
    assert made[0].name == made[1].name  # the cache key depends on the inputs only
    with pytest.raises(ValueError, match="forms: qdq_per_channel, qdq_per_tensor, qoperator"):
        ort_int8("ds_cnn", "qdq")


@pytest.mark.slow
@pytest.mark.parametrize("form", sorted(ORT_FORMS))
@pytest.mark.parametrize("name", ORT_BIG)
def test_onnxruntime_quantised_big(name: str, form: str) -> None:
    _check_ort_int8(ort_int8(name, form), form, float_source(name), 16.0)
