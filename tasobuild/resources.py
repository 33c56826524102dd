"""Where the package's data lives: the C kernels and the built-in targets.

Installed, they ship inside the package (tasobuild/kernels, tasobuild/targets, mapped from the repository's
kernels_pyx/ and targets/ by pyproject.toml); in a source checkout they are the repository's own folders.
"""

from __future__ import annotations

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
