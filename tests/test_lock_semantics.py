"""taso.lock as the resolved input, as Cargo.lock is: a build reuses every cost the lock lists (on any machine, with
an empty cache), `--locked` passes when nothing changed, `--frozen` works for every cost source, and `update`
re-costs on purpose. The lock is always valid TOML: render -> parse -> render gives the same bytes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasobuild.costs.cache import Cost
from tasobuild.incremental.lock import as_parsed, parse_lock, render_lock
from tests.e2e import write_target_spec
from tests.zoo import fixture_path

MODEL = "ds_cnn_torch"  # small: every case builds it in a second or two


def make_project(directory: Path, costs: str, tiling: bool = False, memory: str = "2 MiB") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fixture_path(MODEL), directory / "model.onnx")
    return write_target_spec(directory, directory / "model.onnx", "host", costs=costs, memory=memory,
                             extra="tiling = true\n" if tiling else "")


def run(spec: Path, *args: str, cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"TASOBUILD_CACHE_DIR": str(cache)} if cache else {})}
    return subprocess.run([sys.executable, "-m", "tasobuild", *args, "-c", str(spec)], capture_output=True,
                          text=True, env=env)


def run_json(spec: Path, *args: str, cache: Path | None = None) -> dict:
    proc = run(spec, *args, "--json", cache=cache)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_round_trips(lock: Path) -> dict:
    text = lock.read_text(encoding="utf-8")
    parsed = parse_lock(text, lock)
    data = {k: v for k, v in parsed.items() if k != "version"}
    assert render_lock(data) == text
    assert as_parsed(data) == parsed
    return parsed


def imported_cache(spec: Path, tmp_path: Path) -> Path:
    """A fresh cache holding only costs imported from a CSV (exported from the session's cache after a build)."""
    run_json(spec, "build")
    csv = tmp_path / "costs.csv"
    run_json(spec, "costs", "export", str(csv))
    (spec.parent / "taso.lock").unlink()  # the CSV, not the lock, carries the costs over
    fresh = tmp_path / "imported-cache"
    run_json(spec, "costs", "import", str(csv), cache=fresh)
    return fresh


@pytest.mark.parametrize("tiling", [False, True], ids=["untiled", "tiled"])
@pytest.mark.parametrize("source", ["profile", "model", pytest.param("auto", marks=pytest.mark.slow), "imported"])
def test_every_cost_source_writes_a_lock_that_parses_and_rebuilds_frozen(tmp_path: Path, source: str,
                                                                         tiling: bool) -> None:
    spec = make_project(tmp_path / "a", "profile" if source == "imported" else source, tiling)
    # "model" takes cached measurements where there are some: an empty cache of its own makes every cost predicted
    cache = imported_cache(spec, tmp_path) if source == "imported" else \
        tmp_path / "own-cache" if source in ("model", "auto") else None
    report = run_json(spec, "build", cache=cache)
    lock = assert_round_trips(spec.parent / "taso.lock")
    sources = {row["source"] for row in lock["cost"]}
    expected = {"profile": {"measured"}, "model": {"predicted"}, "imported": {"imported"}}.get(source)
    assert expected is None or sources == expected, sources
    assert report["nodes"]
    other = make_project(tmp_path / "elsewhere", "model")
    shutil.copyfile(spec, other)
    shutil.copyfile(spec.parent / "taso.lock", other.parent / "taso.lock")
    frozen = run_json(other, "build", "--frozen", cache=tmp_path / "empty-cache")
    assert frozen["profiled"] == 0
    assert tree(other.parent / "out") == tree(spec.parent / "out")
    assert (other.parent / "taso.lock").read_bytes() == (spec.parent / "taso.lock").read_bytes()


@pytest.mark.slow  # `update` with an empty cache profiles the network again, by design
def test_a_fresh_machine_with_an_empty_cache_passes_locked_and_update_re_measures(tmp_path: Path) -> None:
    spec = make_project(tmp_path / "checkout", "profile")
    run_json(spec, "build")
    lock = spec.parent / "taso.lock"
    # The lock was written on another machine: its costs were measured there.
    text = lock.read_text()
    for key in ("costs_from", "toolchain"):
        line = next(line for line in text.splitlines() if line.startswith(f"{key} = "))
        text = text.replace(line, f'{key} = "another machine"')
    lock.write_text(text)
    shutil.rmtree(spec.parent / "out")  # a fresh checkout: the emitted tree is not committed
    empty = tmp_path / "ci-cache"

    report = run_json(spec, "build", "--locked", cache=empty)
    assert report["profiled"] == 0
    assert lock.read_text() == text, "a build that reuses every locked cost leaves the lock byte for byte"
    assert not (empty / "costs.sqlite").exists(), "the cost cache was not even opened"
    assert run_json(spec, "build", "--locked", cache=empty)["up_to_date"]

    changed = run(spec, "build", "--locked", "--memory", "1 MiB", cache=empty)
    assert changed.returncode == 1 and len(changed.stderr.splitlines()) == 1
    assert "plan." in changed.stderr and str(lock) in changed.stderr
    assert lock.read_text() == text

    updated = run_json(spec, "update", cache=empty)
    assert updated["profiled"] > 0, "update re-costs: an empty cache means measuring"
    assert 'costs_from = "another machine"' not in lock.read_text()


def test_a_plain_build_keeps_the_locked_costs_and_update_replaces_them(tmp_path: Path) -> None:
    spec = make_project(tmp_path, "profile")
    run_json(spec, "build")
    lock = spec.parent / "taso.lock"
    # A locked cost no machine measured: a build must take it as it is, update must replace it.
    text = lock.read_text()
    first = text.index("[[cost]]")
    median = text.index("median_ms = ", first)
    end = text.index("\n", median)
    doctored = text[:median] + "median_ms = 123.0" + text[end:]
    lock.write_text(doctored)
    run_json(spec, "build", "--memory", "1 MiB")
    assert "median_ms = 123.0" in lock.read_text()
    run_json(spec, "update", "--memory", "1 MiB")
    assert "median_ms = 123.0" not in lock.read_text()


def test_costs_are_plain_floats_and_the_writer_refuses_numpy_scalars() -> None:
    cost = Cost(np.float64(0.5), np.float32(0.25), 1, "measured")
    assert type(cost.median_ms) is float and type(cost.spread_ms) is float
    with pytest.raises(ValueError, match="median_ms must be a number"):
        Cost("fast", 0.0, 1, "measured")  # type: ignore[arg-type]
    data = {"inputs": {}, "plan": {"predicted_ms": np.float64(0.5)}, "node": [], "transform": [], "cost": [],
            "files": {}}
    with pytest.raises(TypeError, match=r"numpy.float64 .*\[plan\] predicted_ms"):
        render_lock(data)
