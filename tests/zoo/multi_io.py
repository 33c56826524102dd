"""A small real network with two inputs and two outputs, made with onnx.helper (seeded weights).

    image [1,3,H,W] -> Conv 3x3 (3->4) -> Relu -> a
    a + side:0 [1,4,H,W] -> b
    b -> Conv 1x1 (4->6) -> features [1,6,H,W]            (output 0, also read below)
    features -> GlobalAveragePool -> Flatten -> Gemm (6->5) -> score [1,5]    (output 1)

`dynamic=True` declares the batch, height and width of both inputs as named dimensions ("N", "H", "W"): the
model only builds with its input shapes pinned (`--input-shape`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

INPUTS = ("image", "side:0")
OUTPUTS = ("features", "score")


def two_in_two_out(path: Path, height: int = 8, width: int = 8, dynamic: bool = False) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(18)

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]) or 1)).astype(np.float32)

    weights = {"w1": rand(4, 3, 3, 3), "b1": rand(4), "w2": rand(6, 4, 1, 1), "b2": rand(6), "wg": rand(5, 6),
               "bg": rand(5)}
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["a"], name="relu1"),
        helper.make_node("Add", ["a", "side:0"], ["b"], name="join"),
        helper.make_node("Conv", ["b", "w2", "b2"], ["features"], name="conv2"),
        helper.make_node("GlobalAveragePool", ["features"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["score"], name="head", transB=1),
    ]
    n, h, w = ("N", "H", "W") if dynamic else (1, height, width)
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, [n, 3, h, w]),
              helper.make_tensor_value_info("side:0", TensorProto.FLOAT, [n, 4, h, w])]
    outputs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, [n, 6, h, w]),
               helper.make_tensor_value_info("score", TensorProto.FLOAT, [n, 5])]
    graph = helper.make_graph(nodes, "two_in_two_out", inputs, outputs,
                              [numpy_helper.from_array(v, k) for k, v in sorted(weights.items())])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


def reference(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Every output, in order, as ONNX Runtime computes them (one thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [np.asarray(out) for out in session.run(list(OUTPUTS), feeds)]
