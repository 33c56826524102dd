"""bench/replay.py: its comparison (what is a difference, what kernel-source changes explain) and one small replay."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "replay.py"


def _replay() -> ModuleType:
    spec = importlib.util.spec_from_file_location("replay", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["replay"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _project(root: Path, kernels: str, files: dict[str, str]) -> Path:
    digests = "".join(f'"{name}" = "{hashlib.sha256(text.encode()).hexdigest()}"\n'
                      for name, text in sorted(files.items()))
    (root / "out").mkdir(parents=True)
    (root / "taso.lock").write_text(f'[inputs]\nkernels = "{kernels}"\nonnx = "o"\n\n[files]\n{digests}')
    for name, text in files.items():
        (root / "out" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "out" / name).write_text(text)
    return root


def test_compare_tells_kernel_source_changes_from_real_differences(tmp_path: Path) -> None:
    replay = _replay()
    base = {"src/net.c": "int a;\n", "src/kernels/gemm.c": "void gemm(void);\n"}

    def outcome(name: str, kernels: str, files: dict[str, str]) -> object:
        result = replay.Outcome("net", name, 1)
        replay.compare(result, _project(tmp_path / name / "old", "k1", base), _project(tmp_path / name / "new",
                                                                                     kernels, files))
        return result

    same = outcome("same", "k1", base)
    assert (same.differing, same.kernel_files, same.lock) == ([], [], "identical")
    kernels = outcome("kernels", "k2", {**base, "src/kernels/gemm.c": "void gemm(int);\n"})
    assert (kernels.differing, kernels.kernel_files, kernels.lock) == ([], ["src/kernels/gemm.c"], "kernel sources")
    # the same kernel edit with an unchanged kernel digest is a difference (the emitter changed the file)
    emitted = outcome("emitted", "k1", {**base, "src/kernels/gemm.c": "void gemm(int);\n"})
    assert (emitted.differing, emitted.lock) == (["src/kernels/gemm.c"], "differs")
    real = outcome("real", "k2", {**base, "src/net.c": "int b;\n", "src/extra.h": ""})
    assert real.differing == ["src/extra.h", "src/net.c"] and real.lock == "differs"
    assert "-int a;" in real.details and "+int b;" in real.details


@pytest.mark.slow
def test_replay_of_head_against_itself_is_identical(tmp_path: Path) -> None:
    if shutil.which("git") is None or subprocess.run(["git", "-C", str(SCRIPT.parent), "rev-parse", "HEAD"],
                                                     capture_output=True).returncode != 0:
        pytest.skip("needs a git checkout")
    done = subprocess.run([sys.executable, str(SCRIPT), "HEAD", "HEAD", "--networks", "ds_cnn", "--configs", "model",
                           "--keep", str(tmp_path / "replay")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no unexpected differences" in done.stdout
    assert sorted(p.name for p in (tmp_path / "replay" / "old" / "ds_cnn").iterdir()) == [
        "latency", "memory", "tiled", "tiled-memory"]
