"""The emitted C of the test zoo under AddressSanitizer and UndefinedBehaviorSanitizer.

Every committed fixture model and the bundled DS-CNN, untiled and with fused tiling (the smallest arena, so that the
plan takes fused groups where it can), built with costs from the performance model (nothing to profile), compiled
with the target's flags plus the sanitizers, run on a seeded random input: the run must exit cleanly (any report
aborts it: -fno-sanitize-recover=all) and its output match ONNX Runtime. docs/trust/names-and-numbers.md counts
these runs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.e2e import assert_matches, make_with, tasobuild, write_target_spec
from tests.zoo.reference import random_input, run_onnxruntime

ROOT = Path(__file__).resolve().parents[2]
MODELS = sorted((ROOT / "tests" / "fixtures" / "models").glob("*.onnx")) + [ROOT / "models" / "ds_cnn.onnx"]
SANITIZERS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1")
CONFIGS = {
    "untiled": "",
    "tiled": 'objective = "memory"\n',  # with tiling = true: the smallest arena, fused groups wherever they help
}
# The models whose smallest tiled plan takes fused groups; the others' takes none, so a tiled run of them would
# repeat the untiled one: DS-CNN's, the fully connected autoencoder's, and ResNet-8's, whose untiled plan (its adds
# in place) already reaches the arena fused groups would give, so that the solver's tie may go either way.
FUSED = {"mobilenet_v1_vww_tf", "mobilenet_v1_vww_torch"}
RUNS = [(model, "untiled") for model in MODELS] + [(model, "tiled") for model in MODELS if model.stem in FUSED]


@pytest.mark.slow
@pytest.mark.parametrize(("model", "config"), RUNS, ids=[f"{m.stem}-{c}" for m, c in RUNS])
def test_zoo_runs_clean_under_sanitizers(model: Path, config: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_target_spec(tmp_path, model, "host", costs="model")
    if config == "tiled":
        text = spec.read_text().replace('memory = "2 GiB"\n', 'memory = "2 GiB"\n' + CONFIGS["tiled"], 1)
        spec.write_text(text.replace('costs = "model"', 'costs = "model"\ntiling = true', 1))
    tasobuild("build", "-c", str(spec))
    fused = "fused" in (tmp_path / "out" / "src" / "net.c").read_text()
    assert fused == (config == "tiled"), f"{model.stem} {config}: fused groups {fused}; update FUSED"
    binary = make_with(tmp_path / "out", SANITIZERS)
    monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=86")
    monkeypatch.setenv("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    x = random_input(model, seed=11)
    x.astype("<f4").tofile(tmp_path / "in.bin")
    run = subprocess.run([str(binary), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], capture_output=True,
                         text=True)
    assert run.returncode == 0 and not run.stderr, f"exit {run.returncode}:\n{run.stderr[-6000:]}"  # a report
    assert_matches(np.fromfile(tmp_path / "out.bin", dtype="<f4"), run_onnxruntime(model, x))
