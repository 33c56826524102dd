"""On-device profiling round trip: emit the harness, compile it with cc, run it, import its CSV, plan from it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tasobuild.costs.cache import CostCache, CostKey, kernel_digest, read_csv
from tasobuild.costs.harness import harness_source
from tasobuild.primitives import KernelCall
from tests.e2e import tasobuild, write_spec

DEVICE_TARGET = """\
name = "device"
description = "this machine pretending to be a board that tasobuild cannot run kernels on"
cc = "cc"
cflags = ["-O2", "-ffp-contract=off"]
ldflags = ["-lm"]
profile = false
"""


def test_harness_source_names_every_call_once_sorted() -> None:
    a = KernelCall("tb_add", "tb_flat", (("n", 8), ("act", 1), ("act_a", 0.0), ("act_b", 6.5)),
                   ("in0", "in1", "out"), (("in0", 32), ("in1", 32), ("out", 32)))
    b = KernelCall("tb_act", "tb_flat", (("n", 4), ("act", 2), ("act_a", 1e-05), ("act_b", 6.0)),
                   ("in0", "out"), (("in0", 16), ("out", 16)))
    text = harness_source([a, b, a])
    assert text.count("static void run") == 2
    assert "static const tb_flat p = {.n = 8, .act = 1, .act_a = 0.0f, .act_b = 6.5f};" in text
    assert "static const tb_flat p = {.n = 4, .act = 2, .act_a = 1e-05f, .act_b = 6.0f};" in text
    assert text.index('"tb_act", "n=4,act=2,act_a=1e-05,act_b=6.0"') < text.index('"tb_add", "n=8,')
    assert '{"tb_add", "n=8,act=1,act_a=0.0,act_b=6.5", run1, 3, {32, 32, 32}},' in text


def test_harness_round_trip_through_costs_import(tmp_path: Path, zoo_model, monkeypatch) -> None:
    monkeypatch.setenv("TASOBUILD_CACHE_DIR", str(tmp_path / "cache"))
    work = tmp_path / "project"
    work.mkdir()
    (work / "device.toml").write_text(DEVICE_TARGET)
    spec = write_spec(work, zoo_model("ds_cnn_torch"), memory="1 MiB")
    spec.write_text(spec.read_text().replace('name = "host"', 'name = "device.toml"'))

    out = json.loads(tasobuild("profile", "-c", str(spec), "--emit-harness", str(tmp_path / "h"), "--json").stdout)
    harness = tmp_path / "h"
    assert (harness / "harness.c").is_file() and (harness / "kernels" / "tb_kernels.h").is_file()
    make = subprocess.run(["make", "-s", "-C", str(harness), "CFLAGS=-O2 -ffp-contract=off -std=c99 -Wall -Wextra "
                           "-Werror -DTB_HARNESS_SECONDS=0.001 -Ikernels"], capture_output=True, text=True)
    assert make.returncode == 0, make.stderr
    run = subprocess.run([str(harness / "harness")], capture_output=True, text=True, check=True, timeout=300)
    csv_path = tmp_path / "device.csv"
    csv_path.write_text(run.stdout)
    rows = read_csv(csv_path)
    assert len(rows) == out["calls"] and all(cost.median_ms > 0 and cost.reps >= 5 for _, cost in rows)

    # Before the import the device's costs are unknown: "profile" on a profile=false target says what to do.
    failed = tasobuild("plan", "-c", str(spec), "--json", check=False)
    assert failed.returncode == 1 and "costs import" in failed.stderr

    imported = json.loads(tasobuild("costs", "import", str(csv_path), "-c", str(spec), "--json").stdout)
    assert imported["imported"] == len(rows)
    from tasobuild.spec import load_spec
    from tasobuild.target import host_fingerprint, load_target

    target = load_target("device.toml", work)
    with CostCache(tmp_path / "cache") as cache:
        stored = cache.get_many([CostKey(host_fingerprint(target).digest, kernel_digest(), k) for k, _ in rows])
    assert len(stored) == len(rows) and {c.source for c in stored.values()} == {"imported"}
    assert load_spec(spec, {}).target.name == "device.toml"

    report = json.loads(tasobuild("plan", "-c", str(spec), "--json").stdout)
    assert report["profiled"] == 0
    assert {s for n in report["nodes"] for s in (n["cost_source"] if isinstance(n["cost_source"], list)
                                                  else n["cost_source"].split("+"))} <= {"imported", "none"}

    exported = tmp_path / "again.csv"
    tasobuild("costs", "export", str(exported), "-c", str(spec))
    assert [k for k, _ in read_csv(exported)] == [k for k, _ in rows]


def test_parameters_are_exact_c_even_when_not_finite() -> None:
    """A Clip without an upper bound has an infinite parameter: the harness writes math.h's macro, not a crash."""
    from tasobuild.costs.harness import _c_value

    assert [_c_value(v) for v in (3, True, 0.1, float("inf"), float("-inf"), float("nan"))] == \
        ["3", "1", "0.1f", "INFINITY", "-INFINITY", "NAN"]
