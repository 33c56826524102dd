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

Then the pool's hold (tb_workers_hold: the workers poll through a run's one-thread steps instead of sleeping after
TB_SPIN_US) on and off: the N-thread program as emitted and compiled with `-DTB_HOLD_US=0`, alternated `--bench`
runs: median time, CPU/wall, and the futex calls per inference (strace, in runs of their own): a futex call is a
sleeping worker woken, or a caller put to sleep, which the hold is there to avoid.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import make, record_or_print, table, tasobuild  # noqa: E402
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


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_run(binary: Path, x: Path, runs: int) -> tuple[float, float]:
    """The program's `--bench` median ms, and its CPU time over its wall time."""
    before, start = children_cpu(), time.perf_counter()
    out = subprocess.run([str(binary), str(x), str(x.with_suffix(".out")), "--bench", str(runs)], check=True,
                         capture_output=True, text=True).stdout
    ratio = (children_cpu() - before) / (time.perf_counter() - start)
    return float(next(line for line in out.splitlines() if line.startswith("median_ms:")).split(":")[1]), ratio


def futex_calls(binary: Path, x: Path, runs: int, work: Path) -> float:
    """Futex system calls per inference over `runs` + 1 inferences (strace -f -c)."""
    log = work / "strace.txt"
    subprocess.run(["strace", "-f", "-c", "-e", "trace=futex", "-o", str(log), str(binary), str(x),
                    str(x.with_suffix(".out")), "--bench", str(runs)], check=True, capture_output=True)
    calls = [line.split() for line in log.read_text().splitlines() if line.strip().endswith("futex")]
    return (int(calls[0][3]) if calls else 0) / (runs + 1)


def hold_ab(spec: Path, runs: int, rounds: int, loads: list[float]) -> str:
    """The N-thread program with the pool's hold (as emitted) and without (-DTB_HOLD_US=0), alternated."""
    held = spec.parent / "out"
    unheld = spec.parent / "out_unheld"
    shutil.copytree(held, unheld)
    make(held)
    cppflags = next(line for line in (held / "Makefile").read_text().splitlines() if line.startswith("CPPFLAGS ="))
    flags = cppflags.split("=", 1)[1].strip()
    subprocess.run(["make", "-s", "-B", "-j2", "-C", str(unheld), f"CPPFLAGS={flags} -DTB_HOLD_US=0"], check=True,
                   capture_output=True)
    count = json.loads(tasobuild("check", "-c", str(spec), "--json").stdout)["input"]
    x = spec.parent / "x.bin"
    import numpy as np

    np.random.default_rng(0).standard_normal(math.prod(count)).astype("<f4").tofile(x)
    variants = {"hold (as emitted)": held / "net_main", "no hold (-DTB_HOLD_US=0)": unheld / "net_main"}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    futex: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, binary in variants.items():
            results[name].append(bench_run(binary, x, runs))
            if shutil.which("strace"):
                futex[name].append(futex_calls(binary, x, runs, spec.parent))
            loads.append(os.getloadavg()[0])
    rows = [[name, f"{statistics.median(ms for ms, _ in results[name]):.3f}",
             f"{statistics.median(r for _, r in results[name]):.2f}",
             f"{statistics.median(futex[name]):.1f}" if futex[name] else "-"] for name in variants]
    return table(["pool", "median ms", "CPU/wall", "futex calls per inference"], rows)


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
        held = hold_ab(many, args.runs, args.rounds, loads)
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
            + table(["steps", "rows", "count", "1t ms", f"{n}t ms", "ideal ms", "lost ms", "speed-up"], rows)
            + f"\n\nThe {n}-thread program with the pool held through each run (as emitted) and without, "
            f"{args.rounds} alternated rounds of `--bench {args.runs}` (medians), futex calls counted by strace in "
            f"runs of their own:\n\n" + held)
    record_or_print(args.no_record, "threads_steps", f"Where a {n}-thread plan loses, per step ({args.network})", body)


if __name__ == "__main__":
    main()
