"""The committed zoo fixtures: valid ONNX of the expected shapes and layouts, numerically sane in ONNX Runtime."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from tests.zoo import BUNDLED_MODEL, FIXTURE_NAMES, TORCH_FIXTURES, ensure_model, fixture_path
from tests.zoo.canonical import canonical_names
from tests.zoo.reference import input_shape, random_input, run_onnxruntime

# name -> (input shape, output shape); torch fixtures are NCHW, TF fixtures keep Keras' NHWC
SHAPES = {
    "ds_cnn_torch": ((1, 1, 49, 10), (1, 12)),
    "ds_cnn_tf": ((1, 49, 10, 1), (1, 12)),
    "mobilenet_v1_vww_torch": ((1, 3, 96, 96), (1, 2)),
    "mobilenet_v1_vww_tf": ((1, 96, 96, 3), (1, 2)),
    "resnet8_torch": ((1, 3, 32, 32), (1, 10)),
    "resnet8_tf": ((1, 32, 32, 3), (1, 10)),
    "fc_autoencoder_torch": ((1, 640), (1, 640)),
    "fc_autoencoder_tf": ((1, 640), (1, 640)),
}

# The operator mix of each fixture, counted by hand from the architectures: this is what the importer must handle.
# DS-CNN: 1 + 4*2 conv-BN-ReLU; VWW: 1 + 13*2; ResNet-8: 1 + 3*2 conv-BN, + 2 bare 1x1 shortcut convs, 3 adds;
# autoencoder: 9 Dense-BN-ReLU + 1 Dense. Keras 3's BN reaches ONNX as Mul+Add (tf2onnx folds its constants).
OP_COUNTS = {
    "ds_cnn_torch": {"AveragePool": 1, "BatchNormalization": 9, "Conv": 9, "Flatten": 1, "Gemm": 1, "Relu": 9,
                     "Softmax": 1},
    "mobilenet_v1_vww_torch": {"AveragePool": 1, "BatchNormalization": 27, "Conv": 27, "Flatten": 1, "Gemm": 1,
                               "Relu": 27, "Softmax": 1},
    "resnet8_torch": {"Add": 3, "AveragePool": 1, "BatchNormalization": 7, "Conv": 9, "Flatten": 1, "Gemm": 1,
                      "Relu": 7, "Softmax": 1},
    "fc_autoencoder_torch": {"BatchNormalization": 9, "Gemm": 10, "Relu": 9},
    "ds_cnn_tf": {"Add": 9, "AveragePool": 1, "Conv": 9, "Gemm": 1, "Mul": 9, "Relu": 9, "Reshape": 2, "Softmax": 1},
    "mobilenet_v1_vww_tf": {"Add": 27, "AveragePool": 1, "Conv": 27, "Gemm": 1, "Mul": 27, "Relu": 27, "Reshape": 1,
                            "Softmax": 1, "Transpose": 1},
    "resnet8_tf": {"Add": 10, "AveragePool": 1, "Conv": 9, "Gemm": 1, "Mul": 7, "Relu": 7, "Reshape": 1,
                   "Softmax": 1, "Transpose": 1},
    "fc_autoencoder_tf": {"Add": 9, "Gemm": 10, "Mul": 9, "Relu": 9},
}

SOFTMAX_OUTPUT = [n for n in FIXTURE_NAMES if not n.startswith("fc_autoencoder")]


def load(name: str) -> onnx.ModelProto:
    return onnx.load(str(ensure_model(name)))


def consumers(model: onnx.ModelProto, tensor: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if tensor in n.input]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_is_valid_opset13_with_static_shapes(name: str) -> None:
    model = load(name)
    onnx.checker.check_model(model, full_check=True)  # full_check: strict shape inference too
    assert {o.domain: o.version for o in model.opset_import}[""] == 13
    assert not model.functions
    assert input_shape(ensure_model(name)) == SHAPES[name][0]
    (output,) = model.graph.output
    assert tuple(d.dim_value for d in output.type.tensor_type.shape.dim) == SHAPES[name][1]
    assert ensure_model(name).stat().st_size < 2_000_000


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_operator_mix(name: str) -> None:
    model = load(name)
    assert dict(collections.Counter(n.op_type for n in model.graph.node)) == OP_COUNTS[name]


@pytest.mark.parametrize("name", [n for n in TORCH_FIXTURES if n != "fc_autoencoder_torch"])
def test_torch_fixture_is_nchw_and_starts_with_conv(name: str) -> None:
    model = load(name)
    (first,) = consumers(model, "input")
    assert first.op_type == "Conv"
    weight = {t.name: t for t in model.graph.initializer}[first.input[1]]
    assert weight.dims[1] == SHAPES[name][0][1]  # conv's input channels = the input's dim 1


@pytest.mark.parametrize("name", ["mobilenet_v1_vww_tf", "resnet8_tf"])
def test_tf_fixture_transposes_nhwc_input_to_nchw(name: str) -> None:
    (first,) = consumers(load(name), "input")
    assert first.op_type == "Transpose"
    assert helper.get_attribute_value(first.attribute[0]) == [0, 3, 1, 2]


def test_tf_ds_cnn_transpose_became_reshape() -> None:
    """With one channel, NHWC->NCHW moves no data, so tf2onnx's optimiser turns the Transpose into a Reshape."""
    model = load("ds_cnn_tf")
    (first,) = consumers(model, "input")
    assert first.op_type == "Reshape"
    shape = numpy_helper.to_array({t.name: t for t in model.graph.initializer}[first.input[1]])
    assert shape.tolist() == [1, 1, 49, 10]
    assert consumers(model, first.output[0])[0].op_type == "Conv"


