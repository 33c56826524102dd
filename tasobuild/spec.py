"""The spec: taso.toml, read into a frozen, validated `Spec`.

The settings models are the documentation: each field's docstring is the one line `tasobuild init`
writes above the key (see starter.py). Every problem is a UserError of one line naming the file,
the line and the key, with the closest valid key when the key is unknown.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from tasobuild.errors import UserError
from tasobuild.units import format_size, parse_duration, parse_size

# ---------------------------------------------------------------------------------------------
# Value types. The marker in the metadata tells the starter file how to print a default.


@dataclass(frozen=True)
class UnitKind:
    """Marks a field whose TOML value is written with units ("size" or "duration")."""

    name: str


SIZE_KIND = UnitKind("size")
DURATION_KIND = UnitKind("duration")


def _duration(value: Any, info: ValidationInfo) -> float:
    # A bare number in TOML is ambiguous (seconds? ms?) so a unit is required there; Python callers
    # constructing settings directly pass milliseconds.
    from_python = not (info.context or {}).get("from_toml")
    if from_python and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return parse_duration(value)


Size = Annotated[int, BeforeValidator(parse_size), SIZE_KIND]
"""Bytes, written "64 KiB", "1.5 MB" or as an int."""

Duration = Annotated[float, BeforeValidator(_duration), DURATION_KIND]
"""Milliseconds, written "20 ms", "1.5 s", "250 us" (in Python: a number of milliseconds)."""

MAX_BUDGET_BYTES = 1 << 40  # 1 TiB: more than any target's RAM; beyond it, a budget is a typo or an attack
_C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_C_KEYWORDS = frozenset(
    "auto bool break case char const constexpr continue default do double else enum extern false float for "
    "goto if inline int long nullptr register restrict return short signed sizeof static static_assert struct "
    "switch thread_local true typedef typeof union unsigned void volatile while".split()
)


# Names the emitted project cannot take: it writes include/<name>.h, src/<name>.c, src/<name>_weights.*,
# main/<name>_main.c and compiles with -Iinclude -Isrc -Isrc/kernels, so a name equal to a header of the C library
# (or a common POSIX one) or of the kernels would shadow it; the Makefile and CMake link -lm and have targets of
# their own. Compared in lower case: macOS and Windows file systems ignore case.
_C_LIBRARY_HEADERS = frozenset(
    "assert complex ctype errno fenv float inttypes iso646 limits locale math setjmp signal stdalign stdarg "
    "stdatomic stdbit stdbool stdckdint stddef stdint stdio stdlib stdnoreturn string tgmath threads time uchar "
    "wchar wctype alloca dirent dlfcn endian fcntl getopt glob libgen malloc memory poll pthread pwd regex sched "
    "semaphore strings syslog termios unistd arm_neon arm_acle immintrin".split()
)
_BUILD_NAMES = frozenset({"m", "c", "all", "clean", "install", "test", "help", "package", "main", "obj", "src"})
_KERNEL_PREFIX = "tb"


def _kernel_file_stems() -> frozenset[str]:
    from tasobuild.resources import kernels_dir

    return frozenset(f.name.split(".")[0].lower() for f in kernels_dir().iterdir() if f.suffix in (".c", ".h"))


def project_name_problem(name: str) -> str | None:
    """Why `name` cannot name the emitted project (one clause, stating the rule), or None."""
    low = name.lower()
    if not _C_IDENTIFIER.match(name):
        return "is not a usable C identifier (letters, digits, _)"
    if low in _C_KEYWORDS:
        return "is a C keyword"
    if name.startswith("_"):
        return "starts with _ (such names are reserved for the C implementation)"
    if low == _KERNEL_PREFIX or low.startswith(f"{_KERNEL_PREFIX}_"):
        return f"is or starts with {_KERNEL_PREFIX}_, the prefix of the kernels' symbols and headers"
    if low in _C_LIBRARY_HEADERS:
        return f"would shadow the C library's <{low}.h> (the project writes include/{name}.h)"
    if low in _BUILD_NAMES:
        return "is a name the emitted program, Makefile or CMakeLists.txt already uses (main, -lm, make targets)"
    if low in _kernel_file_stems():
        return f"would shadow the kernel file {low}.* the emitted project compiles"
    return None


def c_identifier(text: str) -> str:
    """The usable project name closest to `text`: "ds-cnn.v2" -> "ds_cnn_v2", "1st" -> "net_1st", "int" -> "int_net",
    "tb_x" -> "net_tb_x"."""
    name = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", text)).strip("_").lower()
    if not name:
        return "net"
    if name[0].isdigit() or name == _KERNEL_PREFIX or name.startswith(f"{_KERNEL_PREFIX}_"):
        name = f"net_{name}"
    if project_name_problem(name):
        name = f"{name}_net"
    return name


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


# ---------------------------------------------------------------------------------------------
# The tables of taso.toml.


class ProjectSettings(_Settings):
    """What the emitted C code is called."""

    name: StrictStr = Field(examples=["kws"])
    """C identifier that prefixes the emitted API and files (kws_run, KWS_ARENA_BYTES, kws.c)."""

    @field_validator("name")
    @classmethod
    def _is_usable_name(cls, name: str) -> str:
        if problem := project_name_problem(name):
            advice = ", e.g." if not _C_IDENTIFIER.match(name) else "; choose another name, e.g."
            raise ValueError(f'{name!r} {problem}{advice} "{c_identifier(name)}"')
        return name


class NetworkSettings(_Settings):
    """The model to compile."""

    onnx: StrictStr = Field(min_length=1, examples=["model.onnx"])
    """The ONNX model, relative to this file."""

    input_shapes: dict[StrictStr, tuple[Annotated[int, Field(strict=True, ge=1)], ...]] | None = Field(
        None, examples=[{"input": [1, 3, 224, 224]}])
    """Pins dynamic input dimensions: input name -> its whole shape, batch 1 (`--input-shape NAME=1x3x224x224`)."""

    @field_validator("input_shapes")
    @classmethod
    def _sorted_shapes(cls, shapes: dict[str, tuple[int, ...]] | None) -> dict[str, tuple[int, ...]] | None:
        return dict(sorted(shapes.items())) if shapes else None  # none pinned: as if the key were not written


class TargetSettings(_Settings):
    """Where the code runs."""

    name: StrictStr = Field("host", min_length=1)
    """A built-in target (`tasobuild targets` lists them) or a path to a target TOML, relative to this file."""

    threads: Annotated[int, Field(strict=True, ge=1, le=64)] | Literal["auto"] = 1  # 64: TB_MAX_THREADS
    """Threads the plan runs on, at most the target's cores; "auto": all of them (the lock records how many)."""

    @field_validator("threads", mode="before")
    @classmethod
    def _threads_from_command_line(cls, threads: Any) -> Any:
        if isinstance(threads, str) and threads.strip().isdigit():
            return int(threads)
        if isinstance(threads, str) and threads != "auto":
            raise ValueError(f'a number of threads from 1 to 64, or "auto"; got {threads!r}')
        return threads


