"""The int8 fixtures made by TensorFlow: `python -m tests.zoo.int8_tflite [--check]`, in the TF venv.

For each MLPerf Tiny network (the Keras models of tests/zoo/keras_models.py, same seeded weights as the float
`*_tf` fixtures) this writes, under tests/fixtures/int8/:
  NAME.tflite        TFLiteConverter full-integer post-training quantisation: int8 weights (per-channel for convs),
                     int8 activations, int8 input and output; calibrated on seeded standard-normal inputs
  NAME.onnx          that .tflite converted by tf2onnx (QDQ form: QuantizeLinear/DequantizeLinear around float ops,
                     int8 graph input and output), names canonicalised
  NAME.ref.npz       `inputs` (seeded standard-normal floats quantised with the input's scale and zero point) and
                     `outputs`: what the TFLite interpreter computes with its REFERENCE kernels
                     (OpResolverType.BUILTIN_REF: TensorFlow Lite Micro's arithmetic; no XNNPACK, no optimised ops);
                     and the input's and output's `*_scale` and `*_zero_point`
and mobilenet_v2_035.float.onnx, the float network the onnxruntime-quantised variants start from (the other three
have theirs in tests/fixtures/models/).

`--check` writes nothing: it recomputes every reference output from the committed .tflite and compares it, bit for
bit, with the committed .ref.npz (exit 1 on any difference). `--layers` writes nothing either: it prints, op by op,
how far ONNX Runtime's int8 outputs are from the reference kernels' (bench/int8_reference.py records it).
The versions: tensorflow-cpu 2.21.0 (Keras 3.15.1), tf2onnx 1.17.0:
    python -m venv /tmp/venv-tf && /tmp/venv-tf/bin/pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0
    /tmp/venv-tf/bin/python -m tests.zoo.int8_tflite
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import onnx  # noqa: E402
import onnx.numpy_helper  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402

from tests.zoo.canonical import canonical_names, stable_names  # noqa: E402
from tests.zoo.int8 import INT8_DIR, TFLITE_INT8, reference_inputs  # noqa: E402
from tests.zoo.keras_models import OPSET, build_keras_model, export_keras  # noqa: E402

CALIBRATION_SAMPLES = 32
CALIBRATION_SEED = 170  # issue 17


def quantize(name: str) -> bytes:
    """The int8 .tflite of zoo network `name` (full-integer PTQ, int8 in and out)."""
    model = build_keras_model(f"{name}_tf")
    shape = (1, *model.input_shape[1:])

    def representative():  # type: ignore[no-untyped-def]
        rng = np.random.default_rng(CALIBRATION_SEED)
        for _ in range(CALIBRATION_SAMPLES):
            yield [rng.standard_normal(shape).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def to_onnx(tflite_path: Path) -> bytes:
    """tf2onnx's QDQ ONNX of an int8 .tflite, its run-dependent names replaced by positional ones, and the fully
    connected layers' biases that tf2onnx dropped put back (`restore_fc_bias`)."""
    proto, _ = tf2onnx.convert.from_tflite(str(tflite_path), opset=OPSET)
    return restore_fc_bias(stable_names(canonical_names(proto)), tflite_path).SerializeToString()


