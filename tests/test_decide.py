"""decide(): the build's decision on a real network (DS-CNN, MLPerf Tiny), with costs from the shipped performance
model (no measurements, so the test is quick and its costs are the same on every machine), and without the
blocked direct convs, which would make its fastest plan also its smallest (tests.e2e.WITH_TRADE_OFF)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tasobuild.decide import decide, place
from tasobuild.errors import UserError
from tasobuild.memory import check_no_overlap
from tasobuild.solve import Problem, Session, greedy, solve
from tests.e2e import WITH_TRADE_OFF, tasobuild, write_spec
from tests.zoo import ensure_model


@pytest.fixture(scope="module")
def ds_cnn(tmp_path_factory: pytest.TempPathFactory) -> Problem:
    from tasobuild.pipeline import Solve, load, price

    root = tmp_path_factory.mktemp("ds_cnn")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TASOBUILD_CACHE_DIR", str(root / "empty-cache"))  # predictions only: no cached measurements
        spec_path = write_spec(root, ensure_model("ds_cnn_torch"), extra=WITH_TRADE_OFF)
        spec_path.write_text(spec_path.read_text().replace('costs = "profile"', 'costs = "model"'))
        inputs = load(spec_path)
        priced = price(inputs, Solve(inputs.spec, inputs.target))
        assert priced.costed.profiled == 0
        return priced.problem


def test_tight_budget_gives_an_arena_within_it(ds_cnn: Problem) -> None:
    fastest = solve(ds_cnn, None)
    smallest = Session(ds_cnn).min_peak_bytes()
    assert smallest < fastest.peak_bytes  # the budget below really binds
    budget = smallest + (fastest.peak_bytes - smallest) // 4
    d = decide(ds_cnn, budget, "latency", None, time_limit_s=30)
    assert d.arena.arena_bytes <= budget
    check_no_overlap(d.plan.buffers(), d.arena)
    assert d.plan.status == "optimal" and d.plan.peak_bytes <= budget
    assert d.plan.time_ns >= fastest.time_ns  # memory costs time, never the other way round
    assert d.plan.time_ns == solve(ds_cnn, d.plan.peak_bytes).time_ns  # no faster plan at this peak
    assert d.baselines["time_only"]["predicted_ms"] == pytest.approx(fastest.predicted_ms)
    assert d.baselines["greedy"]["predicted_ms"] == pytest.approx(greedy(ds_cnn).predicted_ms)
    assert d.lower_bound_bytes == d.plan.peak_bytes <= d.arena.arena_bytes


def test_impossible_budget_names_the_smallest_budget(ds_cnn: Problem) -> None:
    need = Session(ds_cnn).min_peak_bytes()
    with pytest.raises(UserError, match=rf"memory budget {need - 1} bytes is too small: the smallest budget with "
                                        rf"a plan is {need} bytes"):
        decide(ds_cnn, need - 1, "latency", None, time_limit_s=30)
    # at exactly that budget there is a plan; its placed arena fits or the error says fragmentation is the cause
    try:
        d = decide(ds_cnn, need, "latency", None, time_limit_s=30)
    except UserError as error:
        assert "once buffers are placed" in str(error)
    else:
        assert d.arena.arena_bytes <= need and d.plan.peak_bytes == need


def test_time_only_plan_is_the_answer_when_it_fits(ds_cnn: Problem) -> None:
    fastest = solve(ds_cnn, None)
    d = decide(ds_cnn, 1 << 30, "latency", None, time_limit_s=30)
    assert d.plan == fastest and d.arena.arena_bytes == d.baselines["time_only"]["arena_bytes"]


def test_emit_a_baseline(ds_cnn: Problem) -> None:
    tight = Session(ds_cnn).min_peak_bytes()  # the baselines ignore the budget
    g = decide(ds_cnn, tight, "latency", None, time_limit_s=30, emit="greedy")
    assert g.plan == greedy(ds_cnn) and g.arena == place(greedy(ds_cnn))
    t = decide(ds_cnn, tight, "latency", None, time_limit_s=30, emit="time_only")
    assert t.plan == solve(ds_cnn, None)
    with pytest.raises(ValueError, match="emit must be"):
        decide(ds_cnn, tight, "latency", None, time_limit_s=30, emit="fastest")


def test_memory_objective_within_a_latency_budget(ds_cnn: Problem) -> None:
    fastest = solve(ds_cnn, None)
    limit = fastest.predicted_ms * 1.15
    d = decide(ds_cnn, 1 << 30, "memory", limit, time_limit_s=30)
    assert d.plan.predicted_ms <= limit + 1e-9 and d.plan.status == "optimal"
    assert d.plan.peak_bytes == Session(ds_cnn).min_peak_bytes(limit)
    assert d.plan.peak_bytes <= fastest.peak_bytes


def test_deterministic(ds_cnn: Problem) -> None:
    budget = Session(ds_cnn).min_peak_bytes() * 5 // 4
    first, second = (decide(ds_cnn, budget, "latency", None, time_limit_s=30) for _ in range(2))
    assert first.plan == second.plan and first.arena == second.arena


def test_pareto_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASOBUILD_CACHE_DIR", str(tmp_path / "empty-cache"))
    spec_path = write_spec(tmp_path, ensure_model("ds_cnn_torch"), extra=WITH_TRADE_OFF)
    spec_path.write_text(spec_path.read_text().replace('costs = "profile"', 'costs = "model"'))
    png = tmp_path / "frontier.png"
    out = tasobuild("pareto", "-c", str(spec_path), "--json", "--points", "6", "--png", str(png))
    points = json.loads(out.stdout)["points"]
    assert 2 <= len(points) <= 6
    assert all(p["status"] == "optimal" and p["tie_break"] == "optimal" for p in points)
    assert [p["peak_bytes"] for p in points] == sorted({p["peak_bytes"] for p in points})  # increasing memory ...
    assert all(a["predicted_ms"] > b["predicted_ms"] for a, b in itertools.pairwise(points))  # ... buys time
    assert all(p["arena_bytes"] >= p["peak_bytes"] for p in points)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
