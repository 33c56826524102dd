"""A non-editable install must carry every subpackage and the data the build reads at run time."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "tasobuild").rglob("__init__.py")}
    assert on_disk <= listed, sorted(on_disk - listed)


def test_kernel_sources_and_targets_ship_as_package_data() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert data["package-dir"] == {"tasobuild.kernels": "kernels_pyx", "tasobuild.targets": "targets"}
    kinds = {p.suffix for p in (ROOT / "kernels_pyx").iterdir() if p.is_file()}
    shipped = {pattern.lstrip("*") for pattern in data["package-data"]["tasobuild.kernels"]}
    assert kinds - {".py"} <= shipped