class ConstraintsSettings(_Settings):
    """The budget the plan must fit."""

    memory: Size | None = Field(None, gt=0, examples=["256 KiB"])
    """Arena budget: activations, workspace, input and output ("64 KiB"); if left out, the target's RAM less stack."""

    @field_validator("memory")
    @classmethod
    def _is_plausible(cls, memory: int | None) -> int | None:
        if memory is not None and memory > MAX_BUDGET_BYTES:
            raise ValueError(f"{format_size(memory)} ({memory} bytes) is more memory than any target has; "
                             f"at most {format_size(MAX_BUDGET_BYTES)}")
        return memory

    objective: Literal["latency", "memory"] = "latency"
    """"latency": the fastest plan that fits; "memory": the smallest arena (within `latency`, if given)."""

    latency: Duration | None = Field(None, gt=0, examples=["20 ms"])
    """Only with objective = "memory": the slowest acceptable inference ("20 ms")."""

    @field_validator("latency")
    @classmethod
    def _latency_needs_memory_objective(cls, latency: float | None, info: Any) -> float | None:
        if latency is not None and info.data.get("objective") != "memory":
            raise ValueError('only applies with objective = "memory" (the latency objective already minimises it)')
        return latency


class OptimizerSettings(_Settings):
    """How the plan is searched for."""

    costs: Literal["profile", "model", "auto"] = "auto"
    """Layer times: "profile" (measure all here), "model" (predict all), "auto" (predict, measure the contested few)."""

    tiling: bool = Field(False, strict=True)
    """Also consider fused tiling: chained convolutions run a few rows, channels or patches at a time (less memory)."""

    time_limit: Duration = Field(10_000.0, gt=0)
    """Solver time limit ("10 s"); past it the best plan found is used and its optimality gap reported."""

    primitives: tuple[StrictStr, ...] = ()
    """Allow-list of primitive names (`tasobuild primitives` lists them); empty means all."""

    @field_validator("primitives")
    @classmethod
    def _sorted_unique(cls, primitives: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(primitives)))  # an allow-list is a set: order must not change the digest


