"""The performance model's int8 correction: how well the shipped model predicts int8 kernel calls, before and after
the per-data-type correction (tasobuild.costs.model.DtypeCorrection), and fitting the one that ships.

    python bench/costs_int8.py            # measure, evaluate (leave one network out), write BENCHMARKS.md
    python bench/costs_int8.py --write    # also fit on every network and write it into tasobuild/data/cost_model.json

The shipped model was trained on float32 calls only; an int8 call falls back to its generic regression. Here: every
int8 candidate call of the four TF-quantised MLPerf Tiny networks (tests/fixtures/int8/) and the float32 candidate
calls of their float networks (at most PER_FUNCTION per kernel function) are timed on this machine through the cost
cache (host target flags). The model is fine-tuned to this machine on the float calls first, so the correction is
the data type's, not the machine's. Evaluation: per network, the correction fitted on the other three networks' int8
calls, scored on this network's int8 calls that the three do not share (log2 error of the predicted time; the
fraction of its int8 convolution layers whose measured-fastest primitive the prediction picks).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import record, table  # noqa: E402
from bench.costs_data import graph_calls, measure_into_cache  # noqa: E402
from tasobuild.candidates import node_candidates  # noqa: E402
from tasobuild.costs.model import CostModel, Sample, dtype_of  # noqa: E402
from tasobuild.costs.stage import MODEL_FILE, data_dir, shipped_model  # noqa: E402
from tasobuild.importer import import_onnx  # noqa: E402
from tasobuild.primitives import KernelCall  # noqa: E402
from tasobuild.resources import cache_dir  # noqa: E402
from tasobuild.target import load_target  # noqa: E402
from tests.zoo.int8 import TFLITE_INT8, float_source, tflite_fixture  # noqa: E402

PER_FUNCTION = 6  # float reference calls per kernel function: enough to fine-tune the model to this machine


def int8_layers(name: str) -> list[list[KernelCall]]:
    """Per int8 convolution of network `name`: its candidates' single calls (the choice the costs decide)."""
    graph = import_onnx(tflite_fixture(name).onnx)
    return [[c.calls[0] for c in nc.options if len(c.calls) == 1 and c.primitive.in_place < 0]
            for nc in node_candidates(graph) if nc.node.op == "qconv"]


def sampled(calls: Sequence[KernelCall], per_function: int) -> list[KernelCall]:
    """At most `per_function` distinct calls of each function, a seeded sample, sorted by key."""
    rng = np.random.default_rng(0)
    by_function: dict[str, list[KernelCall]] = defaultdict(list)
    for call in sorted({c.key(): c for c in calls}.values(), key=KernelCall.key):
        by_function[call.function].append(call)
    kept = [group[i] for _, group in sorted(by_function.items())
            for i in sorted(rng.choice(len(group), min(per_function, len(group)), replace=False))]
    return sorted(kept, key=KernelCall.key)


def log2_errors(model: CostModel, samples: Sequence[Sample]) -> np.ndarray:
    predicted, _ = model.predict_log2([s.call for s in samples])
    return predicted - np.log2([s.ms for s in samples])


