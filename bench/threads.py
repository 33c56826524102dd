"""Conv calls split over N threads: measured speed-up per layer, and how well `costs = "model"` predicts it (issue 19).

    python bench/threads.py [--networks mobilenetv2 resnet18] [--threads 2] [--rounds 3]

For each network, every conv layer's primitive in the one-thread plan (performance model costs, so nothing is
measured to make it) is timed whole and split over N threads (tasobuild.costs.profile.measure_call: the profiler's
own measurement, the parts running at once on the emitted thread pool), the two alternated in rounds so both see
the same machine state. Reported per network, by layer size: the median measured split/whole ratio (0.5 would be a
perfect 2x), what the model predicts for it (largest part's share of the rows plus the step overhead), the median
factor between predicted and measured split times, and the load average (other work on the machine) during the run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from common import record, table, tasobuild

from tests.e2e import write_spec
from tests.zoo import ensure_model

BUCKETS = ((0.0, 0.05), (0.05, 0.5), (0.5, float("inf")))  # whole-call ms


def conv_calls(name: str, workdir: Path) -> list:
    """The conv calls of the network's one-thread plan (model costs)."""
    import json

    from tasobuild.pipeline import candidates_of, load

    workdir.mkdir(parents=True)
    spec = write_spec(workdir, ensure_model(name))
    spec.write_text(spec.read_text().replace('costs = "profile"', 'costs = "model"'))
    report = json.loads(tasobuild("plan", "-c", str(spec), "--json").stdout)
    chosen = {n["name"]: n["primitive"] for n in report["nodes"] if n["op"] == "conv"}
    inputs = load(spec)
    nodes, _ = candidates_of(inputs.spec, inputs.graph)
    return [c.calls[0] for nc in nodes if nc.node.name in chosen
            for c in nc.options if c.primitive.name == chosen[nc.node.name]]


def main() -> None:
    from tasobuild import native
    from tasobuild.costs.profile import measure_call
    from tasobuild.costs.stage import SPLIT_OVERHEAD_MS, predict, shipped_model, split_ideal_ms
    from tasobuild.primitives.parallel import parallel_call
    from tasobuild.target import load_target

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="*", default=["mobilenetv2", "resnet18"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    target = load_target("host", Path("."))
    kernels = native.load(target.cc, tuple(target.cflags))
    model = shipped_model()
    assert model is not None
    rows = []
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks:
            calls = [(c, s) for c in conv_calls(name, Path(tmp) / name)
                     if (s := parallel_call(c, args.threads)) is not None]
            whole_ms: dict[str, list[float]] = {}
            split_ms: dict[str, list[float]] = {}
            for _ in range(args.rounds):  # alternated: both see the same machine state
                for whole, split in calls:
                    whole_ms.setdefault(whole.key(), []).append(measure_call(whole, kernels).median_ms)
                    split_ms.setdefault(split.key(), []).append(measure_call(split, kernels).median_ms)
                loads.append(os.getloadavg()[0])
            # the prediction the build makes for a split call, from the whole call's measured cost (as when the
            # cache holds it): its largest part's share plus the default step overhead
            guessed = predict(model, [s for _, s in calls])
            for low, high in BUCKETS:
                chosen = [(w, s) for w, s in calls if low <= statistics.median(whole_ms[w.key()]) < high]
                if not chosen:
                    continue
                measured = [statistics.median(split_ms[s.key()]) / statistics.median(whole_ms[w.key()])
                            for w, s in chosen]
                predicted = [split_ideal_ms(s, statistics.median(whole_ms[w.key()]))
                             / statistics.median(whole_ms[w.key()]) for w, s in chosen]
                factor = [guessed[s.key()].median_ms / statistics.median(split_ms[s.key()]) for _, s in chosen]
                span = f"{low:g}-{high:g} ms" if high != float("inf") else f">= {low:g} ms"
                rows.append([name, span, str(len(chosen)), f"{statistics.median(measured):.2f}",
                             f"{min(measured):.2f}", f"{statistics.median(predicted):.2f}",
                             f"{statistics.median(factor):.2f}"])
                print(rows[-1], file=sys.stderr)
    n = args.threads
    body = table(["network", "layer (whole call)", "layers", f"measured {n}t/1t (median)", f"best {n}t/1t",
                  f"predicted {n}t/1t", "model predicted/measured (median)"], rows)
    record("threads", f"Conv layers on {n} threads: measured speed-up and the model's prediction",
           "python bench/threads.py" + (f" --networks {' '.join(args.networks)}"
                                        if args.networks != ["mobilenetv2", "resnet18"] else "")
           + (f" --threads {n}" if n != 2 else "") + (f" --rounds {args.rounds}" if args.rounds != 3 else ""),
           f"Every conv layer of the one-thread plan, whole and split over {n} threads, each the median of "
           f"{args.rounds} alternated profiler measurements. `predicted`: the largest part's share of the rows "
           f"plus {SPLIT_OVERHEAD_MS * 1000:.0f} µs (what `costs = \"model\"` predicts before any split call is "
           f"measured here); `model predicted/measured`: the shipped model's prediction of the split call over its "
           f"measured time. Load average (1 min) during the run: {min(loads):.1f} to {max(loads):.1f} on "
           f"{len(os.sched_getaffinity(0))} cores (other work was running: the figures are noisy).\n\n{body}")


if __name__ == "__main__":
    sys.exit(main())
