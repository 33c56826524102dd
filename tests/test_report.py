"""`tasobuild report`, `pareto --png`, the JSON schema and the plan table as a user meets them: hand-checked small
cases of the labels and the error object, then the real command on DS-CNN (a frontier of several points and the
bundled model's single point), its page opened in headless Chromium, every --json output validated against
docs/tasobuild-json.schema.json."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasobuild.report import error_object
from tasobuild.visual.facts import Layer
from tasobuild.visual.frontier import Baseline, Frontier, Point, _labels
from tests.e2e import WITH_TRADE_OFF, tasobuild, write_spec
from tests.zoo import BUNDLED_MODEL, ensure_model

REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "docs" / "tasobuild-json.schema.json").read_text(encoding="utf-8"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_valid(obj: object, definition: str) -> None:
    """`obj` is a `definition` of the schema (and so one of what --json prints)."""
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator({"$defs": SCHEMA["$defs"], "$ref": f"#/$defs/{definition}"}).validate(obj)
    jsonschema.Draft202012Validator(SCHEMA).validate(obj)


# ---------------------------------------------------------------------------------------------- small, by hand


def point(label: str = "A", families: tuple[tuple[str, int], ...] = (("depthwise", 4), ("direct", 4)),
          groups: int = 0, changed: int = 0, tiled: tuple[str, ...] = ()) -> Point:
    return Point(label, 64000, 64000, 0.057, "optimal", "optimal", families, groups, changed, tiled)


def test_point_says_what_it_runs() -> None:
    assert point().what == "conv: depthwise 4, direct 4"
    assert point(groups=1, changed=3).what == "conv: depthwise 4, direct 4; 1 fused group; 3 layers unlike the fastest"
    assert point(families=(), groups=2, changed=1).what == "2 fused groups; 1 layer unlike the fastest"
    assert point(families=()).what == "no convolutions"
    assert point(families=(), groups=2, tiled=("l1-l2 rows=4 over its input", "l6-l7 channels=16 HWC")).what == \
        "2 fused groups (l1-l2 rows=4 over its input, l6-l7 channels=16 HWC)"


def test_a_single_point_says_why() -> None:
    one = Frontier("kws", (point(),), (Baseline("greedy", 96000, 0.072),), 131072)
    assert one.note == ("one point: the fastest plan (0.057 ms) is also the one with the smallest peak of live "
                        "buffers (62.5 KiB), so every budget from 62.5 KiB up gives this same plan, and no budget "
                        "below it has one")
    assert Frontier("kws", (point("A"), point("B")), (), 131072).note == ""


def test_a_measured_layer_sets_its_real_time_against_the_model() -> None:
    measured = Layer(0, "c", "conv", "conv_x", "CHW", "CHW", "", 0, 0.5, ("measured",), 0.4)
    assert (measured.predicted_ms, measured.measured_ms) == (0.4, 0.5)
    imported = Layer(0, "c", "conv", "conv_x", "CHW", "CHW", "", 0, 0.5, ("imported", "measured"), None)
    assert (imported.predicted_ms, imported.measured_ms) == (None, 0.5)  # no model shipped: no prediction
    mixed = Layer(0, "c", "conv", "conv_x", "CHW", "CHW", "", 0, 0.5, ("measured", "predicted"), None)
    assert (mixed.predicted_ms, mixed.measured_ms) == (0.5, None)  # partly predicted: the plan's cost is a prediction


def test_labels() -> None:
    assert _labels(3) == ["A", "B", "C"]
    assert _labels(28)[25:] == ["Z", "A2", "B2"]


def test_error_object_names_the_file_and_line() -> None:
    assert error_object("taso.toml:12: unknown key 'memry'") == {
        "version": 1, "error": {"message": "taso.toml:12: unknown key 'memry'", "file": "taso.toml", "line": 12}}
    assert error_object("m.onnx: node 'c' (Conv): bad")["error"] | {"message": ""} == {
        "message": "", "file": "m.onnx", "line": None}
    assert error_object("taso.toml:3:7: invalid TOML")["error"]["line"] == 3
    # a key or a flag is not a file
    assert error_object("constraints.memory: no plan fits")["error"]["file"] is None
    assert error_object("unrecognized arguments: --x")["error"]["file"] is None
    for obj in (error_object("taso.toml:12: x"), error_object("no file here")):
        assert_valid(obj, "error")


# ----------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module", autouse=True)
def predictions_only(tmp_path_factory: pytest.TempPathFactory):
    """An empty cost cache of this module's own: its builds use `costs = "model"`, which takes cached measurements
    where there are some, so with the session's cache the frontiers these tests pin (the bundled model's single
    point) would depend on what earlier tests happened to measure, and on how fast."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TASOBUILD_CACHE_DIR", str(tmp_path_factory.mktemp("report-costs")))
        yield