class BuildSettings(_Settings):
    """Where the C project is written."""

    out: StrictStr | None = Field(None, min_length=1)
    """Output directory of the C project, relative to this file (default "build/<project.name>")."""


class SpecFile(_Settings):
    """The tables of taso.toml, as written (paths still relative)."""

    project: ProjectSettings
    network: NetworkSettings
    target: TargetSettings = TargetSettings()
    constraints: ConstraintsSettings = ConstraintsSettings(memory=None, latency=None)  # budget: target RAM
    optimizer: OptimizerSettings = OptimizerSettings()
    build: BuildSettings = BuildSettings()


class Spec(SpecFile):
    """A loaded spec: the settings plus where the file is and the paths it names, resolved."""

    spec_path: Path
    """The spec file as the user named it (for messages)."""
    spec_dir: Path
    """Absolute directory of the spec file: relative paths in it are relative to this."""
    onnx_path: Path
    """network.onnx, absolute."""
    out_dir: Path
    """build.out (or its default), absolute."""

    _where: dict[str, str] = PrivateAttr(default_factory=dict)  # dotted key -> "taso.toml:7" | "command line"

    def where(self, key: str) -> str:
        """Where setting `key` ("constraints.memory") was given, for messages of later stages:
        "taso.toml:7", "command line", the table's line if the key is not written, else just the file."""
        return self._where.get(key, str(self.spec_path))

    def canonical(self) -> dict[str, Any]:
        """The effective settings, sorted, paths relative to the spec dir: what the lockfile records.

        None values are left out (TOML has no null); sizes are bytes, durations milliseconds.
        """
        settings = {name: getattr(self, name).model_dump(mode="json") for name in SpecFile.model_fields}
        settings["network"]["onnx"] = self._relative(self.onnx_path)
        settings["build"]["out"] = self._relative(self.out_dir)
        if is_target_path(self.target.name):
            settings["target"]["name"] = self._relative(self.spec_dir / self.target.name)
        if settings["target"]["threads"] == 1:  # the default: a spec that does not use threads keeps its digest
            del settings["target"]["threads"]
        sorted_settings: dict[str, Any] = _sorted_without_none(settings)
        return sorted_settings

    @property
    def digest(self) -> str:
        """sha256 hex of canonical(): changes exactly when an effective setting changes."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def _relative(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.spec_dir)).as_posix()


def printable(path: Path | str) -> str:
    """A path as an error message shows it: as it is, or quoted if it holds a newline or another control character
    (the message must stay one line)."""
    return str(path) if str(path).isprintable() else repr(str(path))


def is_target_path(name: str) -> bool:
    """A target given as a path (has a separator or ends in .toml) rather than a built-in name."""
    return "/" in name or "\\" in name or name.endswith(".toml")


def _sorted_without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted_without_none(value[key]) for key in sorted(value) if value[key] is not None}
    return value


# ---------------------------------------------------------------------------------------------
# Loading.


def load_spec(path: Path, overrides: Mapping[str, str] = {}) -> Spec:
    """Read, override and validate a taso.toml. `overrides` maps dotted keys to command-line text:
    {"constraints.memory": "48KiB", "optimizer.tiling": "false"}. Raises UserError (one line)."""
    path = Path(path)
    document = read_toml(path, missing_hint="create one with 'tasobuild init MODEL.onnx' or pass -c PATH")
    data = dict(document.data)
    from_command_line = _apply_overrides(data, overrides)
    settings = validate_toml(SpecFile, data, document, from_command_line)

    spec_dir = Path(os.path.abspath(path)).parent
    onnx_path = Path(os.path.normpath(spec_dir / settings.network.onnx))
    out = settings.build.out if settings.build.out is not None else f"build/{settings.project.name}"
    if not onnx_path.is_file():
        where = document.where(("network", "onnx"), from_command_line)
        raise UserError(f"{where}: network.onnx: {settings.network.onnx!r} is not a file "
                        f"(looked for {printable(onnx_path)}; paths are relative to the spec file)")
    out_dir = Path(os.path.normpath(spec_dir / out))
    _check_confined(out, out_dir, spec_dir, document.where(("build", "out"), from_command_line))
    spec = Spec(**dict(settings), spec_path=path, spec_dir=spec_dir, onnx_path=onnx_path, out_dir=out_dir)
    for table, section in SpecFile.model_fields.items():
        assert section.annotation is not None  # every table of SpecFile is a settings model
        keys: list[tuple[str, ...]] = [(table,)] + [(table, key) for key in section.annotation.model_fields]
        spec._where.update({".".join(loc): document.where(loc, from_command_line) for loc in keys})
    return spec


def _check_confined(written: str, out_dir: Path, spec_dir: Path, where: str) -> None:
    """build.out lies inside the project folder (the spec's), as written and with symlinks followed, and is neither
    that folder nor one of its ancestors: a build writes and deletes files there and nowhere else."""
    real_dir, real_out = Path(os.path.realpath(spec_dir)), Path(os.path.realpath(out_dir))
    for project, candidate, via in ((spec_dir, out_dir, ""), (real_dir, real_out, " (following symlinks)")):
        if candidate == project or candidate in project.parents:
            problem = f"is the project folder{via}" if candidate == project else f"is above the project folder{via}"
        elif project not in candidate.parents:
            problem = f"leads out of the project folder{via}, to {candidate}"
        else:
            continue
        raise UserError(f"{where}: build.out: {written!r} {problem}; it must name a folder inside {spec_dir} "
                        f"(e.g. \"build/out\"), as tasobuild writes and deletes files there")


def _apply_overrides(data: dict[str, Any], overrides: Mapping[str, str]) -> frozenset[tuple[str, ...]]:
    """Put command-line values into the parsed document; return the keys they set."""
    applied = set()
    for dotted, text in sorted(overrides.items()):
        parts = tuple(dotted.split("."))
        if len(parts) != 2 or not all(parts):
            raise UserError(f"command line: {dotted!r} is not a setting; write table.key, e.g. constraints.memory")
        table, key = parts
        section = data.get(table)
        if section is None:
            section = data[table] = {}
        if isinstance(section, dict):
            data[table] = {**section, key: _override_value(table, key, text, section.get(key))}
        applied.add(parts)
    return frozenset(applied)


def _override_value(table: str, key: str, text: str, current: Any = None) -> Any:
    """Command-line text as the TOML value the field takes: booleans and lists are parsed, the rest is text."""
    section = _submodel(SpecFile, table)
    field = section.model_fields.get(key) if section else None
    annotation = field.annotation if field else None
    if annotation is bool:
        return {"true": True, "yes": True, "on": True, "1": True,
                "false": False, "no": False, "off": False, "0": False}.get(text.strip().lower(), text)
    if annotation is not None and getattr(annotation, "__origin__", None) is tuple:
        return [item.strip() for item in text.split(",") if item.strip()]
    if (table, key) == ("network", "input_shapes"):  # JSON text (api.overrides), merged into the file's pins
        return {**(current if isinstance(current, dict) else {}), **json.loads(text)}
    return text


# ---------------------------------------------------------------------------------------------
# TOML documents with line numbers, and validation errors as one line. Shared with target.py.

ModelT = TypeVar("ModelT", bound=BaseModel)


class TomlDocument:
    """A parsed TOML file and the line of each table and key in it (tomllib keeps no positions)."""

    def __init__(self, path: Path, text: str, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self._lines = _locate_keys(text)

    def line(self, loc: tuple[str | int, ...]) -> int | None:
        """Line of the key at `loc`, else of its closest enclosing table that is written down."""
        keys = tuple(part for part in loc if isinstance(part, str))
        for end in range(len(keys), 0, -1):
            if keys[:end] in self._lines:
                return self._lines[keys[:end]]
        return None

    def where(self, loc: tuple[str | int, ...], from_command_line: frozenset[tuple[str, ...]] = frozenset()) -> str:
        """"file:line" for `loc`, "file" without a line, "command line" for overridden keys."""
        if tuple(part for part in loc if isinstance(part, str))[:2] in from_command_line:
            return "command line"
        line = self.line(loc)
        return f"{self.path}:{line}" if line is not None else str(self.path)


def read_toml(path: Path, missing_hint: str) -> TomlDocument:
    """Parse `path`; a missing, unreadable or malformed file is a UserError naming it (and line:column)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a BOM from Windows editors
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; {missing_hint}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a TOML file") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read: {error.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        position = re.match(r"^(.*) \(at line (\d+), column (\d+)\)$", message)
        if position:
            raise UserError(f"{path}:{position[2]}:{position[3]}: invalid TOML: {position[1]}") from None
        raise UserError(f"{path}: invalid TOML: {message}") from None
    return TomlDocument(path, text, data)


def validate_toml(model: type[ModelT], data: Mapping[str, Any], document: TomlDocument,
                  from_command_line: frozenset[tuple[str, ...]] = frozenset()) -> ModelT:
    """`model` validated from `data`; the first problem (command line first, then by line) as a UserError."""
    try:
        return model.model_validate(data, context={"from_toml": True})
    except ValidationError as exc:
        errors = exc.errors(include_url=False)

    def order(error: Any) -> tuple[int, int, int]:
        # Command-line values first; a missing key last, as it is often explained by a misspelt one.
        if document.where(error["loc"], from_command_line) == "command line":
            return (0, 0, 0)
        line = document.line(error["loc"])
        return (1, error["type"] == "missing", line if line is not None else 1 << 30)

    first = min(errors, key=order)  # min is stable: ties keep pydantic's (field) order
    where = document.where(first["loc"], from_command_line)
    raise UserError(f"{where}: {_describe(model, first)}") from None


def _describe(root: type[BaseModel], error: Mapping[str, Any]) -> str:
    """One error as text: the key (dotted) and what is wrong with it."""
    loc: tuple[str | int, ...] = error["loc"]
    kind, value = error["type"], error.get("input")
    dotted = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    if kind == "extra_forbidden":
        return _describe_unknown(root, loc, value)
    if kind == "missing":
        return _describe_missing(root, loc)
    if kind in ("model_type", "dict_type"):
        return f"{dotted} must be a table ([{dotted}]), got {_toml_repr(value)}"
    if kind == "value_error":
        return f"{dotted}: {error['ctx']['error']}"
    if kind == "literal_error":
        return f"{dotted}: {_toml_repr(value)} is not one of {error['ctx']['expected']}"
    if kind in ("bool_type", "bool_parsing"):
        return f"{dotted}: expected true or false, got {_toml_repr(value)}"
    if kind == "string_type":
        return f"{dotted}: expected a string in quotes, got {_toml_repr(value)}"
    if kind in ("tuple_type", "list_type"):
        return f'{dotted}: expected a list such as ["a", "b"], got {_toml_repr(value)}'
    if kind == "greater_than":
        return f"{dotted}: must be greater than {error['ctx']['gt']}, got {_toml_repr(value)}"
    if kind == "string_too_short":
        return f"{dotted}: must not be empty"
    return f"{dotted}: {error['msg'][0].lower()}{error['msg'][1:]}, got {_toml_repr(value)}"


def _describe_unknown(root: type[BaseModel], loc: tuple[str | int, ...], value: Any) -> str:
    *parents, key = [str(part) for part in loc]
    parent = _model_at(root, parents)
    valid = sorted(parent.model_fields) if parent else []
    sections = {name: sub for name in root.model_fields if (sub := _submodel(root, name))}
    is_table = not parents and isinstance(value, dict) and bool(sections)
    what = f"unknown table [{key}]" if is_table else f"unknown key {key!r}"
    place = f" in [{'.'.join(parents)}]" if parents else " at top level" if sections and not is_table else ""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6) or \
        difflib.get_close_matches(key.lower(), valid, n=1, cutoff=0.6)
    if close:
        suggestion = f"[{close[0]}]" if is_table else repr(close[0])
        return f"{what}{place}; did you mean {suggestion}?"
    homes = [f"[{name}]" for name, sub in sections.items() if key in sub.model_fields and name not in parents]
    if homes:
        return f"{what}{place}; {key!r} belongs in {' or '.join(homes)}"
    return f"{what}{place}; valid {'tables' if is_table else 'keys'}: {', '.join(valid)}"


