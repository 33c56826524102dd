"""The int8 zoo: what tasobuild's int8 path is tested against (issue 17). Imports neither TensorFlow nor torch.

Two families of quantised networks:
* TensorFlow's (committed, tests/fixtures/int8/, made once by `tests/zoo/int8_tflite.py` in the TF venv): the
  MLPerf Tiny networks quantised by TFLiteConverter (int8 in and out), their tf2onnx QDQ ONNX, and the TFLite
  reference kernels' outputs for a few seeded inputs. `tflite_fixture(name)`.
* onnxruntime's (made here at first use, cached in the zoo folder): the float ONNX of the same networks quantised by
  `onnxruntime.quantization.quantize_static`, in four forms (`ORT_FORMS`, one of them mixing float and int8),
  plus ResNet-18 and MobileNetV2 (224) from the torch zoo for the slow tests. `ort_int8(name, form)`. Calibration
  data are seeded, so the same ORT version gives the same bytes; the cache file is named after a digest of the
  source model, the recipe and the ORT version, so a change to any of them makes a new file, not a stale reuse.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.zoo import FIXTURE_DIR, REPO_ROOT, ensure_model, zoo_dir

INT8_DIR = REPO_ROOT / "tests" / "fixtures" / "int8"

# The MLPerf Tiny networks TensorFlow quantised (the Keras models of tests/zoo/keras_models.py, `NAME_tf`).
TFLITE_INT8 = ("ds_cnn", "resnet8", "mobilenet_v1_vww", "mobilenet_v2_035")

REFERENCE_SEED = 1700
REFERENCE_COUNT = 3  # inputs per network with TFLite reference outputs


@dataclass(frozen=True)
class TfliteFixture:
    """One TensorFlow-quantised network: the .tflite, its tf2onnx ONNX, and TFLite's reference outputs."""

    name: str
    onnx: Path
    tflite: Path
    inputs: np.ndarray   # (REFERENCE_COUNT, *input shape) int8
    outputs: np.ndarray  # (REFERENCE_COUNT, *output shape) int8, from the reference kernels
    input_scale: float   # real = (q - zero point) * scale, for the graph's input and output
    input_zero_point: int
    output_scale: float
    output_zero_point: int


def tflite_fixture(name: str) -> TfliteFixture:
    if name not in TFLITE_INT8:
        raise ValueError(f"{name!r} is not a TFLite int8 fixture; fixtures: {', '.join(TFLITE_INT8)}")
    reference = INT8_DIR / f"{name}.ref.npz"
    if not reference.is_file():
        raise FileNotFoundError(f"{reference} is missing; regenerate with `/tmp/venv-tf/bin/python -m "
                                "tests.zoo.int8_tflite` (tests/fixtures/int8/README.md)")
    with np.load(reference) as ref:
        return TfliteFixture(name, INT8_DIR / f"{name}.onnx", INT8_DIR / f"{name}.tflite", ref["inputs"],
                             ref["outputs"], float(ref["input_scale"]), int(ref["input_zero_point"]),
                             float(ref["output_scale"]), int(ref["output_zero_point"]))


def tf_python() -> str | None:
    """A Python that has TensorFlow (for `python -m tests.zoo.int8_tflite`): this one, $TASOBUILD_TF_PYTHON, or the
    venv the fixtures' README sets up; None when there is none."""
    if importlib.util.find_spec("tensorflow") is not None:
        return sys.executable
    for candidate in (os.environ.get("TASOBUILD_TF_PYTHON"), "/tmp/venv-tf/bin/python"):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def reference_inputs(shape: tuple[int, ...], scale: float, zero_point: int, count: int = REFERENCE_COUNT,
                     seed: int = REFERENCE_SEED) -> np.ndarray:
    """`count` seeded standard-normal inputs of `shape`, quantised to int8 with the input's scale and zero point
    (round half to even, saturating): what the generator feeds the reference kernels."""
    x = np.random.default_rng(seed).standard_normal((count, *shape))
    return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)


# --- onnxruntime.quantization ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OrtForm:
    qdq: bool          # QuantizeLinear/DequantizeLinear around float ops; else QOperator (QLinearConv, ...)
    per_channel: bool  # weight scales per output channel; else one per tensor
    float_stem: bool   # the first Conv left in float: a graph that mixes float and int8 parts


