"""The commented taso.toml that `tasobuild init MODEL.onnx` writes.

Comments come from the settings models' docstrings (spec.py), so the file and the docs cannot disagree;
every key is written with its default, and optional keys without a default are shown commented out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from tasobuild.spec import DURATION_KIND, SIZE_KIND, SpecFile, c_identifier
from tasobuild.units import format_duration, format_size

DEFAULT_MEMORY = 256 * 1024
"""The budget written when the caller has no better one: a common microcontroller RAM size."""


def starter_spec(model_path: Path, spec_dir: Path, memory: int | None = None,
                 input_shapes: Mapping[str, Sequence[int]] | None = None) -> str:
    """A taso.toml for `model_path`, to be written into `spec_dir`; `memory` (bytes) sets the budget,
    `input_shapes` pins the model's dynamic dimensions."""
    name = c_identifier(Path(model_path).stem)
    onnx = Path(os.path.relpath(os.path.abspath(model_path), os.path.abspath(spec_dir))).as_posix()
    chosen: dict[tuple[str, str], Any] = {
        ("project", "name"): name,
        ("network", "onnx"): onnx,
        ("constraints", "memory"): format_size(DEFAULT_MEMORY if memory is None else memory, exact=True),
        ("target", "threads"): "auto",  # every core of the machine: what a new project on the host wants
        ("build", "out"): f"build/{name}",
    }
    if input_shapes:
        chosen["network", "input_shapes"] = {k: list(v) for k, v in sorted(input_shapes.items())}
    lines = [f"# How tasobuild compiles {Path(model_path).name} into C ({name}_run, {name.upper()}_ARENA_BYTES).",
             "# `tasobuild check` validates this file; `tasobuild build` writes the C project and taso.lock."]
    for table, table_field in SpecFile.model_fields.items():
        section = table_field.annotation
        assert section is not None  # every table of SpecFile is a settings model
        lines += ["", f"# {_one_line(section.__doc__)}", f"[{table}]"]
        for key, field in section.model_fields.items():
            lines.append(f"# {_one_line(field.description)}")
            if (table, key) in chosen:
                lines.append(f"{key} = {_toml_value(chosen[table, key])}")
            elif field.is_required() or field.default is None:
                example = field.examples[0] if field.examples else ""
                lines.append(f"# {key} = {_toml_value(example)}")
            else:
                lines.append(f"{key} = {_toml_value(_as_written(field, field.default))}")
    return "\n".join(lines) + "\n"


def _as_written(field: FieldInfo, value: Any) -> Any:
    """A default as a user writes it: sizes and durations with units."""
    if SIZE_KIND in field.metadata:
        return format_size(value, exact=True)
    if DURATION_KIND in field.metadata:
        return format_duration(value)
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):  # an inline table, its keys quoted (a JSON string is a valid TOML quoted key)
        items = (f"{json.dumps(k, ensure_ascii=False)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + ", ".join(items) + " }"
    return str(value)


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())
