"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

# --- the model zoo (tests/zoo) ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def zoo_model() -> Callable[[str], Path]:
    """`zoo_model(name) -> Path`: a committed fixture, or a big network exported on first use (needs torch)."""
    from tests.zoo import ensure_model

    return ensure_model


# --- a private cost cache for the whole session ----------------------------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def private_cost_cache(tmp_path_factory: pytest.TempPathFactory):
    """Tests never read or write the user's cost cache: one cache per test session, shared by its builds (so each
    layer shape is profiled once per session). TASOBUILD_TEST_CACHE_DIR keeps one across sessions when set."""
    import os

    chosen = os.environ.get("TASOBUILD_TEST_CACHE_DIR") or str(tmp_path_factory.mktemp("tasobuild-cache"))
    previous = os.environ.get("TASOBUILD_CACHE_DIR")
    os.environ["TASOBUILD_CACHE_DIR"] = chosen
    yield Path(chosen)
    if previous is None:
        os.environ.pop("TASOBUILD_CACHE_DIR", None)
    else:
        os.environ["TASOBUILD_CACHE_DIR"] = previous


# --- a small project -------------------------------------------------------------------------------------------------

@pytest.fixture()
def ds_cnn_project(tmp_path: Path) -> Path:
    """A spec (taso.toml, project "net", 256 KiB, costs profiled) for a copy of DS-CNN in a fresh folder."""
    import shutil

    from tests.e2e import write_spec
    from tests.zoo import ensure_model

    model = tmp_path / "model.onnx"
    shutil.copyfile(ensure_model("ds_cnn_torch"), model)
    return write_spec(tmp_path, model, memory="256 KiB")
