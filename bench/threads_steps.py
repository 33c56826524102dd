"""Where a 2-thread plan loses, step by step: the emitted program's per-layer times (`tasobuild profile --plan`) of
the one-thread and the N-thread build of one network, side by side (issue 19).

    python bench/threads_steps.py [--network googlenet] [--threads 2] [--runs 30] [--rounds 3] [--costs auto]

Both builds share the cost cache; the two profiles alternate in `--rounds` rounds and each layer's time is the
median over them. A layer of the N-thread plan either runs split (its call `...@N`: the parts at once on the pool,
timed with the step's hand-off) or on one thread. Per step: `ideal` is the one-thread plan's time over N (both cores
busy, no overhead); `lost` is the N-thread time minus that, what the other cores could still win. The table sums
them by class (split or not, conv or not) and by the step's output height (the map's rows), which says where to
look: unsplit steps lose their whole (N-1)/N, split ones their imbalance, their hand-off and their slower parts.
The load average is recorded: above ~0.5 on this 2-core machine other work shares the cores and every split loses.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import record_or_print, table, tasobuild  # noqa: E402
from tests.e2e import write_spec  # noqa: E402
from tests.zoo import ensure_model  # noqa: E402

ROWS = re.compile(r"\b(?:out_h|h)=(\d+)")


def spec_for(work: Path, network: str, costs: str, threads: int) -> Path:
    """A spec for `network` on `threads` threads, written in the spec (not a `--threads` flag), so `profile --plan`
    profiles the plan that was built rather than rebuilding the project on one thread."""
    work.mkdir(parents=True, exist_ok=True)
    spec = write_spec(work, ensure_model(network), memory="4 GiB")
    text = spec.read_text().replace('costs = "profile"', f'costs = "{costs}"', 1)
    if threads > 1:
        text = text.replace('name = "host"', f'name = "host"\nthreads = {threads}', 1)
    spec.write_text(text)
    return spec


def profile(spec: Path, runs: int) -> dict[str, tuple[float, str]]:
    """Layer label -> (measured ms, its call, '' for a fused group or a copy-free step)."""
    out = json.loads(tasobuild("profile", "-c", str(spec), "--plan", "--runs", str(runs), "--json").stdout)
    return {layer["label"]: (float(layer["measured_ms"]), layer["call"] or "") for layer in out["layers"]}


def step_class(call: str) -> tuple[str, str]:
    """(split or one thread, conv or other), and the output's rows as the call's parameters say."""
    split = "split" if re.search(r"\)@\d+$", call) else "1 thread"
    kind = "conv" if call.startswith("tb_conv") else "other"
    rows = ROWS.search(call)
    height = int(rows.group(1)) if rows else 0
    size = "-" if not rows else ">= 28" if height >= 28 else "14-27" if height >= 14 else "<= 13"
    return f"{split}, {kind}", size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="googlenet")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--costs", default="auto", choices=("profile", "auto", "model"))
    parser.add_argument("--no-record", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        one = spec_for(Path(tmp) / "one", args.network, args.costs, 1)
        many = spec_for(Path(tmp) / "many", args.network, args.costs, args.threads)
        for spec in (one, many):
            tasobuild("build", "-c", str(spec), "--json")
        times: dict[str, list[list[float]]] = {"one": [], "many": []}
        calls: dict[str, dict[str, str]] = {}
        for _ in range(args.rounds):  # alternated: both see the same machine state
            for key, spec in (("one", one), ("many", many)):
                layers = profile(spec, args.runs)
                calls[key] = {label: call for label, (_, call) in layers.items()}
                times[key].append([ms for ms, _ in layers.values()])
                loads.append(os.getloadavg()[0])
    labels = {key: list(calls[key]) for key in calls}
    per_step = {key: dict(zip(labels[key], (statistics.median(ms) for ms in zip(*times[key])))) for key in times}
    sums: dict[tuple[str, str], list[float]] = {}
    for label in sorted(set(labels["one"]) | set(labels["many"])):
        alone, split = per_step["one"].get(label, 0.0), per_step["many"].get(label, 0.0)
        call = calls["many"].get(label) or calls["one"].get(label, "")
        row = sums.setdefault(step_class(call), [0, 0.0, 0.0, 0.0])
        row[0] += 1
        row[1] += alone
        row[2] += split
        row[3] += split - alone / args.threads
    n = args.threads
    total_one, total_many = sum(per_step["one"].values()), sum(per_step["many"].values())
    rows = [[kind, size, str(int(r[0])), f"{r[1]:.3f}", f"{r[2]:.3f}", f"{r[1] / n:.3f}", f"{r[3]:.3f}",
             f"{r[1] / r[2]:.2f}" if r[2] > 0 else "-"] for (kind, size), r in sorted(sums.items())]
    rows.append(["all", "", str(sum(int(r[0]) for r in sums.values())), f"{total_one:.3f}", f"{total_many:.3f}",
                 f"{total_one / n:.3f}", f"{total_many - total_one / n:.3f}", f"{total_one / total_many:.2f}"])
    body = (f"{args.network}, `costs = \"{args.costs}\"`, its one-thread and {n}-thread builds (`[target] threads = "
            f"{n}`), each layer the median of {args.rounds} alternated `profile --plan --runs {args.runs}` rounds, "
            f"summed by class. `1t ms`: the layers' times in the one-thread plan; `{n}t ms`: in the {n}-thread plan "
            f"(split steps include the pool's hand-off); `ideal`: 1t / {n}; `lost`: {n}t minus ideal; `speed-up`: "
            f"1t / {n}t. Rows: the step's output height. Load average (1 min) during the run: "
            f"{min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} cores (above ~0.5 other work shares the "
            f"cores: every split loses, the figures say where, not how much).\n\n"
            + table(["steps", "rows", "count", "1t ms", f"{n}t ms", "ideal ms", "lost ms", "speed-up"], rows))
    record_or_print(args.no_record, "threads_steps", f"Where a {n}-thread plan loses, per step ({args.network})", body)


if __name__ == "__main__":
    main()