def _describe_missing(root: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    *parents, key = [str(part) for part in loc]
    parent = _model_at(root, parents)
    section = _submodel(parent, key) if parent else None
    if section is not None:
        needed = [f"{name} = {_example(field)}" for name, field in section.model_fields.items() if field.is_required()]
        return f"missing table [{key}] (with {', '.join(needed)})"
    field = parent.model_fields[key] if parent else None
    example = f", e.g. {key} = {_example(field)}" if field is not None and field.examples else ""
    place = f" in [{'.'.join(parents)}]" if parents else ""
    return f"missing required key {key!r}{place}{example}"


def _example(field: Any) -> str:
    return json.dumps(field.examples[0], ensure_ascii=False) if field.examples else "..."


def _toml_repr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def _submodel(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    """The settings model of field `name` when that field is a table, else None."""
    field = model.model_fields.get(name)
    annotation = field.annotation if field else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _model_at(root: type[BaseModel], keys: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for key in keys:
        model = _submodel(model, key) if model else None
    return model


# The locator: handles [table] headers, key = value, dotted keys (a.b = 1) and keys of single-line
# inline tables (t = { a = 1 }); lines inside multi-line strings are skipped.
_BARE_OR_QUOTED = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_DOTTED = rf"{_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*"
_HEADER = re.compile(rf"^\s*\[\[?\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_KEY_VALUE = re.compile(rf"^\s*({_DOTTED})\s*=(.*)$")
_INLINE_KEY = re.compile(rf"[{{,]\s*({_DOTTED})\s*=")


def _split_dotted(dotted: str) -> tuple[str, ...]:
    parts = re.findall(_BARE_OR_QUOTED, dotted)
    return tuple(json.loads(part) if part.startswith('"') else part.strip("'") for part in parts)


def _locate_keys(text: str) -> dict[tuple[str, ...], int]:
    lines: dict[tuple[str, ...], int] = {}

    def record(keys: tuple[str, ...], number: int) -> None:
        for end in range(1, len(keys) + 1):
            lines.setdefault(keys[:end], number)

    table: tuple[str, ...] = ()
    open_string: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if open_string:
            if line.count(open_string) % 2 == 1:
                open_string = None
            continue
        if header := _HEADER.match(line):
            table = _split_dotted(header[1])
            record(table, number)
        elif key_value := _KEY_VALUE.match(line):
            keys = table + _split_dotted(key_value[1])
            record(keys, number)
            value = key_value[2]
            open_string = next((quote for quote in ('"""', "'''") if value.count(quote) % 2 == 1), None)
            if value.lstrip().startswith("{"):
                for inner in _INLINE_KEY.finditer(value):
                    record(keys + _split_dotted(inner[1]), number)
    return lines
