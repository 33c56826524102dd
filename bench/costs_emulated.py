"""The performance model on the microcontrollers: emulated counts, per-target fine-tuning, accuracy and regret.

    python bench/costs_emulated.py                      # the three M targets, the MLPerf Tiny networks (TF exports)
    python bench/costs_emulated.py --targets cortex-m4 --networks ds_cnn_tf,resnet8_tf
    python bench/costs_emulated.py --write-calibrations # also writes tasobuild/data/cost_calibration.<target>.json

For each microcontroller target, every candidate call of every network is counted on the target's emulated board
(costs/emulated.py: qemu-system-arm -icount, through the cost cache, so a rerun counts nothing again). Then, network
by network, leaving it out:

* accuracy: the shipped (host-trained) model as it is, and fine-tuned (CostModel.fine_tuned, the transfer of Mulder
  et al.) on the emulated counts of the other networks, predicting the left-out network's calls (those whose key
  the others do not share): median error and the share within 2x of the count;
* regret: the plan Z3 makes from each model's predictions, and from the emulated counts themselves (the
  emulator-profiled plan), under the device's RAM less its stack, each priced by the emulated counts;
* SIMD (the M55): the emulator-profiled plan with the Helium kernels and with the plain C ones.

--write-calibrations fine-tunes the shipped model on every network's counts and writes the calibration (a few
hundred bytes: offset, slope, per-function offsets) as the target's own, which builds for that target then apply
to the shipped model ("predicted (target model)").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.costs_data import graph_calls  # noqa: E402
from tasobuild.costs.cache import Cost, CostCache, kernel_digest  # noqa: E402
from tasobuild.costs.model import CostModel, Sample  # noqa: E402
from tasobuild.costs.stage import cost_calls, emulator, predict, shipped_model, target_calibration_file  # noqa: E402
from tasobuild.primitives import KernelCall  # noqa: E402
from tasobuild.target import Target, load_target  # noqa: E402

TARGETS = ("cortex-m4", "cortex-m7", "cortex-m55")
SIMD_TARGETS = ("cortex-m55",)  # the microcontrollers with SIMD kernels (Helium)
NETWORKS = ("ds_cnn_tf", "resnet8_tf", "mobilenet_v1_vww_tf", "fc_autoencoder_tf")
SECTION = "## Emulated costs: the performance model per microcontroller"


def counted(target: Target, calls: Sequence[KernelCall]) -> dict[str, Cost]:
    """The emulated cost of every call that fits the board (from the cache, or counted now)."""
    from tasobuild.costs.emulated import emulated_fingerprint

    emulate = emulator(target, progress=True)
    if emulate is None:
        raise SystemExit(f"{target.name}: needs {target.cc_argv[0]} and qemu-system-arm")
    with CostCache() as cache:
        costs = cost_calls("profile", calls, cache, fingerprint=emulated_fingerprint(target),
                           kernels_digest=kernel_digest(), kernels=None, model=shipped_model(), progress=True,
                           emulate=emulate).costs
    return {k: c for k, c in costs.items() if c.source == "emulated"}


def network(name: str) -> tuple[object, tuple, tuple, list[KernelCall]]:
    from tasobuild.candidates import node_candidates, transform_candidates
    from tasobuild.importer import import_onnx
    from tests.zoo import ensure_model

    graph = import_onnx(ensure_model(name))
    return graph, node_candidates(graph), transform_candidates(graph), graph_calls(graph)


def ranks(values: Sequence[float]) -> np.ndarray:
    return np.argsort(np.argsort(np.asarray(values), kind="stable"), kind="stable").astype(float)


def layer_rank(predicted: dict[str, float], calls: Sequence[KernelCall], truth: dict[str, Cost]) -> float:
    """Mean Spearman correlation, over the layers with 3 or more alternatives (calls of one struct and parameters),
    of the predicted and counted orders: what choosing a primitive needs, whatever the scale."""
    layers: dict[tuple, list[KernelCall]] = {}
    for c in calls:
        layers.setdefault((c.struct, c.params), []).append(c)
    correlations = []
    for group in layers.values():
        if len(group) >= 3:
            a = ranks([predicted[c.key()] for c in group])
            b = ranks([truth[c.key()].median_ms for c in group])
            if a.std() > 0 and b.std() > 0:
                correlations.append(float(np.corrcoef(a, b)[0, 1]))
    return float(np.mean(correlations)) if correlations else float("nan")


def errors(model: CostModel, calls: Sequence[KernelCall], truth: dict[str, Cost]) -> dict[str, float]:
    predicted = model.predict_ms(calls)
    ratio = np.array([predicted[c.key()] / truth[c.key()].median_ms for c in calls])
    error = np.abs(np.log2(ratio))
    return {"median_error": float(2 ** np.median(error) - 1), "within_2x": float(np.mean(error <= 1.0)),
            "layer_rank": layer_rank(predicted, calls, truth), "calls": len(calls)}


def simd_speedup(target_name: str, networks: Sequence[str]) -> dict:
    """The emulator-profiled plan of each network with the target's SIMD kernels and with the plain C ones
    (-DTB_GEMM_SCALAR), both priced by their own counts."""
    target = load_target(target_name, REPO)
    plain = target.model_copy(update={"cflags": (*target.cflags, "-DTB_GEMM_SCALAR")})
    out = {}
    for name in networks:
        net = network(name)
        ms = {label: regret(t, net, counted(t, net[3]), {})["profiled"]
              for label, t in (("simd", target), ("plain", plain))}
        out[name] = {**ms, "clock_mhz": target.clock_mhz}
        print(f"# simd {target_name} {name}: {json.dumps(out[name])}", file=sys.stderr, flush=True)
    return out


def regret(target: Target, net: tuple, truth: dict[str, Cost], models: dict[str, CostModel]) -> dict[str, float]:
    from tasobuild.decide import decide, to_problem
    from tasobuild.solve.plan import evaluate

    graph, nodes, transforms, calls = net
    budget = (target.ram or 0) - (target.stack or 0)
    truth_problem = to_problem(graph, nodes, transforms, truth)

    def price(costs: dict[str, Cost]) -> float:
        plan = decide(to_problem(graph, nodes, transforms, costs), budget, "latency", None, 10.0).plan
        chosen = {name: (c.primitive, c.layout_in, c.layout_out) for name, c in plan.choices}
        picks = [next(c for c in node.choices if (c.primitive, c.layout_in, c.layout_out) == chosen[node.name])
                 for node in truth_problem.nodes]
        return float(evaluate(truth_problem, picks).predicted_ms)

    ms = {"profiled": price(truth)}
    for name, model in models.items():
        ms[name] = price(predict(model, calls))
    return ms


def evaluate_target(target_name: str, networks: Sequence[str], write_calibration: bool) -> dict:
    target = load_target(target_name, REPO)
    host = shipped_model()
    assert host is not None
    nets = {name: network(name) for name in networks}
    truth: dict[str, dict[str, Cost]] = {}
    for name, net in nets.items():
        start = time.perf_counter()
        truth[name] = counted(target, net[3])
        print(f"# {target_name} {name}: {len(truth[name])} of {len(net[3])} calls counted "
              f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    out: dict = {}
    for name, net in nets.items():
        others = [Sample(c, truth[n][c.key()].median_ms) for n, other in nets.items() if n != name
                  for c in other[3] if c.key() in truth[n]]
        seen = {s.call.key() for s in others}
        unseen = [c for c in net[3] if c.key() in truth[name] and c.key() not in seen]
        tuned = host.fine_tuned(others)
        if len(truth[name]) < len(net[3]):  # a call too large for the board: no plan can be priced
            out[name] = {"accuracy": {}, "ms": {}}
            continue
        out[name] = {
            "accuracy": {"host model": errors(host, unseen, truth[name]),
                         "fine-tuned": errors(tuned, unseen, truth[name])},
            "ms": regret(target, net, truth[name], {"host model": host, "fine-tuned": tuned}),
        }
        print(f"# {target_name} {name}: {json.dumps(out[name])}", file=sys.stderr, flush=True)
    if write_calibration:
        every = [Sample(c, truth[n][c.key()].median_ms) for n, net in nets.items() for c in net[3]
                 if c.key() in truth[n]]
        path = target_calibration_file(target)
        document = {"calibration": host.fine_tuned(every).calibration.to_dict(),
                    "trained_on": {"costs": "emulated (qemu icount)", "networks": sorted(nets), "samples": len(every),
                                   "target": target.name}}
        path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"# wrote {path} ({len(every)} samples)", file=sys.stderr)
    return out


WHOLE_C = """/* The emitted library's net_run, counted whole on the emulated board (bench/costs_emulated.py). */
#include <stdint.h>
#include "net.h"
#include "semihosting.h"
%(ticks)s
static unsigned char arena_storage[NET_ARENA_BYTES + NET_ARENA_ALIGN];
static char line[128];