@pytest.fixture(scope="module")
def trade_off(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DS-CNN without its blocked direct convs, so that less memory costs time: a frontier of several points."""
    folder = tmp_path_factory.mktemp("trade-off")
    spec = write_spec(folder, ensure_model("ds_cnn_torch"), memory="100 KiB", extra=WITH_TRADE_OFF)
    spec.write_text(spec.read_text().replace('costs = "profile"', 'costs = "model"'))
    return spec


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's example: the bundled model and taso.toml.example, costs from the model to keep it short."""
    folder = tmp_path_factory.mktemp("bundled")
    (folder / "models").mkdir()
    shutil.copyfile(BUNDLED_MODEL, folder / "models" / "ds_cnn.onnx")
    text = (REPO / "taso.toml.example").read_text().replace('costs = "profile"', 'costs = "model"')
    (folder / "taso.toml").write_text(text)
    return folder / "taso.toml"


def embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_is_one_self_contained_page(trade_off: Path) -> None:
    folder = trade_off.parent
    out = json.loads(tasobuild("report", "-c", str(trade_off), "-o", str(folder / "r.html"), "--png",
                               str(folder / "png"), "--json").stdout)
    assert_valid(out, "report")
    page = (folder / "r.html").read_text(encoding="utf-8")
    plan = json.loads(tasobuild("plan", "-c", str(trade_off), "--json").stdout)
    # the plan per layer: every node, its primitive and its cost source
    for node in plan["nodes"]:
        assert f">{node['name']}<" in page and f">{node['primitive']}<" in page
    assert ">predicted ms<" in page and ">measured ms<" in page and ">cost source<" in page
    # every call the plan runs, whole, with its cost and source ("model" costs are the cached measurements where an
    # earlier test of the session measured them, else predicted)
    calls = re.findall(r"<code>(tb_[^<]+)</code></td><td class=\"n\">[0-9.]+</td><td class=\"n\">[0-9.]+</td>"
                       r"<td>(?:measured|predicted[a-z ()]*)</td>", page)
    assert len(calls) >= len(plan["nodes"]) and all(call.endswith(")") for call in calls)
    # the arena: a row per buffer; the frontier: several labelled points, the baselines, the budget
    assert page.count("<tr>") > len(plan["nodes"]) * 2
    assert "<td>B</td>" in page and "one point:" not in page
    assert "baseline greedy" in page and "baseline time_only" in page and "of a 100 KiB budget" in page
    # nothing to fetch: no script, no URL but data: ones, a policy that forbids loading anything
    assert "<script" not in page.lower() and not re.search(r"(?:src|href)=\"(?!data:)", page)
    assert "http://" not in page and "https://" not in page and "default-src 'none'" in page
    # the PNG files are the pictures the page shows
    files = sorted((folder / "png").iterdir())
    assert [p.name for p in files] == ["arena.png", "layers.png", "pareto.png"]
    assert sorted(embedded_pngs(page)) == sorted(p.read_bytes() for p in files)
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in files)
    # deterministic: the same inputs, the same bytes
    again = folder / "again"
    tasobuild("report", "-c", str(trade_off), "-o", str(again / "r.html"), "--png", str(again))
    assert (again / "r.html").read_bytes() == (folder / "r.html").read_bytes()
    assert all((again / p.name).read_bytes() == p.read_bytes() for p in files)


