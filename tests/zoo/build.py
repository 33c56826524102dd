"""Generate zoo models: `python -m tests.zoo.build NAME... [--out DIR] [--force]` or `... --fixtures`.

Torch models need torch (main environment); `*_tf` models need TensorFlow + tf2onnx, which live in a separate venv:
    python -m tests.zoo.build --fixtures                      # torch fixtures + models/ds_cnn.onnx
    /tmp/tfvenv/bin/python -m tests.zoo.build --fixtures      # TF fixtures (see tests/zoo/keras_models.py)
    python -m tests.zoo.build vgg16 resnet50 --out /tmp/zoo   # big networks (default --out: the zoo cache)
An existing output file is reused unless --force.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

from tests.zoo import BUNDLED_MODEL, FIXTURE_DIR, MODEL_NAMES, TF_FIXTURES, TORCH_FIXTURES, zoo_dir


def export_model(name: str) -> bytes:
    """Fresh ONNX bytes of zoo model `name` (deterministic: the same bytes on every call)."""
    if name in TF_FIXTURES:
        if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tf2onnx") is None:
            raise RuntimeError(f"zoo model {name} needs tensorflow-cpu and tf2onnx: run this with the TF venv's python "
                               "(python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu==2.21.0 "
                               "tf2onnx==1.17.0)")
        from tests.zoo.keras_models import export_keras

        return export_keras(name)
    if importlib.util.find_spec("torch") is None:
        raise RuntimeError(f"zoo model {name} needs PyTorch (CPU build): pip install torch")
    from tests.zoo.torch_export import export_torch

    return export_torch(name)


def write_model(name: str, out_dir: Path, force: bool) -> Path:
    """`out_dir/NAME.onnx`, exported unless it already exists (or `force`); written atomically."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown zoo model {name!r}; known: {', '.join(MODEL_NAMES)}")
    path = out_dir / f"{name}.onnx"
    if path.is_file() and not force:
        return path
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data = export_model(name)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # a concurrent reader sees the old file or the whole new one, never a partial one
    print(f"zoo: wrote {path} ({len(data) / 1e6:.2f} MB) in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return path


def _available_fixtures() -> list[str]:
    names: list[str] = []
    if importlib.util.find_spec("torch") is not None:
        names += TORCH_FIXTURES
    if importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("tf2onnx") is not None:
        names += TF_FIXTURES
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.zoo.build", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(MODEL_NAMES)}")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: the zoo cache)")
    parser.add_argument("--force", action="store_true", help="export even if the file exists")
    parser.add_argument("--fixtures", action="store_true",
                        help="regenerate the committed fixtures this environment can build (and models/ds_cnn.onnx)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(MODEL_NAMES))
    if unknown or not (args.names or args.fixtures):
        parser.error(f"unknown model(s) {', '.join(unknown)}" if unknown else "name a model or pass --fixtures")
    for name in args.names:
        print(write_model(name, args.out or zoo_dir(), args.force))
    if args.fixtures:
        names = _available_fixtures()
        if not names:
            parser.error("neither torch nor tensorflow+tf2onnx is importable here")
        for name in names:
            print(write_model(name, FIXTURE_DIR, force=True))
        if "ds_cnn_torch" in names:
            BUNDLED_MODEL.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(FIXTURE_DIR / "ds_cnn_torch.onnx", BUNDLED_MODEL)
            print(BUNDLED_MODEL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
