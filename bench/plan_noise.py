"""Plans from fresh cost caches: does measurement noise change the plan? (issue 19)

    python bench/plan_noise.py [--networks squeezenet11 mobilenetv2] [--builds 3] [--runs 20] [--rounds 5]
                               [--section plan_noise]

For each network: K builds (`costs = "auto"`, one thread, untiled, a budget that does not bind), each from an empty
cost cache (its own TASOBUILD_CACHE_DIR; the compiled bindings are copied in so only the costs are fresh), as K
first builds on K new machines would. Then the K programs are compiled and timed alternating in rounds (each round
runs every program's `--bench`), so all see the same machine state. Reports, per build: its build time, how many
calls it measured, the nodes whose primitive differs from build 1's, the plan's predicted time and its measured
median, relative to the fastest of the K; then the spread of the measured medians (max / min), the figure that
must stay within ~2%. The nodes whose choice differs are listed with the primitives each build chose.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import make, median, record, table, tasobuild, user_env

from tests.e2e import run_binary, write_spec
from tests.zoo import ensure_model

NETWORKS = ["squeezenet11", "mobilenetv2"]


def fresh_cache(root: Path, bindings: Path | None) -> Path:
    """An empty cache folder but for the compiled bindings (compiling them is not what this measures)."""
    root.mkdir(parents=True)
    if bindings is not None and bindings.is_dir():
        shutil.copytree(bindings, root / "bindings", ignore=shutil.ignore_patterns("*.lock"))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="*", default=NETWORKS)
    parser.add_argument("--builds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--section", default="plan_noise")
    parser.add_argument("--no-record", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    parser.add_argument("--keep", type=Path, help="copy each build's taso.lock here (NAME-K.lock)")
    args = parser.parse_args()
    warm = os.environ.get("TASOBUILD_CACHE_DIR")
    bindings = Path(warm) / "bindings" if warm else None
    loads = [os.getloadavg()[0]]
    rows, spreads, diffs = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks:
            model = ensure_model(name)
            reports, seconds, binaries = [], [], []
            for k in range(args.builds):
                work = Path(tmp) / name / f"b{k}"
                work.mkdir(parents=True)
                env = {**user_env(), "TASOBUILD_CACHE_DIR": str(fresh_cache(Path(tmp) / f"cache-{name}-{k}",
                                                                            bindings))}
                spec = write_spec(work, model, memory="4 GiB")
                spec.write_text(spec.read_text().replace('costs = "profile"', 'costs = "auto"', 1))
                start = time.perf_counter()
                reports.append(json.loads(tasobuild("build", "-c", str(spec), "--json", env=env).stdout))
                seconds.append(time.perf_counter() - start)
                make(work / "out")
                if args.keep is not None:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy(work / "taso.lock", args.keep / f"{name}-{k + 1}.lock")
                binaries.append(work / "out" / "net_main")
                print(f"{name} build {k + 1}: {seconds[-1]:.1f} s, {reports[-1]['profiled']} measured",
                      file=sys.stderr)
            choices = [{n["name"]: n["primitive"] for n in r["nodes"]} for r in reports]
            differing = sorted({node for c in choices for node in c if len({cc.get(node) for cc in choices}) > 1})
            x = np.random.default_rng(0).standard_normal(
                [d.dim_value for d in __import__("onnx").load(str(model), load_external_data=False)
                 .graph.input[0].type.tensor_type.shape.dim]).astype(np.float32)
            outputs = [run_binary(b, x, b.parent.parent)[0] for b in binaries]
            times: list[list[float]] = [[] for _ in binaries]
            for _ in range(args.rounds):
                for ts, b in zip(times, binaries):
                    ms = run_binary(b, x, b.parent.parent, bench=args.runs)[1]
                    assert ms is not None
                    ts.append(ms)
                loads.append(os.getloadavg()[0])
            medians = [median(ts) for ts in times]
            best = min(medians)
            for k, (r, s, ms, c) in enumerate(zip(reports, seconds, medians, choices)):
                changed = sum(c.get(n) != choices[0].get(n) for n in c)
                rows.append([name, str(k + 1), f"{s:.1f}", str(r["profiled"]), str(changed),
                             f"{r['predicted_ms']:.2f}", f"{ms:.2f}", f"{ms / best:.3f}",
                             "yes" if outputs[k].tobytes() == outputs[0].tobytes() else "no"])
            spreads.append([name, f"{max(medians) / best:.3f}", str(len(differing)),
                            f"{median(seconds):.1f}"])
            for node in differing:
                diffs.append([name, node, *[choices[k].get(node, "-") for k in range(args.builds)]])
            print(rows[-args.builds:], spreads[-1], file=sys.stderr)
    body = table(["network", "build", "build s", "measured calls", "nodes != build 1", "predicted ms",
                  "measured ms", "/ fastest", "output = build 1's"], rows)
    body += "\n\n" + table(["network", "measured max / min", "nodes whose choice differs", "median build s"],
                           spreads)
    if diffs:
        body += "\n\n" + table(["network", "node", *[f"build {k + 1}" for k in range(args.builds)]], diffs)
    notes = (f"Each build from an empty cost cache, `costs = \"auto\"`, one thread, untiled; the programs timed "
             f"alternating, {args.rounds} rounds of `--bench {args.runs}`, medians of the rounds' medians. Load "
             f"average (1 min) during the run: {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} cores.")
    command = "python bench/plan_noise.py" + "".join(
        f" {flag}" for flag, on in ((f"--networks {' '.join(args.networks)}", args.networks != NETWORKS),
                                    (f"--builds {args.builds}", args.builds != 3),
                                    (f"--runs {args.runs}", args.runs != 20),
                                    (f"--rounds {args.rounds}", args.rounds != 5),
                                    (f"--section {args.section}", args.section != "plan_noise")) if on)
    if args.no_record:
        print(notes + "\n\n" + body)
    else:
        record(args.section, "Plans from fresh cost caches: measured time per build (costs = \"auto\")", command,
               f"{notes}\n\n{body}")


if __name__ == "__main__":
    sys.exit(main())
