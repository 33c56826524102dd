"""Evaluate the performance model: accuracy on unseen layer shapes, regret of the plans it makes, "auto", planning
time, and transfer to another flag set. Prints Markdown for BENCHMARKS.md ("Costs and the performance model").

    TASOBUILD_CACHE_DIR=/tmp/costs python bench/costs_eval.py               # every section
    python bench/costs_eval.py --sections accuracy,planning                 # some
    TASOBUILD_CACHE_DIR=/tmp/costs python bench/costs_eval.py --sections priced   # regret in seconds, no C run

Measured costs (the truth) go through the cost cache given by $TASOBUILD_CACHE_DIR, so a second run only re-times
what changed. "model" and "auto" plans start from empty temporary caches. Latencies are the emitted C projects'
own `--bench` medians, every plan of a network timed in alternation, `--rounds` times; the median is reported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.costs_data import EVAL_NETWORKS, REPO, graph_calls, measure_into_cache, network_calls, training_calls  # noqa: E402
from tasobuild.costs.model import CostModel, Sample, read_samples, train, with_row_range  # noqa: E402
from tasobuild.costs.stage import MODEL_FILE, SAMPLES_FILE, data_dir  # noqa: E402
from tasobuild.primitives import KernelCall  # noqa: E402
from tasobuild.primitives.transforms import transform_function  # noqa: E402
from tasobuild.resources import cache_dir  # noqa: E402
from tasobuild.target import load_target  # noqa: E402

SECTIONS = ("accuracy", "regret", "planning", "transfer", "priced")
BUDGET = "2 GiB"  # regret plans: latency only
TRANSFER_CFLAGS = ("-O2", "-fno-tree-vectorize", "-fno-tree-slp-vectorize", "-ffp-contract=off", "-fno-math-errno")
TRANSFORMS = {transform_function(a, b) for a in ("CHW", "HWC", "HCW") for b in ("CHW", "HWC", "HCW") if a != b}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    if np.std(ra) == 0 or np.std(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def layers(calls: list[KernelCall]) -> dict[tuple, list[KernelCall]]:
    """Alternatives of one layer shape: same struct and parameters, different functions (transforms excluded)."""
    groups: dict[tuple, list[KernelCall]] = {}
    for c in calls:
        if c.function not in TRANSFORMS:
            groups.setdefault((c.struct, c.params), []).append(c)
    return {k: v for k, v in groups.items() if len(v) >= 3}


def accuracy(model: CostModel, measured: dict[str, dict[str, float]], calls: dict[str, list[KernelCall]],
             seen: set[str]) -> dict:
    """Per primitive MdAPE over every unseen call of the networks; per network the median per-layer Spearman."""
    ape: dict[str, list[float]] = {}
    rho: dict[str, list[float]] = {}
    for net, net_calls in calls.items():
        unseen = [c for c in net_calls if with_row_range(c).key() not in seen]
        pred = model.predict_ms(unseen)
        for c in unseen:
            ape.setdefault(c.function, []).append(abs(pred[c.key()] / measured[net][c.key()] - 1))
        for group in layers(unseen).values():
            r = spearman(np.array([pred[c.key()] for c in group]), np.array([measured[net][c.key()] for c in group]))
            if not math.isnan(r):
                rho.setdefault(net, []).append(r)
    conv = [e for f, v in ape.items() if f.startswith("tb_conv") for e in v]
    return {
        "per_primitive": {f: {"n": len(v), "mdape": float(np.median(v))} for f, v in sorted(ape.items())},
        "mdape_all": float(np.median([e for v in ape.values() for e in v])),
        "mdape_conv": float(np.median(conv)) if conv else float("nan"),
        "spearman": {n: {"layers": len(v), "median": float(np.median(v)), "mean": float(np.mean(v))}
                     for n, v in rho.items()},
        "unseen_calls": sum(len(v) for v in ape.values()),
        "seen_calls_excluded": sum(1 for v in calls.values() for c in v if with_row_range(c).key() in seen),
    }


def write_spec(directory: Path, net: str, costs: str) -> Path:
    from tests.e2e import write_spec as e2e_spec
    from tests.zoo import ensure_model

    spec = e2e_spec(directory, ensure_model(net), memory=BUDGET)
    spec.write_text(spec.read_text().replace('costs = "profile"', f'costs = "{costs}"'))
    return spec


def build(directory: Path, net: str, costs: str, cache: Path) -> tuple[Path, dict, float]:
    """Build and compile the network's project planned with `costs`; (binary, report, seconds of `build`)."""
    directory.mkdir(parents=True, exist_ok=True)
    spec = write_spec(directory, net, costs)
    env = {**os.environ, "TASOBUILD_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tasobuild", "build", "-c", str(spec), "--json"], env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{net} {costs}: {proc.stderr}")
    subprocess.run(["make", "-s", "-j2", "-C", str(directory / "out")], check=True, capture_output=True)
    return directory / "out" / "net_main", json.loads(proc.stdout), seconds


