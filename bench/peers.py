"""The runtimes our emitted C is measured against: ONNX Runtime and OpenVINO, each on one thread and on all cores.

A peer is built once per network and then timed in rounds interleaved with our binary, so all see the same machine
state. Each peer's output is kept so the bench can check that it computed what we did (a peer that is fast because
it ran something else would be no peer).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Peer:
    name: str       # "ORT", "OpenVINO"
    threads: int
    run: Runner     # one inference: input array -> first output, flattened

    @property
    def label(self) -> str:
        return f"{self.name} {self.threads}t"


def all_cores() -> int:
    return len(os.sched_getaffinity(0))


def ort_peer(model: Path, threads: int) -> Peer:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return Peer("ORT", threads, lambda x: np.asarray(session.run(None, {name: x})[0]).reshape(-1))


def openvino_peer(model: Path, threads: int) -> Peer | None:
    """OpenVINO's CPU plugin in float32 (no bf16/f16 inference precision, which would compare other arithmetic),
    latency hint, `threads` inference threads; None when openvino is not installed (`pip install ".[bench]"`)."""
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
              "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    compiled = core.compile_model(str(model), "CPU", config)
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        request.infer({0: x})
        return np.asarray(request.get_output_tensor(0).data).reshape(-1).copy()

    return Peer("OpenVINO", threads, run)


def peers(model: Path) -> list[Peer]:
    """ORT and OpenVINO on one thread and, when the machine has more, on all cores."""
    counts = sorted({1, all_cores()})
    found = [ort_peer(model, n) for n in counts]
    found += [p for p in (openvino_peer(model, n) for n in counts) if p is not None]
    return found


def median_ms(peer: Peer, x: np.ndarray, runs: int) -> float:
    """Median ms of `runs` timed inferences (after one untimed run)."""
    peer.run(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        peer.run(x)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def max_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Max abs difference relative to the output's magnitude (the suite's own tolerance is 1e-4 of it)."""
    scale = max(1.0, float(np.max(np.abs(theirs))))
    return float(np.max(np.abs(ours.astype(np.float64) - theirs.astype(np.float64)))) / scale
