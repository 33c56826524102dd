"""`tasobuild verify`, the emitted runner's arguments and summary, per-layer timing (`make profile`,
`<name>_main_profile --profile N`) and `tasobuild profile --plan [--record]`.

All real: the bundled DS-CNN built and profiled here, the emitted project compiled with its own Makefile, ONNX Runtime
the reference, the cost cache a real SQLite file (the session's private one), qemu-aarch64 for the cross target
(skipped, naming the packages, when it is not installed).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnx
import pytest

from tasobuild.costs.cache import CostCache, CostKey, kernel_digest
from tasobuild.target import host_fingerprint, load_target
from tasobuild.text import terminal_text
from tasobuild.verify import compare
from tests.e2e import inverted_residual_model, make_with, save_onnx, tasobuild, write_target_spec
from tests.hostile.test_names_and_numbers import INJECTED, WARNINGS_ARE_ERRORS, Net, make_model

REPO = Path(__file__).resolve().parent.parent
LAYER_LINE = re.compile(r"^profile_layer:\s+(\d+)\s+(\S+) ms \(IQR (\S+) ms\)  (.*)$")


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("tasobuild: error: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def kws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's quick start: the bundled example, built; its folder (taso.toml.example, build/kws)."""
    folder = tmp_path_factory.mktemp("kws")
    (folder / "models").mkdir()
    shutil.copy(REPO / "models" / "ds_cnn.onnx", folder / "models")
    shutil.copy(REPO / "taso.toml.example", folder)
    tasobuild("build", "-c", str(folder / "taso.toml.example"))
    return folder


def spec_of(folder: Path) -> str:
    return str(folder / "taso.toml.example")


# ------------------------------------------------------------------------------------------------ the comparison


def test_compare_on_hand_checked_values() -> None:
    reference = np.array([1.0, -2.0, 0.0, 100.0, np.nan, np.inf], dtype=np.float32)
    same = compare(reference.copy(), reference, atol=1e-4, rtol=1e-4)
    assert (same.count, same.mismatches, same.max_abs_error, same.max_rel_error) == (6, 0, 0.0, 0.0)

    ours = np.array([1.0, -2.0, 5e-5, 100.0 + 2**-16 * 1024, np.nan, np.inf], dtype=np.float32)  # 100.015625
    errors = compare(ours, reference, atol=1e-4, rtol=1e-4)
    # element 3: |error| 0.015625 > 1e-4 + 1e-4 * 100 = 0.0101; element 2: 5e-5 <= 1e-4 passes (atol only)
    assert errors.mismatches == 1 and errors.worst_index == 3
    assert errors.max_abs_error == pytest.approx(0.015625, abs=1e-6)
    assert errors.max_rel_error == pytest.approx(0.015625 / 100, rel=1e-5)  # element 2 (|ref| < atol) not counted
    assert compare(ours, reference, atol=1e-4, rtol=1e-3).mismatches == 0  # 0.1001 allowed: the rtol override

    nan_here = compare(np.array([np.nan, 1.0], np.float32), np.array([0.0, 1.0], np.float32), 1e-4, 1e-4)
    assert nan_here.mismatches == 1 and nan_here.worst_index == 0 and math.isinf(nan_here.max_abs_error)
    wrong_inf = compare(np.array([-np.inf], np.float32), np.array([np.inf], np.float32), 1e-4, 1e-4)
    assert wrong_inf.mismatches == 1


# ------------------------------------------------------------------------------------------------ verify


def test_verify_passes_on_the_bundled_example(kws: Path) -> None:
    result = json.loads(tasobuild("verify", "-c", spec_of(kws), "--json").stdout)
    assert result["passed"] is True and result["target"] == "host" and result["emulator"] == []
    assert result["input"] == "seed 0" and result["errors"]["count"] == 12 and result["errors"]["mismatches"] == 0
    assert result["errors"]["max_abs_error"] < 1e-5 and (result["atol"], result["rtol"]) == (1e-4, 1e-4)

    x = np.random.default_rng(5).standard_normal((1, 1, 49, 10)).astype("<f4")  # the README's numpy one-liner
    x.tofile(kws / "in.bin")
    proc = tasobuild("verify", "-c", spec_of(kws), "--input", str(kws / "in.bin"))
    assert proc.stdout.startswith(f"{kws / 'build' / 'kws'}: host program (natively) on {kws / 'in.bin'} against "
                                  f"ONNX Runtime, 12 output values: max abs error ")
    assert proc.stdout.rstrip().endswith(": PASS"), proc.stdout