def latency(binary: Path, count: int, reps: int) -> float:
    from tests.e2e import run_binary

    x = np.random.default_rng(0).uniform(-1, 1, count).astype(np.float32)
    _, ms = run_binary(binary, x, binary.parent, bench=reps)
    assert ms is not None
    return ms


@dataclass(frozen=True)
class MeasuredNetwork:
    """A zoo network's candidates with every call's measured cost (the truth, from the cost cache)."""

    graph: Any
    nodes: tuple
    transforms: tuple
    calls: list[KernelCall]  # every candidate call and transform, deduplicated, sorted by key
    truth: dict  # call key -> measured Cost
    problem: Any  # the solver's Problem with the measured costs

    def price(self, chosen: dict[str, tuple[str, str, str]]) -> float:
        """A plan's time (node name -> primitive, layout in, layout out) by the solver's cost model with every cost
        measured: what it would cost if per-call costs added up exactly. Against the measured latency this separates
        model error (a worse choice by measured costs) from end-to-end effects no per-call cost sees."""
        from tasobuild.solve.plan import evaluate

        picks = [next(c for c in node.choices if (c.primitive, c.layout_in, c.layout_out) == chosen[node.name])
                 for node in self.problem.nodes]
        return evaluate(self.problem, picks).predicted_ms


def measured_network(net: str, cache: Path) -> MeasuredNetwork:
    from tasobuild.candidates import node_candidates, transform_candidates
    from tasobuild.costs.cache import CostCache, CostKey, kernel_digest
    from tasobuild.decide import to_problem
    from tasobuild.importer import import_onnx
    from tasobuild.target import host_fingerprint
    from tests.zoo import ensure_model

    graph = import_onnx(ensure_model(net))
    nodes, transforms = node_candidates(graph), transform_candidates(graph)
    calls = graph_calls(graph)
    fingerprint = host_fingerprint(load_target("host", REPO)).digest
    with CostCache(cache) as db:
        truth = {k.call_key: v for k, v in db.get_many([CostKey(fingerprint, kernel_digest(), c.key())
                                                         for c in calls]).items()}
    if len(truth) < len(calls):
        raise SystemExit(f"{len(calls) - len(truth)} calls of {net} are not measured in {cache}")
    return MeasuredNetwork(graph, nodes, transforms, calls, truth, to_problem(graph, nodes, transforms, truth))


def chosen_in(report: dict) -> dict[str, tuple[str, str, str]]:
    """A build report's plan: node name -> (primitive, layout in, layout out)."""
    return {n["name"]: (n["primitive"], n["layout_in"], n["layout_out"]) for n in report["nodes"]}


def priced(model: CostModel, nets: list[str], cache: Path) -> dict:
    """Regret without building or running anything: plans solved in process (same solver, budget and time limit as
    a build) from predicted costs — "model": zero measurements; "auto": the stage's auto_costs, the cache's
    measured costs standing in for timing — each priced by the measured per-call costs, over the plan solved from
    the measured costs. Steady where end-to-end latencies are noisy; needs every call of the networks in `cache`."""
    out = {}
    for net in nets:
        out[net] = priced_network(model, net, cache)
        print(f"# priced {net}: {json.dumps(out[net])}", file=sys.stderr, flush=True)
    return out


