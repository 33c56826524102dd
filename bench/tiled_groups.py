"""Fused groups as they run: each group of the fastest tiled plan against the untiled plan's layers it replaces,
measured in the emitted programs (`tasobuild profile --plan`) and as the solver predicted them (issue 19).

    python bench/tiled_groups.py [--network mobilenetv2] [--costs auto] [--runs 30] [--rounds 2] [--no-record]

Builds the network twice (one thread, a budget that does not bind): untiled, and with `tiling = true` (the plan the
solver finds fastest). Then, alternating the two programs `--rounds` times, each program's per-layer profile
(`--runs` timed runs per layer); per layer the median over rounds. For every fused group of the tiled plan: the sum
of the untiled plan's layers it replaces (node indices l<a>-l<b>: the untiled profile lists the nodes in order, one
layer each), both measured and predicted, and the ratios group / untiled (< 1: the group is faster). A group whose
measured ratio is above 1 while its predicted one is below is one the solver took on costs that do not hold in the
program.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

from common import record_or_print, table, tasobuild, write_spec

from tests.zoo import ensure_model

GROUP = re.compile(r"fused group l(\d+)-l(\d+)")


def build(network: str, work: Path, costs: str, extra: str = "") -> Path:
    work.mkdir(parents=True, exist_ok=True)
    spec = write_spec(work, ensure_model(network), memory="4 GiB", extra=extra)
    spec.write_text(spec.read_text().replace('costs = "profile"', f'costs = "{costs}"', 1))
    tasobuild("build", "-c", str(spec), "--json")
    return spec


def profile(spec: Path, runs: int) -> list[dict]:
    """The program's timed layers: label, measured_ms, predicted_ms."""
    return list(json.loads(tasobuild("profile", "--plan", "--runs", str(runs), "-c", str(spec), "--json").stdout)
                ["layers"])


def medians(rounds: list[list[dict]]) -> list[dict]:
    """Per layer, the median over rounds of the measured time (the prediction is the same every round)."""
    return [dict(layer, measured_ms=statistics.median(r[k]["measured_ms"] for r in rounds))
            for k, layer in enumerate(rounds[0])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="mobilenetv2")
    parser.add_argument("--costs", default="auto", choices=("profile", "auto", "model"))
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-record", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        untiled_spec = build(args.network, Path(tmp) / "untiled", args.costs)
        tiled_spec = build(args.network, Path(tmp) / "tiled", args.costs, extra="tiling = true\n")
        untiled_rounds, tiled_rounds = [], []
        for r in range(args.rounds):  # alternate, the order swapped every round
            order = [(untiled_spec, untiled_rounds), (tiled_spec, tiled_rounds)]
            for spec, into in order if r % 2 == 0 else order[::-1]:
                into.append(profile(spec, args.runs))
        untiled, tiled = medians(untiled_rounds), medians(tiled_rounds)
    rows = []
    totals = [0.0, 0.0, 0.0, 0.0]
    for layer in tiled:
        m = GROUP.match(layer["label"])
        if m is None:
            continue
        a, b = int(m.group(1)), int(m.group(2))
        um = sum(x["measured_ms"] for x in untiled[a:b + 1])
        up = sum(x["predicted_ms"] for x in untiled[a:b + 1])
        gm, gp = layer["measured_ms"], layer["predicted_ms"]
        for k, v in enumerate((um, gm, up, gp)):
            totals[k] += v
        rows.append([f"l{a}-l{b}", f"{um:.3f}", f"{gm:.3f}", f"{gm / um:.2f}", f"{up:.3f}", f"{gp:.3f}",
                     f"{gp / up:.2f}"])
    rows.append(["all groups", f"{totals[0]:.3f}", f"{totals[1]:.3f}", f"{totals[1] / totals[0]:.2f}",
                 f"{totals[2]:.3f}", f"{totals[3]:.3f}", f"{totals[3] / totals[2]:.2f}"])
    whole = [sum(x["measured_ms"] for x in plan) for plan in (untiled, tiled)]
    predicted = [sum(x["predicted_ms"] for x in plan) for plan in (untiled, tiled)]
    load = os.getloadavg()[0]
    body = (f"Load average (1 min) at the end: {load:.1f} on {os.cpu_count()} cores. {args.network}, one thread, "
            f"costs = \"{args.costs}\"; per layer the median over {args.rounds} alternating rounds of each program's "
            f"per-layer median ({args.runs} runs). Sum of all layers: untiled {whole[0]:.3f} ms, tiled "
            f"{whole[1]:.3f} ms ({whole[1] / whole[0]:.2f}); predicted untiled {predicted[0]:.3f} ms, tiled "
            f"{predicted[1]:.3f} ms ({predicted[1] / predicted[0]:.2f}).\n\n"
            + table(["group", "untiled layers measured ms", "group measured ms", "measured group/untiled",
                     "untiled predicted ms", "group predicted ms", "predicted group/untiled"], rows))
    record_or_print(args.no_record, "tiled_groups", f"Fused groups as they run vs their untiled layers "
                    f"({args.network}, one thread, measured in the programs and predicted)", body)


if __name__ == "__main__":
    sys.exit(main())
