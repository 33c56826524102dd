"""Where tasobuild's files live: the C kernels and the built-in targets it ships, and the user cache folder.

Installed, they ship inside the package (tasobuild/kernels, tasobuild/targets, mapped from the repository's
kernels_pyx/ and targets/ by pyproject.toml); in a source checkout they are the repository's own folders.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _first_existing(*candidates: Path) -> Path:
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(f"tasobuild data folder missing: {candidates[0]} (reinstall tasobuild)")


def kernels_dir() -> Path:
    """The C kernel sources and their Cython bindings (one copy, both profiled and shipped)."""
    return _first_existing(_PACKAGE / "kernels", _PACKAGE.parent / "kernels_pyx")


def targets_dir() -> Path:
    """The built-in target descriptions, one TOML each."""
    return _first_existing(_PACKAGE / "targets", _PACKAGE.parent / "targets")


def cache_dir() -> Path:
    """Every cache's root (costs, stages, bindings, build states): `$TASOBUILD_CACHE_DIR` if set, else the user
    cache directory (e.g. ~/.cache/tasobuild)."""
    override = os.environ.get("TASOBUILD_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs  # only when needed: a no-op build never imports it

    return Path(platformdirs.user_cache_dir("tasobuild"))
