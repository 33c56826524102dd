"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest


# --- the model zoo (tests/zoo) ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def zoo_model() -> Callable[[str], Path]:
    """`zoo_model(name) -> Path`: a committed fixture, or a big network exported on first use (needs torch)."""
    from tests.zoo import ensure_model

    return ensure_model