ORT_FORMS: dict[str, OrtForm] = {
    "qdq_per_channel": OrtForm(qdq=True, per_channel=True, float_stem=False),
    "qdq_per_tensor": OrtForm(qdq=True, per_channel=False, float_stem=False),
    "qoperator": OrtForm(qdq=False, per_channel=True, float_stem=False),
    "qdq_mixed": OrtForm(qdq=True, per_channel=True, float_stem=True),
}
ORT_TINY = TFLITE_INT8          # the same networks, from their float ONNX (same Keras weights)
ORT_BIG = ("resnet18", "mobilenetv2")  # torch zoo, 224x224: slow tests only
ORT_NETWORKS = ORT_TINY + ORT_BIG
CALIBRATION_SEED = 1701
CALIBRATION_SAMPLES = {"resnet18": 8, "mobilenetv2": 8}  # default 32: the big ones calibrate on fewer
ORT_RECIPE = "ptq-minmax-s8s8-v1"  # bump when the recipe below changes


def float_source(name: str) -> Path:
    """The float ONNX that onnxruntime quantises for network `name`."""
    if name == "mobilenet_v2_035":
        return INT8_DIR / "mobilenet_v2_035.float.onnx"
    if name in ORT_TINY:
        return FIXTURE_DIR / f"{name}_tf.onnx"
    if name in ORT_BIG:
        return ensure_model(name)  # exported by torch on first use
    raise ValueError(f"{name!r} has no onnxruntime int8 variant; networks: {', '.join(ORT_NETWORKS)}")


def calibration_inputs(model_path: Path, count: int) -> Iterator[dict[str, np.ndarray]]:
    from tests.zoo.reference import input_name, input_shape

    rng = np.random.default_rng(CALIBRATION_SEED)
    name, shape = input_name(model_path), input_shape(model_path)
    for _ in range(count):
        yield {name: rng.standard_normal(shape).astype(np.float32)}


def ort_int8(name: str, form: str) -> Path:
    """The int8 ONNX of network `name` made by onnxruntime's static quantisation in `form` (cached)."""
    if form not in ORT_FORMS:
        raise ValueError(f"unknown quantisation form {form!r}; forms: {', '.join(ORT_FORMS)}")
    import onnxruntime

    source = float_source(name)
    key = hashlib.sha256(b"\0".join([source.read_bytes(), form.encode(), ORT_RECIPE.encode(),
                                     onnxruntime.__version__.encode()])).hexdigest()[:12]
    path = zoo_dir() / "int8" / f"{name}.{form}.{key}.onnx"
    if path.is_file():
        return path
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):  # parallel test workers quantise each model once
        if not path.is_file():
            _quantize(source, form, CALIBRATION_SAMPLES.get(name, 32), path)
    return path


def _quantize(source: Path, form: str, samples: int, path: Path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no types
        def __init__(self) -> None:
            self.feeds = calibration_inputs(source, samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    import onnx

    recipe = ORT_FORMS[form]
    work = path.with_suffix(f".{os.getpid()}")
    prepared, quantized = work.with_suffix(".pre.onnx"), work.with_suffix(".q.onnx")
    try:
        # ORT's recommended pre-processing: shape inference and its basic graph optimisations, which fold the
        # float model's BatchNorm (or tf2onnx's Mul/Add) into the convolutions before the scales are chosen.
        quant_pre_process(str(source), str(prepared))
        convs = [n.name for n in onnx.load(str(prepared), load_external_data=False).graph.node if n.op_type == "Conv"]
        quantize_static(str(prepared), str(quantized), Reader(),
                        quant_format=QuantFormat.QDQ if recipe.qdq else QuantFormat.QOperator,
                        per_channel=recipe.per_channel, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=convs[:1] if recipe.float_stem else None)
        os.replace(quantized, path)  # a concurrent reader sees no file or the whole file
    finally:
        for leftover in (prepared, quantized):
            leftover.unlink(missing_ok=True)


__all__ = ["INT8_DIR", "ORT_BIG", "ORT_FORMS", "ORT_NETWORKS", "ORT_TINY", "TFLITE_INT8", "OrtForm", "TfliteFixture",
           "float_source", "ort_int8", "reference_inputs", "tf_python", "tflite_fixture"]
