"""The in-place element-wise kernels against the copying ones they stand in for: measured in one run, interleaved.

For each size, the copying call (tb_add a, b -> out; tb_act in -> out) and its in-place twin (tb_add_inplace
acc += x; tb_act_inplace x) run in alternating batches through the profiling bindings (tasobuild.native, the
bindings' flags), so that machine noise hits both alike; the table gives each one's median and their ratio. The
solver prices in place by such times (measured with `costs = "profile"`, else predicted), so this says whether
running in place costs time or saves it.

    TASOBUILD_CACHE_DIR=... python bench/inplace_kernels.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import record, table  # noqa: E402

SIZES = (4_096, 32_768, 262_144)  # floats: 16 KiB (L1), 128 KiB (L2), 1 MiB
REPS = 50  # timed calls per batch


def calls(n: int):  # -> list of (label, copying call, in-place call)
    from tasobuild.primitives import KernelCall

    params = (("n", n), ("act", 1), ("act_a", 0.0), ("act_b", 0.0))  # with a fused ReLU, as ResNet's adds

    def call(function: str, roles: tuple[str, ...]) -> KernelCall:
        return KernelCall(function, "tb_flat", params, roles, tuple((r, 4 * n) for r in roles))

    return [("add + ReLU", call("tb_add", ("in0", "in1", "out")), call("tb_add_inplace", ("out", "in1"))),
            ("ReLU", call("tb_act", ("in0", "out")), call("tb_act_inplace", ("out",)))]


def main() -> None:
    from tasobuild.costs.profile import make_buffers
    from tasobuild.native.kernels import load

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating batches per kernel")
    args = parser.parse_args()
    kernels = load()
    rows = []
    for n in SIZES:
        for label, copying, in_place in calls(n):
            buffers = {c.function: make_buffers(c) for c in (copying, in_place)}
            times: dict[str, list[float]] = {copying.function: [], in_place.function: []}
            for _ in range(args.rounds):
                for c in (copying, in_place):
                    times[c.function] += list(kernels.bench(c, buffers[c.function], 3, REPS))
            copy_us, place_us = (1e6 * float(np.median(times[c.function])) for c in (copying, in_place))
            rows.append([label, f"{n:,}", f"{copy_us:.2f}", f"{place_us:.2f}", f"{place_us / copy_us:.2f}"])
    body = (table(["kernel", "floats", "copying µs (median)", "in place µs (median)", "in place / copying"], rows)
            + f"\n\nEach median over {args.rounds} alternating batches of {REPS} timed calls per kernel, same run, "
            "the bindings' flags (`cc -O3 -march=native -ffp-contract=off`). In place reads one buffer fewer and "
            "writes the one it reads. Until the performance model is trained on the in-place kernels it predicts "
            "each as its copying twin on its own features (tasobuild/costs/model.py), which also puts it below the "
            "copy.")
    record("inplace-kernels", "In-place element-wise kernels vs copying (measured, same run)",
           "TASOBUILD_CACHE_DIR=... python bench/inplace_kernels.py", body)


if __name__ == "__main__":
    main()
