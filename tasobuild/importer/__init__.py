"""ONNX -> IR: read, fold constants and infer static shapes, convert each operator, then run the graph passes.

    read_model (reader) -> fold (fold, shapes) -> rewrite_qdq (quantized: QDQ patterns to QOperator nodes)
      -> convert (convert, quantized) -> PASSES (passes) -> ir.Graph
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tasobuild import ir
from tasobuild.errors import UserError
from tasobuild.importer.convert import CONVERT_RULES, convert
from tasobuild.importer.fold import fold
from tasobuild.importer.passes import PASSES, NodeError
from tasobuild.importer.quantized import Q_CONVERT_RULES, rewrite_qdq
from tasobuild.importer.reader import read_model

RULES = {**CONVERT_RULES, **Q_CONVERT_RULES}  # float operators, and the quantised ones (QOperator form)

__all__ = ["import_onnx"]


def import_onnx(path: Path, input_shapes: Mapping[str, Sequence[int]] | None = None,
                shapes_from: str = "input_shapes") -> ir.Graph:
    """The batch-1 network in `path` as an IR graph; a UserError naming the file (and node) for anything else.
    `input_shapes` (input name -> full shape) pins the inputs' dynamic dimensions; `shapes_from` says where."""
    model = read_model(Path(path), input_shapes, shapes_from)
    graph = convert(rewrite_qdq(fold(model, sorted(RULES))), RULES)
    try:
        for run in PASSES:
            graph = run(graph)
    except NodeError as e:
        raise UserError(f"{model.file}: {e}") from None
    return graph
