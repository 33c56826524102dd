from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from tasobuild.errors import UserError
from tasobuild.spec import (
    ConstraintsSettings,
    OptimizerSettings,
    SpecFile,
    TargetSettings,
    TomlDocument,
    c_identifier,
    load_spec,
)
from tasobuild.starter import starter_spec

MINIMAL = """\
[project]
name = "kws"

[network]
onnx = "models/ds_cnn.onnx"

[constraints]
memory = "64 KiB"
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A directory with a model file; returns write(text) -> Path('taso.toml') (cwd is the directory)."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "ds_cnn.onnx").write_bytes(b"not parsed by the spec stage")
    monkeypatch.chdir(tmp_path)

    def write(text: str) -> Path:
        Path("taso.toml").write_text(text)
        return Path("taso.toml")
    return write


def error_of(path: Path, overrides: dict[str, str] | None = None) -> str:
    with pytest.raises(UserError) as error:
        load_spec(path, overrides or {})
    message = str(error.value)
    assert "\n" not in message
    return message


# --- valid specs -----------------------------------------------------------------------------


def test_minimal_spec_gets_defaults_and_resolved_paths(project, tmp_path):
    spec = load_spec(project(MINIMAL))
    assert spec.project.name == "kws"
    assert spec.constraints == ConstraintsSettings(memory=65536, objective="latency", latency=None)
    assert spec.optimizer == OptimizerSettings(costs="auto", tiling=False, time_limit=10_000.0, primitives=())
    assert spec.target == TargetSettings(name="host")
    assert spec.spec_path == Path("taso.toml")
    assert spec.spec_dir == tmp_path
    assert spec.onnx_path == tmp_path / "models" / "ds_cnn.onnx"
    assert spec.out_dir == tmp_path / "build" / "kws"


def test_full_spec(project, tmp_path):
    spec = load_spec(project(MINIMAL + """\
objective = "memory"
latency = "20 ms"

[target]
name = "cortex-m4"

[optimizer]
costs = "model"
tiling = false
time_limit = "1.5 s"
primitives = ["im2col", "direct", "im2col"]

[build]
out = "generated/kws"
"""))
    assert spec.constraints == ConstraintsSettings(memory=65536, objective="memory", latency=20.0)
    assert spec.optimizer == OptimizerSettings(costs="model", tiling=False, time_limit=1500.0,
                                               primitives=("direct", "im2col"))
    assert spec.target.name == "cortex-m4"
    assert spec.out_dir == tmp_path / "generated" / "kws"


def test_canonical_is_sorted_relative_and_without_nulls(project):
    spec = load_spec(project(MINIMAL.replace('[project]', '[target]\nname = "./targets/../my.toml"\n\n[project]')))
    canonical = spec.canonical()
    assert canonical == {
        "build": {"out": "build/kws"},
        "constraints": {"memory": 65536, "objective": "latency"},
        "network": {"onnx": "models/ds_cnn.onnx"},
        "optimizer": {"costs": "auto", "primitives": [], "tiling": False, "time_limit": 10000.0},
        "project": {"name": "kws"},
        "target": {"name": "my.toml"},
    }
    assert list(canonical) == sorted(canonical)
    assert str(spec.spec_dir) not in json.dumps(canonical)


def test_digest_follows_effective_settings_only(project):
    path = project(MINIMAL)
    digest = load_spec(path).digest
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert load_spec(path).digest == digest
    assert load_spec(path, {"constraints.memory": "65536"}).digest == digest    # same value, other spelling
    assert load_spec(path, {"constraints.memory": "48KiB"}).digest != digest
    project(MINIMAL + "\n[build]\nout = 'build/kws'\n")                             # the default, written out
    assert load_spec(path).digest == digest


def test_dotted_keys_and_inline_tables(project):
    spec = load_spec(project("""\
