"""HWC zero-copy concatenation: per network, the concat copies removed, the time before/after and the arena.

    python bench/concat_hwc.py [--networks squeezenet11 googlenet] [--rounds 5] [--reps 20] [--no-record]

"Before" is the same tasobuild with the HWC zero-copy choices left out of the library (an allow-list of every
primitive but concat_zerocopy_hwc and the `_strided` producers); "after" has them. Both plans come from the same
cost cache (costs = "profile": the strided calls are measured like any other). Time: the two latency-objective
programs run in alternation, `--rounds` times `--bench REPS` each, medians side by side. Arena: the memory-objective
plans (tiling off). Copies: the tb_copy_channels_hwc calls in each latency plan's C.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import make, median, record_or_print, table, tasobuild  # noqa: E402
from tasobuild.primitives.registry import library  # noqa: E402
from tests.e2e import write_spec  # noqa: E402
from tests.zoo import ensure_model  # noqa: E402

TITLE = "Zero-copy concatenation in HWC: copies removed, time and arena"


def without_hwc_zero_copy() -> str:
    names = sorted(p.name for p in library() if not p.strided_out and p.name != "concat_zerocopy_hwc")
    return "primitives = [" + ", ".join(f'"{n}"' for n in names) + "]\n"


def build(network: str, work: Path, objective: str, before: bool) -> tuple[dict, Path]:
    extra = (without_hwc_zero_copy() if before else "") + ("tiling = false\n" if objective == "memory" else "")
    work.mkdir(parents=True, exist_ok=True)
    spec = write_spec(work, ensure_model(network), memory="4 GiB", extra=extra)
    spec.write_text(spec.read_text().replace('memory = "4 GiB"', f'memory = "4 GiB"\nobjective = "{objective}"', 1))
    return json.loads(tasobuild("build", "-c", str(spec), "--json").stdout), work / "out"


def bench_ms(out_dir: Path, x: Path, reps: int) -> float:
    run = subprocess.run([str(out_dir / "net_main"), str(x), str(out_dir / "y.bin"), "--bench", str(reps)],
                         capture_output=True, text=True, check=True).stdout
    return float(next(line for line in run.splitlines() if line.startswith("median_ms:")).split(":")[1])


def measure(network: str, work: Path, rounds: int, reps: int) -> list[str]:
    (before, before_out), (after, after_out) = (build(network, work / f"{network}-{k}", "latency", k == "before")
                                                for k in ("before", "after"))
    for out in (before_out, after_out):
        make(out)
    spec = work / f"{network}-after" / "taso.toml"
    shape = json.loads(tasobuild("check", "-c", str(spec), "--json").stdout)["input"]
    x = work / f"{network}.bin"
    import numpy as np

    np.random.default_rng(0).standard_normal(math.prod(shape)).astype("<f4").tofile(x)
    outputs = []
    times: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(rounds):  # alternating, so both see the same machine
        for key, out in (("before", before_out), ("after", after_out)):
            times[key].append(bench_ms(out, x, reps))
    for out in (before_out, after_out):
        outputs.append(np.fromfile(out / "y.bin", "<f4"))
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-4, atol=1e-4)  # the same network either way
    copies = [(out / "src" / "net.c").read_text().count("tb_copy_channels_hwc(") for out in (before_out, after_out)]
    gathered = sum(n["primitive"] == "concat_zerocopy_hwc" for n in after["nodes"])
    mem_before, _ = build(network, work / f"{network}-mem-before", "memory", True)
    mem_after, _ = build(network, work / f"{network}-mem-after", "memory", False)
    t0, t1 = median(times["before"]), median(times["after"])
    return [network, f"{gathered}", f"{copies[0]} -> {copies[1]}", f"{t0:.3f}", f"{t1:.3f}", f"{t1 / t0:.3f}",
            f"{before['arena_bytes']:,} -> {after['arena_bytes']:,}",
            f"{mem_before['arena_bytes']:,}", f"{mem_after['arena_bytes']:,}",
            f"{mem_after['arena_bytes'] / mem_before['arena_bytes']:.3f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["squeezenet11", "googlenet"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tasobuild-bench-concat"))
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    rows = [measure(n, args.work, args.rounds, args.reps) for n in args.networks]
    body = table(["network", "HWC concats gathered", "copy calls before -> after", "before ms", "after ms",
                  "after / before", "arena (latency plan) before -> after", "arena before (memory)",
                  "arena after (memory)", "after / before"], rows)
    body += ("\n\nOne thread, default spec (costs = \"profile\", latency objective; the memory columns: objective "
             "\"memory\", tiling off). Before: the same build with concat_zerocopy_hwc and the `_strided` "
             "producers left out of the library. Times: medians of `--rounds` alternating runs of `--bench "
             "REPS`, both programs' outputs checked equal.")
    record_or_print(args.no_record, "concat_hwc", TITLE, body)


if __name__ == "__main__":
    main()
