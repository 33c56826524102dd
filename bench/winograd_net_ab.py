"""Whole networks with an older commit's Winograd kernels against this tree's: one plan, two builds of it.

    python bench/winograd_net_ab.py [--old 581a623] [--networks googlenet squeezenet11 resnet18] [--rounds 7]
                                    [--files conv_depthwise.c --match depthwise]

Each network is built once by this tree (one thread, no fused tiling, `costs = "auto"`); a copy of the emitted
project gets the old commit's conv_winograd.c and tb_winograd_tf.h (or the kernel files --files names, such as
gemm.c tb_gemm.h) in its src/kernels/ (the kernels' signatures and
weight formats are the same), both are compiled by their own Makefile and their `--bench` runs alternate, their
order swapped every round, so both see the same machine state. Reported: each side's median, the median of the
per-round ratios new/old (< 1: the new kernels are faster) and whether the outputs are bit-identical. --files swaps
other kernel files (same signatures and weight formats) and --match names the primitives counted beside them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from common import ROOT, make, record_or_print, table, tasobuild

from tests.e2e import run_binary, write_spec
from tests.zoo import ensure_model

OLD_FILES = ("conv_winograd.c", "tb_winograd_tf.h")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", default="581a623", help="the commit whose Winograd kernels are the baseline")
    parser.add_argument("--networks", nargs="+", default=["googlenet", "squeezenet11", "resnet18"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=10, help="inferences per --bench batch")
    parser.add_argument("--files", nargs="+", default=list(OLD_FILES), help="the kernel files taken from --old")
    parser.add_argument("--match", default="winograd", help="count the convs whose primitive contains this")
    parser.add_argument("--section", default="winograd_net_ab", help="the BENCHMARKS.md section to write")
    parser.add_argument("--no-record", action="store_true", help="print the table, leave BENCHMARKS.md alone")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.networks:
            work = Path(tmp) / name
            work.mkdir(parents=True)
            model = ensure_model(name)
            spec = write_spec(work, model, memory="4 GiB")
            spec.write_text(spec.read_text().replace('costs = "profile"', 'costs = "auto"', 1))
            report = json.loads(tasobuild("build", "-c", str(spec), "--json").stdout)
            new_dir = work / "out"
            old_dir = work / "out_old"
            shutil.copytree(new_dir, old_dir)
            for file in args.files:
                text = subprocess.run(["git", "-C", str(ROOT), "show", f"{args.old}:kernels_pyx/{file}"],
                                      capture_output=True, check=True).stdout
                if (old_dir / "src" / "kernels" / file).exists():
                    (old_dir / "src" / "kernels" / file).write_bytes(text)
            for folder in (new_dir, old_dir):
                make(folder)
            binaries = {"new": new_dir / "net_main", "old": old_dir / "net_main"}
            shape = [d.dim_value for d in __import__("onnx").load(str(model), load_external_data=False)
                     .graph.input[0].type.tensor_type.shape.dim]
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            outputs = {side: run_binary(b, x, work)[0] for side, b in binaries.items()}
            times: dict[str, list[float]] = {"old": [], "new": []}
            for r in range(args.rounds):
                for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
                    times[side].append(run_binary(binaries[side], x, work, bench=args.runs)[1])
            ratio = statistics.median(n / o for n, o in zip(times["new"], times["old"], strict=True))
            wino = sum(args.match in n["primitive"] for n in report["nodes"])
            convs = sum(n["op"] == "conv" for n in report["nodes"])
            same = "yes" if outputs["new"].tobytes() == outputs["old"].tobytes() else \
                f"no ({float(np.max(np.abs(outputs['new'] - outputs['old']))):.1e})"
            rows.append([name, f"{wino}/{convs}", f"{statistics.median(times['old']):.2f}",
                         f"{statistics.median(times['new']):.2f}", f"{ratio:.3f}", same])
            print(rows[-1])
    body = table(["network", f"{args.match} convs", f"old ms ({args.old})", "new ms", "new/old", "bit-identical"], rows)
    record_or_print(args.no_record, args.section,
                    f"Whole networks, {args.old}'s {', '.join(args.files)} vs this tree's "
                    "(one plan, one thread, same run)",
                    body)


if __name__ == "__main__":
    main()
