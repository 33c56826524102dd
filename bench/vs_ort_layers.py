"""Where the time goes, per layer, against ONNX Runtime and OpenVINO: our program's per-layer times (`tasobuild
profile --plan`) beside ONNX Runtime's per-node kernel times (`SessionOptions.enable_profiling`, one thread) and
OpenVINO's (`PERF_COUNT`, CPU plugin, f32, one thread), same run.

    python bench/vs_ort_layers.py [--networks mobilenetv2 squeezenet11] [--runs 100] [--ratio 1.1]
                                  [--section vs_ort_layers]

ONNX Runtime fuses a conv with its activation (and a residual add) and names the fused node after its last output
(in NCHWc, with "_nchwc" appended); our layers are named after the model node that heads them. So each ORT node is
traced back through the ONNX graph, from the tensor it is named after through the activations and adds fused into
it, to the node that heads it, and paired with our layer of that name (the orders differ: both schedule branches
their own way). OpenVINO names a conv after its ONNX node (plus "/WithoutBiases") and is traced back the same way.
The peers' layout reorders and our layout transforms have no partner; they count in the totals. Lists the paired
layers where ours over the better peer's exceeds --ratio, largest absolute gap (ours - best, ms) first, and the
totals.
Writes BENCHMARKS.md's section --section ("vs_ort_layers").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import record, table, tasobuild

from tests.e2e import write_spec
from tests.zoo import ensure_model

FUSED_INTO_PRODUCER = ("Relu", "Clip", "BatchNormalization", "Add", "Sum", "LeakyRelu", "Sigmoid", "HardSigmoid")


def ort_node_ms(model: Path, runs: int, work: Path) -> list[tuple[str, float]]:
    """ONNX Runtime's nodes in execution order with their median kernel time (ms), one thread, warm-up dropped."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_profiling = True
    options.profile_file_prefix = str(work / "ort")
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal(inp.shape).astype(np.float32)
    for _ in range(runs + 10):
        session.run(None, {inp.name: x})
    events = json.loads(Path(session.end_profiling()).read_text())
    times: dict[str, list[float]] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times.setdefault(e["name"][:-len("_kernel_time")], []).append(e["dur"] / 1000)
    return [(name, statistics.median(t[10:])) for name, t in times.items()]  # dicts keep first-seen order


def ort_heads(model: Path, names: list[str]) -> dict[str, str]:
    """ORT node name -> the name of the ONNX node heading what it ran (a conv, for a conv with fused activations)."""
    import onnx

    nodes = onnx.load(str(model)).graph.node
    by_name = {n.name: n for n in nodes}
    producer = {out: n for n in nodes for out in n.output}
    heads = {}
    for name in names:
        node = by_name.get(name) or producer.get(name.removesuffix("_nchwc"))
        while node is not None and node.op_type in FUSED_INTO_PRODUCER:
            inputs = [producer[i] for i in node.input if i in producer]
            convs = [n for n in inputs if n.op_type not in FUSED_INTO_PRODUCER] or inputs
            node = convs[-1] if convs else None  # an add fused into the later of its producers
        if node is not None:
            heads[name] = node.name
    return heads


def openvino_node_ms(model: Path, runs: int) -> list[tuple[str, float]] | None:
    """OpenVINO's executed nodes (CPU plugin, f32, one thread, PERF_COUNT) with their median time (ms), warm-up
    dropped; a conv is named after its ONNX node plus "/WithoutBiases" (its bias and activation fused in). None when
    openvino is not installed."""
    try:
        import openvino as ov
    except ImportError:
        return None
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY",
              "NUM_STREAMS": 1, "PERF_COUNT": True}
    request = ov.Core().compile_model(str(model), "CPU", config).create_infer_request()
    x = np.random.default_rng(0).standard_normal(tuple(request.get_input_tensor(0).shape)).astype(np.float32)
    times: dict[str, list[float]] = {}
    for run in range(runs + 10):
        request.infer({0: x})
        if run >= 10:
            for info in request.profiling_info:
                if info.status.name == "EXECUTED":
                    times.setdefault(info.node_name, []).append(info.real_time.total_seconds() * 1e3)
    return [(name.removesuffix("/WithoutBiases"), statistics.median(t)) for name, t in times.items()]


