"""Where the time goes, per layer, against ONNX Runtime and OpenVINO: our program's per-layer times (`tasobuild
profile --plan`) beside ONNX Runtime's per-node kernel times (`SessionOptions.enable_profiling`, one thread), same run.

    python bench/vs_ort_layers.py [--networks mobilenetv2 squeezenet11] [--runs 100] [--ratio 1.1]
                                  [--gaps 12] [--section vs_ort_layers]

ONNX Runtime fuses a conv with its activation (and a residual add) and names the fused node after its last output
(in NCHWc, with "_nchwc" appended); our layers are named after the model node that heads them. So each ORT node is
traced back through the ONNX graph, from the tensor it is named after through the activations and adds fused into
it, to the node that heads it, and paired with our layer of that name (the orders differ: both schedule branches
their own way). ORT's layout reorders and our layout transforms have no partner; they count in the totals. Lists
the paired layers where ours/ORT exceeds --ratio, the --gaps paired layers with the largest absolute gap to the
faster peer (ours ms minus the better of ORT's and OpenVINO's, where the time is to be won), and the totals.
OpenVINO's per-node times (`PERF_COUNT`, one thread, f32) are paired by the order of the convs. Writes
BENCHMARKS.md's section --section.
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


def openvino_node_ms(model: Path, runs: int) -> list[tuple[str, float]] | None:
    """OpenVINO's executed nodes in order as (type, median ms), one thread, f32, warm-up dropped (`PERF_COUNT`);
    None without openvino. Its node names are its own (BatchNorm folded into "Multiply_N"), so they are paired with
    our layers by order, not name (`pair_by_order`)."""
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY",
              "NUM_STREAMS": 1, "PERF_COUNT": True}
    request = core.compile_model(str(model), "CPU", config).create_infer_request()
    x = np.random.default_rng(0).standard_normal(tuple(request.get_input_tensor(0).shape)).astype(np.float32)
    times: list[list[float]] = []
    types: list[str] = []
    for r in range(runs + 10):
        request.infer({0: x})
        ran = [i for i in request.get_profiling_info() if i.exec_type not in ("undef", "unknown_f32")]
        types = [i.node_type for i in ran]
        if r >= 10:
            for j, i in enumerate(ran):
                if j == len(times):
                    times.append([])
                times[j].append(i.real_time.total_seconds() * 1000)
    return [(kind, statistics.median(t)) for kind, t in zip(types, times, strict=True)]


def pair_by_order(ours: list[dict], theirs: list[tuple[str, float]]) -> dict[int, float]:
    """Our layer index -> OpenVINO's ms: the k-th conv (and fully connected) of each, in execution order, when both
    run the same number of them (MobileNetV2 is a chain: both run its convs in model order); else nothing."""
    kinds = {"Convolution": "conv", "GroupConvolution": "conv", "FullyConnected": "fc"}
    mine = [(layer["index"], "fc" if "fc_" in (layer["call"] or "") else "conv") for layer in ours
            if "conv" in (layer["call"] or "") or "fc_" in (layer["call"] or "")]
    their = [(kinds[kind], ms) for kind, ms in theirs if kind in kinds]
    if [k for _, k in mine] != [k for k, _ in their]:
        return {}
    return {index: ms for (index, _), (_, ms) in zip(mine, their, strict=True)}


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
            # a Clip's bounds may come from Constant nodes: they head nothing
            inputs = [producer[i] for i in node.input if i in producer and producer[i].op_type != "Constant"]
            convs = [n for n in inputs if n.op_type not in FUSED_INTO_PRODUCER] or inputs
            node = convs[-1] if convs else None  # an add fused into the later of its producers
        if node is not None:
            heads[name] = node.name
    return heads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="*", default=["mobilenetv2", "squeezenet11"])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--ratio", type=float, default=1.1, help="list layers where ours/ORT exceeds this")
    parser.add_argument("--gaps", type=int, default=0, help="also list this many layers by largest ours-ORT ms")
    parser.add_argument("--section", default="vs_ort_layers", help="BENCHMARKS.md section to write")
    args = parser.parse_args()
    rows, totals, gaps = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks:
            work = Path(tmp) / name
            work.mkdir()
            model = ensure_model(name)
            spec = write_spec(work, model, memory="4 GiB")
            spec.write_text(spec.read_text().replace('costs = "profile"', 'costs = "auto"', 1))
            ours = json.loads(tasobuild("profile", "-c", str(spec), "--plan", "--runs", str(args.runs),
                                        "--json").stdout)["layers"]
            theirs = ort_node_ms(model, args.runs, work)
            heads = ort_heads(model, [n for n, _ in theirs])
            ort_by_head: dict[str, float] = {}
            for n, ms in theirs:
                if n in heads:
                    ort_by_head[heads[n]] = ort_by_head.get(heads[n], 0.0) + ms
            ours_ms, ort_ms = sum(layer["measured_ms"] for layer in ours), sum(ms for _, ms in theirs)
            vino = openvino_node_ms(model, args.runs)
            vino_by_index = pair_by_order(ours, vino) if vino is not None else {}
            vino_ms = f"{sum(ms for _, ms in vino):.3f}" if vino is not None else "-"
            paired = [(layer, ort_by_head[layer["label"]]) for layer in ours if layer["label"] in ort_by_head]
            totals.append([name, f"{ours_ms:.3f}", f"{ort_ms:.3f}", vino_ms, f"{ours_ms / ort_ms:.2f}",
                           f"{len(paired)} of {len(ours)}", f"{len(vino_by_index)} of {len(ours)}",
                           f"{sum(layer['measured_ms'] for layer, _ in paired):.3f}",
                           f"{sum(ms for _, ms in paired):.3f}"])
            for layer in ours:  # the gap to the faster peer where either is paired
                peer_ms = [ms for ms in (ort_by_head.get(layer["label"]), vino_by_index.get(layer["index"]))
                           if ms is not None]
                if peer_ms:
                    best = min(peer_ms)
                    gaps.append((layer["measured_ms"] - best, [
                        name, str(layer["index"]), (layer["call"] or "(several calls)").split("(")[0]
                        .removeprefix("tb_"), shape_of(layer["call"]), f"{layer['measured_ms']:.4f}",
                        fmt_ms(ort_by_head.get(layer["label"])), fmt_ms(vino_by_index.get(layer["index"])),
                        f"{layer['measured_ms'] - best:+.4f}"]))
            for layer, ms in paired:
                if layer["measured_ms"] / ms > args.ratio:
                    call = (layer["call"] or "(several calls)").split("(")[0].removeprefix("tb_")
                    ms_ours = layer["measured_ms"]
                    rows.append([name, str(layer["index"]), call, shape_of(layer["call"]), f"{ms_ours:.4f}",
                                 f"{ms:.4f}", f"{ms_ours / ms:.2f}"])
    load = os.getloadavg()[0]
    body = (f"Load average (1 min) at the end: {load:.1f} on {os.cpu_count()} cores. Sums of per-layer (per-node) "
            f"medians, {args.runs} runs each, one thread; ORT's include its layout reorders. OpenVINO (CPU plugin, "
            "f32, `PERF_COUNT`) paired by conv order (its node names are its own).\n\n"
            + table(["network", "ours ms (layer sum)", "ORT ms (node sum)", "OpenVINO ms (node sum)", "ours/ORT",
                     "our layers paired (ORT)", "(OpenVINO)",
                     "ours ms (paired)", "ORT ms (paired)"], totals)
            + f"\n\nLayers where ours/ORT > {args.ratio}:\n\n"
            + table(["network", "layer", "our kernel", "in_c x size -> out_c, kernel, stride", "ours ms", "ORT ms",
                     "ours/ORT"], rows))
    if args.gaps:
        top = [row for _, row in sorted(gaps, key=lambda g: (-g[0], g[1][:2]))[:args.gaps]]
        body += (f"\n\nThe {args.gaps} paired layers with the largest absolute gap to the faster peer (ours - "
                 "min(ORT, OpenVINO)):\n\n"
                 + table(["network", "layer", "our kernel", "in_c x size -> out_c, kernel, stride", "ours ms",
                          "ORT ms", "OpenVINO ms", "gap ms"], top))
    command = "python bench/vs_ort_layers.py" + (
        f" --networks {' '.join(args.networks)}" if args.networks != ["mobilenetv2", "squeezenet11"] else "") + (
        f" --runs {args.runs}" if args.runs != 100 else "") + (
        f" --ratio {args.ratio}" if args.ratio != 1.1 else "") + (
        f" --gaps {args.gaps}" if args.gaps else "") + (
        f" --section {args.section}" if args.section != "vs_ort_layers" else "")
    record(args.section, "Per layer against ONNX Runtime's per-node profile (one thread, same run)", command, body)


def fmt_ms(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.4f}"


def shape_of(call: str | None) -> str:
    if not call:
        return ""
    p = dict(kv.split("=") for kv in call.split("(", 1)[1].rstrip(")").split(","))
    if "in_c" not in p:
        return ""
    return (f"{p['in_c']}x{p['in_h']}x{p['in_w']} -> {p['out_c']}, {p['k_h']}x{p['k_w']}, s{p['stride_h']}")


if __name__ == "__main__":
    sys.exit(main())
