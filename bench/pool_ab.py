"""A/B timing of the pooling kernels on SqueezeNet 1.1's pooling layers: an older commit's against this tree's.

    python bench/pool_ab.py [--old c2ffe08] [--rounds 7] [--no-record]

The pattern of bench/kernel_ab.py (whose helpers it uses): both kernel folders compiled into bindings with the
profiler's flags, every call timed by the profiler's `measure_call`, old and new alternating call by call, their
order swapped every round. The layers are SqueezeNet 1.1's three 3x3 stride-2 max pools and its global average
pool, in the layouts its plans run them in. Correctness is tests/test_ops_primitives.py's (against ONNX Runtime).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import record_or_print, table
from kernel_ab import FLAGS, ab_row, alternate, kernels_at

from tasobuild import native
from tasobuild.ir import Graph, Node, Shape, attrs
from tasobuild.primitives import KernelCall
from tasobuild.primitives.registry import library
from tasobuild.resources import kernels_dir

# (label, primitive, kind, channels, in size, out size)
LAYERS = (
    ("squeezenet maxpool 64x111x111 -> 55", "maxpool_direct_hwc", "maxpool", 64, 111, 55),
    ("squeezenet maxpool 128x55x55 -> 27", "maxpool_direct_hwc", "maxpool", 128, 55, 27),
    ("squeezenet maxpool 256x27x27 -> 13", "maxpool_direct_hwc", "maxpool", 256, 27, 13),
    ("squeezenet gap 1000x13x13", "gap_direct_hwc", "gap", 1000, 13, 1),
    ("squeezenet gap 1000x13x13", "gap_direct_hcw", "gap", 1000, 13, 1),
)


def pool_call(primitive: str, kind: str, c: int, size: int, out: int) -> KernelCall:
    pool = {"kernel": (3, 3), "stride": (2, 2), "pads": (0, 0, 0, 0)} if kind == "maxpool" else {}
    node = Node("p", kind, ("x",), "y", attrs=attrs(**pool))
    graph = Graph((node,), (("x", Shape(c, size, size)), ("y", Shape(c, out, out))), (), "x", "y",
                  (1, c, size, size), (1, c, out, out))
    (call,) = next(p for p in library() if p.name == primitive).call(node, graph)
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", default="c2ffe08", help="the commit whose kernels_pyx/ is the baseline")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--section", default="pool_ab", help="the BENCHMARKS.md section to write")
    parser.add_argument("--no-record", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        old, _ = kernels_at(args.old, work)
        new = native.load(cflags=FLAGS, cache_dir=work / "cache", folder=kernels_dir())
        calls = [(label, prim, pool_call(prim, kind, c, size, out)) for label, prim, kind, c, size, out in LAYERS]
        times = alternate(calls, old, new, args.rounds)
    rows = [[label, prim, *ab_row(times[(label, prim)])] for label, prim, _ in calls]
    body = table(["layer", "primitive", f"old ms ({args.old})", "new ms", "new/old"], rows)
    record_or_print(args.no_record, args.section,
                    f"Pooling A/B: {args.old}'s kernels vs this tree's (SqueezeNet 1.1's pools, medians, same run)",
                    body)


if __name__ == "__main__":
    main()
