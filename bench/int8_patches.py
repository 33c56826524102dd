"""int8 patch-based inference (tasobuild/tiling/patches.py) on the MLPerf Tiny networks as TensorFlow quantised them:
the smallest arena with patch groups only, row groups only, every kind, and untiled, against TFLM's, each plan's
time measured side by side in one run.

    python bench/int8_patches.py [--networks NAME ...] [--rounds N] [--runs N]

Per network (tests/fixtures/int8/: int8 input and output, as TFLM runs them; host target, costs from the
performance model), one pricing with `tiling = true`, then in process for each set of fused groups on offer (none,
row groups, patch groups, all): the smallest arena (objective "memory"), then the fastest plan in that arena. Every
plan is rendered, compiled, checked bit for bit against TFLite's reference kernels on the fixture's reference
inputs, then the binaries are timed (`--bench`) in alternating rounds with the untiled fastest plan; a ratio is the
median over rounds of the paired ratio to it. Ours is the whole arena of the emitted program, input and output
included; TFLM's head is its planner on the same .tflite (tests/zoo/tflm_arena.py), with tail issue 17's figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import make, median, record, table  # noqa: E402
from int8 import TFLM_WITH_TAIL  # noqa: E402

from tests.e2e import run_binary, write_target_spec  # noqa: E402
from tests.int8_oracle import assert_bit_exact  # noqa: E402
from tests.zoo.int8 import TFLITE_INT8, TfliteFixture, tflite_fixture  # noqa: E402
from tests.zoo.tflm_arena import tflm_arena_head  # noqa: E402

# The fused groups each plan may pick, by group name ("" for a node that is not fused).
OFFERS: dict[str, Callable[[str], bool]] = {
    "untiled smallest": lambda name: False,
    "rows only": lambda name: " rows=" in name,
    "patches only": lambda name: " patches " in name,
    "all kinds": lambda name: True,
}


def real_input(fixture: TfliteFixture, q: np.ndarray) -> np.ndarray:
    """A reference input as the runner's float file: (q - zero point) * scale, which quantises back to q exactly."""
    return ((q.astype(np.float32) - fixture.input_zero_point) * np.float32(fixture.input_scale)).astype(np.float32)


def check_bit_exact(fixture: TfliteFixture, binary: Path, workdir: Path) -> None:
    for q, reference in zip(fixture.inputs, fixture.outputs):
        y, _ = run_binary(binary, real_input(fixture, q), workdir)
        got = np.round(y / np.float32(fixture.output_scale)) + fixture.output_zero_point
        assert_bit_exact(got.astype(np.int8).reshape(reference.shape), reference)


