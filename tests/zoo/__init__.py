"""The test model zoo: real CNNs (ONNX) with deterministic weights, built here rather than downloaded.

Small MLPerf Tiny models are committed under tests/fixtures/models/ in two forms each: `*_torch` (PyTorch export,
NCHW, BatchNormalization nodes) and `*_tf` (Keras through tf2onnx, NHWC input). The big ImageNet networks are
generated on demand by `ensure_model` (needs torch) into `$TASOBUILD_ZOO_DIR` (default tests/.zoo/, git-ignored).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures" / "models"
BUNDLED_MODEL = REPO_ROOT / "models" / "ds_cnn.onnx"  # the example model: a copy of ds_cnn_torch

TINY_MODELS = ("ds_cnn", "mobilenet_v1_vww", "resnet8", "fc_autoencoder")
TORCH_FIXTURES = tuple(f"{m}_torch" for m in TINY_MODELS)
TF_FIXTURES = tuple(f"{m}_tf" for m in TINY_MODELS)
FIXTURE_NAMES = TORCH_FIXTURES + TF_FIXTURES
BIG_MODELS = ("alexnet", "vgg16", "googlenet", "resnet18", "resnet50", "squeezenet11", "mobilenetv2")
MODEL_NAMES = BIG_MODELS + FIXTURE_NAMES


def zoo_dir() -> Path:
    """Where generated (uncommitted) models are cached: $TASOBUILD_ZOO_DIR or tests/.zoo/."""
    return Path(os.environ.get("TASOBUILD_ZOO_DIR") or REPO_ROOT / "tests" / ".zoo")


def fixture_path(name: str) -> Path:
    if name not in FIXTURE_NAMES:
        raise ValueError(f"{name!r} is not a committed zoo fixture; fixtures: {', '.join(FIXTURE_NAMES)}")
    return FIXTURE_DIR / f"{name}.onnx"


def ensure_model(name: str) -> Path:
    """The ONNX file of zoo model `name`: the committed fixture, or the cached export (generated on first use)."""
    if name in FIXTURE_NAMES:
        path = fixture_path(name)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; regenerate it with `python -m tests.zoo.build --fixtures`")
        return path
    if name not in BIG_MODELS:
        raise ValueError(f"unknown zoo model {name!r}; known: {', '.join(MODEL_NAMES)}")
    path = zoo_dir() / f"{name}.onnx"
    if path.is_file():
        return path
    from filelock import FileLock

    from tests.zoo.build import write_model  # lazy: importing torch costs seconds

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):  # parallel test workers export each model once
        return write_model(name, path.parent, force=False)


__all__ = ["BIG_MODELS", "BUNDLED_MODEL", "FIXTURE_DIR", "FIXTURE_NAMES", "MODEL_NAMES", "TF_FIXTURES",
           "TINY_MODELS", "TORCH_FIXTURES", "ensure_model", "fixture_path", "zoo_dir"]