def by_head(model: Path, nodes: list[tuple[str, float]]) -> dict[str, float]:
    """A peer's node times summed per ONNX node heading what each ran (its layout reorders have no head)."""
    heads = ort_heads(model, [n for n, _ in nodes])
    summed: dict[str, float] = {}
    for n, ms in nodes:
        if n in heads:
            summed[heads[n]] = summed.get(heads[n], 0.0) + ms
    return summed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="*", default=["mobilenetv2", "squeezenet11"])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--ratio", type=float, default=1.1, help="list layers where ours/best peer exceeds this")
    parser.add_argument("--section", default="vs_ort_layers", help="the BENCHMARKS.md section to write")
    args = parser.parse_args()
    rows, totals = [], []
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks:
            work = Path(tmp) / name
            work.mkdir()
            model = ensure_model(name)
            spec = write_spec(work, model, memory="4 GiB")
            spec.write_text(spec.read_text().replace('costs = "profile"', 'costs = "auto"', 1))
            ours = json.loads(tasobuild("profile", "-c", str(spec), "--plan", "--runs", str(args.runs),
                                        "--json").stdout)["layers"]
            ort_nodes = ort_node_ms(model, args.runs, work)
            ov_nodes = openvino_node_ms(model, args.runs) or []
            loads.append(os.getloadavg()[0])
            ort_by_head, ov_by_head = by_head(model, ort_nodes), by_head(model, ov_nodes)
            ours_ms = sum(layer["measured_ms"] for layer in ours)
            ort_ms, ov_ms = sum(ms for _, ms in ort_nodes), sum(ms for _, ms in ov_nodes)
            paired = [(layer, ort_by_head[layer["label"]], ov_by_head.get(layer["label"])) for layer in ours
                      if layer["label"] in ort_by_head]
            totals.append([name, f"{ours_ms:.3f}", f"{ort_ms:.3f}", f"{ov_ms:.3f}" if ov_nodes else "-",
                           f"{ours_ms / ort_ms:.2f}", f"{ours_ms / ov_ms:.2f}" if ov_nodes else "-",
                           f"{len(paired)} of {len(ours)}"])
            for layer, ort_layer, ov_layer in paired:
                best = min(ort_layer, ov_layer if ov_layer is not None else ort_layer)
                ms_ours = layer["measured_ms"]
                if ms_ours / best > args.ratio:
                    call = (layer["call"] or "(several calls)").split("(")[0].removeprefix("tb_")
                    rows.append([name, str(layer["index"]), call, shape_of(layer["call"]), f"{ms_ours:.4f}",
                                 f"{ort_layer:.4f}", f"{ov_layer:.4f}" if ov_layer is not None else "-",
                                 f"{ms_ours - best:+.4f}", f"{ms_ours / best:.2f}"])
    rows.sort(key=lambda row: -float(row[7]))  # the largest absolute gap first: where the most time is to win
    body = (f"Load average (1 min) during the run: {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} cores. "
            f"Sums of per-layer (per-node) medians, {args.runs} runs each, one thread; the peers' sums include "
            f"their layout reorders (OpenVINO: its per-node PERF_COUNT, f32).\n\n"
            + table(["network", "ours ms (layer sum)", "ORT ms (node sum)", "OpenVINO ms (node sum)", "ours/ORT",
                     "ours/OpenVINO", "our layers paired with ORT's"], totals)
            + f"\n\nLayers where ours / the better peer's node > {args.ratio}, the largest gap (ours - best, ms) "
            f"first:\n\n"
            + table(["network", "layer", "our kernel", "in_c x size -> out_c, kernel, stride", "ours ms", "ORT ms",
                     "OpenVINO ms", "gap ms", "ours/best"], rows))
    command = "python bench/vs_ort_layers.py" + (
        f" --networks {' '.join(args.networks)}" if args.networks != ["mobilenetv2", "squeezenet11"] else "") + (
        f" --runs {args.runs}" if args.runs != 100 else "") + (
        f" --ratio {args.ratio}" if args.ratio != 1.1 else "") + (
        f" --section {args.section}" if args.section != "vs_ort_layers" else "")
    record(args.section, "Per layer against ONNX Runtime's and OpenVINO's per-node profiles (one thread, same run)",
           command, body)


def shape_of(call: str | None) -> str:
    if not call:
        return ""
    p = dict(kv.split("=") for kv in call.split("(", 1)[1].rstrip(")").split(","))
    if "in_c" not in p:
        return ""
    return (f"{p['in_c']}x{p['in_h']}x{p['in_w']} -> {p['out_c']}, {p['k_h']}x{p['k_w']}, s{p['stride_h']}")


if __name__ == "__main__":
    sys.exit(main())