def test_pareto_labels_points_and_single_point_says_why(trade_off: Path, bundled: Path) -> None:
    several = json.loads(tasobuild("pareto", "-c", str(trade_off), "--json", "--points", "5").stdout)
    assert_valid(several, "pareto")
    assert [p["label"] for p in several["points"]] == [chr(ord("A") + i) for i in range(len(several["points"]))]
    assert len(several["points"]) >= 2 and several["note"] == ""
    assert all(p["what"].startswith("conv: ") for p in several["points"])
    assert several["points"][0]["what"].endswith("unlike the fastest") and several["budget_bytes"] == 100 * 1024
    png = bundled.parent / "frontier.png"
    proc = tasobuild("pareto", "-c", str(bundled), "--png", str(png))
    assert "one point: the fastest plan" in proc.stdout and "every budget" in proc.stdout
    assert "greedy" in proc.stdout and "time_only" in proc.stdout and "budget 128 KiB" in proc.stdout
    assert png.read_bytes().startswith(PNG_MAGIC)
    one = json.loads(tasobuild("pareto", "-c", str(bundled), "--json").stdout)
    assert len(one["points"]) == 1 and one["note"].startswith("one point")
    bad = tasobuild("pareto", "-c", str(bundled), "--points", "1", check=False)
    assert bad.returncode == 1 and "at least 2 points" in bad.stderr and "Traceback" not in bad.stderr


def test_report_refuses_bad_paths_in_one_line_and_keeps_old_files(bundled: Path) -> None:
    folder = bundled.parent
    old = folder / "old.html"
    old.write_text("previous")
    for args, fragment in ((("-o", str(folder)), "is a folder"), (("-o", str(old), "--png", str(bundled)),
                                                                  "is not a folder"),
                           (("-o", str(old), "--points", "1"), "at least 2 points")):
        proc = tasobuild("report", "-c", str(bundled), *args, check=False)
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert fragment in proc.stderr and "Traceback" not in proc.stderr
    assert old.read_text() == "previous"


def test_every_json_output_has_a_version_and_fits_the_schema(bundled: Path) -> None:
    build = json.loads(tasobuild("build", "-c", str(bundled), "--json").stdout)
    assert_valid(build, "build")
    again = json.loads(tasobuild("build", "-c", str(bundled), "--json").stdout)  # the no-op answer too
    assert again["up_to_date"] and again["version"] == build["version"] == 1
    assert_valid(again, "build")
    assert_valid(json.loads(tasobuild("plan", "-c", str(bundled), "--json").stdout), "plan")
    assert_valid(json.loads(tasobuild("check", "-c", str(bundled), "--json").stdout), "check")
    exported = json.loads(tasobuild("costs", "export", str(bundled.parent / "c.csv"), "-c", str(bundled),
                                    "--json").stdout)
    assert exported["version"] == 1 and exported["target"] == "host"
    verified = json.loads(tasobuild("verify", "-c", str(bundled), "--json").stdout)
    assert verified["passed"] and verified["errors"]["count"] == 12  # DS-CNN's 12 classes
    assert_valid(verified, "verify")


