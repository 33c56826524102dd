"""The command line as a user meets it: JSON contracts, and bad input ending in one line on stderr and exit 1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from tests.e2e import tasobuild, write_spec
from tests.zoo import ensure_model

DS_CNN = "ds_cnn_torch"


def assert_one_line_error(proc, *fragments: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    model = tmp_path / "model.onnx"
    shutil.copyfile(ensure_model(DS_CNN), model)
    return write_spec(tmp_path, model, memory="256 KiB")


def test_build_json_has_the_design_fields(project: Path) -> None:
    report = json.loads(tasobuild("build", "-c", str(project), "--json").stdout)
    for key in ("arena_bytes", "lower_bound_bytes", "predicted_ms", "solver", "profiled", "nodes", "baselines",
                "files"):
        assert key in report
    assert report["solver"]["status"] == "optimal" and report["solver"]["seconds"] >= 0
    assert set(report["baselines"]) == {"greedy", "time_only"}
    for base in report["baselines"].values():
        assert base["predicted_ms"] > 0 and base["arena_bytes"] > 0
    node_keys = {"name", "op", "primitive", "layout_in", "layout_out", "tiling", "workspace_bytes", "predicted_ms"}
    assert all(node_keys <= set(n) for n in report["nodes"])
    assert report["predicted_ms"] <= report["baselines"]["greedy"]["predicted_ms"] + 1e-9
    assert "include/net.h" in report["files"]["written"]
    again = json.loads(tasobuild("build", "-c", str(project), "--json").stdout)
    assert again["profiled"] == 0 and again["files"]["written"] == []
    assert (project.parent / "taso.lock").read_text().startswith("# @generated")


def test_plan_json_matches_build_and_writes_nothing(project: Path) -> None:
    report = json.loads(tasobuild("plan", "-c", str(project), "--json").stdout)
    assert "files" not in report and not (project.parent / "out").exists()
    assert report["arena_bytes"] <= 256 * 1024


def test_memory_override_on_the_command_line(project: Path) -> None:
    small = json.loads(tasobuild("plan", "-c", str(project), "--json", "--memory", "100KiB").stdout)
    assert small["budget_bytes"] == 100 * 1024 and small["arena_bytes"] <= 100 * 1024


def test_primitives_json() -> None:
    rows = json.loads(tasobuild("primitives", "--json").stdout)
    assert rows == sorted(rows, key=lambda r: r["name"])
    assert all(set(r) == {"name", "op", "family", "layout_in", "layout_out"} for r in rows)
    conv = [r for r in rows if r["op"] == "conv"]
    assert len({r["family"] for r in conv}) >= 4 and {r["layout_in"] for r in conv} >= {"CHW", "HWC"}


def test_init_then_check(tmp_path: Path) -> None:
    model = tmp_path / "kws.onnx"
    shutil.copyfile(ensure_model(DS_CNN), model)
    spec = tmp_path / "taso.toml"
    tasobuild("init", str(model), "-c", str(spec))
    assert "[constraints]" in spec.read_text()
    summary = json.loads(tasobuild("check", "-c", str(spec), "--json").stdout)
    assert summary["input"] == [1, 1, 49, 10] and summary["nodes"] > 5
    assert_one_line_error(tasobuild("init", str(model), "-c", str(spec), check=False), "already exists")


def test_malformed_toml(project: Path) -> None:
    project.write_text(project.read_text().replace('memory = "256 KiB"', 'memory = "256 KiB'))
    assert_one_line_error(tasobuild("build", "-c", str(project), check=False), "taso.toml:", "TOML")


def test_unknown_key_names_line_and_closest_key(project: Path) -> None:
    project.write_text(project.read_text().replace('memory = ', 'memroy = '))
    assert_one_line_error(tasobuild("build", "-c", str(project), check=False), "taso.toml:11", "memroy",
                          "did you mean 'memory'")


def test_missing_model(project: Path) -> None:
    (project.parent / "model.onnx").unlink()
    assert_one_line_error(tasobuild("build", "-c", str(project), check=False), "network.onnx", "model.onnx")


def test_truncated_model(project: Path) -> None:
    model = project.parent / "model.onnx"
    model.write_bytes(model.read_bytes()[:5000])
    assert_one_line_error(tasobuild("build", "-c", str(project), check=False), "model.onnx")


def test_unsupported_operator_names_the_node(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    graph = helper.make_graph([helper.make_node("Tanh", ["x"], ["y"], name="squash")], "g", [x], [y])
    model = tmp_path / "tanh.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), model)
    spec = write_spec(tmp_path, model)
    assert_one_line_error(tasobuild("build", "-c", str(spec), check=False), "squash", "Tanh", "unsupported")


def test_budget_below_any_plan_names_the_smallest(project: Path) -> None:
    proc = tasobuild("build", "-c", str(project), "--memory", "4KiB", check=False)
    assert_one_line_error(proc, "command line: memory budget 4096 bytes", "smallest budget with a plan is")
    assert not (project.parent / "out").exists() and not (project.parent / "taso.lock").exists()


def test_usage_error_exits_2() -> None:
    assert tasobuild("build", "--no-such-flag", check=False).returncode == 2