int main(void)
{
    void *arena = (void *)(((uintptr_t)arena_storage + NET_ARENA_ALIGN - 1) & ~(uintptr_t)(NET_ARENA_ALIGN - 1));
    float *x = net_input(arena);
    uint32_t seed = 12345u, i;
    uint64_t start, calibration, spent;
    long file = sh_open("whole.csv", SH_OPEN_WRITE_BINARY);
    char *at;
    for (i = 0; i < NET_INPUT_COUNT; i++) {
        seed = seed * 1103515245u + 12345u;
        x[i] = (float)((seed >> 8) & 0xFFFFu) / 32768.0f - 1.0f;
    }
    start_ticks();
    start = ticks();
    spin(1u << 22);
    calibration = ticks() - start;
    start = ticks();
    if (net_run(arena) != 0) return 1;
    spent = ticks() - start;
    at = put_number(put_text(put_number(put_text(line, "calibration,"), 2ull << 22), ","), calibration);
    at = put_number(put_text(at, "\\nwhole,"), spent);
    *at++ = '\\n';
    return sh_write(file, line, (unsigned long)(at - line)) == 0 && sh_close(file) == 0 ? 0 : 1;
}
"""


def count_net_run(target: Target, project: Path, work: Path) -> float:
    """Instructions of one net_run of the emitted project (library name "net") for `target`'s board: its libnet.a
    linked with a main that counts net_run whole, run under qemu-system-arm -icount in `work`."""
    import subprocess

    from tasobuild.costs.emulated import ICOUNT, QEMU, TICKS

    board = target.board
    assert board is not None
    subprocess.run(["make", "-s", "-C", str(project), "libnet.a"], check=True, capture_output=True)
    (work / "whole.c").write_text(WHOLE_C % {"ticks": TICKS})
    subprocess.run([*target.cc_argv, *target.cflags, "-I", str(project / "include"), "-I",
                    str(project / "main"), "-nostartfiles", "-T", str(project / "main" / f"{board.machine}.ld"),
                    "-o", "whole.elf", "whole.c", str(project / "main" / "startup.c"),
                    str(project / "libnet.a"), *target.ldflags], cwd=work, check=True, capture_output=True)
    subprocess.run([QEMU, "-M", board.machine, "-nographic", "-semihosting-config", "enable=on,target=native",
                    *ICOUNT, "-kernel", "whole.elf"], cwd=work, check=True, capture_output=True, timeout=1800)
    rows = dict(line.split(",", 1) for line in (work / "whole.csv").read_text().splitlines())
    instructions, ticks = (int(v) for v in rows["calibration"].split(","))
    return int(rows["whole"]) * instructions / ticks


def whole_network(target_name: str, networks: Sequence[str]) -> dict:
    """Do per-call counts add up? Each network built with costs = "profile" (every call counted) and no budget
    (the device's RAM), its library linked with a main that counts net_run whole on the emulated board: the plan's
    predicted time (the sum of its calls' counts) against the whole run's count."""
    import tempfile

    from tests.e2e import tasobuild
    from tests.test_embedded import write_spec

    target = load_target(target_name, REPO)
    assert target.board is not None and target.clock_mhz is not None
    out = {}
    for name in networks:
        with tempfile.TemporaryDirectory(prefix="tasobuild-whole-") as tmp:
            work = Path(tmp)
            spec = write_spec(work, name, target_name)
            spec.write_text(spec.read_text().replace('costs = "model"', 'costs = "profile"'))
            report = json.loads(tasobuild("build", "-c", str(spec), "--json").stdout)
            counted_ms = count_net_run(target, work / "out", work) / (target.clock_mhz * 1e3)
        out[name] = {"predicted_ms": report["predicted_ms"], "counted_ms": counted_ms}
        print(f"# whole {target_name} {name}: {json.dumps(out[name])}", file=sys.stderr, flush=True)
    return out


def markdown(results: dict, command: str) -> str:
    lines = [SECTION, "",
             "Every candidate call of the MLPerf Tiny networks (TensorFlow exports) counted on each target's emulated "
             "board (`qemu-system-arm -icount shift=0`, SysTick; costs/emulated.py), at one instruction per cycle of "
             "the target's clock. Network by network, left out: the shipped (host-trained) model, and the same "
             "model fine-tuned on the other networks' counts, predict the left-out network's calls that the others "
             "do not share (accuracy), and Z3 plans from each under the device's RAM less its stack; each plan is "
             "priced by the emulated counts against the plan made from the counts themselves (regret).", "",
             "```sh", command, "```", "",
             "| target | network | calls | host model: layer rank | fine-tuned: median error | within 2x | "
             "layer rank | emulator-profiled plan (ms) | host model plan | regret | fine-tuned plan | regret |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for target, nets in results.get("models", {}).items():
        for net, r in nets.items():
            if not r["ms"]:
                lines.append(f"| {target} | {net} | | too large for the board's RAM | | | | | | | | |")
                continue
            a, ms = r["accuracy"], r["ms"]
            h, f = a["host model"], a["fine-tuned"]
            lines.append(
                f"| {target} | {net} | {h['calls']} | {h['layer_rank']:.2f} | {f['median_error']:.0%} | "
                f"{f['within_2x']:.0%} | {f['layer_rank']:.2f} | {ms['profiled']:.2f} | {ms['host model']:.2f} | "
                f"{ms['host model'] / ms['profiled'] - 1:+.1%} | {ms['fine-tuned']:.2f} | "
                f"{ms['fine-tuned'] / ms['profiled'] - 1:+.1%} |")
    if results.get("simd"):
        lines += ["", "SIMD: the emulator-profiled plan with the target's SIMD kernels (Helium on the M55: the GEMM "
                  "micro-kernel and the 3x3 depthwise path) and with the plain C ones (`-DTB_GEMM_SCALAR`), each "
                  "planned and priced by its own counts (million instructions, at one per cycle):", "",
                  "| target | network | plain C (M instr.) | SIMD (M instr.) | fewer instructions |",
                  "|---|---|---:|---:|---:|"]
        for target, nets in results["simd"].items():
            for net, r in nets.items():
                scale = r["clock_mhz"] * 1e-3  # ms -> million instructions
                lines.append(f"| {target} | {net} | {r['plain'] * scale:.2f} | {r['simd'] * scale:.2f} | "
                             f"{r['plain'] / r['simd']:.2f}x |")
    return "\n".join(lines) + "\n"


def whole_markdown(results: dict, command: str) -> str:
    lines = ["```sh", command, "```", "",
             "| target | network | predicted: the sum of its calls' counts (ms) | net_run counted whole (ms) | "
             "difference |", "|---|---|---:|---:|---:|"]
    for target, nets in results.items():
        for net, r in nets.items():
            lines.append(f"| {target} | {net} | {r['predicted_ms']:.3f} | {r['counted_ms']:.3f} | "
                         f"{r['predicted_ms'] / r['counted_ms'] - 1:+.2%} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--write-calibrations", action="store_true",
                    help="write tasobuild/data/cost_calibration.<target>.json: the calibration builds use")
    ap.add_argument("--markdown", type=Path, default=None, help="write the BENCHMARKS.md section here")
    ap.add_argument("--whole", action="store_true", help="only: per-call counts against whole-network counts")
    args = ap.parse_args()
    command = "python bench/costs_emulated.py" + "".join(
        f" --{k} {v}" for k, v in (("targets", args.targets), ("networks", args.networks))
        if v != ",".join(TARGETS if k == "targets" else NETWORKS))
    networks = args.networks.split(",")
    if args.whole:
        print(whole_markdown({t: whole_network(t, networks) for t in args.targets.split(",")}, command + " --whole"))
        return 0
    results = {"models": {t: evaluate_target(t, networks, args.write_calibrations) for t in args.targets.split(",")},
               "simd": {t: simd_speedup(t, networks) for t in args.targets.split(",") if t in SIMD_TARGETS}}
    text = markdown(results, command)
    print(text)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