def test_verify_fails_on_a_corrupted_weight(kws: Path) -> None:
    weights = kws / "build" / "kws" / "src" / "kws_weights.c"
    original = weights.read_text()
    lines = original.splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.startswith("    ") and line.strip()[0] in "-0123456789")
    value = lines[first].split(",")[0].strip()
    lines[first] = lines[first].replace(value, "25.0f", 1)  # one weight of the first conv
    weights.write_text("".join(lines))
    try:
        proc = tasobuild("verify", "-c", spec_of(kws), "--no-build", check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "MISMATCH:" in proc.stdout and "values past the tolerance" in proc.stdout, proc.stdout
        result = json.loads(tasobuild("verify", "-c", spec_of(kws), "--no-build", "--json", check=False).stdout)
        assert result["passed"] is False and result["errors"]["max_abs_error"] > 1e-3
        loose = tasobuild("verify", "-c", spec_of(kws), "--no-build", "--atol", "1e6", check=False)
        assert loose.returncode == 0 and loose.stdout.rstrip().endswith("PASS")
        # without --no-build, verify builds first, as `build` does: the build puts the emitted file back
        assert tasobuild("verify", "-c", spec_of(kws)).stdout.rstrip().endswith("PASS")
        assert weights.read_text() == original
    finally:
        weights.write_text(original)


def test_verify_says_what_is_wrong_with_the_input(kws: Path) -> None:
    (kws / "short.bin").write_bytes(b"\0" * 100)
    line = one_error_line(tasobuild("verify", "-c", spec_of(kws), "--input", str(kws / "short.bin"), check=False))
    assert f"{kws / 'short.bin'}: 100 bytes, but the model's input 'input' (1x1x49x10) is 490 float32 values " \
           f"(1960 bytes, raw little-endian)" in line and ".tofile(" in line
    line = one_error_line(tasobuild("verify", "-c", spec_of(kws), "--input", str(kws / "absent.bin"), check=False))
    assert "absent.bin: cannot read the input" in line
    line = one_error_line(tasobuild("verify", "-c", spec_of(kws), "--rtol", "nan", check=False))
    assert "--rtol: must be a finite number >= 0" in line
    line = one_error_line(tasobuild("verify", "-c", spec_of(kws), "--seed", "-3", check=False))
    assert "--seed: must be a whole number >= 0" in line


def test_verify_without_onnxruntime_says_how_to_install_it(kws: Path, tmp_path: Path) -> None:
    """An environment whose onnxruntime cannot be imported (a package that fails on import stands in for one
    without it, first on the path): one line, before anything is built."""
    blocker = tmp_path / "blocked" / "onnxruntime"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("No module named \'onnxruntime\'")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(REPO)])}
    proc = subprocess.run([sys.executable, "-m", "tasobuild", "verify", "-c", spec_of(kws)], capture_output=True,
                          text=True, env=env)
    line = one_error_line(proc)
    assert line == ("tasobuild: error: verify compares with ONNX Runtime, which is not installed: pip install "
                    "onnxruntime (or pip install 'tasobuild[verify]')")


# ------------------------------------------------------------------------------------------------ the runner


