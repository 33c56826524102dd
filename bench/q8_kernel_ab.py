"""A/B timing of the int8 kernels: an older commit's against this tree's, same process, same buffers.

    python bench/q8_kernel_ab.py [--old 1c5fb8e] [--rounds 5] [--print-only]

As bench/kernel_ab.py (its loading and alternation): both kernel folders compiled into bindings with the profiler's
flags, every call timed by the profiler's `measure_call`, old and new alternating call by call, their order swapped
every round. Per call: each side's median over rounds and the median of the per-round ratios new/old (< 1: the new
kernel is faster). The layers are int8 layers of the networks of bench/int8.py (DS-CNN, ResNet-8, MobileNetV1-0.25
VWW) and one of ResNet-18; the calls' buffers are the profiler's random ones (the timing does not depend on the
values). The default prints the table and writes it into BENCHMARKS.md's "int8 networks" section.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import ROOT, table
from kernel_ab import FLAGS, ab_row, alternate, kernels_at

from tasobuild import native
from tasobuild.ir import Graph, Node, Quant, Shape, attrs
from tasobuild.primitives import KernelCall
from tasobuild.primitives.q8 import PRIMITIVES
from tasobuild.resources import kernels_dir

# (label, in_c, in_h, in_w, out_c, kernel, stride, pads (top, left, bottom, right), groups, primitives)
THREE_BY_THREE = ("q8_conv_direct_hwc", "q8_conv_im2row_hwc")
POINTWISE = ("q8_conv_1x1_hwc", "q8_conv_1x1_chw")
DEPTHWISE = ("q8_conv_depthwise_hwc",)
LAYERS = (
    ("ds-cnn first 10x4 1->64 /2 @49x10", 1, 49, 10, 64, (10, 4), (2, 2), (4, 1, 5, 1), 1, THREE_BY_THREE),
    ("ds-cnn dw 3x3 64 @25x5", 64, 25, 5, 64, (3, 3), (1, 1), (1, 1, 1, 1), 64, DEPTHWISE),
    ("ds-cnn 1x1 64->64 @25x5", 64, 25, 5, 64, (1, 1), (1, 1), (0, 0, 0, 0), 1, POINTWISE),
    ("resnet8 3x3 16->16 @32x32", 16, 32, 32, 16, (3, 3), (1, 1), (1, 1, 1, 1), 1, THREE_BY_THREE),
    ("resnet8 3x3 64->64 @8x8", 64, 8, 8, 64, (3, 3), (1, 1), (1, 1, 1, 1), 1, THREE_BY_THREE),
    ("vww first 3x3 3->8 /2 @96x96", 3, 96, 96, 8, (3, 3), (2, 2), (0, 0, 1, 1), 1, THREE_BY_THREE),
    ("vww dw 3x3 8 @48x48", 8, 48, 48, 8, (3, 3), (1, 1), (1, 1, 1, 1), 8, DEPTHWISE),
    ("vww dw 3x3 32 @24x24", 32, 24, 24, 32, (3, 3), (1, 1), (1, 1, 1, 1), 32, DEPTHWISE),
    ("vww 1x1 32->64 @24x24", 32, 24, 24, 64, (1, 1), (1, 1), (0, 0, 0, 0), 1, POINTWISE),
    ("resnet18 3x3 128->128 @28x28", 128, 28, 28, 128, (3, 3), (1, 1), (1, 1, 1, 1), 1, THREE_BY_THREE),
)
FC_LAYERS = (("resnet18 fc 512->1000", 512, 1000), ("ds-cnn fc 64->12", 64, 12))


def conv_call(primitive: str, layer: tuple) -> KernelCall:  # type: ignore[type-arg]
    _, c, h, w, m, (kh, kw), (sh, sw), (top, left, bottom, right), groups, _ = layer
    oh, ow = (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1
    node = Node("conv", "qconv", ("x",), "y", ("W", "b", "s"),
                attrs(kernel=(kh, kw), stride=(sh, sw), pads=(top, left, bottom, right), dilation=(1, 1),
                      groups=groups, act_min=-5, act_max=127))
    return _call(primitive, node, Shape(c, h, w), Shape(m, oh, ow))


def fc_call(k: int, n: int) -> KernelCall:
    node = Node("fc", "qfc", ("x",), "y", ("W", "b", "s"), attrs(act_min=-128, act_max=127))
    return _call("q8_fc_gemv_chw", node, Shape(k, 1, 1), Shape(n, 1, 1))


def _call(primitive: str, node: Node, src: Shape, dst: Shape) -> KernelCall:
    graph = Graph((node,), (("x", src), ("y", dst)), (), "x", "y", (1, src.c, src.h, src.w),
                  (1, dst.c, dst.h, dst.w), dtypes=(("x", "int8"), ("y", "int8")),
                  quant=(("x", Quant(0.05, 3)), ("y", Quant(0.1, -5))))
    (call,) = next(p for p in PRIMITIVES if p.name == primitive).call(node, graph)
    return call


def section_body(rows: list[list[str]], old: str, command: str) -> str:
    return (f"Kernel A/B (ms, medians of the rounds, old and new alternating call by call; reproduce: `{command}`)"
            "\n\n" + table(["layer", "primitive", f"old ms ({old})", "new ms", "new/old"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", default="1c5fb8e", help="the commit whose kernels_pyx/ is the baseline")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="", help="time only the primitives whose name contains this")
    parser.add_argument("--print-only", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args()

    calls = [(layer[0], p, conv_call(p, layer)) for layer in LAYERS for p in layer[-1]]
    calls += [(label, "q8_fc_gemv_chw", fc_call(k, n)) for label, k, n in FC_LAYERS]
    calls = [c for c in calls if args.only in c[1]]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        old, _ = kernels_at(args.old, work)
        new = native.load(cflags=FLAGS, cache_dir=work / "cache", folder=kernels_dir())
        times = alternate(calls, old, new, args.rounds)
    rows = [[label, prim, *ab_row(times[(label, prim)])] for label, prim, _ in calls]
    command = ("python bench/q8_kernel_ab.py " + " ".join(sys.argv[1:])).strip()
    body = section_body(rows, args.old, command)
    print(body)
    if not args.print_only:
        write_into_int8_section(body)


START, END = "<!-- q8_kernel_ab -->", "<!-- /q8_kernel_ab -->"


def kernel_ab_block() -> str:
    """The kernel A/B table with its markers as BENCHMARKS.md holds it ("" if it holds none): bench/int8.py keeps it
    when it rewrites its section."""
    text = (ROOT / "BENCHMARKS.md").read_text()
    return text[text.index(START):text.index(END) + len(END)] if START in text and END in text else ""


def write_into_int8_section(body: str) -> None:
    """The table between its markers inside BENCHMARKS.md's "int8 networks" section (bench/int8.py keeps them)."""
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text()
    block = f"{START}\n{body}\n{END}"
    if START in text:
        text = text[:text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        end = text.index("<!-- /bench:int8 -->")
        text = text[:end] + "\n" + block + "\n" + text[end:]
    path.write_text(text)


if __name__ == "__main__":
    main()
