"""A/B timing of conv kernels: the kernels of an older commit against this tree's, same process, same buffers.

    python bench/kernel_ab.py [--old 140899e] [--rounds 7] [--primitives conv_im2col_gemm_chw ...]

Both kernel folders are compiled into bindings (tasobuild.native.load with each folder, the profiler's flags) and
every call is timed with the profiler's own `measure_call`, old and new alternating call by call, their order
swapped every round, so both see the same machine state. Per call: the median over rounds of each side's median,
and the median of the per-round ratios new/old (< 1: the new kernel is faster). The layers are real ones (CIFAR
ResNet-8, MobileNetV1-VWW, DS-CNN, ResNet-18); "code" says whether the compiled function differs at all (objdump of
each kernel's object file, addresses masked): an identical function's ratio shows the noise.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, record, table

from tasobuild import native
from tasobuild.costs.profile import measure_call
from tasobuild.ir import Activation, Graph, Node, Shape, attrs
from tasobuild.primitives import KernelCall
from tasobuild.primitives.registry import library
from tasobuild.resources import kernels_dir

# (label, in_c, in_h, in_w, out_c, kernel, stride, pads (top, left, bottom, right))
LAYERS = (
    ("resnet8 3x3 16->16 @32x32", 16, 32, 32, 16, (3, 3), (1, 1), (1, 1, 1, 1)),
    ("resnet8 3x3 16->32 /2 @32x32", 16, 32, 32, 32, (3, 3), (2, 2), (1, 1, 1, 1)),
    ("resnet8 3x3 64->64 @8x8", 64, 8, 8, 64, (3, 3), (1, 1), (1, 1, 1, 1)),
    ("vww first 3x3 3->8 /2 @96x96", 3, 96, 96, 8, (3, 3), (2, 2), (0, 0, 1, 1)),
    ("ds-cnn first 10x4 1->64 /2 @49x10", 1, 49, 10, 64, (10, 4), (2, 2), (4, 1, 5, 1)),
    ("resnet18 3x3 64->64 @56x56", 64, 56, 56, 64, (3, 3), (1, 1), (1, 1, 1, 1)),
    ("resnet18 3x3 128->128 @28x28", 128, 28, 28, 128, (3, 3), (1, 1), (1, 1, 1, 1)),
)
# The two kernels whose code changed (they now run the shared im2col body), then unchanged ones as a noise control.
PRIMITIVES = ("conv_im2col_gemm_chw", "conv_im2row_gemm_hwc", "conv_im2col_scan_chw", "conv_im2row_scan_hwc",
              "conv_im2row_scan_chw_to_hwc", "conv_mec_chw", "conv_mec_hwc")
FLAGS = native.DEFAULT_CFLAGS


def conv_call(primitive: str, layer: tuple) -> KernelCall:  # type: ignore[type-arg]
    _, c, h, w, m, (kh, kw), (sh, sw), (top, left, bottom, right) = layer
    oh, ow = (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1
    node = Node("conv", "conv", ("x",), "y", ("W", "b"),
                attrs(kernel=(kh, kw), stride=(sh, sw), pads=(top, left, bottom, right), dilation=(1, 1), groups=1),
                Activation("relu"))
    graph = Graph((node,), (("x", Shape(c, h, w)), ("y", Shape(m, oh, ow))), (), "x", "y", (1, c, h, w),
                  (1, m, oh, ow))
    (call,) = next(p for p in library() if p.name == primitive).call(node, graph)
    return call


def function_bodies(folder: Path, work: Path) -> dict[str, list[str]]:
    """Each tb_ function's machine code in the folder's conv object files, compiled with FLAGS: its disassembly and
    that of every function of its file it calls (static helpers, constprop clones), addresses masked."""
    code: dict[str, list[str]] = {}
    for source in sorted(folder.glob("conv_*.c")):
        obj = work / f"{source.stem}.o"
        subprocess.run(["cc", *FLAGS, "-c", str(source), "-o", str(obj)], check=True)
        text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(obj)], capture_output=True, text=True,
                              check=True).stdout
        bodies: dict[str, list[str]] = {}
        callees: dict[str, set[str]] = {}
        name = ""
        for line in text.splitlines():
            head = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
            if head:
                name = head.group(1)
                bodies[name], callees[name] = [], set()
            elif name and re.match(r"^\s*[0-9a-f]+:", line):
                insn = line.split(":", 1)[1].strip()
                callees[name].update(t for t in re.findall(r"<([^>+]+)>", insn) if t != name)
                insn = re.sub(r"\b[0-9a-f]+ <[^>]*>", "<addr>", insn)
                bodies[name].append(re.sub(r"0x[0-9a-f]+", "0xN", insn))
        for entry in (n for n in bodies if n.startswith("tb_")):
            seen, todo = {entry}, [entry]
            while todo:
                for callee in callees.get(todo.pop(), ()):
                    if callee in bodies and callee not in seen:
                        seen.add(callee)
                        todo.append(callee)
            code[entry] = [insn for n in sorted(seen) for insn in [f"<{n}>", *bodies[n]]]
    return code


def kernels_at(commit: str, work: Path) -> tuple[native.Kernels, Path]:
    """The bindings of `commit`'s kernels_pyx/ (extracted under `work`), and that folder."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "kernels_pyx"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
    folder = work / "kernels_pyx"
    return native.load(cflags=FLAGS, cache_dir=work / "cache", folder=folder), folder


