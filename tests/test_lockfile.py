"""taso.lock and the build around it: reproducible bytes, --frozen, --locked, no-op and incremental rebuilds,
safety under kill -9 and concurrent builds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e import tasobuild, write_spec
from tests.zoo import ensure_model

MODEL = "mobilenet_v1_vww_torch"
# What is pinned here is the lock and the build around it, not the choice of primitive: a few conv primitives in
# both layouts keep every solve quick while still giving the solver layouts and workspaces to trade.
PRIMITIVES = ["conv_1x1_gemm_chw", "conv_1x1_gemm_hwc", "conv_depthwise_direct_chw", "conv_depthwise_direct_hwc",
              "conv_direct_chw", "conv_im2col_gemm_chw", "conv_im2row_scan_hwc"]


def make_project(directory: Path, memory: str = "1 MiB") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ensure_model(MODEL), directory / "model.onnx")
    extra = "primitives = [" + ", ".join(f'"{p}"' for p in PRIMITIVES) + "]\n"
    return write_spec(directory, directory / "model.onnx", memory=memory, extra=extra)


def tree_digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def build_json(spec: Path, *args: str, env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-m", "tasobuild", "build", "-c", str(spec), "--json", *args],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_two_clean_builds_in_different_directories_are_byte_identical(tmp_path: Path) -> None:
    a, b = make_project(tmp_path / "a"), make_project(tmp_path / "b")
    build_json(a)
    build_json(b)
    assert tree_digests(a.parent / "out") == tree_digests(b.parent / "out")
    assert (a.parent / "taso.lock").read_bytes() == (b.parent / "taso.lock").read_bytes()
    lock = (a.parent / "taso.lock").read_text()
    assert str(tmp_path) not in lock and lock.startswith("# @generated")


def test_frozen_with_an_empty_cost_cache_reproduces_the_locked_tree(tmp_path: Path) -> None:
    spec = make_project(tmp_path / "a")
    build_json(spec)
    other = make_project(tmp_path / "elsewhere")
    shutil.copyfile(spec.parent / "taso.lock", other.parent / "taso.lock")
    env = {**os.environ, "TASOBUILD_CACHE_DIR": str(tmp_path / "empty-cache")}
    report = build_json(other, "--frozen", env=env)
    assert report["profiled"] == 0 and report["solver"]["seconds"] == 0.0
    assert tree_digests(other.parent / "out") == tree_digests(spec.parent / "out")
    assert (other.parent / "taso.lock").read_bytes() == (spec.parent / "taso.lock").read_bytes()
    assert not (tmp_path / "empty-cache" / "costs.sqlite").exists()


def test_frozen_refuses_a_changed_input(tmp_path: Path) -> None:
    spec = make_project(tmp_path)
    build_json(spec)
    spec.write_text(spec.read_text().replace('memory = "1 MiB"', 'memory = "900 KiB"'))
    proc = tasobuild("build", "-c", str(spec), "--frozen", check=False)
    assert proc.returncode == 1 and "inputs.spec" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_locked_fails_after_a_budget_change_and_passes_after_build(tmp_path: Path) -> None:
    spec = make_project(tmp_path)
    build_json(spec)
    build_json(spec, "--locked")
    spec.write_text(spec.read_text().replace('memory = "1 MiB"', 'memory = "900 KiB"'))
    before = tree_digests(tmp_path / "out")
    proc = tasobuild("build", "-c", str(spec), "--locked", check=False)
    assert proc.returncode == 1 and "inputs.spec" in proc.stderr
    assert tree_digests(tmp_path / "out") == before  # nothing written
    build_json(spec)
    build_json(spec, "--locked")


def test_noop_build_writes_nothing_and_budget_change_rewrites_only_what_changed(tmp_path: Path) -> None:
    spec = make_project(tmp_path, memory="2 MiB")
    build_json(spec)
    out = tmp_path / "out"
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    lock_stamp = (tmp_path / "taso.lock").stat().st_mtime_ns
    report = build_json(spec)
    assert report["up_to_date"] and report["files"]["written"] == [] and report["profiled"] == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps
    assert (tmp_path / "taso.lock").stat().st_mtime_ns == lock_stamp
    proc = tasobuild("build", "-c", str(spec))
    assert "up to date" in proc.stdout

    tight = build_json(spec, "--memory", "600KiB")
    assert tight["profiled"] == 0 and not tight["up_to_date"]
    assert tight["arena_bytes"] <= 600 * 1024
    for rel in tight["files"]["unchanged"]:
        assert (out / rel).stat().st_mtime_ns == stamps[out / rel]
    assert "src/kernels/tb_kernels.h" in tight["files"]["unchanged"]


def test_a_lock_from_a_newer_tasobuild_is_refused(tmp_path: Path) -> None:
    spec = make_project(tmp_path)
    build_json(spec)
    lock = tmp_path / "taso.lock"
    lock.write_text(lock.read_text().replace("version = 1", "version = 99", 1))
    proc = tasobuild("build", "-c", str(spec), check=False)
    assert proc.returncode == 1 and "newer" in proc.stderr and "upgrade" in proc.stderr


def consistent(project: Path) -> bool:
    """The tree matches taso.lock, or (killed between the tree swap and the lock rename) the pending lock."""
    out = tree_digests(project / "out")
    for lock in (project / "taso.lock", project / ".taso.lock.tasobuild-new"):
        if lock.exists():
            import tomllib

            files = tomllib.loads(lock.read_text())["files"]
            if all(out.get(rel) == digest for rel, digest in files.items()):
                return True
    return False


@pytest.mark.parametrize("fraction", [0.5, 0.8, 0.95])
def test_kill_9_during_a_build_leaves_a_valid_tree(tmp_path: Path, fraction: float) -> None:
    spec = make_project(tmp_path, memory="2 MiB")
    build_json(spec)  # the old tree; costs now cached
    start = time.monotonic()
    build_json(spec, "--memory", "700KiB")
    duration = time.monotonic() - start
    proc = subprocess.Popen([sys.executable, "-m", "tasobuild", "build", "-c", str(spec), "--memory", "1500KiB"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(duration * fraction)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert consistent(tmp_path)
    report = build_json(spec, "--memory", "1500KiB")  # recovers and completes
    assert consistent(tmp_path) and not (tmp_path / ".taso.lock.tasobuild-new").exists()
    assert report["arena_bytes"] <= 1500 * 1024


def test_two_builds_of_one_project_at_once_are_serialised(tmp_path: Path) -> None:
    spec = make_project(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-m", "tasobuild", "build", "-c", str(spec), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    reports = [json.loads(out) for out, _ in results]
    assert sorted(r["up_to_date"] for r in reports) == [False, True]
    assert consistent(tmp_path)
