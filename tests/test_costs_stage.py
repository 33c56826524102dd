"""The costs stage: "model" plans with zero measurements, "auto" measures a few, "profile" all; sources are right."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from tasobuild.costs.cache import Cost, CostCache, CostKey
from tasobuild.costs.model import Sample, train
from tasobuild.costs.stage import (
    LAYER_SHRINK,
    AutoPolicy,
    auto_costs,
    choose_measurements,
    cost_calls,
    layer_corrected,
    predict,
    shipped_model,
)
from tasobuild.errors import UserError
from tasobuild.primitives import KernelCall
from tests.e2e import tasobuild, write_spec


def flat(function: str, n: int) -> KernelCall:
    return KernelCall(function, "tb_flat", (("n", n), ("act", 0), ("act_a", 0.0), ("act_b", 0.0)),
                      ("in0", "out"), (("in0", 4 * n), ("out", 4 * n)))


def predicted(ms: float, sigma_log2: float) -> Cost:
    spread = ms * (2 ** (0.6745 * sigma_log2) - 2 ** (-0.6745 * sigma_log2))
    return Cost(ms, spread, 0, "predicted")


def test_auto_measures_only_layers_whose_candidates_are_close() -> None:
    # Layer n=100: two candidates 10% apart with 50% model error -> contested. Layer n=200: 5x apart -> settled.
    # Layer n=300: contested but small (0.01 ms) -> last in line; the budget (3 of 7 calls) leaves it out.
    # tb_layout_* transforms are never alternatives of each other.
    calls = [flat("tb_x", 100), flat("tb_y", 100), flat("tb_x", 200), flat("tb_y", 200), flat("tb_x", 300),
             flat("tb_y", 300), KernelCall("tb_layout_chw_to_hwc", "tb_flat", flat("a", 100).params, ("in0", "out"),
                                           (("in0", 400), ("out", 400)))]
    costs = {calls[0].key(): predicted(1.0, 0.5), calls[1].key(): predicted(1.1, 0.5),
             calls[2].key(): predicted(1.0, 0.5), calls[3].key(): predicted(5.0, 0.5),
             calls[4].key(): predicted(0.01, 0.5), calls[5].key(): predicted(0.011, 0.5),
             calls[6].key(): predicted(1.0, 0.5)}
    chosen = choose_measurements(calls, costs, AutoPolicy(fraction=0.45, z=1.0))
    assert [c.key() for c in chosen] == sorted([calls[0].key(), calls[1].key()])
    everything = choose_measurements(calls, costs, AutoPolicy(fraction=1.0, z=1.0))
    assert [c.key() for c in everything] == sorted(c.key() for c in calls[:2] + calls[4:6])
    # A measured candidate is known: only its predicted rival is timed.
    costs[calls[0].key()] = Cost(1.0, 0.01, 50, "measured")
    assert [c.key() for c in choose_measurements(calls, costs, AutoPolicy(fraction=1.0))] == \
        sorted([calls[1].key(), calls[5].key(), calls[4].key()])


def noisy_model():
    """A real model of three flat kernels, x < y < z by 10% and 30%, trained on +-15% noise: sigma ~0.23 octave."""
    sizes = [int(2 ** e) for e in np.linspace(6, 20, 24)]
    kernels = (("tb_x", 1.0e-5), ("tb_y", 1.1e-5), ("tb_z", 1.3e-5))
    return train([Sample(flat(f, n), scale * n ** 0.75 * (1.15 if i % 2 else 1 / 1.15))
                  for f, scale in kernels for i, n in enumerate(sizes)], {})


def test_auto_measures_again_what_the_first_measurements_made_contested() -> None:
    # Layers n = 1000, 30000, 300000 of x, y, z; all predictions right except x and y on n = 30000, 2x slower.
    # Round 1 (the first budget of 9, from the model alone) measures x and y of every layer, whose z are not close.
    # Refit: on n = 30000, z is now predicted below the measured x and y -> contested -> measured in round 2 (the
    # reveal budget: 3). One round alone never times z.
    model = noisy_model()
    calls = [flat(f, n) for n in (1000, 30000, 300000) for f in ("tb_x", "tb_y", "tb_z")]
    first_guess = predict(model, calls)
    factor = {c.key(): 2.0 if dict(c.params)["n"] == 30000 and c.function != "tb_z" else 1.0 for c in calls}

    def run(rounds: int) -> tuple[list[list[str]], dict]:
        known: dict[str, Cost] = {}
        rounds_log: list[list[str]] = []

        def timed(todo: list[KernelCall]) -> int:
            rounds_log.append([f"{c.function}@{dict(c.params)['n']}" for c in todo])
            known.update({c.key(): Cost(factor[c.key()] * first_guess[c.key()].median_ms, 0.0, 5, "measured")
                          for c in todo})
            return len(todo)

        costed = auto_costs(model, calls, known, timed, AutoPolicy(fraction=1.0, z=1.0, rounds=rounds, reveal=0.34))
        assert costed.profiled == sum(len(r) for r in rounds_log) <= 9 + 3
        return rounds_log, costed.costs

    log, costs = run(4)
    first = ["tb_x@1000", "tb_x@30000", "tb_x@300000", "tb_y@1000", "tb_y@30000", "tb_y@300000"]
    assert log == [first, ["tb_z@30000"]]
    assert costs[flat("tb_z", 30000).key()].source == "measured"
    assert run(1)[0] == [first]


def test_a_layers_unmeasured_candidates_follow_its_measured_ones() -> None:
    # x on n = 1000 measured at 4x (+2 octaves) the model: y and z of that layer move by 2^(2 / (1 + LAYER_SHRINK));
    # the other layer's candidates and the measured cost itself are left alone.
    model = noisy_model()
    calls = [flat(f, n) for n in (1000, 5000) for f in ("tb_x", "tb_y", "tb_z")]
    x = flat("tb_x", 1000)
    known = {x.key(): Cost(4 * predict(model, [x])[x.key()].median_ms, 0.0, 5, "measured")}
    guess = predict(model, [c for c in calls if c.key() != x.key()])
    moved = layer_corrected(model, calls, known, guess)
    assert LAYER_SHRINK == 2.0
    for c in calls[1:3]:
        assert moved[c.key()].median_ms / guess[c.key()].median_ms == pytest.approx(2 ** (2 / 3), rel=1e-9)
        assert moved[c.key()].spread_ms / guess[c.key()].spread_ms == pytest.approx(2 ** (2 / 3), rel=1e-9)
        assert moved[c.key()].source == "predicted"
    assert all(moved[c.key()] == guess[c.key()] for c in calls[3:])
    assert x.key() not in moved


def network_calls(zoo_model, name: str) -> list[KernelCall]:
    from tasobuild.candidates import node_candidates, transform_candidates
    from tasobuild.importer import import_onnx

    graph = import_onnx(zoo_model(name))
    calls = [call for nc in node_candidates(graph) for c in nc.options for call in c.calls]
    return calls + [t.call for t in transform_candidates(graph)]


def test_auto_measures_fewer_calls_than_profile(tmp_path: Path, zoo_model) -> None:
    from tasobuild import native

    calls = network_calls(zoo_model, "ds_cnn_torch")
    unique = len({c.key() for c in calls})
    kernels = native.load()
    common = dict(fingerprint="test-host", kernels_digest="k", kernels=lambda: kernels, model=shipped_model(),
                  progress=False)
    with CostCache(tmp_path / "auto") as cache:
        auto = cost_calls("auto", calls, cache, policy=AutoPolicy(fraction=0.25), **common)
    with CostCache(tmp_path / "profile") as cache:
        profile = cost_calls("profile", calls, cache, **common)
    assert profile.profiled == unique == len(profile.costs)
    assert 0 < auto.profiled <= 0.25 * unique
    sources = [c.source for c in auto.costs.values()]
    assert sources.count("measured") == auto.profiled and sources.count("predicted") == unique - auto.profiled
    assert {c.source for c in profile.costs.values()} == {"measured"}
    with CostCache(tmp_path / "auto") as cache:  # predictions never enter the cache
        assert {c.source for _, c in cache.rows()} == {"measured"} and len(cache.rows()) == auto.profiled


def test_a_target_that_cannot_run_here_uses_imported_or_predicted_costs(tmp_path: Path) -> None:
    calls = [flat("tb_add", 64), flat("tb_act", 64)]
    with CostCache(tmp_path) as cache:
        with pytest.raises(UserError, match=r"2 of 2 costs are neither measured nor imported.*costs import"):
            cost_calls("profile", calls, cache, fingerprint="dev", kernels_digest="k", kernels=None, model=None,
                       progress=False)
        cache.put_many([(CostKey("dev", "k", calls[0].key()), Cost(0.5, 0.0, 3, "imported"))])
        with pytest.raises(UserError, match="1 of 2 costs"):
            cost_calls("profile", calls, cache, fingerprint="dev", kernels_digest="k", kernels=None, model=None,
                       progress=False)
        mixed = cost_calls("auto", calls, cache, fingerprint="dev", kernels_digest="k", kernels=None,
                           model=shipped_model(), progress=False)
        assert mixed.profiled == 0
        assert [mixed.costs[c.key()].source for c in calls] == ["imported", "predicted"]
        cache.put_many([(CostKey("dev", "k", calls[1].key()), Cost(0.25, 0.0, 3, "imported"))])
        full = cost_calls("profile", calls, cache, fingerprint="dev", kernels_digest="k", kernels=None, model=None,
                          progress=False)
        assert [full.costs[c.key()].median_ms for c in calls] == [0.5, 0.25]


def test_predicted_costs_carry_the_model_error_as_spread() -> None:
    model = shipped_model()
    assert model is not None
    cost = predict(model, [flat("tb_add", 4096)])[flat("tb_add", 4096).key()]
    assert cost.source == "predicted" and cost.reps == 0 and 0 < cost.spread_ms
    with pytest.raises(ValueError):
        Cost(1.0, 0.0, 0, "measured")  # only predictions may have no repetitions


def test_model_plans_a_real_build_with_zero_measurements(tmp_path: Path, zoo_model, monkeypatch) -> None:
    monkeypatch.setenv("TASOBUILD_CACHE_DIR", str(tmp_path / "empty-cache"))
    spec = write_spec(tmp_path, zoo_model("ds_cnn_torch"), memory="1 MiB")
    spec.write_text(spec.read_text().replace('costs = "profile"', 'costs = "model"'))
    report = json.loads(tasobuild("build", "-c", str(spec), "--json").stdout)
    assert report["profiled"] == 0
    assert {s for n in report["nodes"] for s in _sources(n["cost_source"])} == {"predicted"}
    lock = tomllib.loads((tmp_path / "taso.lock").read_text())
    costs = _lock_costs(lock)
    assert costs and {c["source"] for c in costs} == {"predicted"}
    assert not (tmp_path / "empty-cache" / "costs.sqlite").exists() or \
        not CostCache(tmp_path / "empty-cache").rows()


def _sources(value) -> list[str]:
    return value if isinstance(value, list) else value.split("+")


def _lock_costs(lock: dict) -> list[dict]:
    costs = lock.get("cost") or lock.get("costs") or []
    return costs if isinstance(costs, list) else list(costs.values())
