"""int8 networks: arena against TensorFlow Lite Micro's, and latency of ours int8 vs ONNX Runtime int8 vs ours
float, one thread, side by side in one run.

    python bench/int8.py [--runs N] [--networks NAME ...]

Each network is a committed float fixture quantised by onnxruntime.quantization (QDQ, per-channel int8 weights,
int8 activations, seeded calibration: tests/int8_models.py). Per network: the int8 model built twice (objective
"memory": the smallest arena; the default latency objective: the fastest plan), again with an int8 input for the
smallest arena, the float model twice (smallest, fastest), every
output checked against ONNX Runtime (within one output step of the range ORT spans with optimisations on and
off), then the three programs and ORT timed in interleaved rounds. TFLM's arenas are the figures of issue 17 (its
int8 activation arena, head; and with its runtime's own bookkeeping, tail); ours is the whole arena of the
emitted program, input and output included, without any bookkeeping (there is none: the plan is fixed at build
time). Fused tiling does not apply to int8 layers yet, so there is no tiled column.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, make, median, record, table, tasobuild  # noqa: E402
from peers import median_ms, ort_peer  # noqa: E402
from q8_kernel_ab import kernel_ab_block  # noqa: E402

from tasobuild.importer import import_onnx  # noqa: E402
from tests.e2e import run_binary  # noqa: E402
from tests.int8_models import assert_within_range, ort_outputs, quantise, with_int8_input  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "models"
# TFLM int8 activation arena (head, with tail) of the MLPerf Tiny models, from issue 17.
TFLM = {"ds_cnn_tf": (16_000, 24_224), "resnet8_tf": (49_152, 55_936), "mobilenet_v1_vww_tf": (73_728, 103_568)}
NETWORKS = tuple(TFLM)

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
costs = "profile"

[build]
out = "out"
"""


def build(model: Path, folder: Path, objective: str = "") -> tuple[dict, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "taso.toml"
    spec.write_text(SPEC.format(onnx=model.resolve(), objective=objective))
    report = json.loads(tasobuild("build", "-c", str(spec), "--json").stdout)
    make(folder / "out")
    return report, folder / "out" / "net_main"


def bench_binary(binary: Path, x: np.ndarray, workdir: Path, runs: int) -> float:
    _, ms = run_binary(binary, x, workdir, bench=runs)
    assert ms is not None
    return ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed inferences per round (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians of them (default 3)")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    args = parser.parse_args()
    arena_rows, latency_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.networks:
            float_model = FIXTURES / f"{name}.onnx"
            int8_model = quantise(float_model, work / f"{name}_int8.onnx")
            smallest, _ = build(int8_model, work / name / "int8_memory", 'objective = "memory"\n')
            # TFLM's models take int8 input: the same model without its input QuantizeLinear (where it has one)
            int8_input = with_int8_input(int8_model, work / f"{name}_int8_input.onnx")
            smallest_int8_input = build(int8_input, work / name / "int8_input_memory", 'objective = "memory"\n')[0] \
                if int8_input else None
            float_smallest, _ = build(float_model, work / name / "float_memory", 'objective = "memory"\n')
            fastest, int8_binary = build(int8_model, work / name / "int8")
            _, float_binary = build(float_model, work / name / "float")
            ort = ort_peer(int8_model, threads=1)
            graph = import_onnx(int8_model)
            x = np.random.default_rng(0).standard_normal(graph.onnx_input_shape).astype(np.float32)
            ours, _ = run_binary(int8_binary, x, work)
            # the outputs are the softmax of dequantised logits: one logit step moves them by at most step / 4
            step = next(graph.quant_of(n.inputs[0]).scale for n in graph.nodes if n.op == "dequantize")
            assert_within_range(ours, ort_outputs(int8_model, x), step)
            times: dict[str, list[float]] = {"int8": [], "ort": [], "float": []}
            for _ in range(args.rounds):
                times["int8"].append(bench_binary(int8_binary, x, work, args.runs))
                times["ort"].append(median_ms(ort, x, args.runs))
                times["float"].append(bench_binary(float_binary, x, work, args.runs))
            ms = {k: median(v) for k, v in times.items()}
            head, tail = TFLM[name]
            best = smallest_int8_input or smallest
            arena_rows.append([name, f"{smallest['arena_bytes']:,}",
                               f"{smallest_int8_input['arena_bytes']:,}" if smallest_int8_input else "-",
                               f"{best['lower_bound_bytes']:,}", f"{head:,}", f"{best['arena_bytes'] / head:.2f}",
                               f"{tail:,}", f"{best['arena_bytes'] / tail:.2f}",
                               f"{float_smallest['arena_bytes']:,}"])
            latency_rows.append([name, f"{ms['int8']:.3f}", f"{ms['ort']:.3f}", f"{ms['float']:.3f}",
                                 f"{ms['ort'] / ms['int8']:.2f}", f"{ms['float'] / ms['int8']:.2f}",
                                 f"{fastest['arena_bytes']:,}"])
            print(name, ms, smallest["arena_bytes"], file=sys.stderr)
    body = (
        "Arena (bytes; ours: objective \"memory\", input and output included; TFLM: issue 17's figures). The QDQ "
        "models take a float32 input and quantise it inside, so their arena holds the float input too; TFLM's "
        "models take int8 input, as the same model does without its input QuantizeLinear (\"int8 input\", where "
        "the input goes straight into one; the ratios and the bound are of that one when it exists)\n\n"
        + table(["network", "ours int8", "ours int8, int8 input", "live-set bound", "TFLM head", "ours/head",
                 "TFLM with tail", "ours/tail", "ours float"], arena_rows)
        + f"\n\nLatency (ms, medians of {args.rounds} interleaved rounds of {args.runs} runs, one thread; ours: the "
          "default latency objective)\n\n"
        + table(["network", "ours int8", "ORT int8", "ours float", "ORT/ours int8", "float/int8",
                 "int8 arena (fastest plan)"], latency_rows)
        + "\n\nOur int8 GEMM-like kernels (im2row, 1x1, direct HWC, fully connected) run their inner products over "
          "contiguous int8 weights [M][K] through tb_q8_dot.h, AVX-512 VNNI on this machine (AVX2 or portable C "
          "elsewhere), and requantise in vectorised loops; the kernel A/B below (bench/q8_kernel_ab.py) compares "
          "them with the plain C loops of 1c5fb8e.\n\n" + kernel_ab_block())
    record("int8", "int8 networks: arena vs TFLM, latency vs ONNX Runtime int8 and ours float",
           "python bench/int8.py", body)


if __name__ == "__main__":
    main()
