"""End-to-end helpers shared by tests and benchmarks: write a spec, run the real CLI, compile, run, compare."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPEC_TEMPLATE = """\
[project]
name = "{name}"

[network]
onnx = "{onnx}"

[target]
name = "host"

[constraints]
memory = "{memory}"

[optimizer]
costs = "profile"
{extra}
[build]
out = "out"
"""


def allow_all_but(prefix: str) -> str:
    """An `[optimizer] primitives` allow-list line with every primitive whose name does not start with `prefix`."""
    from tasobuild.primitives.registry import library

    names = sorted(p.name for p in library() if not p.name.startswith(prefix))
    return "primitives = [" + ", ".join(f'"{n}"' for n in names) + "]\n"


# On DS-CNN the register-blocked direct convs are both the fastest and workspace-free, so with them the fastest plan
# is also the smallest: tests that need a memory-latency trade-off (or a GEMM-based layer) leave them out.
WITH_TRADE_OFF = allow_all_but("conv_direct_blocked_")


def save_onnx(path: Path, nodes: Sequence[object], x_shape: Sequence[int], y_shape: Sequence[int],
              weights: dict[str, np.ndarray]) -> Path:
    """A one-input ("x"), one-output ("y") float32 ONNX model of `nodes` with these initializers, opset 13."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(nodes, path.stem, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                              [numpy_helper.from_array(v, k) for k, v in sorted(weights.items())])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


def inverted_residual_model(path: Path) -> Path:
    """x (8x4x4) -> 1x1 expand to 96, ReLU -> 3x3 depthwise, ReLU -> 1x1 project to 8 -> + x. At 4 rows a 3x3 band
    would keep more rows than it advances: only channel slices can split the 96-channel tensors."""
    from onnx import helper

    rng = np.random.default_rng(3)

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    weights = {"w1": rand(96, 8, 1, 1), "b1": rand(96), "w2": rand(96, 1, 3, 3), "b2": rand(96),
               "w3": rand(8, 96, 1, 1), "b3": rand(8)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["e"], name="expand"),
             helper.make_node("Relu", ["e"], ["er"]),
             helper.make_node("Conv", ["er", "w2", "b2"], ["d"], name="depthwise", group=96, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["d"], ["dr"]),
             helper.make_node("Conv", ["dr", "w3", "b3"], ["p"], name="project"),
             helper.make_node("Add", ["p", "x"], ["y"])]
    return save_onnx(path, nodes, [1, 8, 4, 4], [1, 8, 4, 4], weights)


def write_spec(directory: Path, model: Path, name: str = "net", memory: str = "2 GiB", extra: str = "") -> Path:
    spec = directory / "taso.toml"
    spec.write_text(SPEC_TEMPLATE.format(name=name, onnx=os.path.relpath(model, directory), memory=memory,
                                         extra=extra))
    return spec


def write_target_spec(directory: Path, model: Path, target: str, costs: str = "model", name: str = "net",
                      memory: str = "2 GiB", extra: str = "") -> Path:
    """write_spec for another target and cost source: a cross target (profile = false) needs "model" or "auto"."""
    spec = write_spec(directory, model, name=name, memory=memory, extra=extra)
    text = spec.read_text()
    retargeted = (text.replace('[target]\nname = "host"', f'[target]\nname = "{target}"', 1)
                  .replace('costs = "profile"', f'costs = "{costs}"', 1))
    assert f'[target]\nname = "{target}"' in retargeted and f'costs = "{costs}"' in retargeted, "SPEC_TEMPLATE moved"
    spec.write_text(retargeted)
    return spec


def tasobuild(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "tasobuild", *args], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"tasobuild {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


@dataclass(frozen=True)
class Built:
    out_dir: Path
    report: dict
    binary: Path


def build_and_compile(spec: Path, name: str = "net", *extra_args: str) -> Built:
    report = json.loads(tasobuild("build", "-c", str(spec), "--json", *extra_args).stdout)
    out_dir = spec.parent / "out"
    subprocess.run(["make", "-s", "-j2", "-C", str(out_dir)], check=True, capture_output=True, text=True)
    return Built(out_dir, report, out_dir / f"{name}_main")


def run_binary(binary: Path, x: np.ndarray, workdir: Path, bench: int = 0) -> tuple[np.ndarray, float | None]:
    inp, out = workdir / "in.bin", workdir / "out.bin"
    x.astype("<f4").tofile(inp)
    args = [str(binary), str(inp), str(out)] + (["--bench", str(bench)] if bench else [])
    proc = subprocess.run(args, check=True, capture_output=True, text=True)
    median = None
    for line in proc.stdout.splitlines():
        if line.startswith("median_ms:"):
            median = float(line.split(":")[1])
    return np.fromfile(out, dtype="<f4"), median


def assert_matches(ours: np.ndarray, reference: np.ndarray) -> None:
    reference = reference.reshape(-1).astype(np.float64)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    tolerance = 1e-4 * max(1.0, float(np.max(np.abs(reference))))
    error = float(np.max(np.abs(ours.astype(np.float64) - reference)))
    assert error <= tolerance, f"max abs error {error:.3g} > {tolerance:.3g}"


def wrap_binary(binary: Path, runner: Sequence[str]) -> Path:
    """A script next to `binary` that runs it under `runner` (e.g. ["qemu-aarch64", "-L", sysroot]) with the same
    arguments, so run_binary can run a cross-compiled program unchanged."""
    script = binary.with_name(binary.name + ".wrapped")
    script.write_text(f"#!/bin/sh\nexec {shlex.join([*runner, str(binary)])} \"$@\"\n")
    script.chmod(0o755)
    return script


def make_with(out_dir: Path, extra_cflags: Sequence[str], name: str = "net") -> Path:
    """Build an emitted project with the target's CFLAGS plus `extra_cflags` (sanitizers, -Wall -Werror): a CFLAGS
    given to make replaces the Makefile's, so the Makefile's own value is read and extended. The binary's path."""
    makefile = (out_dir / "Makefile").read_text()
    target_flags = next(line.split("=", 1)[1].strip() for line in makefile.splitlines() if line.startswith("CFLAGS ="))
    cflags = " ".join([target_flags, *extra_cflags])
    proc = subprocess.run(["make", "-s", "-j2", "-C", str(out_dir), f"CFLAGS={cflags}"], capture_output=True,
                          text=True)
    if proc.returncode != 0 or proc.stderr.strip():  # a warning is a failure too: callers pass -Wall
        raise AssertionError(f"make CFLAGS={cflags!r} in {out_dir}: exit {proc.returncode}\n{proc.stderr[-4000:]}")
    return out_dir / f"{name}_main"