project.name = "kws"
network = { onnx = "models/ds_cnn.onnx" }
constraints.memory = "1 MB"
"""))
    assert spec.constraints.memory == 1_000_000
    assert spec.onnx_path.name == "ds_cnn.onnx"


# --- overrides -------------------------------------------------------------------------------


def test_overrides_are_applied_before_validation(project):
    path = project(MINIMAL)
    spec = load_spec(path, {"constraints.memory": "48KiB", "optimizer.tiling": "false",
                            "optimizer.primitives": "winograd, direct", "target.name": "cortex-m4"})
    assert spec.constraints.memory == 49152
    assert spec.optimizer.tiling is False
    assert spec.optimizer.primitives == ("direct", "winograd")
    assert spec.target.name == "cortex-m4"


def test_where_names_the_line_or_the_command_line(project):
    spec = load_spec(project(MINIMAL), {"optimizer.costs": "model"})
    assert spec.where("constraints.memory") == "taso.toml:8"
    assert spec.where("project.name") == "taso.toml:2"
    assert spec.where("constraints.objective") == "taso.toml:7"   # not written: its table's line
    assert spec.where("optimizer.costs") == "command line"
    assert spec.where("target.name") == "taso.toml"              # table not written at all


def test_override_errors(project):
    path = project(MINIMAL)
    assert error_of(path, {"constraints.memory": "64 KB/s"}) == (
        """command line: constraints.memory: '64 KB/s' is not a size """
        """(e.g. "64 KiB", "1.5 MB"; units: B, KB, KiB, MB, MiB, GB, GiB)""")
    assert error_of(path, {"constraints.memroy": "1"}) == \
        "command line: unknown key 'memroy' in [constraints]; did you mean 'memory'?"
    assert error_of(path, {"memory": "1"}) == \
        "command line: 'memory' is not a setting; write table.key, e.g. constraints.memory"
    assert error_of(path, {"optimizer.tiling": "maybe"}) == \
        "command line: optimizer.tiling: expected true or false, got 'maybe'"


# --- errors: one line, file:line, the key, a suggestion ---------------------------------------


def test_missing_file(project):
    assert error_of(Path("taso.toml")) == \
        "taso.toml: no such file; create one with 'tasobuild init MODEL.onnx' or pass -c PATH"


def test_malformed_toml_keeps_line_and_column(project):
    assert error_of(project(MINIMAL.replace('"64 KiB"', "64 KiB"))) == \
        "taso.toml:8:13: invalid TOML: Expected newline or end of document after a statement"
    assert error_of(project(MINIMAL + "memory = 1\n")) == "taso.toml:9:11: invalid TOML: Cannot overwrite a value"
    assert error_of(project(MINIMAL + "x = [1,\n")) == "taso.toml: invalid TOML: Invalid value (at end of document)"


def test_unknown_key_with_suggestion(project):
    text = MINIMAL.replace('memory = "64 KiB"', 'memroy = "64 KiB"')
    assert error_of(project(text)) == "taso.toml:8: unknown key 'memroy' in [constraints]; did you mean 'memory'?"


def test_unknown_key_that_belongs_in_another_table(project):
    text = MINIMAL + '\n[optimizer]\ntiling = true\nobjective = "memory"\n'
    assert error_of(project(text)) == \
        "taso.toml:12: unknown key 'objective' in [optimizer]; 'objective' belongs in [constraints]"
    assert error_of(project('name = "kws"\n' + MINIMAL)) == \
        "taso.toml:1: unknown key 'name' at top level; 'name' belongs in [project] or [target]"


def test_unknown_key_without_close_match_lists_the_valid_keys(project):
    assert error_of(project(MINIMAL + '\n[build]\ndirectory = "x"\n')) == \
        "taso.toml:11: unknown key 'directory' in [build]; valid keys: out"


def test_unknown_table(project):
    assert error_of(project(MINIMAL + "\n[optimiser]\ntiling = false\n")) == \
        "taso.toml:10: unknown table [optimiser]; did you mean [optimizer]?"


def test_bad_values(project):
    def error_with(old: str, new: str) -> str:
        return error_of(project(MINIMAL.replace(old, new)))
    assert error_with('"64 KiB"', '"64 KB/s"') == (
        """taso.toml:8: constraints.memory: '64 KB/s' is not a size """
        """(e.g. "64 KiB", "1.5 MB"; units: B, KB, KiB, MB, MiB, GB, GiB)""")
    assert error_with('"64 KiB"', '"0 KiB"') == \
        "taso.toml:8: constraints.memory: must be greater than 0, got '0 KiB'"  # optional: the text as written
    assert error_with('memory', 'objective = "fast"\nmemory') == \
        "taso.toml:8: constraints.objective: 'fast' is not one of 'latency' or 'memory'"
    assert error_with('name = "kws"', 'name = "ds-cnn"') == \
        """taso.toml:2: project.name: 'ds-cnn' is not a usable C identifier (letters, digits, _), e.g. "ds_cnn\""""
    assert error_with('name = "kws"', 'name = 5') == "taso.toml:2: project.name: expected a string in quotes, got 5"
    assert error_with('"models/ds_cnn.onnx"', '""') == "taso.toml:5: network.onnx: must not be empty"
    assert error_of(project("constraints = 5\n" + MINIMAL.replace('[constraints]\nmemory = "64 KiB"\n', ""))) == \
        "taso.toml:1: constraints must be a table ([constraints]), got 5"


def test_bad_values_in_optional_tables(project):
    assert error_of(project(MINIMAL + "\n[optimizer]\ntiling = 'yes'\n")) == \
        "taso.toml:11: optimizer.tiling: expected true or false, got 'yes'"
    assert error_of(project(MINIMAL + "\n[optimizer]\ntime_limit = 10\n")) == \
        """taso.toml:11: optimizer.time_limit: 10 is not a duration (e.g. "20 ms", "1.5 s"; units: us, ms, s)"""
    assert error_of(project(MINIMAL + "\n[optimizer]\nprimitives = 'direct'\n")) == \
        """taso.toml:11: optimizer.primitives: expected a list such as ["a", "b"], got 'direct'"""
    assert error_of(project(MINIMAL + "\n[optimizer]\nprimitives = ['direct', 3]\n")) == \
        "taso.toml:11: optimizer.primitives[1]: expected a string in quotes, got 3"


