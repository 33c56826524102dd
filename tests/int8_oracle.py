"""The int8 oracle (issue 17): what a quantised network's outputs may be, and the asserts tests make with it.

There is no single right answer for an int8 network run from ONNX: ONNX Runtime rounds differently from TensorFlow
Lite, and disagrees with itself with graph optimisations on and off (its fused QDQ kernels requantise once where the
unfused graph dequantises, computes in float and quantises again). So the oracle is a range per output element, the
`Envelope`: from the lowest to the highest value computed by ORT with optimisations on, ORT with them off, and
TFLite's reference kernels where the network came from a .tflite. An implementation passes when every output is
within one step of that range: one unit for an integer output, the output's quantisation step (the scale of the
DequantizeLinear that makes it) for a float one. Against TFLite's reference alone the test is bit-exactness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

ORT_OPTIMIZED = "onnxruntime (optimisations on)"
ORT_UNOPTIMIZED = "onnxruntime (optimisations off)"
TFLITE_REFERENCE = "tflite reference kernels"
TFLITE_ARITHMETIC = "tflite arithmetic (tests/q8_interpreter.py)"  # where no .tflite exists: the NumPy port

# Ops that move or relabel elements without changing a value: an output's step is that of the DequantizeLinear
# behind them.
_VALUE_PRESERVING = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity"})
# A dequantised float output is (q - zero point) * scale rounded to float32, ours and ORT's alike: allow that
# rounding (a few float32 ulps of the values compared), no more. Relative to the step it grows with the value:
# ResNet-18's logits near 2.1 with a step of 0.025 are one unit apart at 1.00001 steps.
_FLOAT_SLACK = 1e-6
_FLOAT32_ULPS = 4 * float(np.finfo(np.float32).eps)

Feeds = np.ndarray | Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Envelope:
    """The range [lo, hi] one output may take, element by element, and the tolerance step around it."""

    output: str
    lo: np.ndarray
    hi: np.ndarray
    step: float        # 1 for an integer output; the quantisation scale of a float one
    sources: tuple[str, ...]


def _feeds(session: ort.InferenceSession, x: Feeds) -> dict[str, np.ndarray]:
    if isinstance(x, np.ndarray):
        (only,) = session.get_inputs()
        return {only.name: x}
    return dict(x)


def run_onnxruntime(model_path: Path | str, x: Feeds, optimized: bool) -> list[np.ndarray]:
    """Every output of the model for `x` (an array for a one-input model, else name -> array), ORT on one thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    return [np.asarray(y) for y in session.run(None, _feeds(session, x))]


