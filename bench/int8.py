"""int8 networks: arena against TensorFlow Lite Micro's, untiled and with fused tiling; latency of ours int8 vs ONNX
Runtime int8 vs ours float, one thread, side by side in one run.

    python bench/int8.py [--runs N] [--rounds N] [--networks NAME ...] [--arena-only]

Arena (section "int8-arena"): the four MLPerf Tiny networks as TensorFlow quantised them (tests/fixtures/int8/: int8
input and output, as TFLM runs them), built with objective "memory" untiled and with `tiling = true`, costs from the
performance model (the untiled smallest arena does not depend on them; a fused group's workspace does, through the
primitive each member runs, picked by cost). TFLM's head is computed from the same .tflite
(tests/zoo/tflm_arena.py, a port of its planner; it reproduces issue 17's figures), its tail (the runtime's own
bookkeeping) is the issue's figure. Ours is the whole arena of the emitted program, input and output included,
without bookkeeping (there is none: the plan is fixed at build time). Every plan's outputs on the fixtures'
reference inputs are checked bit for bit against TFLite's reference kernels before its figure is written.

Latency (section "int8"): each network's float ONNX quantised by onnxruntime.quantization (QDQ, per-channel int8
weights, int8 activations, seeded calibration: tests/int8_models.py); the int8 model built with the default latency
objective and `costs = "profile"`, the float model likewise, every output checked against ONNX Runtime (within one
output step of the range ORT with optimisations on and off and TFLite's arithmetic span), then the two programs
and ORT timed in interleaved rounds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import make, median, record, table, tasobuild  # noqa: E402
from peers import median_ms, ort_peer  # noqa: E402
from q8_kernel_ab import kernel_ab_block  # noqa: E402

from tasobuild.importer import import_onnx  # noqa: E402
from tests import q8_interpreter  # noqa: E402
from tests.e2e import run_binary  # noqa: E402
from tests.int8_models import assert_within_range, ort_outputs, quantise  # noqa: E402
from tests.int8_oracle import assert_bit_exact  # noqa: E402
from tests.zoo.int8 import TFLITE_INT8, float_source, tflite_fixture  # noqa: E402
from tests.zoo.tflm_arena import tflm_arena_head  # noqa: E402

# TFLM's int8 arena with its runtime's own bookkeeping (tail), from issue 17 (the head is computed from the .tflite).
TFLM_WITH_TAIL = {"ds_cnn": 24_224, "resnet8": 55_936, "mobilenet_v1_vww": 103_568, "mobilenet_v2_035": 210_224}
NETWORKS = TFLITE_INT8

SPEC = """[project]
name = "net"

[network]
onnx = "{onnx}"

[target]
name = "host"

[constraints]
memory = "4 GiB"
{objective}
[optimizer]
costs = "{costs}"
{tiling}
[build]
out = "out"
"""


def build(model: Path, folder: Path, objective: str = "", costs: str = "profile", tiling: bool = False
          ) -> tuple[dict, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "taso.toml"
    spec.write_text(SPEC.format(onnx=model.resolve(), objective=objective, costs=costs,
                                tiling="tiling = true\n" if tiling else ""))
    report = json.loads(tasobuild("build", "-c", str(spec), "--json").stdout)
    make(folder / "out")
    return report, folder / "out" / "net_main"


def bench_binary(binary: Path, x: np.ndarray, workdir: Path, runs: int) -> float:
    _, ms = run_binary(binary, x, workdir, bench=runs)
    assert ms is not None
    return ms


MEMORY = 'objective = "memory"\n'


def arena_row(name: str, work: Path) -> list[str]:
    """One network's arenas: ours untiled and tiled (each checked bit-exact against TFLite's reference), the
    live-set bound, TFLM's head and tail, ours float (its float ONNX, untiled)."""
    fixture = tflite_fixture(name)
    reports = {}
    for tiled in (False, True):
        folder = work / name / ("int8_tiled" if tiled else "int8_untiled")
        report, binary = build(fixture.onnx, folder, MEMORY, costs="model", tiling=tiled)
        for q, reference in zip(fixture.inputs, fixture.outputs):
            x = ((q.astype(np.float32) - fixture.input_zero_point) * np.float32(fixture.input_scale))
            y, _ = run_binary(binary, x.astype(np.float32), folder)
            got = np.round(y / np.float32(fixture.output_scale)) + fixture.output_zero_point
            assert_bit_exact(got.astype(np.int8).reshape(reference.shape), reference)
        reports[tiled] = report
    float_report, _ = build(float_source(name), work / name / "float_untiled", MEMORY, costs="model")
    head, tail = tflm_arena_head(fixture.tflite), TFLM_WITH_TAIL[name]
    untiled, tiled = reports[False]["arena_bytes"], reports[True]["arena_bytes"]
    groups = len({n["tiling"] for n in reports[True]["nodes"] if n["tiling"]})
    return [name, f"{untiled:,}", f"{tiled:,}", str(groups), f"{reports[False]['lower_bound_bytes']:,}", f"{head:,}",
            f"{untiled / head:.2f}", f"{tiled / head:.2f}", f"{tail:,}", f"{tiled / tail:.2f}",
            f"{float_report['arena_bytes']:,}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed inferences per round (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians of them (default 3)")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--arena-only", action="store_true", help="the arena table only (no profiling, no timing)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        arena_rows = [arena_row(name, work) for name in args.networks]
        record("int8-arena", "int8 networks: arena vs TFLM, untiled and with fused tiling",
               "python bench/int8.py --arena-only", ARENA_NOTE + "\n\n" + table(
                   ["network", "ours untiled", "ours tiled", "fused groups", "live-set bound (untiled)",
                    "TFLM head", "untiled/head", "tiled/head", "TFLM with tail", "tiled/tail", "ours float"],
                   arena_rows) + "\n\n" + ARENA_AFTER)
        if not args.arena_only:
            latency(args, work)


