"""What a user sees while a long step runs, and `-v` on either side of the command (issue 18's smaller points)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasobuild.progress import activity, counting
from tests.e2e import tasobuild


def test_an_activity_without_a_terminal_says_what_it_does_then_a_line_every_few_seconds(capsys) -> None:
    with activity("compiling the kernel bindings", True, every_s=0.05):
        time.sleep(0.28)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "tasobuild: compiling the kernel bindings ..."
    reminders = [line for line in lines[1:] if line.startswith("tasobuild: compiling the kernel bindings: still")]
    assert len(reminders) == len(lines) - 1 and 3 <= len(reminders) <= 6, lines


def test_counting_without_a_terminal_says_the_first_step_at_once_and_then_at_most_every_few_seconds(capsys) -> None:
    with counting("profiling", 3, True, every_s=60.0) as step:
        for name in ("tb_a", "tb_b", "tb_c"):
            step(name)
    assert capsys.readouterr().err.splitlines() == ["tasobuild: profiling: 0/3 (0 s) tb_a"]


def test_disabled_progress_prints_nothing(capsys) -> None:
    with activity("x", False, every_s=0.01):
        time.sleep(0.05)
    with counting("y", 2, False) as step:
        step("a")
    assert capsys.readouterr().err == ""


@pytest.fixture()
def project(ds_cnn_project: Path) -> Path:
    return ds_cnn_project


def test_verbose_after_the_command_logs_the_stages_as_before_it(project: Path) -> None:
    quiet = tasobuild("check", "-c", str(project))  # imports the model into the stage cache
    before = tasobuild("-v", "check", "-c", str(project))
    after = tasobuild("check", "-c", str(project), "-v")
    assert quiet.stderr == "" and "tasobuild: stage import: reused" in before.stderr
    assert after.stderr == before.stderr


def test_a_build_whose_bindings_compile_says_so_on_a_pipe(project: Path, tmp_path: Path) -> None:
    """A fresh cache: the bindings compile (tens of seconds); stderr, a pipe here, names that step at once."""
    env = {**os.environ, "TASOBUILD_CACHE_DIR": str(tmp_path / "fresh-cache")}
    proc = subprocess.run([sys.executable, "-m", "tasobuild", "profile", "-c", str(project)], env=env,
                          capture_output=True, text=True, check=True)
    compiling = [line for line in proc.stderr.splitlines() if "compiling the kernel bindings with" in line]
    assert compiling and compiling[0].endswith("(once per compiler and flags) ...")
    assert any(line.startswith("tasobuild: profiling: 0/") for line in proc.stderr.splitlines())