def test_runner_summary_and_usage_errors(kws: Path) -> None:
    out_dir = kws / "build" / "kws"
    subprocess.run(["make", "-s", "-j2", "-C", str(out_dir)], check=True, capture_output=True)
    x = np.random.default_rng(1).standard_normal(490).astype("<f4")
    x.tofile(kws / "x.bin")
    run = subprocess.run([str(out_dir / "kws_main"), str(kws / "x.bin"), str(kws / "y.bin")], capture_output=True,
                         text=True, check=True)
    y = np.fromfile(kws / "y.bin", "<f4")
    top = int(np.argmax(y))
    assert run.stdout == (f"kws_main: wrote 12 float32 values to {kws / 'y.bin'}; the largest is "
                          f"{float(y[top]):.6g} at index {top}\n")
    for args, says in ((["--bench", "abc"], "--bench takes a whole number of runs from 1 to 1000000, got 'abc'"),
                       (["--bench", "0"], "got '0'"), (["--bench", "5x"], "got '5x'"),
                       (["--bench"], "--bench needs a number of runs"), (["--fast"], "unknown argument '--fast'"),
                       (["--profile", "3"], "built without per-layer timing; `make profile` builds kws_main_profile")):
        proc = subprocess.run([str(out_dir / "kws_main"), str(kws / "x.bin"), str(kws / "y.bin"), *args],
                              capture_output=True, text=True)
        assert proc.returncode == 2 and says in proc.stderr, (args, proc.stderr)
    proc = subprocess.run([str(out_dir / "kws_main"), "--bench", "3"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("usage: kws_main IN.bin OUT.bin")


def test_library_has_no_profiling_unless_asked(kws: Path) -> None:
    """The timing hooks are compiled out of the library: only the profiling build's own object calls them."""
    out_dir = kws / "build" / "kws"
    subprocess.run(["make", "-s", "-j2", "-C", str(out_dir), "all", "profile"], check=True, capture_output=True)

    def undefined(path: Path) -> set[str]:
        listed = subprocess.run(["nm", "-u", str(path)], capture_output=True, text=True, check=True).stdout
        return {line.split()[-1] for line in listed.splitlines() if line.strip() and not line.endswith(":")}

    library = undefined(out_dir / "libkws.a")
    assert "kws_profile_mark" not in library and not library & {"printf", "clock_gettime", "malloc", "fopen"}
    assert "kws_profile_mark" in undefined(out_dir / "obj" / "profile" / "src" / "kws.o")


# ------------------------------------------------------------------------------------------------ per-layer timing


def test_profile_lines_name_the_plans_layers(kws: Path) -> None:
    out_dir = kws / "build" / "kws"
    subprocess.run(["make", "-s", "-j2", "-C", str(out_dir), "profile"], check=True, capture_output=True)
    np.zeros(490, "<f4").tofile(kws / "z.bin")
    run = subprocess.run([str(out_dir / "kws_main_profile"), str(kws / "z.bin"), str(kws / "o.bin"), "--profile",
                          "7"], capture_output=True, text=True, check=True)
    lines = run.stdout.splitlines()
    lock = tomllib.loads((kws / "taso.toml.lock").read_text())
    count = len(lock["node"]) + len(lock["transform"])  # untiled: a layer per node and per layout transform
    assert lines[1] == f"profile: {count} layers, median (and interquartile range) of 7 runs each, in the order " \
                       f"they run"
    parsed = [LAYER_LINE.match(line) for line in lines if line.startswith("profile_layer:")]
    assert all(parsed) and [int(m.group(1)) for m in parsed if m] == list(range(count))
    names = [m.group(4) for m in parsed if m]
    # one line per node, in the lock's (schedule) order, and one per layout transform, before the step it precedes
    expected = [node["name"] for node in lock["node"]]
    for t in sorted(lock["transform"], key=lambda t: -t["step"]):
        expected.insert(t["step"], f"layout transform of {t['tensor']} {t['from']}->{t['to']}")
    assert names == expected
    assert all(float(m.group(2)) >= 0 for m in parsed if m)
    assert re.fullmatch(r"profile_total: \d+\.\d{6} ms", lines[-1])


def test_profile_plan_against_the_lock_and_record(kws: Path) -> None:
    result = json.loads(tasobuild("profile", "-c", spec_of(kws), "--plan", "--runs", "20", "--json").stdout)
    lock = tomllib.loads((kws / "taso.toml.lock").read_text())
    layers = result["layers"]
    assert result["runs"] == 20 and result["emulator"] == [] and result["recorded"] == 0
    assert len(layers) == len(lock["node"]) + len(lock["transform"])
    by_name = {node["name"]: node for node in lock["node"]}
    for layer in layers:
        if layer["label"] in by_name:  # a node: its prediction is the lock's
            assert layer["predicted_ms"] == pytest.approx(by_name[layer["label"]]["predicted_ms"], abs=1e-6)
            assert layer["cost_source"] == ["measured"]
        assert layer["measured_ms"] > 0
    assert any(layer["call"] for layer in layers)  # untiled, most layers are one call
    assert sum(layer["predicted_ms"] for layer in layers) == pytest.approx(lock["plan"]["predicted_ms"], abs=1e-5)
    assert result["predicted_total_ms"] == pytest.approx(lock["plan"]["predicted_ms"], abs=1e-6)
    assert result["measured_total_ms"] > 0

    table = tasobuild("profile", "-c", spec_of(kws), "--plan", "--runs", "5").stdout
    assert "host: µs per layer, measured (median of 5 runs) and predicted" in table and "total" in table

    recorded = json.loads(tasobuild("profile", "-c", spec_of(kws), "--plan", "--runs", "15", "--record",
                                    "--json").stdout)
    calls: dict[str, list[float]] = {}
    for layer in recorded["layers"]:
        if layer["call"]:
            calls.setdefault(layer["call"], []).append(layer["measured_ms"])
    assert recorded["recorded"] == len(calls)
    target = load_target("host", kws)
    with CostCache() as cache:
        found = cache.get_many(CostKey(host_fingerprint(target).digest, kernel_digest(), c) for c in calls)
    assert {key.call_key for key in found} == set(calls)
    for key, cost in found.items():
        assert cost.source == "measured" and cost.reps == 15
        assert cost.median_ms == pytest.approx(float(np.median(calls[key.call_key])), rel=1e-12)


def test_profile_plan_times_the_build_its_overrides_name(tmp_path: Path) -> None:
    """`build --threads 2`, then `profile --plan --threads 2`: the 2-thread project is timed as built, not rebuilt
    from the spec on one thread (profile takes build's --memory and --threads). Predicted costs: quick."""
    spec = str(write_target_spec(tmp_path, REPO / "models" / "ds_cnn.onnx", "host"))
    tasobuild("build", "-c", spec, "--threads", "2")
    lock = (tmp_path / "taso.lock").read_bytes()
    assert "tb_workers_run(" in (tmp_path / "out" / "src" / "net.c").read_text()  # parallel steps
    profiled = json.loads(tasobuild("profile", "-c", spec, "--plan", "--threads", "2", "--runs", "3",
                                    "--json").stdout)
    assert profiled["measured_total_ms"] > 0 and (tmp_path / "taso.lock").read_bytes() == lock


def test_profile_plan_usage_errors(kws: Path) -> None:
    line = one_error_line(tasobuild("profile", "-c", spec_of(kws), "--record", check=False))
    assert "--record goes with --plan" in line
    line = one_error_line(tasobuild("profile", "-c", spec_of(kws), "--plan", "--runs", "0", check=False))
    assert "--runs: must be a whole number >= 1, got 0" in line


def test_hostile_layer_names_stay_escaped_strings(tmp_path: Path) -> None:
    """Names that would end a comment or a string, splice lines, start a trigraph or colour the terminal reach the
    profile table only as escaped string literals: the profiling build compiles with -Wall -Werror -trigraphs, and
    prints each name as the terminal may show it."""
    names = (INJECTED + '"); system("x', "r\\\n#error spliced ??/", "c\x1b[31m\u202e\"??'")
    model = tmp_path / "m.onnx"
    onnx.save(make_model(Net(conv_names=names)), str(model))
    spec = write_target_spec(tmp_path, model, "host", costs="model")
    tasobuild("build", "-c", str(spec))
    out_dir = tmp_path / "out"
    make_with(out_dir, WARNINGS_ARE_ERRORS)  # the plain program too
    network = (out_dir / "src" / "net.c").read_text()
    assert INJECTED not in network and "\x1b" not in network and "\u202e" not in network
    target_flags = next(line.split("=", 1)[1].strip() for line in (out_dir / "Makefile").read_text().splitlines()
                        if line.startswith("CFLAGS ="))
    made = subprocess.run(["make", "-s", "-C", str(out_dir), "profile",
                           f"CFLAGS={target_flags} {' '.join(WARNINGS_ARE_ERRORS)}"], capture_output=True, text=True)
    assert made.returncode == 0 and not made.stderr.strip(), made.stderr
    np.zeros(2 * 6 * 6, "<f4").tofile(tmp_path / "x.bin")
    run = subprocess.run([str(out_dir / "net_main_profile"), str(tmp_path / "x.bin"), str(tmp_path / "y.bin"),
                          "--profile", "3"], capture_output=True, text=True, check=True)
    printed = [m.group(4) for line in run.stdout.splitlines() if (m := LAYER_LINE.match(line))]
    lock_names = [node["name"] for node in tomllib.loads((tmp_path / "taso.lock").read_text())["node"]]
    assert printed == [terminal_text(name) for name in lock_names]
    assert lock_names[0] == names[0] and "\x1b" not in run.stdout and "\u202e" not in run.stdout
    report = tasobuild("profile", "-c", str(spec), "--plan", "--runs", "3", "--json").stdout
    assert [layer["label"] for layer in json.loads(report)["layers"]] == lock_names


def test_a_fused_group_is_timed_as_one_layer(tmp_path: Path) -> None:
    """With fused channel tiling, the group's slices are one timed layer, predicted as the sum of its members, and
    not recorded (no single call); verify passes on the tiled program."""
    spec = write_target_spec(tmp_path, inverted_residual_model(tmp_path / "block.onnx"), "host", costs="model",
                             extra="tiling = true\n")
    spec.write_text(spec.read_text().replace('memory = "2 GiB"\n', 'memory = "2 GiB"\nobjective = "memory"\n', 1))
    assert tomllib.loads(spec.read_text())["constraints"]["objective"] == "memory"
    assert tasobuild("verify", "-c", str(spec)).stdout.rstrip().endswith("PASS")
    lock = tomllib.loads((tmp_path / "taso.lock").read_text())
    grouped = [node for node in lock["node"] if node["tiling"] != "none"]
    assert len(grouped) >= 2, "the smallest arena takes a fused group"
    layers = json.loads(tasobuild("profile", "-c", str(spec), "--plan", "--runs", "5", "--json").stdout)["layers"]
    groups = [layer for layer in layers if layer["label"].startswith("fused group ")]
    assert len(groups) == 1 and groups[0]["call"] is None
    assert groups[0]["predicted_ms"] == pytest.approx(sum(node["predicted_ms"] for node in grouped), abs=1e-5)
    assert len(layers) == len(lock["node"]) - len(grouped) + 1 + len(lock["transform"])


# ------------------------------------------------------------------------------------------------ cross and boards


def tiny_conv(path: Path) -> Path:
    """x (2x6x6) -> 3x3 conv to 4 channels, ReLU -> y: few kernels, so a cross compile is quick."""
    from onnx import helper

    rng = np.random.default_rng(11)
    weights = {"w": rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "b": rng.standard_normal(4).astype(
        np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return save_onnx(path, nodes, [1, 2, 6, 6], [1, 4, 6, 6], weights)


def needs(target_name: str) -> pytest.MarkDecorator:
    t = load_target(target_name, REPO)
    missing = [tool for tool in (t.cc_argv[0], t.emulator_argv[0]) if shutil.which(tool) is None]
    return pytest.mark.skipif(bool(missing), reason=f"{target_name} needs {', '.join(missing)} (apt-get install "
                                                    f"{t.cc_package} {t.emulator_package})")


@needs("cortex-a53")
def test_verify_and_profile_under_qemu_aarch64(tmp_path: Path) -> None:
    spec = write_target_spec(tmp_path, tiny_conv(tmp_path / "m.onnx"), "cortex-a53", costs="model")
    result = json.loads(tasobuild("verify", "-c", str(spec), "--json", "--seed", "4").stdout)
    assert result["passed"] is True and result["target"] == "cortex-a53" and result["emulator"][0] == "qemu-aarch64"
    assert result["input"] == "seed 4" and result["errors"]["count"] == 4 * 6 * 6
    profiled = json.loads(tasobuild("profile", "-c", str(spec), "--plan", "--runs", "3", "--json").stdout)
    assert profiled["emulator"][0] == "qemu-aarch64" and [layer["label"] for layer in profiled["layers"]][0] == "conv"
    assert all(layer["cost_source"] == ["predicted (host model)"] for layer in profiled["layers"])
    table = tasobuild("profile", "-c", str(spec), "--plan", "--runs", "3").stdout
    assert "under qemu-aarch64: emulator times, not the device's" in " ".join(table.split())
    line = one_error_line(tasobuild("profile", "-c", str(spec), "--plan", "--record", check=False))
    assert "--record: target 'cortex-a53' is not this machine (its program runs here under qemu-aarch64)" in line


@needs("cortex-m4")
def test_verify_on_a_board_and_no_profile_there(tmp_path: Path) -> None:
    spec = write_target_spec(tmp_path, tiny_conv(tmp_path / "m.onnx"), "cortex-m4", costs="model",
                             memory="64 KiB")
    result = json.loads(tasobuild("verify", "-c", str(spec), "--json").stdout)
    assert result["passed"] is True and result["emulator"][0] == "qemu-system-arm"
    line = one_error_line(tasobuild("profile", "-c", str(spec), "--plan", check=False))
    assert "target 'cortex-m4' is a microcontroller: per-layer timing runs on the host and on Linux targets only" \
        in line