def picks_fastest(model: CostModel, layers: Sequence[Sequence[KernelCall]], ms: Mapping[str, float]) -> float:
    """The fraction of layers whose predicted-fastest call is the measured-fastest (ties in time count as picked)."""
    hits = []
    for calls in layers:
        if len(calls) < 2:
            continue
        predicted = model.predict_ms(calls)
        chosen = min(calls, key=lambda c: (predicted[c.key()], c.key()))
        hits.append(ms[chosen.key()] <= min(ms[c.key()] for c in calls) * 1.0001)
    return float(np.mean(hits)) if hits else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write the correction into tasobuild/data/{MODEL_FILE}")
    args = parser.parse_args()
    host = load_target("host", Path("."))
    shipped = shipped_model()
    assert shipped is not None
    shipped = CostModel(shipped.functions, shipped.structs, shipped.generic, shipped.trained_on,
                        shipped.calibration, shipped.shrunk)  # without any correction it ships with
    int8_calls: dict[str, list[KernelCall]] = {}
    float_calls: list[KernelCall] = []
    for name in TFLITE_INT8:
        int8_calls[name] = [c for c in graph_calls(import_onnx(tflite_fixture(name).onnx)) if dtype_of(c) == "int8"]
        float_calls += graph_calls(import_onnx(float_source(name)))
    float_calls = sampled(float_calls, PER_FUNCTION)
    every = sorted({c.key(): c for calls in int8_calls.values() for c in calls}.values(), key=KernelCall.key)
    ms = measure_into_cache([*every, *float_calls], host.cc, list(host.cflags), cache_dir(), progress=True)
    reference = [Sample(c, ms[c.key()]) for c in float_calls]
    machine = shipped.fine_tuned(reference)

    rows = []
    for name in TFLITE_INT8:
        others = {c.key() for other in TFLITE_INT8 if other != name for c in int8_calls[other]}
        train = [Sample(c, ms[c.key()]) for c in every if c.key() in others]
        held = [Sample(c, ms[c.key()]) for c in int8_calls[name] if c.key() not in others]
        corrected = shipped.with_dtype_correction("int8", train, reference).fine_tuned(reference)
        before, after = log2_errors(machine, held), log2_errors(corrected, held)
        layers = int8_layers(name)
        rows.append([name, str(len(train)), str(len(held)), f"{np.median(before):+.2f}", f"{np.median(after):+.2f}",
                     f"{np.sqrt(np.mean(before ** 2)):.2f}", f"{np.sqrt(np.mean(after ** 2)):.2f}",
                     f"{picks_fastest(machine, layers, ms):.2f}", f"{picks_fastest(corrected, layers, ms):.2f}"])
        print(rows[-1], file=sys.stderr)

    final = shipped.with_dtype_correction("int8", [Sample(c, ms[c.key()]) for c in every], reference)
    correction = final.dtypes["int8"]
    per_function = defaultdict(list)
    for c in every:
        per_function[c.function].append(c)
    function_rows = [[f, str(len(per_function[f])), f"{correction.offset + correction.per_function.get(f, 0.0):+.2f}",
                      f"{2 ** (correction.offset + correction.per_function.get(f, 0.0)):.2f}"]
                     for f in sorted(per_function)]
    if args.write:
        (data_dir() / MODEL_FILE).write_text(final.to_json(), encoding="utf-8")
    body = (
        "The shipped model (float32 samples only) on int8 kernel calls, before and after the int8 correction. "
        "Both fine-tuned to this machine on float32 calls of the same networks' float versions "
        f"({len(reference)} calls). Per network: the correction fitted on the other three networks' int8 calls, "
        "scored on this network's int8 calls they do not share. log2 error: predicted over measured time "
        "(+1: twice as slow as measured); \"picks fastest\": the fraction of the network's int8 convolutions whose "
        "measured-fastest primitive the model predicts fastest.\n\n"
        + table(["network", "int8 calls fitted", "scored", "median log2 error before", "after", "RMS before",
                 "RMS after", "picks fastest before", "after"], rows)
        + f"\n\nThe correction that ships (fitted on all {len(every)} int8 calls; `--write`): log2 offset added to "
          "the float model's prediction per int8 kernel function (the generic regression's, or for the layout "
          "transforms their float struct's), and the factor it means: measured time over that guess.\n\n"
        + table(["function", "calls", "log2 offset", "measured / float guess"], function_rows)
        + "\n\nA per-data-type offset, not a retrained model: the shipped model's features and samples stay float32 "
          "(retraining with the element type as a feature would retime its 10,193 samples). The offset is this "
          "machine's; a microcontroller's calibration (bench/costs_emulated.py) applies on top of it.")
    record("costs-int8", "Costs: the performance model on int8 calls (per-data-type correction)",
           "python bench/costs_int8.py --write", body)


if __name__ == "__main__":
    main()
