"""Incremental builds, fast: the no-op check that answers before the stages are imported (and every way it falls
through to the full check), and the stage caches a budget change hits (baselines, weight transforms, the parsed
lock) — with the bytes a build emits independent of what the caches held."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_lockfile import make_project, tree_digests

FAST = "fast no-op check: "


def run(spec: Path, *args: str, env: dict | None = None) -> tuple[str, str]:
    """`tasobuild -v build` (stdout, the fast check's line on stderr, "" if it was not consulted)."""
    proc = subprocess.run([sys.executable, "-m", "tasobuild", "-v", "build", "-c", str(spec), *args],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    fast = [line for line in proc.stderr.splitlines() if FAST in line]
    assert len(fast) <= 1, proc.stderr
    return proc.stdout, fast[0].split(FAST, 1)[1] if fast else ""


def run_json(spec: Path, *args: str, env: dict | None = None) -> tuple[dict, str]:
    out, fast = run(spec, "--json", *args, env=env)
    return json.loads(out), fast


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project built once (its costs now cached); tests that change it take a copy."""
    spec = make_project(tmp_path_factory.mktemp("built"), memory="2 MiB")
    run_json(spec)
    return spec


@pytest.fixture()
def project(built: Path, tmp_path: Path) -> Path:
    """A fresh copy of the built project whose next plain `build --json` is answered by the fast check."""
    shutil.copytree(built.parent, tmp_path / "p", symlinks=True)
    spec = tmp_path / "p" / "taso.toml"
    report, fast = run_json(spec)  # a new place: no record yet, and the state's stamps are the copy's
    assert fast == "no record of a previous build; full check" and report["files"]["written"] == []
    assert run_json(spec)[1] == "nothing changed"
    return spec


def test_the_fast_answer_is_the_full_checks_answer_byte_for_byte(project: Path) -> None:
    fast_json, fast = run(project, "--json")
    full_json, full = run(project, "--json", "--locked")  # another command line: the full check answers
    assert fast == "nothing changed" and full == "the command line differs from the last build's; full check"
    assert fast_json == full_json and json.loads(fast_json)["up_to_date"] is True
    fast_text, _ = run(project)
    full_text, _ = run(project, "--memory", "2MiB")
    assert fast_text == full_text == f"{project.parent / 'out'} is up to date with {project.parent / 'taso.lock'}\n"


def test_a_new_command_line_takes_the_full_check_then_is_remembered(project: Path) -> None:
    report, fast = run_json(project, "--memory", "2MiB")  # the same budget, said on the command line
    assert fast == "the command line differs from the last build's; full check" and report["up_to_date"]
    assert run_json(project, "--memory", "2MiB")[1] == "nothing changed"
    assert run_json(project)[1] == "the command line differs from the last build's; full check"


def test_frozen_never_takes_the_fast_answer(project: Path) -> None:
    report, fast = run_json(project, "--frozen")
    assert fast == "" and report["up_to_date"] is False and report["files"]["written"] == []


def test_an_edited_spec_falls_through_even_when_its_settings_are_the_same(project: Path) -> None:
    project.write_text(project.read_text() + "# a comment changes the bytes, not the settings\n")
    report, fast = run_json(project)
    assert fast == f"{project} changed; full check" and report["up_to_date"]
    assert run_json(project)[1] == "nothing changed"
    project.write_text(project.read_text().replace('memory = "2 MiB"', 'memory = "600 KiB"'))
    report, fast = run_json(project)
    assert fast == f"{project} changed; full check" and not report["up_to_date"]
    assert report["arena_bytes"] <= 600 * 1024 and report["profiled"] == 0


def test_a_touched_model_falls_through_once(project: Path) -> None:
    model = project.parent / "model.onnx"
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 10**9))
    report, fast = run_json(project)
    assert fast == f"the ONNX file {model} changed; full check" and report["up_to_date"]
    assert run_json(project)[1] == "nothing changed"  # the full check re-hashed it and kept the new stamp


def test_a_touched_output_falls_through_and_a_removed_one_is_rewritten(project: Path) -> None:
    out = project.parent / "out"
    header = out / "include" / "net.h"
    os.utime(header, ns=(header.stat().st_atime_ns, header.stat().st_mtime_ns + 10**9))
    report, fast = run_json(project)
    assert fast == "output include/net.h was touched or removed; full check"
    assert not report["up_to_date"] and report["files"]["written"] == []
    (out / "Makefile").unlink()
    report, fast = run_json(project)
    assert fast == "output Makefile was touched or removed; full check" and report["files"]["written"] == ["Makefile"]
    assert run_json(project)[1] == "nothing changed"


def test_an_edited_lock_or_a_pending_journal_falls_through(project: Path) -> None:
    lock = project.parent / "taso.lock"
    original = lock.read_bytes()
    lock.write_bytes(original + b"# edited\n")
    report, fast = run_json(project)
    assert fast == f"{lock} changed; full check" and not report["up_to_date"]
    assert lock.read_bytes() == original  # the full check rebuilt the lock it should be
    journal = project.parent / ".taso.lock.tasobuild-new"
    journal.write_text("not a lock")
    report, fast = run_json(project)
    assert fast == "a lock journal is pending (an interrupted build); full check" and report["up_to_date"]
    assert not journal.exists()


def test_an_edited_target_file_falls_through(built: Path, tmp_path: Path) -> None:
    from tasobuild.resources import targets_dir

    shutil.copytree(built.parent, tmp_path / "p", symlinks=True)
    spec = tmp_path / "p" / "taso.toml"
    target = tmp_path / "p" / "board.toml"
    shutil.copyfile(targets_dir() / "host.toml", target)
    spec.write_text(spec.read_text().replace('[target]\nname = "host"', '[target]\nname = "board.toml"'))
    run_json(spec)
    assert run_json(spec)[1] == "nothing changed"
    target.write_text(target.read_text().replace('description = "', 'description = "Edited. '))
    report, fast = run_json(spec)
    assert fast == f"the target file {target} changed; full check" and report["up_to_date"]  # not in the digest


def test_the_record_is_compared_field_by_field(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    """What a test cannot change for real (tasobuild's code, the kernels, the CPU, the compiler), changed in the
    record of a real build: each one makes the check fall through, naming it."""
    from tasobuild.incremental.noop import _first_change, noop_record_path
    from tasobuild.incremental.state import read_json

    path = noop_record_path(project)
    record = read_json(path)
    lock = project.parent / "taso.lock"
    assert _first_change(record, project, lock) is None
    changes = {
        "code": ("0" * 64, "tasobuild's code changed"),
        "kernels": ([record["kernels"][0], "0" * 64], "the kernel sources changed"),
        "targets_dir": ("/elsewhere", "the kernel sources changed"),
        "cpu": ([record["cpu"][0], ["model name : another CPU"]], "the CPU changed"),
        "compiler": ([record["compiler"][0], "0\ncc 0.1\n"], f"the compiler {record['compiler'][0][0]} changed"),
    }
    for key, (value, reason) in changes.items():
        assert _first_change({**record, key: value}, project, lock) == reason, key


def test_a_build_in_progress_makes_the_fast_check_stand_aside(project: Path, caplog) -> None:
    import logging

    from filelock import FileLock

    from tasobuild.incremental.noop import fast_up_to_date
    from tasobuild.incremental.state import busy_lock_path

    caplog.set_level(logging.INFO, logger="tasobuild")
    assert fast_up_to_date(project, {}, False) is not None
    with FileLock(str(busy_lock_path(project.parent / "taso.lock"))):
        assert fast_up_to_date(project, {}, False) is None
    assert "another build of this project is running; full check" in caplog.text


def test_every_cache_lives_in_the_one_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tasobuild import native
    from tasobuild.costs.cache import CostCache
    from tasobuild.incremental.stagecache import entry_path
    from tasobuild.incremental.state import state_path
    from tasobuild.resources import cache_dir

    monkeypatch.setenv("TASOBUILD_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path
    assert CostCache().directory == tmp_path
    assert native.bindings_dir() == tmp_path / "bindings"
    assert entry_path("import", "k").parent.parent.parent == tmp_path
    assert state_path(tmp_path / "out").parent.parent == tmp_path
    monkeypatch.delenv("TASOBUILD_CACHE_DIR")
    assert cache_dir().name == "tasobuild"


# ---- stage caches -------------------------------------------------------------------------------------------------


def stage_log(spec: Path, *args: str, env: dict | None = None) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, "-m", "tasobuild", "-v", "build", "-c", str(spec), "--json", *args],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def test_a_budget_change_reuses_the_baselines_and_weights_and_a_changed_problem_does_not(
        built: Path, tmp_path: Path) -> None:
    from tasobuild.resources import cache_dir

    baselines = cache_dir() / "stages" / "baselines"
    before = set(os.listdir(baselines))
    shutil.copytree(built.parent, tmp_path / "p", symlinks=True)
    spec = tmp_path / "p" / "taso.toml"
    report, log = stage_log(spec, "--memory", "700KiB")
    assert all(f"stage {stage}: reused (stage cache)" in log for stage in ("candidates", "baselines", "weights"))
    assert report["profiled"] == 0 and report["arena_bytes"] <= 700 * 1024
    assert set(os.listdir(baselines)) == before
    # Another problem (one primitive fewer to choose from, as a changed network would be): solved and kept.
    spec.write_text(spec.read_text().replace('"conv_direct_chw", ', ""))
    report, log = stage_log(spec)
    assert "stage baselines: reused" not in log and len(set(os.listdir(baselines)) - before) == 1
    assert "stage candidates: reused" not in log  # the allow-list is part of the candidates' key


def test_the_bytes_do_not_depend_on_what_the_caches_held(built: Path, tmp_path: Path) -> None:
    """A budget change that reuses the baselines, and a return to a budget that reuses its solver answers, emit
    exactly what a clean build at that budget does."""
    shutil.copytree(built.parent, tmp_path / "warm", symlinks=True)
    warm = tmp_path / "warm" / "taso.toml"
    cold = make_project(tmp_path / "cold", memory="2 MiB")
    for i, budget in enumerate(("400KiB", "300KiB", "400KiB")):  # under the fastest plan's 423 KiB: solved
        _, log = stage_log(warm, "--memory", budget)
        assert "stage baselines: reused" in log
        assert "stage fastest: reused" in log or i < 2  # back at 400 KiB: its solver answers are reused
        env = {**os.environ, "TASOBUILD_CACHE_DIR": str(tmp_path / f"cache-{i}")}
        shutil.copytree(os.environ["TASOBUILD_CACHE_DIR"], tmp_path / f"cache-{i}",
                        ignore=shutil.ignore_patterns("stages", "builds"))  # the costs only
        _, log = stage_log(cold, "--memory", budget, env=env)
        assert "stage baselines: reused" not in log
        assert tree_digests(warm.parent / "out") == tree_digests(cold.parent / "out")
        assert (warm.parent / "taso.lock").read_bytes() == (cold.parent / "taso.lock").read_bytes()


def test_the_kept_lock_is_the_parsed_lock(built: Path) -> None:
    """The state keeps the lock as JSON round-trips it; that is exactly what parsing its TOML gives."""
    from tasobuild.incremental.lock import parse_lock
    from tasobuild.incremental.state import read_state

    lock = built.parent / "taso.lock"
    state = read_state(built.parent / "out")
    assert state["lock"]["data"] == parse_lock(lock.read_text(), lock)
    assert len(state["lock"]["data"]["cost"]) > 10 and len(state["lock"]["data"]["node"]) > 10


def test_decide_is_the_same_with_the_baselines_given_or_solved(built: Path) -> None:
    """decide() solves the budget in a Session of its own, so reusing cached baselines cannot change its answer."""
    from tasobuild.decide import baselines_of, decide
    from tasobuild.pipeline import Solve, load, price

    inputs = load(built)
    problem = price(inputs, Solve(inputs.spec, inputs.target)).problem
    base = baselines_of(problem, 10.0)
    assert base.proven
    roomy = decide(problem, 1 << 30, "latency", None, 10.0, baselines=base)
    assert roomy.plan == base.time_only and roomy.plan.status == "optimal"
    fastest = base.time_only.peak_bytes
    for budget in (fastest - 1, fastest * 3 // 4, 700 * 1024):
        given = decide(problem, budget, "latency", None, 10.0, baselines=base)
        solved = decide(problem, budget, "latency", None, 10.0)
        assert given.plan == solved.plan and given.arena == solved.arena and given.baselines == solved.baselines
        assert given.arena.arena_bytes <= budget and given.plan.time_ns >= base.time_only.time_ns


def test_the_stage_cache_evicts_least_recently_used_first(tmp_path: Path) -> None:
    """Three 100-byte entries used at t = 1, 2, 3 s, a 250-byte cap: only the oldest goes; a reuse makes an entry
    the newest."""
    from tasobuild.incremental.stagecache import evict

    for name, used in (("a", 3), ("b", 1), ("c", 2)):
        path = tmp_path / f"{name}.pickle"
        path.write_bytes(bytes(100))
        os.utime(path, (used, used))
    evict(tmp_path, 250)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pickle", "c.pickle"]
    os.utime(tmp_path / "c.pickle", (9, 9))  # c reused: a is now the oldest
    evict(tmp_path, 150)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pickle"]
    evict(tmp_path, 0)
    assert list(tmp_path.iterdir()) == []
