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
from tasobuild.solve import Choice, Problem, ProblemNode, ProblemTensor, Session, greedy, solve
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


def _chained_leads() -> Problem:
    """in (1000 B) -> [a1 a2: g1] -> m (1000 B) -> [b1 b2: g2 or g3] -> out (200 B); a and b (5000 B) exist only
    untiled. g1's and g2's outputs may start 100 bytes below their inputs; g3 keeps out apart, slower, with a
    100-byte window where g2 has 200. Both plans peak at 1300 bytes (g1's step: in and m span 1100, its window 200;
    b2's: m and out span 1100 + 200 with g2, 1000 + 200 + 100 with g3). With g2, m must sit 100 bytes above out and
    in 100 above m: at g1's step the window goes below m or above in, and at b2's step out and its window take 400
    bytes beside m where 300 are free, so no placement does better than 1400. With g3: m at 0, in at 100, g1's window
    at 1100, then out and g3's window in [1000, 1300): 1300."""
    plain = Choice("conv", "HWC", "HWC", 1.0, 0)

    def deferred(group: str) -> Choice:
        return Choice("conv", "HWC", "HWC", 1.0, 0, group=group, deferred=True)

    def last(group: str, ms: float, window: int, lead: int) -> Choice:
        return Choice("pw", "HWC", "HWC", ms, window, group=group, output_lead=lead)

    nodes = (ProblemNode("a1", ("in",), "a", (plain, deferred("g1"))),
             ProblemNode("a2", ("a",), "m", (plain, last("g1", 1.0, 200, 100))),
             ProblemNode("b1", ("m",), "b", (plain, deferred("g2"), deferred("g3"))),
             ProblemNode("b2", ("b",), "out", (plain, last("g2", 1.0, 200, 100), last("g3", 1.5, 100, 0))))
    sizes = {"in": 1000, "a": 5000, "m": 1000, "b": 5000, "out": 200}
    return Problem(nodes, {t: ProblemTensor(t, b) for t, b in sizes.items()}, "in", "HWC", "out", "HWC", {},
                   alignment=1)


def test_chained_overlaps_placed_above_the_peak_give_way_to_a_plan_placed_at_it() -> None:
    p = _chained_leads()
    faster = Session(p).solve(None, "memory")  # the fastest plan of the smallest peak: g2
    assert [c.group for _, c in faster.choices] == ["g1", "g1", "g2", "g2"] and faster.peak_bytes == 1300
    assert place(faster).arena_bytes == 1400
    for budget, objective in ((2**32, "memory"), (1300, "memory"), (1300, "latency")):
        chosen = decide(p, budget, objective, None, 10.0)
        assert [c.group for _, c in chosen.plan.choices] == ["g1", "g1", "g3", "g3"], (budget, objective)
        assert chosen.arena.arena_bytes == chosen.plan.peak_bytes == 1300 and chosen.plan.status == "feasible"
    assert decide(p, 1400, "latency", None, 10.0).arena.arena_bytes == 1400  # the faster plan, where it fits
