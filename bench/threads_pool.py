"""The thread pool's cost per parallel step: this tree's tb_threads.c against a baseline revision's (issue 19).

    python bench/threads_pool.py [--baseline bba8fe3] [--threads 2] [--rounds 5] [--steps 2000] [--pin auto]

bench/pool_step.c is compiled against each pool. A run is `steps` parallel steps; each splits a fixed amount of
compute (`work`, one-thread microseconds) into equal parts, one per thread, and between two steps the calling thread
alone computes `gap` microseconds (a network's one-thread layers, when the workers wait). Thread k is pinned to CPU k
when this process may use that many and the machine is idle (--pin). Per configuration, the median over alternated
rounds of: the wall time per step on one thread and on N with each pool, the N-thread step's overhead over 1/N of
the one-thread step, the speed-ups, and CPU time / wall time of the whole loop (what the waiting costs in CPU). The
baseline's pool (bba8fe3: condition variables only) is the one issue 19 started from.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, record, table

CONFIGS = ((20.0, 0.0), (20.0, 50.0), (100.0, 0.0), (100.0, 50.0), (500.0, 50.0))  # (work us, gap us)


def compile_pool(workdir: Path, sources: dict[str, str], name: str) -> Path:
    """bench/pool_step.c linked with the pool whose tb_threads.c/.h texts are `sources`."""
    folder = workdir / name
    folder.mkdir()
    for file, text in sources.items():
        (folder / file).write_text(text)
    (folder / "pool_step.c").write_text((ROOT / "bench" / "pool_step.c").read_text())
    subprocess.run(["cc", "-O2", "-pthread", "-I.", "pool_step.c", "tb_threads.c", "-o", "pool_step"],
                   cwd=folder, check=True)
    return folder / "pool_step"


def pool_sources(revision: str | None) -> dict[str, str]:
    if revision is None:
        return {f: (ROOT / "kernels_pyx" / f).read_text() for f in ("tb_threads.c", "tb_threads.h")}
    return {f: subprocess.run(["git", "show", f"{revision}:kernels_pyx/{f}"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout for f in ("tb_threads.c", "tb_threads.h")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="bba8fe3", help="the revision whose pool is compared (git)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--pin", choices=("auto", "yes", "no"), default="auto",
                        help="pin thread k to CPU k (auto: when this process may use N CPUs and the load average "
                             "is below 1, i.e. the CPUs are free)")
    args = parser.parse_args()
    n = args.threads
    can_pin = len(os.sched_getaffinity(0)) >= n
    pin = int(can_pin and (args.pin == "yes" or (args.pin == "auto" and os.getloadavg()[0] < 1.0)))
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        pools = {"baseline": compile_pool(Path(tmp), pool_sources(args.baseline), "baseline"),
                 "this": compile_pool(Path(tmp), pool_sources(None), "this")}
        per_us = float(subprocess.run([str(pools["this"]), "1", "0", "0", "0", "0", "0"], check=True,
                                      capture_output=True, text=True).stdout)
        results: dict[tuple[str, float, float], list[tuple[float, float, float]]] = {}
        for _ in range(args.rounds):  # alternated: both pools see the same machine state
            for work, gap in CONFIGS:
                for name, binary, threads in (("one", pools["this"], 1), *((k, b, n) for k, b in pools.items())):
                    out = subprocess.run([str(binary), str(threads), str(work), str(gap), str(args.steps), str(pin),
                                          str(per_us)], check=True, capture_output=True, text=True).stdout
                    step, ideal, cpu = map(float, out.split())
                    results.setdefault((name, work, gap), []).append((step, ideal, cpu))
            loads.append(os.getloadavg()[0])
    rows = []
    for work, gap in CONFIGS:
        med = {name: [statistics.median(r[i] for r in results[(name, work, gap)]) for i in range(3)]
               for name in ("one", *pools)}
        one, (old, _, old_cpu), (new, _, new_cpu) = med["one"][0], med["baseline"], med["this"]
        ideal = one / n
        rows.append([f"{work:g}", f"{gap:g}", f"{one:.1f}", f"{old:.1f}", f"{new:.1f}", f"{old - ideal:.1f}",
                     f"{new - ideal:.1f}", f"{one / old:.2f}", f"{one / new:.2f}", f"{old_cpu:.2f}",
                     f"{new_cpu:.2f}"])
        print(rows[-1], file=sys.stderr)
    body = table(["work µs (nominal)", "gap µs", "step µs 1t", f"step µs {n}t baseline", f"step µs {n}t this",
                  "overhead µs baseline", "overhead µs this", f"speed-up 1t/{n}t baseline",
                  f"speed-up 1t/{n}t this", "CPU/wall baseline", "CPU/wall this"], rows)
    command = "python bench/threads_pool.py" + (f" --baseline {args.baseline}" if args.baseline != "bba8fe3" else "") \
        + (f" --threads {n}" if n != 2 else "") + (f" --rounds {args.rounds}" if args.rounds != 5 else "") \
        + (f" --steps {args.steps}" if args.steps != 2000 else "") \
        + (f" --pin {args.pin}" if args.pin != "auto" else "")
    record("threads_pool", f"The thread pool's cost per parallel step ({n} threads)", command,
           f"bench/pool_step.c against this tree's pool and {args.baseline}'s (condition variables only): {args.steps} "
           f"steps of `work` one-thread µs of fixed compute split in {n} equal parts, the caller alone computing "
           f"`gap` µs between steps; medians of {args.rounds} alternated rounds. Threads "
           f"{'pinned to CPUs 0..' + str(n - 1) if pin else 'not pinned'}. `step µs 1t`: the "
           f"same step on one thread (no pool); `overhead`: the {n}-thread step's wall time minus 1/{n} of it. "
           f"`CPU/wall`: process CPU time over wall time of the loop (at most {n}). Load average (1 min) during "
           f"the run: {min(loads):.1f} to {max(loads):.1f} on "
           f"{os.cpu_count()} cores.\n\n{body}")


if __name__ == "__main__":
    sys.exit(main())