ARENA_NOTE = (
    "Bytes. The TF-quantised MLPerf Tiny networks (int8 input and output, as TFLM runs them), objective \"memory\", "
    "costs from the performance model (which primitive a fused group's member runs, and so its workspace, is "
    "picked by cost); \"tiled\": `tiling = true`. Ours includes the input and output and has no "
    "bookkeeping; TFLM head: its planner on the same .tflite (tests/zoo/tflm_arena.py), with tail: issue 17's "
    "figure. \"ours float\": the float network the int8 one was quantised from, untiled. Every int8 plan's outputs "
    "were checked bit for bit against TFLite's reference kernels.")
ARENA_AFTER = (
    "Fused tiling of int8 layers is row tiling (bands of HWC convolutions with int8 windows, "
    "tasobuild/tiling/rows.py) and patches (tasobuild/tiling/patches.py, halos recomputed; by kind: the "
    "\"int8 patch-based inference\" section); channel slices (FDT) add partial sums, which int8 layers requantised "
    "per slice cannot, so they stay float-only. A chain whose input only it reads may write its output over that input "
    "(memory.Overlap), which takes DS-CNN, MobileNetV1 and MobileNetV2 below the untiled live-set bound; ResNet-8's "
    "chains' inputs are also read by the residual adds, so tiling gains nothing there (a group may still be chosen "
    "where it ties: which plan of equal arena wins depends on the costs).")


def latency(args: argparse.Namespace, work: Path) -> None:
    latency_rows = []
    for name in args.networks:
        float_model = float_source(name)
        int8_model = quantise(float_model, work / f"{name}_int8.onnx")
        fastest, int8_binary = build(int8_model, work / name / "int8")
        _, float_binary = build(float_model, work / name / "float")
        ort = ort_peer(int8_model, threads=1)
        graph = import_onnx(int8_model)
        x = np.random.default_rng(0).standard_normal(graph.onnx_input_shape).astype(np.float32)
        ours, _ = run_binary(int8_binary, x, work)
        # the outputs are the softmax of dequantised logits: one logit step moves them by at most step / 4; the
        # range: ORT (optimisations on, off) and TFLite's arithmetic (tests/q8_interpreter.py), as the tests hold it
        step = next(graph.quant_of(n.inputs[0]).scale for n in graph.nodes if n.op == "dequantize")
        assert_within_range(ours, [*ort_outputs(int8_model, x), q8_interpreter.run(graph, x).reshape(-1)], step)
        times: dict[str, list[float]] = {"int8": [], "ort": [], "float": []}
        for _ in range(args.rounds):
            times["int8"].append(bench_binary(int8_binary, x, work, args.runs))
            times["ort"].append(median_ms(ort, x, args.runs))
            times["float"].append(bench_binary(float_binary, x, work, args.runs))
        ms = {k: median(v) for k, v in times.items()}
        latency_rows.append([name, f"{ms['int8']:.3f}", f"{ms['ort']:.3f}", f"{ms['float']:.3f}",
                             f"{ms['ort'] / ms['int8']:.2f}", f"{ms['float'] / ms['int8']:.2f}",
                             f"{fastest['arena_bytes']:,}"])
        print(name, ms, file=sys.stderr)
    body = (
        f"Latency (ms, medians of {args.rounds} interleaved rounds of {args.runs} runs, one thread; ours: the "
        "default latency objective; the networks quantised by onnxruntime.quantization from their float ONNX, float "
        "input and output)\n\n"
        + table(["network", "ours int8", "ORT int8", "ours float", "ORT/ours int8", "float/int8",
                 "int8 arena (fastest plan)"], latency_rows)
        + "\n\nOur int8 GEMM-like kernels (im2row, 1x1, direct HWC, fully connected) run their inner products over "
          "contiguous int8 weights [M][K] through tb_q8_dot.h, AVX-512 VNNI on this machine (AVX2 or portable C "
          "elsewhere), and requantise in vectorised loops; the kernel A/B below (bench/q8_kernel_ab.py) compares "
          "them with the plain C loops of 1c5fb8e.\n\n" + kernel_ab_block()
        + "\n\nThe arena against TFLM, untiled and tiled: the section \"int8 networks: arena vs TFLM\".")
    record("int8", "int8 networks: latency vs ONNX Runtime int8 and ours float", "python bench/int8.py", body)


if __name__ == "__main__":
    main()