def restore_fc_bias(model: onnx.ModelProto, tflite_path: Path) -> onnx.ModelProto:
    """tf2onnx 1.17 converts an int8 FULLY_CONNECTED whose input it flattens into a MatMul straight into the output's
    QuantizeLinear: the bias is lost, and ONNX Runtime and every implementation of the ONNX model then compute
    another network than the .tflite (DS-CNN's logits 23 units away from TFLite's reference). Put each lost bias back
    as TFLite holds it: Add(MatMul, DequantizeLinear(int32 bias, its per-channel scales)), in the order the
    FULLY_CONNECTED ops run; the MatMuls followed by an Add (or the Gemms, which keep their bias) are left alone."""
    interpreter = tf.lite.Interpreter(model_path=str(tflite_path))
    interpreter.allocate_tensors()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    biases = [int(op["inputs"][2]) for op in interpreter._get_ops_details()
              if op["op_name"] == "FULLY_CONNECTED" and len(op["inputs"]) > 2 and op["inputs"][2] >= 0]
    graph = model.graph
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    if len(matmuls) != len(biases):
        return model
    for k, (matmul, bias) in enumerate(zip(matmuls, biases)):
        (reader,) = readers[matmul.output[0]]
        if reader.op_type != "QuantizeLinear":
            continue  # an Add follows: the bias is there
        values = interpreter.get_tensor(bias).astype(np.int32)
        scales = details[bias]["quantization_parameters"]["scales"].astype(np.float32)
        names = [f"fc_bias_{k}_{what}" for what in ("q", "scale", "zero_point", "dequantized", "added")]
        graph.initializer.extend([onnx.numpy_helper.from_array(values, names[0]),
                                  onnx.numpy_helper.from_array(scales, names[1]),
                                  onnx.numpy_helper.from_array(np.zeros_like(values), names[2])])
        at = list(graph.node).index(matmul) + 1
        graph.node.insert(at, onnx.helper.make_node("DequantizeLinear", names[:3], [names[3]], name=names[3], axis=0))
        graph.node.insert(at + 1, onnx.helper.make_node("Add", [matmul.output[0], names[3]], [names[4]],
                                                        name=names[4]))
        reader.input[0] = names[4]
    return model