def plans(name: str, work: Path) -> dict[str, tuple[dict, Path]]:
    """The untiled fastest plan and, per offer, the fastest plan in the smallest arena: label -> (what the table
    reads, the compiled binary), each checked bit for bit against TFLite's reference."""
    from tasobuild.decide import decide, to_problem
    from tasobuild.pipeline import Planned, Solve, load, price, program_of, render
    from tasobuild.solve import Session

    fixture = tflite_fixture(name)
    work.mkdir(parents=True, exist_ok=True)
    inputs = load(write_target_spec(work, fixture.onnx, "host", costs="model", memory="4 GiB",
                                    extra="tiling = true\n"))
    priced = price(inputs, Solve(inputs.spec, inputs.target))
    limit = inputs.spec.optimizer.time_limit / 1000.0
    built: dict[str, tuple[dict, Path]] = {}
    for label, keep in {"untiled fastest": OFFERS["untiled smallest"], **OFFERS}.items():
        groups = tuple(g for g in priced.groups if keep(g.name))
        problem = to_problem(inputs.graph, priced.nodes, priced.transforms, priced.costed.costs, groups)
        peak = Session(problem).min_peak_bytes()  # the smallest live-set peak any plan of these groups has
        if label == "untiled fastest":
            decision = decide(problem, 2**32, "latency", None, limit)
        else:
            smallest = decide(problem, 2**32, "memory", None, limit).arena.arena_bytes
            decision = decide(problem, smallest, "latency", None, limit)
        planned = Planned(inputs.spec, inputs.target, inputs.graph, priced.nodes, priced.transforms, priced.costed,
                          decision, groups)
        out = work / label.replace(" ", "_") / "out"
        for path, data in render(program_of(planned)).items():
            (out / path).parent.mkdir(parents=True, exist_ok=True)
            (out / path).write_bytes(data)
        make(out)
        binary = out / "net_main"
        check_bit_exact(fixture, binary, out.parent)
        fused = sorted({c.group for _, c in decision.plan.choices if c.group})
        built[label] = ({"arena_bytes": decision.arena.arena_bytes, "peak_bytes": peak, "groups": fused}, binary)
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=list(TFLITE_INT8), choices=TFLITE_INT8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks:
            work = Path(tmp) / name
            built = plans(name, work)
            fixture = tflite_fixture(name)
            x = real_input(fixture, fixture.inputs[0])
            times: dict[str, list[float]] = {label: [] for label in built}
            for _ in range(args.rounds):
                for label, (_, binary) in built.items():
                    ms = run_binary(binary, x, work, bench=args.runs)[1]
                    assert ms is not None
                    times[label].append(ms)
            base = times["untiled fastest"]
            head = tflm_arena_head(fixture.tflite)
            for label, (report, _) in built.items():
                ratio = statistics.median(a / b for a, b in zip(times[label], base))
                arena = report["arena_bytes"]
                groups = report["groups"]
                what = (f"{len(groups)}: " + ", ".join(groups[:3]) + (", ..." if len(groups) > 3 else "")
                        if groups else "")
                rows.append([name, label, f"{arena:,}", f"{report['peak_bytes']:,}", f"{head / arena:.2f}x",
                             f"{TFLM_WITH_TAIL[name] / arena:.2f}x",
                             f"{median(times[label]):.3f}", f"{ratio:.3f}", what])
                print(rows[-1], file=sys.stderr)
            rows.append([name, "TFLM (head / with tail)", f"{head:,} / {TFLM_WITH_TAIL[name]:,}", "", "1.00x", "",
                         "", "", ""])
    record("int8_patches", "int8 patch-based inference: smallest arena by kind of tiling vs TFLM, measured time",
           f"python bench/int8_patches.py --networks {' '.join(args.networks)} --rounds {args.rounds} "
           f"--runs {args.runs}",
           NOTE + " " + load_note(load) + "\n\n"
           + table(["network", "plan", "arena B", "smallest peak B", "TFLM head / ours", "TFLM with tail / ours",
                    "measured ms", "vs untiled fastest", "fused groups"], rows)
           + "\n\n" + AFTER)


NOTE = (
    "The TF-quantised MLPerf Tiny networks (int8 input and output), host target, costs from the performance model; "
    "per set of fused groups on offer, the smallest arena (objective \"memory\"), then the fastest plan in it. "
    "Arena: the emitted program's, input and output included, no bookkeeping. Every plan's outputs were checked bit "
    "for bit against TFLite's reference kernels. Times: the binaries' `--bench` medians (one thread), the median "
    "over alternating rounds; the ratio is paired per round against the untiled fastest plan.")


def load_note(start: float) -> str:
    """The machine's load (1-minute average) at the start and the end of the run: it is shared."""
    return f"Load (1-minute average): {start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end."

AFTER = (
    "\"smallest peak\": the least live-set peak any plan with those groups has (solve.Session.min_peak_bytes); the "
    "arena is the placed plan's, which may be above it where outputs over their inputs chain so that no placement "
    "reaches the peak. Row groups run top to bottom or bottom to top, as the placement puts their outputs below or "
    "above their inputs (tiling.rows.upward_schedule), so DS-CNN's four row groups in a row alternate and place at "
    "their peak, 9,600 bytes (top to bottom only they stepped down group after group: 11,840). Where another plan "
    "of that peak places at it, decide "
    "takes that one (decide.unchained: MobileNetV2 with every kind on offer picked a patch group placed 1,280 bytes "
    "above its peak before). Patch groups need a grid of at least 4 output pixels a side "
    "(tiling.patches.MIN_PATCH_SIDE), which DS-CNN's 5-column feature maps do not have, and ResNet-8's chains "
    "feed residual adds, so neither gains from them. Patches alone reach 2x (MobileNetV1-0.25) and 3.7x "
    "(MobileNetV2-0.35) below TFLM's head, bit for bit, but row groups (no recomputation, windows of a few rows) "
    "reach smaller peaks.")

if __name__ == "__main__":
    sys.exit(main())
