"""ONNX import (see tasobuild.importer for the stages): `import_onnx(path) -> ir.Graph`."""

from __future__ import annotations

from tasobuild.importer import import_onnx

__all__ = ["import_onnx"]
