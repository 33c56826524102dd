"""Per-layer times of the emitted program (`tasobuild profile --plan`) against the plan's predictions, and what the
timing hooks cost: the profiling build's median whole run against the plain build's `--bench` median, same run.
Writes BENCHMARKS.md's "Per-layer timing" section.

    python bench/layer_profile.py [--networks ds_cnn_torch resnet8_tf mobilenet_v1_vww_tf] [--runs 200]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import build_project, make, median, record, table, tasobuild  # noqa: E402


def measure(network: str, runs: int, work: Path) -> list[str]:
    _, spec = build_project(network, work)
    profiled = json.loads(tasobuild("profile", "-c", str(spec), "--plan", "--runs", str(runs), "--json").stdout)
    out_dir = work / "out"
    make(out_dir)
    x = work / "x.bin"
    shape_count = json.loads(tasobuild("check", "-c", str(spec), "--json").stdout)["input"]
    import numpy as np

    np.random.default_rng(0).standard_normal(math.prod(shape_count)).astype("<f4").tofile(x)
    bench = subprocess.run([str(out_dir / "net_main"), str(x), str(work / "y.bin"), "--bench", str(runs)],
                           capture_output=True, text=True, check=True).stdout
    plain_ms = float(next(line for line in bench.splitlines() if line.startswith("median_ms:")).split(":")[1])
    ratios = [layer["measured_ms"] / layer["predicted_ms"] for layer in profiled["layers"]
              if layer["predicted_ms"] > 0]
    within = sum(0.8 <= r <= 1.25 for r in ratios) / len(ratios)
    return [network, str(len(profiled["layers"])), f"{profiled['predicted_total_ms']:.3f}",
            f"{plain_ms:.3f}", f"{profiled['measured_total_ms']:.3f}",
            f"{profiled['measured_total_ms'] / plain_ms:.3f}", f"{median(ratios):.2f}", f"{within:.0%}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["ds_cnn_torch", "resnet8_tf", "mobilenet_v1_vww_tf"])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    rows = []
    for network in args.networks:
        with tempfile.TemporaryDirectory() as work:
            rows.append(measure(network, args.runs, Path(work)))
            print(" | ".join(rows[-1]), flush=True)
    body = table(["network", "layers", "predicted ms", "plain build ms (--bench)", "profiling build ms (whole run)",
                  "hooks: profiling / plain", "per layer: median measured / predicted",
                  "layers within 0.8-1.25x"], rows)
    body += ("\n\nHost target, costs measured here, `--runs` runs each, medians. The profiling build reads the clock "
             "once per layer (`clock_gettime`); its whole-run median is set against the plain build's `--bench` median "
             "measured right after it. Predictions are kernel calls timed alone (warm caches, one call at a time); in "
             "the program a layer runs after the one that wrote its input. Load average while measuring: "
             f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (a hook ratio below 1 is that noise).")
    record("layer-profile", "Per-layer timing: measured in the program vs predicted",
           f"python bench/layer_profile.py --runs {args.runs}" + (
               f" --networks {' '.join(args.networks)}" if args.networks != parser.get_default("networks") else ""),
           body)


if __name__ == "__main__":
    main()
