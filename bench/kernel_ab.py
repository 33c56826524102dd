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

from common import extract_kernels, record_or_print, table

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
    ("resnet18 3x3 256->256 @14x14", 256, 14, 14, 256, (3, 3), (1, 1), (1, 1, 1, 1)),
    ("resnet18 3x3 512->512 @7x7", 512, 7, 7, 512, (3, 3), (1, 1), (1, 1, 1, 1)),
    ("googlenet 1x1 480->192 @14x14", 480, 14, 14, 192, (1, 1), (1, 1), (0, 0, 0, 0)),
    ("googlenet 3x3 96->208 @14x14", 96, 14, 14, 208, (3, 3), (1, 1), (1, 1, 1, 1)),
    ("googlenet 1x1 528->256 @14x14", 528, 14, 14, 256, (1, 1), (1, 1), (0, 0, 0, 0)),
    ("googlenet 1x1 832->384 @7x7", 832, 7, 7, 384, (1, 1), (1, 1), (0, 0, 0, 0)),
    ("squeezenet 1x1 512->1000 @13x13", 512, 13, 13, 1000, (1, 1), (1, 1), (0, 0, 0, 0)),
    ("squeezenet 1x1 64->16 @55x55", 64, 55, 55, 16, (1, 1), (1, 1), (0, 0, 0, 0)),
    ("squeezenet 1x1 16->64 @55x55", 16, 55, 55, 64, (1, 1), (1, 1), (0, 0, 0, 0)),
    ("squeezenet 1x1 32->128 @27x27", 32, 27, 27, 128, (1, 1), (1, 1), (0, 0, 0, 0)),
    ("squeezenet 1x1 48->192 @13x13", 48, 13, 13, 192, (1, 1), (1, 1), (0, 0, 0, 0)),
    ("squeezenet 1x1 64->256 @13x13", 64, 13, 13, 256, (1, 1), (1, 1), (0, 0, 0, 0)),
    ("googlenet stem 7x7 3->64 /2 @224x224", 3, 224, 224, 64, (7, 7), (2, 2), (3, 3, 3, 3)),
    ("resnet18 stem 7x7 3->64 /2 @224x224", 3, 224, 224, 64, (7, 7), (2, 2), (3, 3, 3, 3)),
    ("squeezenet stem 3x3 3->64 /2 @224x224", 3, 224, 224, 64, (3, 3), (2, 2), (0, 0, 0, 0)),
)
# The two kernels whose code changed (they now run the shared im2col body), then unchanged ones as a noise control.
PRIMITIVES = ("conv_im2col_gemm_chw", "conv_im2row_gemm_hwc", "conv_im2col_scan_chw", "conv_im2row_scan_hwc",
              "conv_im2row_scan_chw_to_hwc", "conv_mec_chw", "conv_mec_hwc")
FLAGS = native.DEFAULT_CFLAGS


def conv_node(layer: tuple) -> tuple[Node, Graph]:  # type: ignore[type-arg]
    _, c, h, w, m, (kh, kw), (sh, sw), (top, left, bottom, right) = layer
    oh, ow = (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1
    node = Node("conv", "conv", ("x",), "y", ("W", "b"),
                attrs(kernel=(kh, kw), stride=(sh, sw), pads=(top, left, bottom, right), dilation=(1, 1), groups=1),
                Activation("relu"))
    graph = Graph((node,), (("x", Shape(c, h, w)), ("y", Shape(m, oh, ow))), (), "x", "y", (1, c, h, w),
                  (1, m, oh, ow))
    return node, graph


def conv_call(primitive: str, layer: tuple) -> KernelCall:  # type: ignore[type-arg]
    (call,) = next(p for p in library() if p.name == primitive).call(*conv_node(layer))
    return call


def function_bodies(folder: Path, work: Path) -> dict[str, list[str]]:
    """Each tb_ function's machine code in the folder's conv object files and the shared GEMM's, compiled with
    FLAGS: its disassembly and that of every function it calls (its file's static helpers and constprop clones,
    another file's tb_ functions: a conv kernel's code includes tb_gemm's), addresses masked."""
    bodies: dict[tuple[str, str], list[str]] = {}
    callees: dict[tuple[str, str], set[str]] = {}
    for source in [*sorted(folder.glob("conv_*.c")), folder / "gemm.c"]:
        obj = work / f"{source.stem}.o"
        subprocess.run(["cc", *FLAGS, "-c", str(source), "-o", str(obj)], check=True)
        text = subprocess.run(["objdump", "-dr", "--no-show-raw-insn", str(obj)], capture_output=True, text=True,
                              check=True).stdout
        key = (source.stem, "")
        for line in text.splitlines():
            head = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
            reloc = re.match(r"^\s*[0-9a-f]+: R_\w+\s+([\w.]+)", line)  # a call to another object's function
            if head:
                key = (source.stem, head.group(1))
                bodies[key], callees[key] = [], set()
            elif key[1] and reloc:
                callees[key].add(reloc.group(1))
            elif key[1] and re.match(r"^\s*[0-9a-f]+:", line):
                insn = line.split(":", 1)[1].strip()
                callees[key].update(t for t in re.findall(r"<([^>+]+)>", insn) if t != key[1])
                insn = re.sub(r"\b[0-9a-f]+ <[^>]*>", "<addr>", insn)
                bodies[key].append(re.sub(r"0x[0-9a-f]+", "0xN", insn))
    public = {name: (stem, name) for stem, name in bodies if name.startswith("tb_")}
    code: dict[str, list[str]] = {}
    for entry in sorted(public):
        seen, todo = {public[entry]}, [public[entry]]
        while todo:
            stem, name = todo.pop()
            for callee in sorted(callees[(stem, name)]):
                found = (stem, callee) if (stem, callee) in bodies else public.get(callee)
                if found and found not in seen:
                    seen.add(found)
                    todo.append(found)
        code[entry] = [insn for k in sorted(seen) for insn in [f"<{k[1]}>", *bodies[k]]]
    return code


def kernels_at(commit: str, work: Path) -> tuple[native.Kernels, Path]:
    """The bindings of `commit`'s kernels_pyx/ (extracted under `work`), and that folder."""
    folder = extract_kernels(commit, work)
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
    parser.add_argument("--layers", nargs="+", help="only the layers whose label contains one of these")
    parser.add_argument("--section", default="kernel_ab", help="the BENCHMARKS.md section to write")
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

        layers = [layer for layer in LAYERS if not args.layers or any(part in layer[0] for part in args.layers)]
        prims = [(p, next(q for q in library() if q.name == p)) for p in args.primitives]
        calls = [(layer[0], p, conv_call(p, layer)) for layer in layers for p, prim in prims
                 if prim.applies(*conv_node(layer))]
        times = alternate(calls, old, new, args.rounds)

    rows = []
    for label, prim, call in calls:
        same = old_code.get(call.function) == new_code.get(call.function)
        rows.append([label, prim, "identical" if same else "changed", *ab_row(times[(label, prim)])])
    body = table(["layer", "primitive", "code", f"old ms ({args.old})", "new ms", "new/old"], rows)
    record_or_print(args.no_record, args.section,
                    f"Kernel A/B: {args.old}'s kernels vs this tree's (conv kernels, medians, same run)", body)

if __name__ == "__main__":
    main()