def priced_network(model: CostModel, net: str, cache: Path) -> dict:
    from tasobuild.costs.stage import AutoPolicy, auto_costs, predict
    from tasobuild.decide import decide, to_problem
    from tasobuild.units import parse_size

    measured = measured_network(net, cache)
    truth, unique = measured.truth, measured.calls

    def price(costs: dict) -> float:
        problem = to_problem(measured.graph, measured.nodes, measured.transforms, costs)
        plan = decide(problem, parse_size(BUDGET), "latency", None, 10.0).plan
        return measured.price({name: (c.primitive, c.layout_in, c.layout_out) for name, c in plan.choices})

    known: dict = {}

    def timed(todo: list[KernelCall]) -> int:
        known.update({c.key(): truth[c.key()] for c in todo})
        return len(todo)

    auto = auto_costs(model, unique, known, timed, AutoPolicy())
    ms = {"profile": price(truth), "model": price(predict(model.uncalibrated(), unique)),
          "auto": price(dict(auto.costs))}
    return {"ms": ms, "regret": {m: ms[m] / ms["profile"] - 1 for m in ("model", "auto")},
            "auto_measured": auto.profiled, "calls": len(unique)}


def regret(nets: list[str], cache: Path, work: Path, rounds: int, reps: int) -> dict:
    from tasobuild.importer import import_onnx
    from tests.zoo import ensure_model

    out = {}
    for net in nets:
        count = int(np.prod(import_onnx(ensure_model(net)).onnx_input_shape))
        plans = {"profile": build(work / net / "profile", net, "profile", cache)}  # measures the truth into `cache`
        for mode in ("model", "auto"):
            plans[mode] = build(work / net / mode, net, mode, work / net / f"cache-{mode}")
        runs: dict[str, list[float]] = {m: [] for m in plans}
        for _ in range(rounds):
            for mode, (binary, _, _) in plans.items():
                runs[mode].append(latency(binary, count, reps))
        ms = {m: float(np.median(v)) for m, v in runs.items()}
        measured = measured_network(net, cache)
        calls = len(measured.calls)
        out[net] = {
            "latency_ms": ms,
            "regret": {m: ms[m] / ms["profile"] - 1 for m in ("model", "auto")},
            # The same, paired: each round's latency over that round's profile-plan latency, median over rounds.
            # Load on a shared machine drifts between rounds; within a round the plans run back to back.
            "paired_regret": {m: float(np.median(np.array(runs[m]) / np.array(runs["profile"]))) - 1
                              for m in ("model", "auto")},
            "measured": {m: plans[m][1]["profiled"] for m in plans},
            "calls": calls,
            "auto_fraction": plans["auto"][1]["profiled"] / calls,
            "predicted_ms": {m: plans[m][1]["predicted_ms"] for m in plans},
            "measured_sum_ms": {m: measured.price(chosen_in(plans[m][1])) for m in plans},
            "rounds_ms": runs,
        }
        print(f"# regret {net}: {json.dumps(out[net])}", file=sys.stderr, flush=True)
    return out


def planning(work: Path) -> dict:
    """`tasobuild plan` of GoogLeNet with costs = "model" from an empty cache, as a user runs it; and the costs
    stage alone, in process."""
    directory = work / "planning"
    directory.mkdir(parents=True, exist_ok=True)
    spec = write_spec(directory, "googlenet", "model")
    env = {**os.environ, "TASOBUILD_CACHE_DIR": str(directory / "empty-cache"), "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tasobuild", "plan", "-c", str(spec), "--json"], env=env,
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    report = json.loads(proc.stdout)
    stage = subprocess.run([sys.executable, "-c", _STAGE_TIMER, str(spec)], env=env, capture_output=True, text=True,
                           check=True)
    return {"plan_seconds": wall, "solver_seconds": report["solver"]["seconds"], "profiled": report["profiled"],
            **json.loads(stage.stdout)}