def tflite_reference(tflite: bytes, inputs: np.ndarray) -> np.ndarray:
    """The outputs of the TFLite interpreter with the reference kernels, one row per input row."""
    interpreter = tf.lite.Interpreter(model_content=tflite, num_threads=1,
                                      experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    (given,), (wanted,) = interpreter.get_input_details(), interpreter.get_output_details()
    rows = []
    for x in inputs:
        interpreter.set_tensor(given["index"], x)
        interpreter.invoke()
        rows.append(interpreter.get_tensor(wanted["index"]).copy())
    return np.stack(rows)


def quantization(tflite: bytes) -> dict[str, np.ndarray]:
    """The input's and the output's shape, scale and zero point, as stored beside the reference outputs."""
    interpreter = tf.lite.Interpreter(model_content=tflite)
    (given,), (wanted,) = interpreter.get_input_details(), interpreter.get_output_details()
    return {"input_shape": np.array(given["shape"], np.int64),
            "input_scale": np.float32(given["quantization"][0]), "input_zero_point": np.int64(given["quantization"][1]),
            "output_scale": np.float32(wanted["quantization"][0]),
            "output_zero_point": np.int64(wanted["quantization"][1])}


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # uncompressed: np.savez_compressed stamps the zip entries with the time
    return buffer.getvalue()


def write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    print(f"{path.relative_to(INT8_DIR.parents[2])}: {len(data):,} bytes", file=sys.stderr)


def generate() -> None:
    INT8_DIR.mkdir(parents=True, exist_ok=True)
    for name in TFLITE_INT8:
        tflite = quantize(name)
        tflite_path = INT8_DIR / f"{name}.tflite"
        write(tflite_path, tflite)
        write(INT8_DIR / f"{name}.onnx", to_onnx(tflite_path))
        quant = quantization(tflite)
        inputs = reference_inputs(tuple(int(d) for d in quant["input_shape"]), float(quant["input_scale"]),
                                  int(quant["input_zero_point"]))
        write(INT8_DIR / f"{name}.ref.npz", npz_bytes(inputs=inputs, outputs=tflite_reference(tflite, inputs), **quant))
    float_model = onnx.load_from_string(export_keras("mobilenet_v2_035_tf"))
    write(INT8_DIR / "mobilenet_v2_035.float.onnx", stable_names(float_model).SerializeToString())


def check() -> int:
    """0 when the committed reference outputs are what the reference kernels compute now, else 1."""
    failures = 0
    for name in TFLITE_INT8:
        with np.load(INT8_DIR / f"{name}.ref.npz") as ref:
            inputs, outputs = ref["inputs"], ref["outputs"]
        again = tflite_reference((INT8_DIR / f"{name}.tflite").read_bytes(), inputs)
        same = again.dtype == outputs.dtype and again.shape == outputs.shape and np.array_equal(again, outputs)
        failures += not same
        print(f"{name}: {'reproduced' if same else 'DIFFERS'} ({outputs.shape[0]} inputs)")
    return 1 if failures else 0


def layer_divergence(name: str) -> tuple[list[str], list[int | None], float]:
    """Where ONNX Runtime (optimisations off) and TFLite's reference kernels part, op by op, on the first reference
    input: per TFLite op (in order), its name and the largest difference of its int8 output in units (None where
    tf2onnx made no QuantizeLinear of that name: an op it converted into several, as MEAN); and the fraction of the
    first op's output elements that differ.

    tf2onnx keeps TFLite's tensor names until `stable_names`, so a fresh conversion (same graph as the committed
    one) pairs each TFLite op's output with the QuantizeLinear that makes it; those become extra graph outputs.
    Optimisations on would fuse differently with the extra outputs, so only the unoptimised run is compared."""
    import onnxruntime as ort

    tflite_path = INT8_DIR / f"{name}.tflite"
    with np.load(INT8_DIR / f"{name}.ref.npz") as ref:
        x = ref["inputs"][0]
    interpreter = tf.lite.Interpreter(model_path=str(tflite_path), experimental_preserve_all_tensors=True,
                                      experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    ops = [(op["op_name"], names[op["outputs"][0]], interpreter.get_tensor(op["outputs"][0]))
           for op in interpreter._get_ops_details()]
    proto, _ = tf2onnx.convert.from_tflite(str(tflite_path), opset=OPSET)
    proto = restore_fc_bias(proto, tflite_path)  # as the committed fixture has it
    quantized = {n.output[0] for n in proto.graph.node if n.op_type == "QuantizeLinear"}
    known = {o.name for o in proto.graph.output}
    for _, tensor, _ in ops:
        if tensor in quantized and tensor not in known:
            proto.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.INT8, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {session.get_inputs()[0].name: x})))
    units: list[int | None] = []
    first_fraction = 0.0
    for i, (_, tensor, expected) in enumerate(ops):
        if tensor not in got:
            units.append(None)
            continue
        ours = got[tensor]
        n, h, w, c = expected.shape if expected.ndim == 4 else (0, 0, 0, 0)
        if ours.ndim == 4 and ours.shape == (n, c, h, w):  # tf2onnx computes in NCHW (also when C = H = W)
            ours = ours.transpose(0, 2, 3, 1)
        diff = np.abs(ours.reshape(expected.shape).astype(np.int64) - expected.astype(np.int64))
        units.append(int(diff.max()))
        if i == 0:
            first_fraction = float(np.count_nonzero(diff)) / diff.size
    return [op for op, _, _ in ops], units, first_fraction


def layers() -> None:
    """A markdown table of `layer_divergence` for every network."""
    print("| network | ops | first op: elements differing | max units per op, in order |")
    print("|---|---|---|---|")
    for name in TFLITE_INT8:
        ops, units, first = layer_divergence(name)
        print(f"| {name} | {len(ops)} | {first:.2%} | {' '.join('–' if u is None else str(u) for u in units)} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.zoo.int8_tflite", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="recompute the reference outputs, compare, write nothing")
    parser.add_argument("--layers", action="store_true",
                        help="print where ONNX Runtime and the reference kernels part, op by op; write nothing")
    args = parser.parse_args(argv)
    if args.layers:
        layers()
        return 0
    if args.check:
        return check()
    generate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
