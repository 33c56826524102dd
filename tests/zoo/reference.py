"""ONNX Runtime as the reference implementation of a zoo model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def _session(model_path: Path | str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # reproducible summation order, and the machine's cores are shared
    options.inter_op_num_threads = 1
    # graph_optimization_level stays at ORT's default (ORT_ENABLE_ALL): the reference is ORT as people run it
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def _single_input(model_path: Path | str) -> onnx.ValueInfoProto:
    model = onnx.load(str(model_path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"{model_path}: expected one graph input, found {len(inputs)}")
    return inputs[0]


def input_name(model_path: Path | str) -> str:
    """The name of the model's single graph input."""
    return _single_input(model_path).name


def input_shape(model_path: Path | str) -> tuple[int, ...]:
    """The static shape of the model's single graph input (initializers excluded)."""
    inputs = [_single_input(model_path)]
    dims = inputs[0].type.tensor_type.shape.dim
    if any(not d.HasField("dim_value") for d in dims):
        raise ValueError(f"{model_path}: input {inputs[0].name!r} has a symbolic dimension")
    return tuple(d.dim_value for d in dims)


def random_input(model_path: Path | str, seed: int) -> np.ndarray:
    """Standard-normal float32 input of the model's input shape, from `np.random.default_rng(seed)`."""
    return np.random.default_rng(seed).standard_normal(input_shape(model_path)).astype(np.float32)


def run_onnxruntime(model_path: Path | str, x: np.ndarray) -> np.ndarray:
    """The model's (first) output for input `x`, computed by ONNX Runtime on one thread."""
    session = _session(model_path)
    (name,) = [i.name for i in session.get_inputs()]
    return session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]