_STAGE_TIMER = """
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from tasobuild.candidates import node_candidates, transform_candidates
from tasobuild.pipeline import Solve, all_calls, load
t1 = time.perf_counter()
inputs = load(Path(sys.argv[1]))
calls = all_calls(node_candidates(inputs.graph), transform_candidates(inputs.graph))
t2 = time.perf_counter()
costed = Solve(inputs.spec, inputs.target).costs(calls)
t3 = time.perf_counter()
print(json.dumps({"import_seconds": t1 - t0, "candidates_seconds": t2 - t1, "costs_stage_seconds": t3 - t2,
                  "calls": len(costed.costs), "stage_profiled": costed.profiled}))
"""


def transfer(cache: Path, measured: dict[str, dict[str, float]], calls: dict[str, list[KernelCall]],
             host_model: CostModel, host_samples: list[Sample], seen: set[str], samples: int) -> dict:
    """Train on -O2 without vectorisation, evaluate on -O3 -march=native before/after fine-tuning on `samples`
    host measurements of training calls (never of the evaluation networks)."""
    cc = load_target("host", REPO).cc
    train_calls = training_calls(synthetic_convs=24, synthetic_ops=80)
    o2 = measure_into_cache(train_calls, cc, TRANSFER_CFLAGS, cache, progress=sys.stderr.isatty())
    o2_model = train([Sample(c, o2[c.key()]) for c in train_calls], {"cflags": list(TRANSFER_CFLAGS)})
    tuned = o2_model.fine_tuned(stratified(host_samples, samples))
    out = {}
    for name, model in (("trained on -O2 no-SIMD", o2_model), (f"+ fine-tuned on {samples} -O3 samples", tuned),
                        ("trained on -O3 native (reference)", host_model)):
        acc = accuracy(model, measured, calls, seen)
        out[name] = {"mdape_all": acc["mdape_all"], "mdape_conv": acc["mdape_conv"],
                     "spearman": float(np.median([v["median"] for v in acc["spearman"].values()]))}
    return out


def stratified(samples: list[Sample], count: int, seed: int = 0) -> list[Sample]:
    """`count` samples taken round-robin over functions (convolutions first), each function's in seeded random
    order: what a user measuring 50 calls on a new machine should pick, so every primitive gets its offset."""
    rng = np.random.default_rng(seed)
    by: dict[str, list[Sample]] = {}
    for s in sorted(samples, key=lambda s: s.call.key()):
        by.setdefault(s.call.function, []).append(s)
    order = sorted(by, key=lambda f: (not f.startswith("tb_conv"), f))
    for f in order:
        by[f] = [by[f][i] for i in rng.permutation(len(by[f]))]
    out: list[Sample] = []
    while len(out) < min(count, len(samples)):
        for f in order:
            if by[f] and len(out) < count:
                out.append(by[f].pop())
    return out


