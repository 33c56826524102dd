"""Quantised test models made here, deterministically: a float ONNX fixture quantised by onnxruntime.quantization's
static quantisation (QDQ or QOperator, per-channel or per-tensor int8 weights, int8 activations), calibrated on
seeded random inputs. A small stand-in for the TensorFlow-made int8 fixtures (tests/zoo), easy to swap for them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The operators quantised; others (Softmax) stay float, between the model's own DequantizeLinear and the output.
QUANTISED_OPS = ("Conv", "Gemm", "MatMul", "Add", "AveragePool", "GlobalAveragePool", "MaxPool", "Relu", "Clip",
                 "Reshape", "Flatten")
CALIBRATION_SAMPLES = 8


def quantise(float_model: Path, out: Path, fmt: str = "QDQ", per_channel: bool = True, seed: int = 0) -> Path:
    """`float_model` quantised to int8 into `out` (fmt "QDQ" or "QOperator"); the same arguments give the same
    bytes. quant_pre_process first folds the BatchNorm-style Mul/Add into the convolutions, as TFLite's converter
    does."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(str(float_model))
    x = model.graph.input[0]
    shape = [d.dim_value for d in x.type.tensor_type.shape.dim]
    rng = np.random.default_rng(seed)
    samples = [{x.name: rng.standard_normal(shape).astype(np.float32)} for _ in range(CALIBRATION_SAMPLES)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.left, None)

    pre = out.with_name(out.stem + ".pre.onnx")
    ort.set_default_logger_severity(3)
    quant_pre_process(str(float_model), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(out), Reader(), quant_format=getattr(QuantFormat, fmt), per_channel=per_channel,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=list(QUANTISED_OPS))
    pre.unlink()
    return out


def with_int8_input(model: Path, out: Path) -> Path | None:
    """`model` with the QuantizeLinear of its input removed (after the reshapes or transposes in between), so that
    the input is int8 as in TFLite's int8 models; None when the input does not lead to one QuantizeLinear."""
    import onnx
    from onnx import TensorProto

    m = onnx.load(str(model))
    x = m.graph.input[0]
    chain = [x.name]
    while True:
        readers = [n for n in m.graph.node if chain[-1] in n.input]
        if len(readers) != 1 or readers[0].op_type not in ("QuantizeLinear", "Transpose", "Reshape", "Flatten"):
            return None
        if readers[0].op_type == "QuantizeLinear":
            break
        chain.append(readers[0].output[0])
    for info in [v for v in m.graph.value_info if v.name in chain]:  # declared float: int8 now
        m.graph.value_info.remove(info)
    quantize = readers[0]
    m.graph.node.remove(quantize)
    for n in m.graph.node:
        for i, name in enumerate(n.input):
            if name == quantize.output[0]:
                n.input[i] = quantize.input[0]
    x.type.tensor_type.elem_type = TensorProto.INT8
    onnx.save(m, str(out))
    return out


def ort_outputs(model: Path, x: np.ndarray) -> list[np.ndarray]:
    """ONNX Runtime's output with graph optimisations on (all) and off: the range our output must fall within."""
    import onnxruntime as ort

    results = []
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        results.append(session.run(None, {session.get_inputs()[0].name: x})[0].reshape(-1))
    return results


def assert_within_range(ours: np.ndarray, references: list[np.ndarray], unit: float) -> None:
    """Every output within one `unit` (one int8 step, or one output quantisation step for float outputs) of the
    range the references span."""
    lo = np.minimum.reduce(references) - unit * 1.0001
    hi = np.maximum.reduce(references) + unit * 1.0001
    ours = ours.reshape(-1)
    bad = np.flatnonzero((ours < lo) | (ours > hi))
    assert bad.size == 0, (f"{bad.size} outputs outside the reference range +- {unit:g}: first at {bad[0]}: "
                           f"{ours[bad[0]]} not in [{lo[bad[0]]}, {hi[bad[0]]}]")