def alternate(calls: list[tuple[str, str, KernelCall]], old: native.Kernels, new: native.Kernels,
              rounds: int) -> dict[tuple[str, str], dict[str, list[float]]]:
    """Per (label, primitive): each side's median ms per round, old and new alternating call by call, their order
    swapped every round."""
    times: dict[tuple[str, str], dict[str, list[float]]] = {(lab, p): {"old": [], "new": []} for lab, p, _ in calls}
    for r in range(rounds):
        for label, prim, call in calls:
            sides = (("old", old), ("new", new)) if r % 2 == 0 else (("new", new), ("old", old))
            for side, kernels in sides:
                times[(label, prim)][side].append(measure_call(call, kernels).median_ms)
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    return times


def ab_row(times: dict[str, list[float]]) -> list[str]:
    """old median, new median, median of the per-round ratios new/old."""
    ratio = statistics.median(n / o for n, o in zip(times["new"], times["old"], strict=True))
    return [f"{statistics.median(times['old']):.4f}", f"{statistics.median(times['new']):.4f}", f"{ratio:.3f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", default="140899e", help="the commit whose kernels_pyx/ is the baseline")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--primitives", nargs="+", default=list(PRIMITIVES))
    parser.add_argument("--no-record", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        old, old_dir = kernels_at(args.old, work)
        new = native.load(cflags=FLAGS, cache_dir=work / "cache", folder=kernels_dir())
        (work / "old-objects").mkdir()
        (work / "new-objects").mkdir()
        old_code = function_bodies(old_dir, work / "old-objects")
        new_code = function_bodies(kernels_dir(), work / "new-objects")

        calls = [(layer[0], p, conv_call(p, layer)) for layer in LAYERS for p in args.primitives]
        times = alternate(calls, old, new, args.rounds)

    rows = []
    for label, prim, call in calls:
        same = old_code.get(call.function) == new_code.get(call.function)
        rows.append([label, prim, "identical" if same else "changed", *ab_row(times[(label, prim)])])
    body = table(["layer", "primitive", "code", f"old ms ({args.old})", "new ms", "new/old"], rows)
    command = "python bench/kernel_ab.py " + " ".join(sys.argv[1:])
    if args.no_record:
        print(body)
    else:
        record("kernel_ab", f"Kernel A/B: {args.old}'s kernels vs this tree's (conv kernels, medians, same run)",
               command.strip(), body)


if __name__ == "__main__":
    main()