def _constant(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def output_steps(model_path: Path | str) -> list[float]:
    """Per graph output, the oracle's step: 1 for an integer output, the scale of the (per-tensor)
    DequantizeLinear behind a float output. ValueError when a float output is not a dequantised tensor."""
    model = onnx.load(str(model_path))
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    steps: list[float] = []
    for output in graph.output:
        if output.type.tensor_type.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
            steps.append(1.0)
            continue
        node = producer.get(output.name)
        while node is not None and node.op_type in _VALUE_PRESERVING:
            node = producer.get(node.input[0])
        scale = _constant(graph, node.input[1]) if node is not None and node.op_type == "DequantizeLinear" else None
        if scale is None or scale.size != 1:
            raise ValueError(f"{model_path}: float output {output.name!r} does not come from a per-tensor "
                             "DequantizeLinear, so it has no quantisation step: pass the step explicitly")
        steps.append(float(scale.reshape(())))
    return steps


def envelope(model_path: Path | str, x: Feeds, tflite_outputs: Sequence[np.ndarray] | None = None,
             steps: Sequence[float] | None = None) -> list[Envelope]:
    """The oracle's range for every output of the model on input `x`: ORT with optimisations on and off, and
    TFLite's reference outputs for the same input when given (one array per output, in the graph's order)."""
    runs = {ORT_OPTIMIZED: run_onnxruntime(model_path, x, optimized=True),
            ORT_UNOPTIMIZED: run_onnxruntime(model_path, x, optimized=False)}
    if tflite_outputs is not None:
        runs[TFLITE_REFERENCE] = [np.asarray(y) for y in tflite_outputs]
    names = [o.name for o in onnx.load(str(model_path), load_external_data=False).graph.output]
    steps = list(steps) if steps is not None else output_steps(model_path)
    envelopes = []
    for i, (name, step) in enumerate(zip(names, steps, strict=True)):
        values = [run[i] for run in runs.values()]
        shapes = {v.shape for v in values}
        if len(shapes) != 1:
            raise ValueError(f"output {name!r}: the sources disagree on its shape: {sorted(shapes)}")
        stacked = np.stack([v.astype(np.float64) for v in values])  # int8 and float32 are exact in float64
        envelopes.append(Envelope(name, stacked.min(axis=0), stacked.max(axis=0), step, tuple(runs)))
    return envelopes


def steps_outside(ours: np.ndarray, env: Envelope) -> np.ndarray:
    """How many steps each element of `ours` lies outside [lo, hi] (0 inside), computed in float64 so int8
    values cannot wrap."""
    values = np.asarray(ours).astype(np.float64)
    if values.shape != env.lo.shape:
        raise AssertionError(f"output {env.output!r}: shape {values.shape}, expected {env.lo.shape}")
    outside: np.ndarray = np.maximum(np.maximum(env.lo - values, values - env.hi), 0.0) / env.step
    return outside


def assert_within(ours: Sequence[np.ndarray], envelopes: Sequence[Envelope], steps: float = 1.0) -> None:
    """Every element of every output within `steps` (the issue's rule: one) of its envelope; the message names the
    worst element."""
    if len(ours) != len(envelopes):
        raise AssertionError(f"{len(ours)} outputs, the model has {len(envelopes)}")
    for values, env in zip(ours, envelopes):
        outside = steps_outside(values, env)
        magnitude = np.maximum(np.abs(np.asarray(values).astype(np.float64)), np.maximum(np.abs(env.lo),
                                                                                        np.abs(env.hi)))
        rounding = magnitude * _FLOAT32_ULPS / env.step  # 0 in effect for an integer output
        bad = outside > steps + _FLOAT_SLACK + rounding
        if bad.any():
            worst = np.unravel_index(int(np.argmax(outside)), outside.shape)
            raise AssertionError(
                f"output {env.output!r}: {int(bad.sum())} of {bad.size} elements more than "
                f"{'one step' if steps == 1 else f'{steps:g} steps'} ({env.step:g}) "
                f"outside the range of {', '.join(env.sources)}; worst at {tuple(int(i) for i in worst)}: "
                f"{np.asarray(values)[worst]} vs [{env.lo[worst]:g}, {env.hi[worst]:g}], "
                f"{float(outside[worst]):.3g} steps out")


def assert_matches(model_path: Path | str, x: Feeds, ours: Sequence[np.ndarray],
                   tflite_outputs: Sequence[np.ndarray] | None = None) -> None:
    """The issue's numerical test: `ours` within one step of what ORT (on, off) and TFLite's reference span."""
    assert_within(ours, envelope(model_path, x, tflite_outputs))


def assert_bit_exact(ours: np.ndarray, reference: np.ndarray) -> None:
    """`ours` equal to TFLite's reference in dtype, shape and every element."""
    ours, reference = np.asarray(ours), np.asarray(reference)
    if ours.dtype != reference.dtype or ours.shape != reference.shape:
        raise AssertionError(f"{ours.dtype}{list(ours.shape)} vs the reference's {reference.dtype}"
                             f"{list(reference.shape)}")
    differ = ours != reference
    if differ.any():
        first = np.unravel_index(int(np.argmax(differ)), differ.shape)
        diff = np.abs(ours.astype(np.int64) - reference.astype(np.int64)) if ours.dtype.kind in "iu" else \
            np.abs(ours.astype(np.float64) - reference.astype(np.float64))
        raise AssertionError(f"{int(differ.sum())} of {differ.size} elements differ from the reference (by up to "
                             f"{diff.max():g}); first at {tuple(int(i) for i in first)}: {ours[first]} vs "
                             f"{reference[first]}")


def disagreement(a: np.ndarray, b: np.ndarray, step: float = 1.0) -> float:
    """The largest difference between two runs' outputs, in steps (units for int8)."""
    return float(np.max(np.abs(np.asarray(a).astype(np.float64) - np.asarray(b).astype(np.float64)))) / step
