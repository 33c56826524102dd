"""The README's commands, run as written on the bundled example (issue 18: its own `--memory 48KiB` failed).

Every inline `tasobuild ...` command of the README must be one this test runs (a new example without a run here
fails), placeholders replaced by the bundled example's files; the quick start runs from `tasobuild build` on
(the venv and `pip install .` steps are the test environment's own).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")

# The README's examples with a placeholder, as this test runs them on the bundled example.
PLACEHOLDERS = {"tasobuild init MODEL.onnx": "tasobuild init models/ds_cnn.onnx",
                "tasobuild profile --plan [--runs N]": "tasobuild profile --plan --runs 5"}
# Examples that are prose, not a command to run as is.
ELIDED = {"tasobuild init MODEL.onnx --input-shape ...", "tasobuild init"}


def inline_commands() -> list[str]:
    return sorted(set(re.findall(r"`(tasobuild [^`]*)`", README)))


def quick_start() -> str:
    block = re.search(r"## Quick start\n.*?```sh\n(.*?)\n```", README, re.S)
    assert block is not None
    steps = [step.strip() for step in block[1].split("&&")]
    first = next(i for i, step in enumerate(steps) if step.startswith("tasobuild "))
    assert all(s.startswith(("python3 -m venv", ". .venv", "pip install")) for s in steps[:first]), steps
    return " && ".join(steps[first:])


def test_every_readme_command_runs_as_written_on_the_bundled_example(tmp_path: Path) -> None:
    shutil.copyfile(REPO / "taso.toml.example", tmp_path / "taso.toml.example")
    shutil.copytree(REPO / "models", tmp_path / "models")
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "tasobuild").write_text(f"#!/bin/sh\nexec {sys.executable} -m tasobuild \"$@\"\n")
    (shim / "tasobuild").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO)}

    def run(command: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{command}: exit {proc.returncode}\n{proc.stderr}"
        return proc

    run(quick_start())
    # "Then `build/kws/kws_main IN.bin OUT.bin [--bench N] [--profile N]` runs the network on raw float32 input"
    assert "`build/kws/kws_main IN.bin OUT.bin [--bench N] [--profile N]`" in README
    np.random.default_rng(0).standard_normal(49 * 10).astype("<f4").tofile(tmp_path / "IN.bin")
    assert "median_ms:" in run("build/kws/kws_main IN.bin OUT.bin --bench 3").stdout
    assert (tmp_path / "OUT.bin").stat().st_size == 12 * 4

    commands = inline_commands()
    ran = []
    for command in sorted(commands, key=lambda c: (not c.startswith("tasobuild init"), c)):  # init writes taso.toml
        if command in ELIDED:
            continue
        run(PLACEHOLDERS.get(command, command))
        ran.append(command)
    assert {"tasobuild build -c taso.toml.example --memory 64KiB", "tasobuild init MODEL.onnx", "tasobuild check",
            "tasobuild build", "tasobuild update", "tasobuild targets"} <= set(ran)
    assert set(commands) - set(ran) <= ELIDED