def test_tf_fixtures_keep_tf_same_padding() -> None:
    """TF "same" padding is asymmetric where the total is odd: DS-CNN's 10x4/2 stem on 49x10 pads 4 top, 5 bottom."""
    stem = next(n for n in load("ds_cnn_tf").graph.node if n.op_type == "Conv")
    assert helper.get_attribute_value(next(a for a in stem.attribute if a.name == "pads")) == [4, 1, 5, 1]
    vww_stem = next(n for n in load("mobilenet_v1_vww_tf").graph.node if n.op_type == "Conv")
    assert helper.get_attribute_value(next(a for a in vww_stem.attribute if a.name == "pads")) == [0, 0, 1, 1]


@pytest.mark.parametrize("name", TORCH_FIXTURES)
def test_torch_batchnorm_is_far_from_identity(name: str) -> None:
    """Random BN statistics, so a BN-folding bug changes the numbers instead of hiding behind mean 0 / var 1."""
    model = load(name)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in (n for n in model.graph.node if n.op_type == "BatchNormalization"):
        scale, bias, mean, var = (inits[i] for i in node.input[1:])
        assert np.abs(scale - 1).max() > 0.1
        assert np.abs(bias).max() > 0.01 and np.abs(mean).max() > 0.01 and np.abs(var - 1).max() > 0.1
        assert var.min() >= 0.5


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_runs_in_onnxruntime(name: str) -> None:
    path = ensure_model(name)
    y = run_onnxruntime(path, random_input(path, seed=0))
    assert y.shape == SHAPES[name][1] and y.dtype == np.float32 and np.all(np.isfinite(y))
    assert y.std() > 1e-3  # not collapsed to a constant
    if name in SOFTMAX_OUTPUT:
        assert y.sum() == pytest.approx(1.0, abs=1e-5) and y.max() < 0.99  # a distribution, not one-hot


@pytest.mark.parametrize("name", ["fc_autoencoder_torch", "fc_autoencoder_tf"])
def test_autoencoder_matches_a_numpy_forward_pass(name: str) -> None:
    """Re-derive the autoencoder from its initializers in numpy: ORT and the exported semantics must agree."""
    model = load(name)
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    x = random_input(ensure_model(name), seed=3)
    h = x.astype(np.float64)
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Gemm":
            w = inits[node.input[1]]
            h = h @ (w.T if attrs.get("transB", 0) else w) + inits[node.input[2]]
        elif node.op_type == "BatchNormalization":
            scale, bias, mean, var = (inits[i] for i in node.input[1:])
            h = (h - mean) / np.sqrt(var + attrs.get("epsilon", 1e-5)) * scale + bias
        elif node.op_type in ("Mul", "Add"):
            h = h * inits[node.input[1]] if node.op_type == "Mul" else h + inits[node.input[1]]
        else:
            assert node.op_type == "Relu"
            h = np.maximum(h, 0)
    np.testing.assert_allclose(run_onnxruntime(ensure_model(name), x), h, rtol=1e-4, atol=1e-5)


def test_bundled_example_model_is_the_torch_ds_cnn() -> None:
    assert BUNDLED_MODEL.read_bytes() == fixture_path("ds_cnn_torch").read_bytes()


def test_random_input_is_seeded_and_shaped() -> None:
    path = ensure_model("resnet8_tf")
    a, b, c = random_input(path, 7), random_input(path, 7), random_input(path, 8)
    assert a.shape == (1, 32, 32, 3) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_ensure_model_reuses_a_cached_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASOBUILD_ZOO_DIR", str(tmp_path))
    cached = tmp_path / "vgg16.onnx"
    cached.write_bytes(b"already exported")  # exists: returned as is, torch is not needed
    assert ensure_model("vgg16") == cached and cached.read_bytes() == b"already exported"


def test_ensure_model_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown zoo model 'vgg19'"):
        ensure_model("vgg19")


def test_canonical_names_renumbers_tf2onnx_counters_in_order_of_use() -> None:
    one = numpy_helper.from_array(np.ones(1, np.float32), "const_fold_opt__96")
    two = numpy_helper.from_array(np.ones(1, np.float32), "Conv__12:1")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "const_fold_opt__96"], ["Add__12:0"], name="Add__12"),
         helper.make_node("Mul", ["Add__12:0", "Conv__12:1"], ["y"], name="Mul__3")],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])], [two, one])
    graph = canonical_names(helper.make_model(graph)).graph
    # first use: Add__12 (12 -> 0), const_fold_opt__96 (96 -> 1), Mul__3 (3 -> 2); Conv__12 shares counter 12
    assert [n.name for n in graph.node] == ["Add__0", "Mul__2"]
    assert [list(n.input) for n in graph.node] == [["x", "const_fold_opt__1"], ["Add__0:0", "Conv__0:1"]]
    assert [list(n.output) for n in graph.node] == [["Add__0:0"], ["y"]]
    assert [t.name for t in graph.initializer] == ["Conv__0:1", "const_fold_opt__1"]  # sorted


def test_torch_export_is_deterministic_and_matches_the_fixture() -> None:
    torch = pytest.importorskip("torch")
    from tests.zoo.torch_export import build_torch_model, export_torch

    assert export_torch("ds_cnn_torch") == export_torch("ds_cnn_torch")
    model, _ = build_torch_model("ds_cnn_torch")
    x = random_input(fixture_path("ds_cnn_torch"), seed=5)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_onnxruntime(fixture_path("ds_cnn_torch"), x), expected, rtol=1e-5, atol=1e-6)