def test_latency_only_with_memory_objective(project):
    assert error_of(project(MINIMAL + 'latency = "20 ms"\n')) == ('taso.toml:9: constraints.latency: only applies '
                                                              'with objective = "memory" (the latency objective '
                                                              'already minimises it)')


def test_missing_required_key_and_table(project):
    # constraints.memory is optional (a target that states its RAM gives the budget; tests/test_embedded.py)
    assert error_of(project(MINIMAL.replace('name = "kws"\n', ''))) == \
        """taso.toml:1: missing required key 'name' in [project], e.g. name = "kws\""""
    assert error_of(project(MINIMAL.replace('[network]\nonnx = "models/ds_cnn.onnx"\n', ''))) == \
        """taso.toml: missing table [network] (with onnx = "model.onnx")"""


def test_missing_model_file(project, tmp_path):
    assert error_of(project(MINIMAL.replace("ds_cnn.onnx", "kws.onnx"))) == (
        f"taso.toml:5: network.onnx: 'models/kws.onnx' is not a file (looked for {tmp_path}/models/kws.onnx; "
        f"paths are relative to the spec file)")


def test_first_error_in_file_order_is_reported(project):
    text = MINIMAL.replace('name = "kws"', 'name = "1x"').replace("memory", "memroy")
    assert error_of(project(text)).startswith("taso.toml:2: project.name:")


def test_errors_locate_dotted_keys_and_inline_tables(project):
    assert error_of(project('optimizer.tilling = true\n' + MINIMAL)) == \
        "taso.toml:1: unknown key 'tilling' in [optimizer]; did you mean 'tiling'?"
    assert error_of(project('optimizer = { tiling = true, costs = "guess" }\n' + MINIMAL)) == \
        "taso.toml:1: optimizer.costs: 'guess' is not one of 'profile', 'model' or 'auto'"


def test_locator_skips_multiline_strings_and_falls_back_to_the_table():
    text = '[a]\ns = """\nb = 1\n"""\n\n[b]\nx = 1\n'
    document = TomlDocument(Path("t.toml"), text, tomllib.loads(text))
    assert document.line(("a", "s")) == 2
    assert document.line(("b",)) == 6
    assert document.line(("b", "x")) == 7
    assert document.line(("b", "missing")) == 6
    assert document.line(("c", "x")) is None


@pytest.mark.parametrize("text, expected", [
    ("kws", "kws"), ("ds-cnn.v2", "ds_cnn_v2"), ("MobileNet V2", "mobilenet_v2"), ("1st", "net_1st"),
    ("int", "int_net"), ("--", "net"),
])
def test_c_identifier(text, expected):
    assert c_identifier(text) == expected


# --- the starter file --------------------------------------------------------------------------


def test_starter_loads_back(project, tmp_path):
    (tmp_path / "models" / "ds-cnn.v2.onnx").write_bytes(b"")
    Path("taso.toml").write_text(starter_spec(tmp_path / "models" / "ds-cnn.v2.onnx", tmp_path))
    spec = load_spec(Path("taso.toml"))
    assert spec.project.name == "ds_cnn_v2"
    assert spec.onnx_path == tmp_path / "models" / "ds-cnn.v2.onnx"
    assert spec.network.onnx == "models/ds-cnn.v2.onnx"
    assert spec.constraints == ConstraintsSettings(memory=262_144)
    assert spec.optimizer == OptimizerSettings()
    assert spec.target == TargetSettings(threads="auto")  # a new project runs on every core of the host
    assert spec.out_dir == tmp_path / "build" / "ds_cnn_v2"


def test_starter_with_a_computed_budget(project, tmp_path):
    text = starter_spec(Path("models/ds_cnn.onnx"), Path("."), memory=50_001)
    assert 'memory = "50001 B"\n' in text
    assert load_spec(project(text)).constraints.memory == 50_001


def test_starter_documents_every_key_from_the_docstrings(project, tmp_path):
    lines = starter_spec(Path("models/ds_cnn.onnx"), tmp_path).splitlines()
    for table, table_field in SpecFile.model_fields.items():
        header = lines.index(f"[{table}]")
        assert lines[header - 1] == f"# {table_field.annotation.__doc__}"
        for key, field in table_field.annotation.model_fields.items():
            key_line = next(i for i, line in enumerate(lines[header:], header)
                            if re.match(rf"^(# )?{key} = ", line))
            assert lines[key_line - 1] == f"# {field.description}"


def test_starter_optional_example_works_when_uncommented(project):
    text = starter_spec(Path("models/ds_cnn.onnx"), Path("."))
    text = text.replace('objective = "latency"', 'objective = "memory"').replace('# latency = ', 'latency = ')
    assert load_spec(project(text)).constraints.latency == 20.0
