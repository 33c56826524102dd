"""Property-based fuzzing of every reader of untrusted input: the spec loader, the ONNX importer, the lock reader and
the cost-cache readers (a costs CSV, a costs.sqlite). Property: the reader succeeds, or raises a UserError whose
message is one line naming the file; never another exception.

Bounded in time: every test has an explicit max_examples and deadline (the suite runs in well under a minute);
docs/trust/lock-and-caches.md records the iterations and the time. FUZZ_EXAMPLES scales every budget (e.g.
FUZZ_EXAMPLES=10 for a long local run).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from tasobuild.costs.cache import CostCache, CostKey, read_csv
from tasobuild.errors import UserError
from tasobuild.importer import import_onnx
from tasobuild.incremental.lock import differences, lock_costs, parse_lock, render_lock
from tasobuild.spec import load_spec
from tests.zoo import fixture_path

SCALE = int(os.environ.get("FUZZ_EXAMPLES", "1"))


def fuzz(examples: int, deadline_ms: int = 2000) -> Callable[[Any], Any]:
    return settings(max_examples=examples * SCALE, deadline=deadline_ms, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def accepts_or_names(path: Path, read: Callable[[], object]) -> None:
    """The property: `read()` succeeds or raises a one-line UserError that names the file."""
    try:
        read()
    except UserError as error:
        message = str(error)
        assert "\n" not in message, message
        assert path.name in message, message


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


# --- TOML values and documents ------------------------------------------------------------------------------------

SCALARS = st.one_of(st.text(max_size=12), st.integers(-2**63, 2**63 - 1), st.floats(), st.booleans(),
                    st.sampled_from(["64 KiB", "1.5 MB", "0", "-1 KiB", "20 ms", "1e400 s", "auto", "model", "host",
                                     "latency", "memory", "profile", "model.onnx", "../x", "out", "/abs", ""]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=6)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


def toml_document(tables: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, table in tables.items():
        lines.append(f"[{json.dumps(name)}]")
        lines += [f"{json.dumps(key)} = {toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


SPEC_KEYS = {"project": ["name"], "network": ["onnx"], "target": ["name"],
             "constraints": ["memory", "objective", "latency"],
             "optimizer": ["costs", "primitives", "time_limit", "tiling"], "build": ["out"]}
KEY_NAMES = st.one_of(st.sampled_from(sorted({k for keys in SPEC_KEYS.values() for k in keys})), st.text(max_size=8))
TABLE_NAMES = st.one_of(st.sampled_from(sorted(SPEC_KEYS)), st.text(max_size=8))
VALID_SPEC = {"project": {"name": "net"}, "network": {"onnx": "model.onnx"}, "target": {"name": "host"},
              "constraints": {"memory": "64 KiB"}, "build": {"out": "out"}}


@st.composite
def spec_documents(draw: st.DrawFn) -> str:
    """A valid spec with some values replaced by random ones, some keys dropped, and some random keys added."""
    tables = {name: dict(table) for name, table in VALID_SPEC.items()}
    for _ in range(draw(st.integers(0, 4))):
        table = draw(TABLE_NAMES)
        tables.setdefault(table, {})[draw(KEY_NAMES)] = draw(VALUES)
    for name in draw(st.lists(st.sampled_from(sorted(VALID_SPEC)), max_size=2)):
        tables.pop(name, None)
    return toml_document(tables)


@fuzz(120)
@given(text=st.one_of(spec_documents(), st.text(max_size=200)))
def test_the_spec_loader_accepts_or_names_the_file(workdir: Path, text: str) -> None:
    spec = workdir / "taso.toml"
    (workdir / "model.onnx").write_bytes(b"")
    spec.write_text(text, encoding="utf-8", errors="replace")
    accepts_or_names(spec, lambda: load_spec(spec))


@fuzz(60)
@given(key=st.sampled_from([f"{t}.{k}" for t, keys in SPEC_KEYS.items() for k in keys]), value=st.text(max_size=20))
def test_a_spec_override_accepts_or_names_the_key(workdir: Path, key: str, value: str) -> None:
    spec = workdir / "taso.toml"
    (workdir / "model.onnx").write_bytes(b"")
    spec.write_text(toml_document(VALID_SPEC))
    try:
        load_spec(spec, {key: value})
    except UserError as error:
        assert "\n" not in str(error) and (key in str(error) or spec.name in str(error)), str(error)


# --- the ONNX importer: mutated bytes of the committed fixtures -----------------------------------------------------

FIXTURE = fixture_path("ds_cnn_torch").read_bytes()


@fuzz(40, deadline_ms=10000)
@given(flips=st.lists(st.tuples(st.integers(0, len(FIXTURE) - 1), st.integers(0, 255)), max_size=8),
       cut=st.one_of(st.none(), st.integers(0, len(FIXTURE))))
def test_the_importer_accepts_or_names_the_file_on_mutated_bytes(workdir: Path, flips: list[tuple[int, int]],
                                                                  cut: int | None) -> None:
    data = bytearray(FIXTURE)
    for position, byte in flips:
        data[position] = byte
    model = workdir / "mutated.onnx"
    model.write_bytes(bytes(data[:cut]))
    accepts_or_names(model, lambda: import_onnx(model))


# --- the ONNX importer: structured mutations of a graph built with onnx.helper ------------------------------------

MUTATIONS = ("none", "kernel_attr", "strides_zero", "negative_pads", "group", "input_dims", "weight_dims",
             "input_dtype", "weight_dtype", "missing_input", "cycle", "unknown_op", "no_nodes", "duplicate_output",
             "attr_type", "opset")


def small_graph(mutation: str, number: int) -> onnx.ModelProto:
    """Conv 3x3 (8 -> 4 channels) -> Relu -> GlobalAveragePool -> Flatten -> Gemm, then one mutation."""
    rng = np.random.default_rng(number)
    dims = [1, 8, 6, 6]
    weight = rng.standard_normal((4, 8, 3, 3)).astype(np.float32)
    dense = rng.standard_normal((2, 4)).astype(np.float32)
    conv_attrs: dict[str, Any] = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [1, 1], "group": 1}
    in_type, w_dtype = TensorProto.FLOAT, np.float32
    opset = 17
    if mutation == "kernel_attr":
        conv_attrs["kernel_shape"] = [number % 7, 5]
    elif mutation == "strides_zero":
        conv_attrs["strides"] = [0, number % 3]
    elif mutation == "negative_pads":
        conv_attrs["pads"] = [-1 - number % 4, 0, 1, 1]
    elif mutation == "group":
        conv_attrs["group"] = number % 9
    elif mutation == "input_dims":
        dims = [1 + number % 3, (number % 5) - 1, number % 4, 6]
    elif mutation == "weight_dims":
        weight = rng.standard_normal((4, 1 + number % 9, 3, 1 + number % 4)).astype(np.float32)
    elif mutation == "input_dtype":
        in_type = [TensorProto.DOUBLE, TensorProto.INT8, TensorProto.STRING, TensorProto.FLOAT16][number % 4]
    elif mutation == "weight_dtype":
        w_dtype = [np.int32, np.float64, np.int8, np.bool_][number % 4]
    elif mutation == "attr_type":
        conv_attrs["kernel_shape"] = "3x3"
    elif mutation == "opset":
        opset = [1, 6, 99, 0][number % 4]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", **conv_attrs),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "d"], ["y"], name="dense", transB=1),
    ]
    if mutation == "missing_input":
        nodes[number % len(nodes)].input[0] = "nowhere"
    elif mutation == "cycle":
        nodes[1].input[0] = "f"  # relu reads flatten's output, which depends on relu
    elif mutation == "unknown_op":
        nodes[number % len(nodes)].op_type = "FancyOp"
    elif mutation == "no_nodes":
        nodes = []
    elif mutation == "duplicate_output":
        nodes[2].output[0] = "c"
    graph = helper.make_graph(
        nodes, "fuzz", [helper.make_tensor_value_info("x", in_type, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(weight.astype(w_dtype), "w"), numpy_helper.from_array(dense, "d")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@fuzz(80, deadline_ms=5000)
@given(mutation=st.sampled_from(MUTATIONS), number=st.integers(0, 1000))
def test_the_importer_accepts_or_names_the_file_on_mutated_graphs(workdir: Path, mutation: str, number: int) -> None:
    model = workdir / "structured.onnx"
    model.write_bytes(small_graph(mutation, number).SerializeToString())
    accepts_or_names(model, lambda: import_onnx(model))


# --- the lock reader -------------------------------------------------------------------------------------------------

LOCK_PATH = Path("taso.lock")
ROW_KEYS = {"node": ["name", "op", "primitive", "layout_in", "layout_out", "tiling", "workspace_bytes",
                     "predicted_ms", "cost_source", "output_offset"],
            "transform": ["tensor", "from", "to", "step", "predicted_ms"],
            "cost": ["call", "median_ms", "spread_ms", "source"]}
PLAN_KEYS = ["arena_bytes", "budget_bytes", "lower_bound_bytes", "objective", "predicted_ms", "solver_status",
             "greedy_predicted_ms", "greedy_arena_bytes", "time_only_predicted_ms", "time_only_arena_bytes"]
LOCK_SCALARS = st.one_of(st.text(max_size=6), st.integers(-5, 2**40), st.floats(), st.booleans(),
                         st.sampled_from(["measured", "predicted", "imported", "none", "CHW", "latency"]))


@st.composite
def lock_texts(draw: st.DrawFn) -> str:
    """A lock with every key present or not, every value of a random type, as TOML text."""
    def table(keys: list[str]) -> dict[str, Any]:
        return {k: draw(LOCK_SCALARS) for k in keys if draw(st.booleans()) or draw(st.booleans())}

    version = draw(st.sampled_from(["1", "1", "1", "2", "0", '"1"', "true"]))
    lines = [f"version = {version}"]
    for name, keys in (("inputs", ["spec", "onnx", "kernels", "target", "costs_from"]), ("plan", PLAN_KEYS)):
        lines += [f"[{name}]"] + [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table(keys).items()]
    for name, keys in ROW_KEYS.items():
        for _ in range(draw(st.integers(0, 2))):
            lines += [f"[[{name}]]"] + [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table(keys).items()]
    lines += ["[files]"] + [f"{json.dumps(k)} = {toml_value(v)}" for k, v in
                            draw(st.dictionaries(st.text(max_size=5), LOCK_SCALARS, max_size=2)).items()]
    return "\n".join(lines) + "\n"


def read_and_use(text: str) -> None:
    """Parse, then use every field the build reads, as the build does."""
    lock = parse_lock(text, LOCK_PATH)
    lock_costs(lock)
    differences(lock, lock)
    render_lock({k: v for k, v in lock.items() if k != "version"})


@fuzz(200)
@given(text=st.one_of(lock_texts(), st.text(max_size=300)))
def test_the_lock_reader_accepts_or_names_the_file(text: str) -> None:
    accepts_or_names(LOCK_PATH, lambda: read_and_use(text))


# --- the cost-cache readers: a costs CSV, a costs.sqlite ------------------------------------------------------------

CSV_CELLS = st.one_of(st.text(max_size=10), st.sampled_from(["tb_add", "n=1,act=0", "0.5", "1", "-1", "nan", "inf",
                                                             "1e400", "", "1.5"]))


@fuzz(150)
@given(header=st.booleans(), rows=st.lists(st.lists(CSV_CELLS, min_size=0, max_size=6), max_size=5),
       raw=st.one_of(st.none(), st.binary(max_size=200)))
def test_the_costs_csv_reader_accepts_or_names_the_file(workdir: Path, header: bool, rows: list[list[str]],
                                                         raw: bytes | None) -> None:
    import csv
    import io

    path = workdir / "costs.csv"
    if raw is not None:
        path.write_bytes(raw)
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if header:
            writer.writerow(["function", "params", "median_ms", "spread_ms", "reps"])
        writer.writerows(rows)
        path.write_text(buffer.getvalue(), encoding="utf-8", errors="replace")
    accepts_or_names(path, lambda: read_csv(path))


SQLITE_VALUES = st.one_of(st.none(), st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=6),
                          st.binary(max_size=6), st.sampled_from(["measured", "imported", "predicted", "tb_add(n=1)"]))


@fuzz(20, deadline_ms=10000)
@given(garbage=st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b"SQLite format 3\x00" + b)),
       rows=st.lists(st.tuples(*[SQLITE_VALUES] * 4), max_size=4))
def test_the_cost_db_reader_warns_and_recovers(workdir: Path, garbage: bytes, rows: list[tuple[Any, ...]]) -> None:
    """A garbage costs.sqlite is moved aside with a warning; rows of the wrong types are skipped with a warning."""
    cache = workdir / "cache"
    cache.mkdir(exist_ok=True)
    for stale in cache.iterdir():
        stale.unlink()
    (cache / "costs.sqlite").write_bytes(garbage)
    warnings: list[str] = []
    with CostCache(cache, on_warning=warnings.append) as opened:
        assert all("\n" not in w and "costs.sqlite" in w for w in warnings), warnings
        opened.put_many([(CostKey("f", "k", "tb_add(n=1)"), _measured())])
    with sqlite3.connect(cache / "costs.sqlite") as db:
        db.executemany("INSERT OR IGNORE INTO costs VALUES ('f', 'k', ?, ?, ?, ?, 'measured')",
                       [(str(r[0]), *r[1:]) for r in rows])
        db.executemany("INSERT OR IGNORE INTO costs VALUES ('f', 'k', ?, 0.5, 0.1, 3, ?)",
                       [(f"tb_x{i}(n=1)", r[3]) for i, r in enumerate(rows)])
    with CostCache(cache, on_warning=warnings.append) as opened:
        keys = [CostKey("f", "k", str(r[0])) for r in rows] + [CostKey("f", "k", f"tb_x{i}(n=1)")
                                                               for i in range(len(rows))]
        found = opened.get_many(keys)
        assert all(type(c.median_ms) is float for c in found.values())
        opened.rows()
        opened.export_csv(workdir / "out.csv", fingerprint="f", kernel_digest="k")


def _measured() -> Any:
    from tasobuild.costs.cache import Cost

    return Cost(0.5, 0.1, 3, "measured")