def markdown(results: dict) -> str:
    lines = []
    acc = results.get("accuracy")
    if acc:
        lines += ["### Accuracy on unseen layer shapes", "",
                  f"{acc['unseen_calls']} calls of the four evaluation networks ({acc['seen_calls_excluded']} calls "
                  f"whose exact key is in the training data excluded). Median absolute percentage error: "
                  f"all {acc['mdape_all']:.1%}, convolutions {acc['mdape_conv']:.1%}.", "",
                  "| primitive (kernel) | calls | MdAPE |", "|---|---:|---:|"]
        lines += [f"| {f} | {v['n']} | {v['mdape']:.1%} |" for f, v in acc["per_primitive"].items()]
        lines += ["", "| network | layers (>= 3 alternatives) | median Spearman | mean Spearman |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {n} | {v['layers']} | {v['median']:.2f} | {v['mean']:.2f} |" for n, v in acc["spearman"].items()]
        lines.append("")
    reg = results.get("regret")
    if reg:
        lines += ["### Regret: measured latency of the plan, by cost source", "",
                  "| network | profile ms | model ms | model regret (paired) | auto ms | auto regret (paired) | "
                  "auto measured / all calls |", "|---|---:|---:|---:|---:|---:|---:|"]
        for n, v in reg.items():
            ms, r, p = v["latency_ms"], v["regret"], v["paired_regret"]
            lines.append(f"| {n} | {ms['profile']:.2f} | {ms['model']:.2f} | {r['model']:+.1%} ({p['model']:+.1%}) | "
                         f"{ms['auto']:.2f} | {r['auto']:+.1%} ({p['auto']:+.1%}) | "
                         f"{v['measured']['auto']} / {v['calls']} ({v['auto_fraction']:.1%}) |")
        lines += ["", "The same plans priced by the measured per-call costs (sum over calls and transforms, no "
                  "end-to-end run):", "",
                  "| network | profile plan ms | model plan ms | model | auto plan ms | auto |",
                  "|---|---:|---:|---:|---:|---:|"]
        for n, v in reg.items():
            s = v["measured_sum_ms"]
            lines.append(f"| {n} | {s['profile']:.2f} | {s['model']:.2f} | {s['model'] / s['profile'] - 1:+.1%} | "
                         f"{s['auto']:.2f} | {s['auto'] / s['profile'] - 1:+.1%} |")
        lines.append("")
    pr = results.get("priced")
    if pr:
        lines += ["### Priced regret: plans solved in process, priced by the measured per-call costs", "",
                  "| network | profile plan ms | model plan ms | model | auto plan ms | auto "
                  "| auto measured / all calls |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for n, v in pr.items():
            ms, r = v["ms"], v["regret"]
            lines.append(f"| {n} | {ms['profile']:.2f} | {ms['model']:.2f} | {r['model']:+.1%} | {ms['auto']:.2f} | "
                         f"{r['auto']:+.1%} | {v['auto_measured']} / {v['calls']} |")
        lines.append("")
    plan = results.get("planning")
    if plan:
        lines += ["### Planning GoogLeNet with costs = \"model\" from an empty cache", "",
                  f"`tasobuild plan`: {plan['plan_seconds']:.1f} s wall, {plan['profiled']} measurements "
                  f"(of which the Z3 solver {plan['solver_seconds']:.1f} s). Up to and including the costs stage: "
                  f"Python imports {plan['import_seconds']:.2f} s, ONNX import + candidates "
                  f"{plan['candidates_seconds']:.2f} s, "
                  f"costs stage {plan['costs_stage_seconds']:.2f} s for {plan['calls']} calls.", ""]
    tr = results.get("transfer")
    if tr:
        lines += ["### Transfer: -O2 without SIMD -> -O3 -march=native", "",
                  "| model | MdAPE all | MdAPE conv | median per-layer Spearman |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {v['mdape_all']:.1%} | {v['mdape_conv']:.1%} | {v['spearman']:.2f} |"
                  for k, v in tr.items()]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--networks", default=",".join(EVAL_NETWORKS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=10, help="--bench N of each latency run")
    ap.add_argument("--samples", type=int, default=50, help="fine-tuning samples for the transfer section")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args()
    sections = args.sections.split(",")
    nets = args.networks.split(",")
    cache = cache_dir()
    host = load_target("host", REPO)
    model = CostModel.from_json((data_dir() / MODEL_FILE).read_text())
    host_samples = read_samples((data_dir() / SAMPLES_FILE).read_text())
    seen = {s.call.key() for s in host_samples}  # read_samples normalised them: compare through with_row_range
    results: dict = {"cflags": shlex.join(host.cflags), "trained_on": dict(model.trained_on)}
    calls = {n: network_calls(n) for n in nets}
    measured: dict[str, dict[str, float]] = {}
    if "accuracy" in sections or "transfer" in sections:
        for n in nets:
            measured[n] = measure_into_cache(calls[n], host.cc, host.cflags, cache, progress=sys.stderr.isatty())
    if "accuracy" in sections:
        results["accuracy"] = accuracy(model, measured, calls, seen)
    with tempfile.TemporaryDirectory(prefix="costs-eval-") as tmp:
        work = Path(tmp)
        if "planning" in sections:
            results["planning"] = planning(work)
        if "regret" in sections:
            results["regret"] = regret(nets, cache, work, args.rounds, args.reps)
    if "priced" in sections:
        results["priced"] = priced(model, nets, cache)
    if "transfer" in sections:
        results["transfer"] = transfer(cache, measured, calls, model, host_samples, seen, args.samples)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True, default=str))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
