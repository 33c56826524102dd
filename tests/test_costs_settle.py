"""Settling close calls (costs.settle): the decision rule on hand-made ratios, the alternating protocol against a
scripted drifting machine, and the settled costs of real kernels through the costs stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasobuild.costs.cache import Cost, CostCache, CostKey
from tasobuild.costs.settle import SettlePolicy, alternating_ratios, close_alternatives, log_median, settled
from tasobuild.primitives import KernelCall


def flat(function: str, n: int = 1000) -> KernelCall:
    return KernelCall(function, "tb_flat", (("n", n),), ("in0", "out"), (("in0", 4 * n), ("out", 4 * n)))


def measured(ms: float) -> Cost:
    return Cost(ms, 0.0, 5, "measured")


def test_settled_orders_apart_calls_and_gives_a_tie_to_the_models_pick() -> None:
    # a is the reference (1.0); c is 1% slower (within the 2% tie) -> tied with a, and the model prefers c; b is 5%
    # slower -> a class of its own. The tie class takes its first's ratio (a's 1.0): c 1.0, a 1.0 * 1.001.
    ratios = {"a": [1.0] * 4, "b": [1.05, 1.04, 1.06, 1.05], "c": [1.01, 0.99, 1.015, 1.01]}
    two = SettlePolicy(tie=0.02)
    out = settled(2.0, ratios, {"a": 0.5, "b": 0.1, "c": 0.4}, two)
    assert out == {"a": pytest.approx(2.002, rel=1e-12), "b": pytest.approx(2.1, rel=1e-12), "c": 2.0}
    # no prediction: the key decides the tie
    assert settled(2.0, ratios, {}, two) == {"a": 2.0, "b": pytest.approx(2.1, rel=1e-12),
                                        "c": pytest.approx(2.002, rel=1e-12)}


def test_a_tie_class_is_measured_from_its_first_call_not_chained() -> None:
    # 1.0, 1.015, 1.03: the second is within 2% of the first, the third is not (though within 2% of the second)
    out = settled(1.0, {"a": [1.0], "b": [1.015], "c": [1.03]}, {"a": 3.0, "b": 1.0, "c": 2.0}, SettlePolicy(tie=0.02))
    assert out == {"a": pytest.approx(1.001, rel=1e-12), "b": 1.0, "c": pytest.approx(1.03, rel=1e-12)}


def test_log_median_of_an_even_count_is_the_geometric_mean_of_the_middle_two() -> None:
    assert log_median([1.1 * 1.03, 1.03 / 1.1, 1.1 * 1.03, 1.03 / 1.1]) == pytest.approx(1.03, rel=1e-12)
    assert log_median([4.0, 1.0, 2.0]) == 2.0


def test_close_alternatives_are_the_measured_ones_within_the_band() -> None:
    a, b, c, d = (flat(f) for f in ("tb_a", "tb_b", "tb_c", "tb_d"))
    costs = {a.key(): measured(1.0), b.key(): measured(1.1), c.key(): measured(1.2),
             d.key(): Cost(0.9, 0.1, 0, "predicted")}
    assert close_alternatives([d, c, b, a], costs, SettlePolicy(close=0.15)) == [a, b]
    assert close_alternatives([a, c], costs, SettlePolicy(close=0.15)) == []  # c is 20% slower: decided
    assert close_alternatives([a, d], costs) == []  # one measured call: nothing to settle


def test_alternating_rounds_cancel_a_drifting_machine() -> None:
    # b is truly 3% slower than a; the machine slows 10% with every batch. Timed in the same order every round, b
    # (always second) looks 13% slower; alternating, b goes first in half the rounds and the drift cancels.
    a, b = flat("tb_a"), flat("tb_b")
    true_ms = {a.key(): 1.0, b.key(): 1.03}
    batches = [0]

    def batch(call: KernelCall, warmup: int, reps: int) -> np.ndarray:
        batches[0] += 1
        return np.full(reps, true_ms[call.key()] * 1.1 ** batches[0] * 1e-3)

    costs = {a.key(): measured(1.0), b.key(): measured(1.0)}
    ratios = alternating_ratios([a, b], batch, costs, SettlePolicy(rounds=8))
    assert batches[0] == 16 and len(ratios[b.key()]) == 8
    assert log_median(ratios[b.key()]) == pytest.approx(1.03, rel=1e-9)
    out = settled(1.0, ratios, {}, SettlePolicy(tie=0.02))
    assert out[b.key()] / out[a.key()] == pytest.approx(1.03, rel=1e-9)  # apart: more than a 2% tie
    assert settled(1.0, ratios, {b.key(): 1.0}, SettlePolicy(tie=0.05))[a.key()] == pytest.approx(1.001, rel=1e-9)


def test_the_stage_settles_close_real_calls_and_caches_them(tmp_path: Path) -> None:
    # Two real kernels of one layer shape measured close (hand-made first costs 1% apart): the stage times them
    # again alternating on the real bindings and stores what it settled, with the reps it added.
    from tasobuild import native
    from tasobuild.candidates import node_candidates
    from tasobuild.costs.stage import settle_layers
    from tests.test_conv_primitives import Case, conv_graph

    node, graph, _ = conv_graph(Case(16, 20, 20, 16, (3, 3)))
    (nc,) = node_candidates(graph)
    by_function = {c.calls[0].function: c.calls[0] for c in nc.options if len(c.calls) == 1}
    calls = [by_function["tb_conv_direct_blocked_hwc"], by_function["tb_conv_im2row_gemm_hwc"]]
    assert calls[0].params == calls[1].params
    known = {calls[0].key(): measured(0.05), calls[1].key(): measured(0.0505)}
    where = ("test-host", "k")
    with CostCache(tmp_path / "costs") as cache:
        out = settle_layers([calls], known, native.load(), cache, where, None, SettlePolicy(rounds=4))
        stored = cache.get_many([CostKey(*where, c.key()) for c in calls])
    assert sorted(out) == sorted(c.key() for c in calls)
    assert {k.call_key: v for k, v in stored.items()} == out
    assert all(cost.source == "measured" and cost.reps == 5 + 4 for cost in out.values())
    fast, slow = sorted(out.values(), key=lambda c: c.median_ms)
    ratio = slow.median_ms / fast.median_ms
    assert ratio == pytest.approx(1.001, rel=1e-9) or ratio > 1.02  # tied (the model's pick a hair ahead) or apart


def test_a_fresh_build_settles_its_close_calls_and_decides_on_the_settled_costs(
        tmp_path: Path, ds_cnn_project: Path, private_cost_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # DS-CNN with costs = "auto" from an empty cost cache (the session's compiled bindings copied in): the build
    # settles close calls, the lock's measured costs are the cache's settled ones, and the program matches ONNX
    # Runtime.
    import shutil
    import tomllib

    from tests.e2e import assert_matches, build_and_compile, run_binary, tasobuild
    from tests.zoo.reference import random_input, run_onnxruntime

    cache = tmp_path / "cache"
    cache.mkdir()
    if (private_cost_cache / "bindings").is_dir():
        shutil.copytree(private_cost_cache / "bindings", cache / "bindings", ignore=shutil.ignore_patterns("*.lock"))
    monkeypatch.setenv("TASOBUILD_CACHE_DIR", str(cache))
    spec = ds_cnn_project
    spec.write_text(spec.read_text().replace('costs = "profile"', 'costs = "auto"', 1))
    first = tasobuild("-v", "build", "-c", str(spec))
    assert "close measured calls of" in first.stderr
    built = build_and_compile(spec)  # up to date: the report of the tree just built
    assert built.report["profiled"] == 0
    model = spec.parent / "model.onnx"
    x = random_input(model, seed=0)
    assert_matches(run_binary(built.binary, x, tmp_path)[0], run_onnxruntime(model, x))

    lock = tomllib.loads((spec.parent / "taso.lock").read_text())
    locked = {c["call"]: c["median_ms"] for c in lock["cost"] if c["source"].startswith("measured")}
    with CostCache(cache) as costs:
        stored = {key.call_key: cost.median_ms for key, cost in costs.rows()}
    assert locked and all(stored[k] == ms for k, ms in locked.items())
