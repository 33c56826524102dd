"""ONNX import: every rule on hand-made graphs (exact values), every error path, and the zoo against ONNX Runtime."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tasobuild import ir
from tasobuild.errors import UserError
from tasobuild.importer import import_onnx
from tests import ir_interpreter

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "models").glob("*.onnx"))


# --- helpers ------------------------------------------------------------------------------------------------------

def save(tmp_path: Path, nodes: Sequence[onnx.NodeProto], shape: Sequence[int | str], out: str = "y",
         inits: dict[str, np.ndarray] | None = None, opset: int = 13, name: str = "model.onnx",
         out_shape: Sequence[int] | None = None) -> Path:
    graph = helper.make_graph(
        list(nodes), "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in sorted((inits or {}).items())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    # the checker wants the output's shape: let onnx fill it in
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    del model.graph.value_info[:]
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def assert_matches_onnxruntime(path: Path, graph: ir.Graph, seed: int = 0) -> None:
    x = np.random.default_rng(seed).standard_normal(graph.onnx_input_shape).astype(np.float32)
    want = onnxruntime(path, x)
    got = ir_interpreter.run(graph, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def rand(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def ops(graph: ir.Graph) -> list[str]:
    return [n.op for n in graph.nodes]


def user_error(path: Path) -> str:
    with pytest.raises(UserError) as e:
        import_onnx(path)
    message = str(e.value)
    assert "\n" not in message
    return message


# --- the zoo: imported graphs compute what ONNX Runtime computes ---------------------------------------------------

@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_matches_onnxruntime(path: Path) -> None:
    graph = import_onnx(path)
    assert set(ops(graph)) <= set(ir.OPS)
    assert not any(n.op == "scale" for n in graph.nodes), "every BatchNormalization should fold into a conv/fc"
    assert_matches_onnxruntime(path, graph)


BIG_MODELS = ("alexnet", "vgg16", "googlenet", "resnet18", "resnet50", "squeezenet11", "mobilenetv2")


@pytest.mark.slow
@pytest.mark.parametrize("name", BIG_MODELS)
def test_big_network_matches_onnxruntime(name: str, zoo_model) -> None:  # type: ignore[no-untyped-def]
    path = zoo_model(name)
    graph = import_onnx(path)
    assert set(ops(graph)) <= set(ir.OPS) and "scale" not in ops(graph)
    assert_matches_onnxruntime(path, graph)


def test_import_is_deterministic() -> None:
    path = FIXTURES[0] if FIXTURES else pytest.skip("no fixtures yet")
    a, b = import_onnx(path), import_onnx(path)
    assert a.digest == b.digest
    assert "np." not in repr((a.nodes, a.shapes, a.onnx_output_shape))  # plain Python values: stable reprs/digests
    assert [s for s, _ in a.shapes] == sorted(s for s, _ in a.shapes)
    assert [c.name for c in a.constants] == sorted(c.name for c in a.constants)


# --- BatchNormalization and per-channel constants -----------------------------------------------------------------

def _bn_inits() -> dict[str, np.ndarray]:
    return {"W": np.array([[[[2.0]]], [[[-1.0]]]], np.float32), "B": np.array([0.5, 1.0], np.float32),
            "g": np.array([3.0, 0.5], np.float32), "be": np.array([1.0, -2.0], np.float32),
            "m": np.array([0.25, 2.0], np.float32), "v": np.array([3.0, 0.0], np.float32)}


def test_batchnorm_folds_into_conv_with_exact_values(tmp_path: Path) -> None:
    path = save(tmp_path, [helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv"),
                           helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["y"], name="bn",
                                            epsilon=1.0)], [1, 1, 2, 2], inits=_bn_inits())
    graph = import_onnx(path)
    (conv,) = graph.nodes
    assert (conv.name, conv.op, conv.output, conv.fused) == ("conv", "conv", "y", ("bn",))
    # s = g / sqrt(v + eps) = [3/2, 0.5/1]; W' = W*s; b' = (B - m)*s + be
    np.testing.assert_array_equal(graph.const(conv.weights[0]).reshape(-1), [3.0, -0.5])
    np.testing.assert_array_equal(graph.const(conv.weights[1]), [(0.5 - 0.25) * 1.5 + 1.0, (1.0 - 2.0) * 0.5 - 2.0])
    assert conv.attrs == ir.attrs(kernel=(1, 1), stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1)
    assert_matches_onnxruntime(path, graph)


def test_batchnorm_on_a_shared_tensor_stays_a_scale(tmp_path: Path) -> None:
    path = save(tmp_path, [helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
                           helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["n"], name="bn",
                                            epsilon=1.0),
                           helper.make_node("Add", ["c", "n"], ["y"], name="add")], [1, 1, 2, 2], inits=_bn_inits())
    graph = import_onnx(path)
    assert ops(graph) == ["conv", "scale", "add"]
    scale = graph.node("bn")
    np.testing.assert_array_equal(graph.const(scale.weights[0]), [1.5, 0.5])
    np.testing.assert_array_equal(graph.const(scale.weights[1]), [1.0 - 0.25 * 1.5, -2.0 - 2.0 * 0.5])
    np.testing.assert_array_equal(graph.const(graph.node("conv").weights[1]), [0.0, 0.0])  # no bias -> zeros
    assert_matches_onnxruntime(path, graph)


def test_mul_add_sub_div_by_constants_fold_into_the_conv(tmp_path: Path) -> None:
    inits = {"W": np.array([[[[1.0]]], [[[2.0]]]], np.float32), "m": np.array([[[2.0]], [[3.0]]], np.float32),
             "a": np.array([10.0], np.float32), "d": np.array(4.0, np.float32)}
    path = save(tmp_path, [helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
                           helper.make_node("Mul", ["m", "c"], ["t1"], name="mul"),
                           helper.make_node("Add", ["t1", "a"], ["t2"], name="add"),
                           helper.make_node("Div", ["t2", "d"], ["t3"], name="div"),
                           helper.make_node("Sub", ["a", "t3"], ["y"], name="sub")], [1, 1, 3, 3], inits=inits)
    graph = import_onnx(path)
    (conv,) = graph.nodes
    assert conv.fused == ("mul", "add", "div", "sub")
    # y = 10 - (m*W*x + 10)/4  ->  W' = -m*W/4, b' = 10 - 10/4
    np.testing.assert_array_equal(graph.const(conv.weights[0]).reshape(-1), [-0.5, -1.5])
    np.testing.assert_array_equal(graph.const(conv.weights[1]), [7.5, 7.5])
    assert_matches_onnxruntime(path, graph)


def test_constant_varying_along_a_spatial_axis_is_rejected(tmp_path: Path) -> None:
    path = save(tmp_path, [helper.make_node("Mul", ["x", "k"], ["y"], name="spatial_mul")], [1, 2, 3, 3],
                inits={"k": rand(1, 1, 3, 1)})
    assert "node 'spatial_mul' (Mul)" in user_error(path) and "channel axis" in user_error(path)


# --- activations ----------------------------------------------------------------------------------------------------

def test_activations_fuse_into_their_producer(tmp_path: Path) -> None:
    inits = {"W": rand(4, 2, 3, 3), "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)}
    path = save(tmp_path, [helper.make_node("Conv", ["x", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
                           helper.make_node("Clip", ["c", "lo", "hi"], ["r"], name="relu6"),
                           helper.make_node("Add", ["r", "x2"], ["s"], name="add"),
                           helper.make_node("LeakyRelu", ["s"], ["y"], name="leaky", alpha=0.2),
                           helper.make_node("Conv", ["x", "W"], ["x2"], name="conv2", pads=[1, 1, 1, 1])],
                [1, 2, 5, 5], inits=inits)
    # conv2 comes after its consumer in the file: not topologically sorted -> the checker rejects it
    assert "invalid ONNX model" in user_error(path)
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "W"], ["x2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["c", "lo", "hi"], ["r"], name="relu6"),
             helper.make_node("Add", ["r", "x2"], ["s"], name="add"),
             helper.make_node("LeakyRelu", ["s"], ["y"], name="leaky", alpha=0.2)]
    path = save(tmp_path, nodes, [1, 2, 5, 5], inits=inits)
    graph = import_onnx(path)
    assert ops(graph) == ["conv", "conv", "add"]
    assert graph.node("conv").act == ir.Activation("clip", 0.0, 6.0)
    assert graph.node("add").act == ir.Activation("leaky_relu", pytest.approx(0.2))
    assert graph.node("add").fused == ("leaky",)
    assert_matches_onnxruntime(path, graph)


def test_activation_on_a_shared_tensor_stays_a_node(tmp_path: Path) -> None:
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
             helper.make_node("Add", ["r", "s"], ["y"], name="add")]
    graph = import_onnx(save(tmp_path, nodes, [1, 2, 4, 4], inits={"W": rand(2, 2, 1, 1)}))
    assert ops(graph) == ["conv", "act", "act", "add"]
    assert [graph.node(n).act.kind for n in ("conv", "relu", "sig")] == ["none", "relu", "sigmoid"]
    assert_matches_onnxruntime(tmp_path / "model.onnx", graph)


def test_clip_attributes_of_old_opsets(tmp_path: Path) -> None:
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]), helper.make_node("Clip", ["c"], ["y"], min=-1.0, max=2.0)]
    path = save(tmp_path, nodes, [1, 1, 3, 3], inits={"W": rand(2, 1, 1, 1)}, opset=9)
    graph = import_onnx(path)
    assert graph.nodes[0].name == "Conv_0" and graph.nodes[0].act == ir.Activation("clip", -1.0, 2.0)
    assert_matches_onnxruntime(path, graph)


# --- padding and pooling ------------------------------------------------------------------------------------------

def test_pad_folds_into_conv(tmp_path: Path) -> None:
    nodes = [helper.make_node("Pad", ["x", "p"], ["xp"], name="pad"),
             helper.make_node("Conv", ["xp", "W"], ["y"], name="conv", pads=[1, 0, 0, 1])]
    path = save(tmp_path, nodes, [1, 2, 6, 7], inits={"p": np.array([0, 0, 1, 2, 0, 0, 3, 4]), "W": rand(3, 2, 3, 2)})
    graph = import_onnx(path)
    (conv,) = graph.nodes
    assert conv.attr("pads") == (2, 2, 3, 5) and conv.fused == ("pad",)
    assert graph.shape("y") == ir.Shape(3, 6 + 5 - 2, 7 + 7 - 1)
    assert_matches_onnxruntime(path, graph)


def test_pad_folds_into_avgpool_counting_padding(tmp_path: Path) -> None:
    nodes = [helper.make_node("Pad", ["x", "p"], ["xp"], name="pad"),
             helper.make_node("AveragePool", ["xp"], ["y"], name="pool", kernel_shape=[3, 3], strides=[2, 2])]
    path = save(tmp_path, nodes, [1, 2, 6, 6], inits={"p": np.array([0, 0, 1, 1, 0, 0, 1, 1])})
    graph = import_onnx(path)
    (pool,) = graph.nodes
    assert (pool.op, pool.attr("pads"), pool.attr("count_include_pad")) == ("avgpool", (1, 1, 1, 1), 1)
    assert_matches_onnxruntime(path, graph)


def test_pad_before_maxpool_is_rejected(tmp_path: Path) -> None:
    nodes = [helper.make_node("Pad", ["x", "p"], ["xp"], name="the_pad"),
             helper.make_node("MaxPool", ["xp"], ["y"], name="pool", kernel_shape=[2, 2])]
    message = user_error(save(tmp_path, nodes, [1, 2, 6, 6], inits={"p": np.array([0, 0, 1, 1, 0, 0, 1, 1])}))
    assert message.startswith("model.onnx: node 'the_pad' (Pad): cannot be folded into 'pool' (maxpool)")


@pytest.mark.parametrize("size, kernel, stride, pads, out, ir_pads", [
    (5, 2, 2, 1, 3, (1, 1, 1, 1)),  # ORT drops the window that would start in the end padding
    (6, 3, 2, 0, 3, (0, 0, 1, 1)),  # ceil adds a row/column: folded into asymmetric padding
    (112, 3, 2, 0, 56, (0, 0, 1, 1)),  # GoogLeNet / SqueezeNet
    (7, 3, 2, 1, 4, (1, 1, 1, 1)),
])
def test_ceil_mode_maxpool(tmp_path: Path, size: int, kernel: int, stride: int, pads: int, out: int,
                           ir_pads: tuple[int, ...]) -> None:
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[kernel] * 2, strides=[stride] * 2,
                            pads=[pads] * 4, ceil_mode=1)
    path = save(tmp_path, [node], [1, 2, size, size])
    graph = import_onnx(path)
    assert graph.shape("y") == ir.Shape(2, out, out)
    assert graph.nodes[0].attr("pads") == ir_pads
    assert_matches_onnxruntime(path, graph)


@pytest.mark.parametrize("include, pads", [(0, 1), (1, 0), (0, 0)])
def test_ceil_mode_avgpool(tmp_path: Path, include: int, pads: int) -> None:
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[pads] * 4,
                            ceil_mode=1, count_include_pad=include)
    path = save(tmp_path, [node], [1, 2, 6, 6])
    assert_matches_onnxruntime(path, import_onnx(path))


def test_ceil_mode_avgpool_counting_padding_and_overhang_is_rejected(tmp_path: Path) -> None:
    node = helper.make_node("AveragePool", ["x"], ["y"], name="p", kernel_shape=[3, 3], strides=[2, 2],
                            pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1)
    assert "node 'p' (AveragePool)" in user_error(save(tmp_path, [node], [1, 2, 6, 6]))


def test_pooling_sweep_matches_onnxruntime(tmp_path: Path) -> None:
    """A fixed sample of pooling geometries (asymmetric pads, ceil mode, both divisor modes) against ORT."""
    rng = np.random.default_rng(7)
    checked = 0
    while checked < 40:
        size, k, s = int(rng.integers(3, 9)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
        pads = [int(p) for p in rng.integers(0, k, 4)]
        op = str(rng.choice(["MaxPool", "AveragePool"]))
        ceil, include = int(rng.integers(0, 2)), int(rng.integers(0, 2))
        if size + min(pads[0] + pads[2], pads[1] + pads[3]) < k:
            continue
        extra = {"count_include_pad": include} if op == "AveragePool" else {}
        node = helper.make_node(op, ["x"], ["y"], name="pool", kernel_shape=[k, k], strides=[s, s], pads=pads,
                                ceil_mode=ceil, **extra)
        path = save(tmp_path, [node], [1, 2, size, size + 1], name=f"pool{checked}.onnx")
        try:
            graph = import_onnx(path)
        except UserError as e:  # the one geometry the IR cannot express must say so
            assert "ceil_mode=1, count_include_pad=1" in str(e) and op == "AveragePool" and ceil and include
            continue
        assert_matches_onnxruntime(path, graph)
        checked += 1


@pytest.mark.parametrize("auto_pad, size, ir_pads, out", [
    ("SAME_UPPER", 8, (0, 0, 1, 1), 4),  # TF "same": the extra pixel at the end
    ("SAME_LOWER", 8, (1, 1, 0, 0), 4),
    ("SAME_UPPER", 7, (1, 1, 1, 1), 4),
    ("VALID", 8, (0, 0, 0, 0), 3),
])
def test_conv_auto_pad(tmp_path: Path, auto_pad: str, size: int, ir_pads: tuple[int, ...], out: int) -> None:
    node = helper.make_node("Conv", ["x", "W", "B"], ["y"], auto_pad=auto_pad, strides=[2, 2])
    path = save(tmp_path, [node], [1, 3, size, size], inits={"W": rand(4, 3, 3, 3), "B": rand(4)})
    graph = import_onnx(path)
    assert graph.nodes[0].attr("pads") == ir_pads and graph.shape("y") == ir.Shape(4, out, out)
    assert_matches_onnxruntime(path, graph)


def test_same_avgpool_excluding_padding_and_global_pools(tmp_path: Path) -> None:
    nodes = [helper.make_node("AveragePool", ["x"], ["a"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
             helper.make_node("GlobalMaxPool", ["a"], ["m"]),
             helper.make_node("GlobalAveragePool", ["a"], ["g"]),
             helper.make_node("Add", ["m", "g"], ["y"])]
    path = save(tmp_path, nodes, [1, 3, 8, 8])
    graph = import_onnx(path)
    assert ops(graph) == ["avgpool", "maxpool", "gap", "add"]
    assert graph.nodes[0].attr("pads") == (0, 0, 1, 1) and graph.nodes[0].attr("count_include_pad") == 0
    assert_matches_onnxruntime(path, graph)


def test_depthwise_dilated_grouped_convs(tmp_path: Path) -> None:
    nodes = [helper.make_node("Conv", ["x", "Wd"], ["d"], group=4, pads=[2, 2, 2, 2], dilations=[2, 2]),
             helper.make_node("Conv", ["d", "Wg"], ["y"], group=2, strides=[2, 1])]
    path = save(tmp_path, nodes, [1, 4, 9, 8], inits={"Wd": rand(8, 1, 3, 3), "Wg": rand(6, 4, 3, 3)})
    graph = import_onnx(path)
    assert [n.attr("groups") for n in graph.nodes] == [4, 2]
    assert graph.nodes[0].attr("dilation") == (2, 2)
    assert_matches_onnxruntime(path, graph)


def test_conv1d_runs_as_conv2d_over_a_column(tmp_path: Path) -> None:
    path = save(tmp_path, [helper.make_node("Conv", ["x", "W"], ["y"], pads=[1, 2], strides=[2])], [1, 3, 10],
                inits={"W": rand(5, 3, 4)})
    graph = import_onnx(path)
    assert graph.nodes[0].attr("kernel") == (4, 1) and graph.nodes[0].attr("pads") == (1, 0, 2, 0)
    assert graph.shape("y") == ir.Shape(5, 5, 1)
    assert_matches_onnxruntime(path, graph)


# --- layout-ish ops -------------------------------------------------------------------------------------------------

def test_transpose_perm_maps_to_logical_axes(tmp_path: Path) -> None:
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="to_nchw", perm=[0, 3, 1, 2]),
             helper.make_node("Relu", ["t"], ["y"])]
    path = save(tmp_path, nodes, [1, 4, 5, 3])
    graph = import_onnx(path)
    assert ops(graph) == ["transpose", "act"]
    assert graph.nodes[0].attr("perm") == (2, 0, 1)
    assert graph.shape("x") == ir.Shape(4, 5, 3) and graph.shape("t") == ir.Shape(3, 4, 5)
    assert_matches_onnxruntime(path, graph)


def test_transpose_of_unit_axes_is_a_reshape_and_batch_must_stay(tmp_path: Path) -> None:
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]), helper.make_node("Relu", ["t"], ["y"])]
    path = save(tmp_path, nodes, [1, 6, 1, 1])
    graph = import_onnx(path)
    assert ops(graph) == ["reshape", "act"]  # (6,1,1) -> (1,1,6): same bytes
    assert_matches_onnxruntime(path, graph)
    bad = [helper.make_node("Transpose", ["x"], ["y"], name="tr", perm=[1, 0, 2, 3])]
    assert "node 'tr' (Transpose)" in user_error(save(tmp_path, bad, [1, 6, 2, 1]))


def test_flatten_gemm_softmax_and_shape_subgraph_folding(tmp_path: Path) -> None:
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["f"], name="flat"),
             helper.make_node("Dropout", ["f"], ["d"]),
             helper.make_node("Gemm", ["d", "B", "C"], ["g"], name="fc", alpha=0.5, beta=2.0, transB=1),
             helper.make_node("Softmax", ["g"], ["y"], name="sm", axis=1)]
    inits = {"zero": np.array(0, np.int64), "zero1": np.array([0], np.int64), "minus1": np.array([-1], np.int64),
             "B": rand(5, 24), "C": rand(5)}
    path = save(tmp_path, nodes, [1, 2, 3, 4], inits=inits)
    graph = import_onnx(path)
    assert ops(graph) == ["reshape", "fc", "softmax"]
    assert graph.shape("f") == ir.Shape(24, 1, 1)
    np.testing.assert_array_equal(graph.const("fc.W"), inits["B"] * np.float32(0.5))
    np.testing.assert_array_equal(graph.const("fc.b"), inits["C"] * np.float32(2.0))
    assert_matches_onnxruntime(path, graph)


def test_matmul_plus_add_is_an_fc_with_bias(tmp_path: Path) -> None:
    nodes = [helper.make_node("MatMul", ["x", "B"], ["m"], name="dense"),
             helper.make_node("Add", ["m", "C"], ["a"], name="bias"),
             helper.make_node("Relu", ["a"], ["y"], name="relu")]
    path = save(tmp_path, nodes, [1, 6], inits={"B": rand(6, 3), "C": rand(3)})
    graph = import_onnx(path)
    (fc,) = graph.nodes
    assert (fc.op, fc.fused, fc.act.kind) == ("fc", ("bias", "relu"), "relu")
    np.testing.assert_array_equal(graph.const(fc.weights[0]), rand(6, 3).T)
    assert_matches_onnxruntime(path, graph)


def test_concat_lrn_and_softmax_of_a_feature_map(tmp_path: Path) -> None:
    nodes = [helper.make_node("LRN", ["x"], ["l"], size=3, alpha=0.1, beta=0.75, bias=2.0),
             helper.make_node("Concat", ["x", "l"], ["c"], axis=-3),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]),
             helper.make_node("Softmax", ["g"], ["y"], axis=1)]
    path = save(tmp_path, nodes, [1, 5, 3, 3], opset=11)  # opset 11: softmax over the flattened [1, 10*1*1]
    graph = import_onnx(path)
    assert ops(graph) == ["lrn", "concat", "gap", "softmax"]
    assert_matches_onnxruntime(path, graph)


def test_softmax_over_a_row_of_a_3d_tensor_is_wrapped_in_reshapes(tmp_path: Path) -> None:
    nodes = [helper.make_node("Reshape", ["x", "s"], ["r"]), helper.make_node("Softmax", ["r"], ["y"], axis=-1)]
    path = save(tmp_path, nodes, [1, 6], inits={"s": np.array([1, 1, 6])})
    graph = import_onnx(path)
    assert ops(graph) == ["softmax", "reshape"]
    assert_matches_onnxruntime(path, graph)


def test_identity_to_the_output_keeps_the_output_name(tmp_path: Path) -> None:
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv"), helper.make_node("Identity", ["c"], ["y"])]
    graph = import_onnx(save(tmp_path, nodes, [1, 1, 3, 3], inits={"W": rand(2, 1, 1, 1)}))
    assert ops(graph) == ["conv"] and graph.nodes[0].output == "y" == graph.output
    assert [name for name, _ in graph.shapes] == ["x", "y"]


# --- errors ---------------------------------------------------------------------------------------------------------

def test_missing_truncated_and_non_onnx_files(tmp_path: Path) -> None:
    assert user_error(tmp_path / "absent.onnx").startswith("absent.onnx: no such file")
    good = save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [1, 2])
    (tmp_path / "cut.onnx").write_bytes(good.read_bytes()[:40])
    assert user_error(tmp_path / "cut.onnx").startswith("cut.onnx: not a readable ONNX model, truncated or corrupt")
    (tmp_path / "text.onnx").write_text("this is not a model\n")
    assert user_error(tmp_path / "text.onnx").startswith("text.onnx: not a readable ONNX model")
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert user_error(tmp_path / "empty.onnx").startswith("empty.onnx: not an ONNX model (no graph)")
    (tmp_path / "dir.onnx").mkdir()
    assert user_error(tmp_path / "dir.onnx").startswith("dir.onnx: is a directory")


def test_unsupported_operator_names_the_node(tmp_path: Path) -> None:
    path = save(tmp_path, [helper.make_node("Tanh", ["x"], ["y"], name="squash")], [1, 4])
    message = user_error(path)
    assert message.startswith("model.onnx: node 'squash' (Tanh): unsupported operator; supported: ")
    assert "Conv" in message


def test_conv_with_dynamic_weights(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["w"]), helper.make_node("Conv", ["x", "w"], ["y"], name="c")]
    assert user_error(save(tmp_path, nodes, [1, 1, 1, 1])) == \
        "model.onnx: node 'c' (Conv): Conv with dynamic weights is not supported"


@pytest.mark.parametrize("shape, needle", [(["N", 3, 4, 4], "dim 0 is 'N'"), ([1, 3, "h", 4], "dim 2 is 'h'"),
                                           ([2, 3, 4, 4], "dim 0 (batch) must be 1")])
def test_dynamic_or_large_batch(tmp_path: Path, shape: list, needle: str) -> None:
    message = user_error(save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], shape))
    assert message.startswith("model.onnx: input 'x'") and needle in message


def test_weights_of_the_wrong_shape(tmp_path: Path) -> None:
    nodes = [helper.make_node("Conv", ["x", "W"], ["y"], name="c")]
    message = user_error(save(tmp_path, nodes, [1, 3, 4, 4], inits={"W": rand(2, 2, 1, 1)}))
    assert message.startswith("model.onnx: ") and "'c'" in message


def test_input_that_nothing_produces(tmp_path: Path) -> None:
    nodes = [helper.make_node("Add", ["x", "ghost"], ["y"], name="a")]
    assert user_error(save(tmp_path, nodes, [1, 3])).startswith("model.onnx: invalid ONNX model")


def test_add_with_broadcasting_between_activations(tmp_path: Path) -> None:
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]), helper.make_node("Add", ["x", "g"], ["y"], name="a")]
    assert "node 'a' (Add): Add of activations of different shapes" in user_error(save(tmp_path, nodes, [1, 2, 3, 3]))


def test_value_info_that_contradicts_the_graph(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["c"], name="r1"), helper.make_node("Relu", ["c"], ["y"], name="r2")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        value_info=[helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 3])])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    message = user_error(path)
    assert message.startswith("model.onnx: inconsistent graph") and "node name: r1" in message


def test_cross_check_names_the_node_whose_shape_disagrees_with_onnx(tmp_path: Path) -> None:
    from dataclasses import replace

    from tasobuild.importer.convert import SUPPORTED_OPS
    from tasobuild.importer.fold import cross_check, fold
    from tasobuild.importer.reader import read_model

    nodes = [helper.make_node("Relu", ["x"], ["c"], name="r1"), helper.make_node("Relu", ["c"], ["y"], name="r2")]
    static = fold(read_model(save(tmp_path, nodes, [1, 4])), SUPPORTED_OPS)
    assert static.shapes["c"] == (1, 4)
    with pytest.raises(UserError, match=r"^model.onnx: node 'r1' \(Relu\): inconsistent graph: output 'c' has shape "
                                        r"\[1, 5\] but onnx infers \[1, 4\]$"):
        cross_check(replace(static, shapes={**static.shapes, "c": (1, 5)}), set())


def test_shape_subgraph_with_slice_cast_arithmetic_and_constant_of_shape(tmp_path: Path) -> None:
    # target = [N, C*12/2, -1] computed the long way round, as exporters do
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Slice", ["s", "zero", "one"], ["batch"]),
             helper.make_node("Slice", ["s", "one", "two"], ["c"]),
             helper.make_node("Cast", ["c"], ["cf"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["cf"], ["ci"], to=TensorProto.INT64),
             helper.make_node("ConstantOfShape", ["one"], ["twelve"],
                              value=numpy_helper.from_array(np.array([12], np.int64))),
             helper.make_node("Mul", ["ci", "twelve"], ["p2"]),
             helper.make_node("Div", ["p2", "two"], ["p1"]),
             helper.make_node("Concat", ["batch", "p1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    inits = {"zero": np.array([0]), "one": np.array([1]), "two": np.array([2]), "minus1": np.array([-1])}
    path = save(tmp_path, nodes, [1, 2, 3, 4], inits=inits, out_shape=[1, 12, 2])
    graph = import_onnx(path)
    assert ops(graph) == ["reshape"] and graph.shape("y") == ir.Shape(12, 2, 1)
    assert_matches_onnxruntime(path, graph)


def test_unfoldable_constant_op_is_unsupported(tmp_path: Path) -> None:
    nodes = [helper.make_node("ReduceProd", ["k"], ["p"], keepdims=1), helper.make_node("Reshape", ["x", "p"], ["y"])]
    message = user_error(save(tmp_path, nodes, [1, 2, 3, 4], inits={"k": np.array([1, 24])}, out_shape=[1, 24]))
    assert message.startswith("model.onnx: node 'ReduceProd_0' (ReduceProd): unsupported operator")


def test_cycle(tmp_path: Path) -> None:
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="n1"), helper.make_node("Relu", ["a"], ["b"], name="n2"),
             helper.make_node("Relu", ["b"], ["y"], name="n3")]
    message = user_error(save(tmp_path, nodes, [1, 3], out_shape=[1, 3]))
    assert message.startswith("model.onnx: invalid ONNX model") and "topologically sorted" in message


def test_two_inputs_or_outputs(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "z"], ["y"])], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in ("x", "z")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    imported = import_onnx(path)
    assert imported.input_ports == (ir.Port("x", "x", (1, 3)), ir.Port("z", "z", (1, 3)))
    assert imported.output_tensors == ("y",) and ops(imported) == ["add"]


@pytest.mark.parametrize("outputs, message", [
    (("y", "x"), "model.onnx: graph output 'x' is a graph input; nothing to compute"),
    (("y", "y"), "model.onnx: graph output 'y' is listed twice; list each output once")])
def test_outputs_that_compute_nothing(tmp_path: Path, outputs: tuple[str, ...], message: str) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in outputs])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    assert user_error(path) == message


def test_secondary_output_in_use_and_reduce_mean(tmp_path: Path) -> None:
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("Dropout", ["m"], ["d", "mask"], name="drop"),
             helper.make_node("Cast", ["mask"], ["maskf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["d", "maskf"], ["y"])]
    message = user_error(save(tmp_path, nodes, [1, 3, 4, 4]))
    assert message == "model.onnx: node 'drop' (Dropout): output 1 ('mask') is used; only the first output is supported"
    path = save(tmp_path, nodes[:2], [1, 3, 4, 4], out="d")
    graph = import_onnx(path)
    assert ops(graph) == ["gap"] and graph.output == "d"
    assert_matches_onnxruntime(path, graph)