def test_json_errors_are_objects_on_stdout(bundled: Path) -> None:
    user = tasobuild("plan", "-c", str(bundled.parent / "missing.toml"), "--json", check=False)
    assert user.returncode == 1 and len(user.stderr.strip().splitlines()) == 1
    obj = json.loads(user.stdout)
    assert_valid(obj, "error")
    assert obj["error"]["file"] == str(bundled.parent / "missing.toml")
    assert obj["error"]["message"] in user.stderr
    spec = bundled.parent / "bad.toml"
    spec.write_text(bundled.read_text().replace("[constraints]", "[constraints]\nmemry = 1"))
    line = next(i for i, text in enumerate(spec.read_text().splitlines(), 1) if text.startswith("memry"))
    bad_key = json.loads(tasobuild("plan", "-c", str(spec), "--json", check=False).stdout)
    assert bad_key["error"]["file"] == str(spec) and bad_key["error"]["line"] == line
    usage = tasobuild("plan", "--json", "--no-such-flag", check=False)
    assert usage.returncode == 2 and "usage:" in usage.stderr
    assert_valid(json.loads(usage.stdout), "error")
    assert json.loads(usage.stdout)["error"]["message"].endswith("unrecognized arguments: --no-such-flag")
    plain = tasobuild("plan", "--no-such-flag", check=False)  # without --json, stdout stays empty
    assert plain.returncode == 2 and plain.stdout == ""


def test_plan_fits_80_columns_and_explains_itself(bundled: Path) -> None:
    env = {**os.environ, "COLUMNS": "80"}
    out = subprocess.run([sys.executable, "-m", "tasobuild", "plan", "-c", str(bundled)], capture_output=True,
                         text=True, env=env, check=True).stdout
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 80, out
    plan = json.loads(tasobuild("plan", "-c", str(bundled), "--json").stdout)
    for node in plan["nodes"]:  # a primitive's name is what the allow-list needs: never cut
        assert node["primitive"] in out
    flat = " ".join(out.split())
    assert "greedy: every layer's fastest primitive on its own" in flat
    assert "time_only: the fastest plan as a whole" in flat and "lower bound: the most bytes live" in flat
    assert "cost: m measured" in flat


def test_primitives_piped_are_whole_names_one_per_line() -> None:
    rows = json.loads(tasobuild("primitives", "--json").stdout)
    lines = tasobuild("primitives").stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [r["name"] for r in rows]
    assert lines[0].split("\t") == [rows[0][k] for k in ("name", "op", "family", "layout_in", "layout_out")]


def test_report_of_a_microcontroller_shows_ram_and_flash_against_the_board(bundled: Path, tmp_path: Path) -> None:
    spec = bundled.parent / "m4.toml"
    spec.write_text(bundled.read_text().replace('name = "host"', 'name = "cortex-m4"')
                    .replace('memory = "128 KiB"', ""))  # the budget from the board's RAM
    tasobuild("report", "-c", str(spec), "-o", str(tmp_path / "r.html"))
    text = re.sub(r"<[^>]+>", " ", (tmp_path / "r.html").read_text(encoding="utf-8"))
    assert "predicted (host model)" in text  # a cross target's times are the host's, and the page says so
    assert re.search(r"target RAM +256 KiB: fits, [0-9.]+ KiB to spare", text)
    assert re.search(r"target flash +2 MiB: fits", text) and "stack 8 KiB" in text


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(bundled: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    tasobuild("report", "-c", str(bundled), "-o", str(page))
    assert_renders(page, tmp_path, "Memory-latency frontier", "one point: the fastest plan")


def assert_renders(page: Path, workdir: Path, *texts: str) -> None:
    """`page` opens in headless Chromium with no console message and no blocked load, its DOM holds `texts`, and
    its screenshot is not blank."""
    assert CHROMIUM is not None
    argv = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-extensions",
            f"--user-data-dir={workdir / 'chromium-profile'}", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([*argv, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr
    for text in texts:
        assert text in dom.stdout
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Content Security Policy" in line
               or "Uncaught" in line or "Failed to load" in line or "net::ERR" in line]
    assert console == [], console
    shot = workdir / "shot.png"
    subprocess.run([*argv, f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()], capture_output=True,
                   timeout=120, check=True)
    from matplotlib.image import imread

    pixels = imread(str(shot))
    assert pixels.shape[0] >= 2400 and pixels.std() > 0.05  # text, tables and pictures, not a blank page
