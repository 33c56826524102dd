"""The Python API (tasobuild.api): the README's example as written, the results against the command line's JSON, its
errors, and `import tasobuild` staying light."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tasobuild
from tests.e2e import tasobuild as tasobuild_cli

REPO = Path(__file__).resolve().parent.parent


def readme_api_example() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the README's Python API section has one example"
    return blocks[0]


def test_the_readme_example_runs_as_written_on_the_bundled_model(tmp_path: Path) -> None:
    shutil.copyfile(REPO / "taso.toml.example", tmp_path / "taso.toml.example")
    shutil.copytree(REPO / "models", tmp_path / "models")
    script = tmp_path / "example.py"
    script.write_text(readme_api_example())
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"\d+\.\d{3} ms predicted, arena \d+ bytes, 25 files", lines[0]), lines[0]
    assert sum(" ms (optimal)" in line for line in lines) >= 1
    assert lines[-1].startswith("too small: command line: memory budget 16384 bytes is too small")
    assert (tmp_path / "build" / "kws" / "include" / "kws.h").is_file() and (tmp_path / "taso.toml.lock").is_file()


@pytest.fixture()
def project(ds_cnn_project: Path) -> Path:
    return ds_cnn_project


def test_results_are_the_json_reports_typed(project: Path) -> None:
    built = tasobuild.build(project, memory="100KiB")
    assert isinstance(built, tasobuild.BuildResult) and not built.up_to_date
    cli = json.loads(tasobuild_cli("plan", "-c", str(project), "--memory", "100KiB", "--json").stdout)
    planned = tasobuild.plan(project, memory=100 * 1024)
    assert isinstance(planned, tasobuild.PlanResult) and not isinstance(planned, tasobuild.BuildResult)
    # the same object but for the solver's time, and the schema version the command line adds to what it prints
    assert {k: v for k, v in planned.report.items() if k != "solver"} == \
        {k: v for k, v in cli.items() if k not in ("solver", "version")}
    assert (planned.arena_bytes, planned.predicted_ms) == (built.arena_bytes, built.predicted_ms)
    assert planned.arena_bytes == cli["arena_bytes"] <= planned.budget_bytes == 100 * 1024
    assert [(n.name, n.primitive, n.layout_in, n.cost_source) for n in planned.nodes] == \
        [(n["name"], n["primitive"], n["layout_in"], tuple(n["cost_source"])) for n in cli["nodes"]]
    assert set(planned.baselines) == {"greedy", "time_only"} and planned.memory is None
    assert built.out_dir == project.parent / "out" and built.lock_path == project.parent / "taso.lock"
    assert "include/net.h" in built.files.written
    again = tasobuild.build(project, memory="100KiB")
    assert again.up_to_date and again.files.written == () and again.arena_bytes == built.arena_bytes
    with pytest.raises(dataclasses_frozen()):
        again.arena_bytes = 0  # type: ignore[misc]


def dataclasses_frozen() -> type[Exception]:
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_pareto_matches_the_command_line(project: Path) -> None:
    front = tasobuild.pareto(project, points=3)
    cli = json.loads(tasobuild_cli("pareto", "-c", str(project), "--points", "3", "--json").stdout)
    assert [(p.arena_bytes, p.predicted_ms, p.status) for p in front.points] == \
        [(p["arena_bytes"], p["predicted_ms"], p["status"]) for p in cli["points"]]
    arenas = [p.arena_bytes for p in front.points]
    assert arenas == sorted(arenas) and front.frontier.project == "net"
    assert [p.label for p in front.points] == [p["label"] for p in cli["points"]]  # A, B, ...: labelled alike


def test_errors_are_user_errors_and_print_nothing(project: Path) -> None:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), pytest.raises(tasobuild.UserError, match="memory budget 1024 bytes"):
        tasobuild.plan(project, memory="1KiB")
    with pytest.raises(tasobuild.UserError, match="no such file"):
        tasobuild.build(project.parent / "missing.toml")
    with pytest.raises(tasobuild.UserError, match="a frontier needs at least 2 points"):
        tasobuild.pareto(project, points=0)
    with pytest.raises(tasobuild.UserError, match=r"--locked, but there is no lock"):
        tasobuild.build(project, locked=True)
    assert stderr.getvalue() == "" and not (project.parent / "out").exists()


def test_importing_tasobuild_and_naming_the_api_loads_no_heavy_library() -> None:
    code = ("import sys, tasobuild; tasobuild.build, tasobuild.plan, tasobuild.pareto, tasobuild.UserError; "
            "print(sorted(m for m in ('numpy', 'onnx', 'z3', 'pydantic', 'rich', 'filelock') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.strip() == "[]"
