"""Hostile inputs of two classes, each with its expected outcome: names from a model (they must stay data, never
become C, markup or escapes) and numbers at the edges (NaN and infinite weights, sizes the emitted code cannot
index, opsets, budgets, project names that would shadow a header or symbol).

A case that builds is compiled warning-free with the target's flags plus `-Wall -Werror -trigraphs` (a name that
escaped its comment would not compile: the payloads carry `#error` and `_Static_assert(0)`), run on a seeded random
input and compared with ONNX Runtime; the lock must hold the model's names exactly. A case that is refused exits 1
with one line naming the file, node, tensor or key, no traceback, and leaves the previous build's tree and lock as
they were.
"""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.e2e import make_with, run_binary, tasobuild, write_target_spec
from tests.zoo.reference import random_input, run_onnxruntime

WARNINGS_ARE_ERRORS = ("-Wall", "-Werror", "-trigraphs")  # -trigraphs: "??/" then a newline would splice lines
INJECTED = '*/ _Static_assert(0, "injected"); /*'  # compiles only if the comment ends where the name does


# --- models --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Net:
    """A small CNN, x -> Conv(+bias) -> Relu -> Conv -> y, every name and number of which a case may replace."""

    conv_names: tuple[str, str, str] = ("conv1", "relu1", "conv2")
    hidden: tuple[str, str] = ("h1", "h2")  # the tensors between the nodes
    input_name: str = "x"
    output_name: str = "y"
    graph_name: str = "net"
    doc: str = ""
    opset: int = 13
    input_shape: tuple[int, ...] = (1, 2, 6, 6)
    channels: int = 4
    bias: tuple[float, ...] | None = None  # conv1's bias (default: seeded normal)
    weight_values: tuple[float, ...] = ()  # written over the start of conv1's weights
    single_conv: bool = False  # x -> Conv -> y only (NaN through Relu is not specified the same everywhere)
    kernel: int = 3
    pads: int = 1


def make_model(net: Net) -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    cin, cout, k = net.input_shape[1], net.channels, net.kernel
    w1 = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
    flat = w1.reshape(-1)
    flat[: len(net.weight_values)] = np.asarray(net.weight_values, dtype=np.float32)
    b1 = np.asarray(net.bias if net.bias is not None else rng.standard_normal(cout), dtype=np.float32)
    w2 = rng.standard_normal((cout, cout, 1, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "w2")]
    pads = [net.pads] * 4
    if net.single_conv:
        nodes = [helper.make_node("Conv", [net.input_name, "w1", "b1"], [net.output_name], name=net.conv_names[0],
                                  pads=pads)]
        inits = inits[:2]
    else:
        nodes = [
            helper.make_node("Conv", [net.input_name, "w1", "b1"], [net.hidden[0]], name=net.conv_names[0],
                             pads=pads),
            helper.make_node("Relu", [net.hidden[0]], [net.hidden[1]], name=net.conv_names[1]),
            helper.make_node("Conv", [net.hidden[1], "w2"], [net.output_name], name=net.conv_names[2]),
        ]
    h = (net.input_shape[2] + 2 * net.pads - k + 1) if len(net.input_shape) == 4 else 1
    w = (net.input_shape[3] + 2 * net.pads - k + 1) if len(net.input_shape) == 4 else 1
    x = helper.make_tensor_value_info(net.input_name, TensorProto.FLOAT, list(net.input_shape))
    y = helper.make_tensor_value_info(net.output_name, TensorProto.FLOAT, [1, cout, h, w])
    graph = helper.make_graph(nodes, net.graph_name, [x], [y], inits, doc_string=net.doc)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", net.opset)], ir_version=8)
    model.doc_string = net.doc
    return model


# --- outcomes --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Builds:
    """Builds, compiles warning-free, matches ONNX Runtime; `c_has` appear in the emitted src/ files."""

    c_has: tuple[str, ...] = ()
    tiling: bool = False


@dataclass(frozen=True)
class Refused:
    """Exit 1 with one line holding every one of `line_has`; the previous outputs intact."""

    line_has: tuple[str, ...]


@dataclass(frozen=True)
class Case:
    id: str
    net: Net = field(default_factory=Net)
    outcome: Builds | Refused = field(default_factory=Builds)
    spec_edit: Callable[[str], str] = lambda text: text  # noqa: E731 - the spec as the case writes it


def project_named(name: str) -> Callable[[str], str]:
    return lambda text: text.replace('name = "net"', f'name = "{name}"', 1)


def memory(value: str) -> Callable[[str], str]:
    return lambda text: text.replace('memory = "2 GiB"', f'memory = "{value}"', 1)


def tiled(text: str) -> str:
    """Fused tiling on offer, and the smallest arena asked for: the plan takes a fused group."""
    return text.replace('memory = "2 GiB"', 'memory = "2 GiB"\nobjective = "memory"', 1).replace(
        'costs = "model"', 'costs = "model"\ntiling = true', 1)


LONG = "n" * 65536
NAME_CASES = [
    Case("comment-terminator-node", Net(conv_names=(INJECTED, "relu1", "conv2"))),
    Case("comment-terminator-tensor", Net(hidden=(INJECTED, "h2"))),
    Case("comment-opener-in-name", Net(conv_names=("a/*b", "relu1", "c/*/d"))),
    Case("newline-include", Net(conv_names=("conv\n#include <stdio.h>\n#error injected", "relu1", "conv2"))),
    Case("backslash-newline", Net(conv_names=("conv \\\n_Static_assert(0, \"spliced\");", "r\\", "conv2\\"))),
    Case("trigraph", Net(conv_names=("conv ??/\n#error trigraph", "relu ??=", "conv2??/"))),
    Case("ansi-escapes", Net(conv_names=("\x1b[31mred\x1b[0m\x1b]0;title\x07", "relu1", "conv2"))),
    Case("bidi-overrides", Net(conv_names=("conv\u202e/* evil */\u202c", "re\u2066lu\u2069", "conv2\u200f"))),
    Case("line-separators-and-nul", Net(conv_names=("conv\u2028#error ls", "relu\u2029", "conv2\x00x"))),
    Case("name-64-kib", Net(conv_names=(LONG, "relu1", "conv2"), hidden=(LONG + "t", "h2")),
         Builds(c_has=("characters left out",))),
    Case("empty-names", Net(conv_names=("", "", ""))),
    Case("duplicate-names", Net(conv_names=("same", "same", "same"))),
    Case("c-keyword-names", Net(conv_names=("int", "return", "main"), hidden=("float", "#define"))),
    Case("unicode-names", Net(conv_names=("卷积/conv·ü", "relu\U0001f600", "Свёртка"), hidden=("ч", "h2"))),
    Case("hostile-input-name", Net(input_name=INJECTED + "\n#error in")),
    Case("hostile-output-name", Net(output_name="out */ int x; /*\x1b[2J")),
    Case("hostile-graph-name-and-doc", Net(graph_name=INJECTED, doc="*/\n#error doc")),
    Case("rich-markup-names", Net(conv_names=("[bold red]x[/]", "[/]", "[link=file:///etc]y"))),
    Case("hostile-names-tiled", Net(conv_names=(INJECTED, "r\n#error r", "c ??/"), hidden=("*/", "/*"),
                                    input_shape=(1, 4, 16, 16), channels=8), Builds(tiling=True)),
]

NAN, INF = float("nan"), float("inf")
NUMBER_CASES = [
    Case("nan-bias", Net(single_conv=True, bias=(NAN, 0.5, -1.0, 2.0)), Builds(c_has=("NAN", "#include <math.h>"))),
    Case("inf-bias", Net(single_conv=True, bias=(INF, -INF, 0.0, 1.0)), Builds(c_has=("INFINITY", "-INFINITY"))),
    # unpadded: next to padding, 0 x NaN is NaN here (as ONNX defines the zero padding) where ORT skips the tap
    Case("nan-weight-inf-bias", Net(single_conv=True, weight_values=(NAN,), bias=(0.0, INF, -INF, 1.0), pads=0),
         Builds(c_has=("NAN", "INFINITY"))),
    Case("denormal-weights", Net(weight_values=(1e-45, -1e-45, 1e-40, 1.17549435e-38, -0.0) * 4),
         Builds(c_has=("1.40129846e-45f",))),
    Case("nan-in-weight-blob", Net(single_conv=True, input_shape=(1, 128, 6, 6), channels=256,
                                   bias=(NAN, INF, -INF) + (0.25,) * 253), Builds()),
    Case("opset-1", Net(opset=1), Refused(("m.onnx", "opset 1 is too old", "supported: 7 to 21"))),
    Case("opset-6", Net(opset=6), Refused(("m.onnx", "opset 6 is too old"))),
    Case("opset-7-oldest", Net(opset=7)),
    Case("opset-21-newest", Net(opset=21)),
    Case("opset-22", Net(opset=22), Refused(("m.onnx", "opset 22 is newer than tasobuild knows"))),
    Case("opset-99", Net(opset=99), Refused(("m.onnx", "opset 99 is newer than tasobuild knows"))),
    Case("zero-input-dim", Net(input_shape=(1, 2, 0, 6)),
         Refused(("m.onnx", "input 'x' dim 2 is 0", "zero or negative"))),
    Case("negative-input-dim", Net(input_shape=(1, 2, 6, -3)),
         Refused(("m.onnx", "input 'x' dim 3 is -3", "zero or negative"))),
    Case("kernel-larger-than-input", Net(input_shape=(1, 2, 2, 2), pads=0),
         Refused(("m.onnx", "node 'conv1' (Conv)", "window 3 larger than the padded input 2"))),
    Case("huge-input", Net(input_shape=(1, 3, 100000, 100000)),
         Refused(("m.onnx", "input 'x' has 30000000000 elements", "at most 536870911"))),
    Case("input-one-past-limit", Net(input_shape=(1, 2, 16384, 16384), single_conv=True),
         Refused(("input 'x' has 536870912 elements (2147483648 bytes",))),
    Case("huge-output", Net(input_shape=(1, 1, 16384, 16384), channels=4, single_conv=True),
         Refused(("node 'conv1' (Conv)", "output 'y' has 1073741824 elements"))),
    Case("budget-1e30-gib", outcome=Refused(("taso.toml:", "constraints.memory", "'1e30 GiB' is not a size")),
         spec_edit=memory("1e30 GiB")),
    Case("budget-absurd", outcome=Refused(("taso.toml:", "constraints.memory", "100000000000 GiB",
                                           "more memory than any target has")),
         spec_edit=memory("100000000000 GiB")),
]

BAD_PROJECT_NAMES = {  # name -> what the one line says
    "stdio": "would shadow the C library's <stdio.h>",
    "string": "would shadow the C library's <string.h>",
    "math": "would shadow the C library's <math.h>",
    "stdint": "would shadow the C library's <stdint.h>",
    "Stdio": "would shadow the C library's <stdio.h>",  # case-insensitive file systems
    "assert": "would shadow the C library's <assert.h>",
    "float": "is a C keyword",
    "int": "is a C keyword",
    "main": "already uses",
    "m": "already uses",
    "tb_kernels": "the prefix of the kernels' symbols and headers",
    "tb_net": "the prefix of the kernels' symbols and headers",
    "gemm": "would shadow the kernel file gemm",
    "ops_act": "would shadow the kernel file ops_act",
    "_net": "starts with _",
    "ds-cnn": "is not a usable C identifier",
}
PROJECT_CASES = [Case(f"project-name-{name}", outcome=Refused(("taso.toml:2", "project.name", repr(name), says)),
                      spec_edit=project_named(name))
                 for name, says in BAD_PROJECT_NAMES.items()]

CASES = NAME_CASES + NUMBER_CASES + PROJECT_CASES


def is_slow(case: Case) -> bool:
    """The tiled build (its fused groups are costed and solved) takes about a minute on a loaded machine."""
    return isinstance(case.outcome, Builds) and case.outcome.tiling


# --- the test --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def previous_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project built from an ordinary model: each refused case starts from a copy and must leave it intact."""
    folder = tmp_path_factory.mktemp("previous")
    onnx.save(make_model(Net()), str(folder / "m.onnx"))
    spec = write_target_spec(folder, folder / "m.onnx", "host", costs="model")
    tasobuild("build", "-c", str(spec))
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "m.onnx" and p.name != "taso.toml"}


def assert_same_numbers(ours: np.ndarray, reference: np.ndarray) -> None:
    """NaN where ONNX Runtime has NaN, the same infinities, the finite values within the zoo's tolerance."""
    reference = reference.reshape(-1).astype(np.float64)
    ours = ours.astype(np.float64)
    assert ours.shape == reference.shape
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(reference))
    np.testing.assert_array_equal(np.isposinf(ours), np.isposinf(reference))
    np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(reference))
    finite = np.isfinite(reference)
    tolerance = 1e-4 * max(1.0, float(np.max(np.abs(reference[finite]), initial=0.0)))
    assert float(np.max(np.abs(ours[finite] - reference[finite]), initial=0.0)) <= tolerance


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] * is_slow(c)) for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path, previous_build: Path) -> None:
    shutil.copytree(previous_build, tmp_path, dirs_exist_ok=True)
    model = tmp_path / "m.onnx"
    onnx.save(make_model(case.net), str(model))
    spec = tmp_path / "taso.toml"
    spec.write_text(case.spec_edit(spec.read_text()))
    if isinstance(case.outcome, Refused):
        assert_refused(case.outcome, spec, tmp_path)
    else:
        if case.outcome.tiling:
            spec.write_text(tiled(spec.read_text()))
        assert_builds(case.outcome, spec, model, tmp_path)


def assert_refused(outcome: Refused, spec: Path, folder: Path) -> None:
    before = snapshot(folder)
    proc = tasobuild("build", "-c", str(spec), check=False)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("tasobuild: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for part in outcome.line_has:
        assert part in lines[0], (part, lines[0])
    assert snapshot(folder) == before, "the refused build changed the previous outputs"


def assert_builds(outcome: Builds, spec: Path, model: Path, folder: Path) -> None:
    tasobuild("build", "-c", str(spec))
    out = folder / "out"
    sources = "\n".join(p.read_text() for p in sorted((out / "src").glob("net*")) if p.suffix in (".c", ".h"))
    sources += (out / "include" / "net.h").read_text() + (out / "main" / "net_main.c").read_text()
    for text in outcome.c_has:
        assert text in sources, text
    assert INJECTED not in sources
    assert not any(ch in sources for ch in "\x1b\u202e\u2066\u2028\x00"), "an acting character reached the C"
    onnx_model = onnx.load(str(model))
    lock = tomllib.loads((folder / "taso.lock").read_text())
    convs = [n.name for n in onnx_model.graph.node if n.op_type == "Conv"]
    if all(convs) and len(set(convs)) == len(convs):  # else the importer names them (Conv_0, same_2)
        assert set(convs) <= {node["name"] for node in lock["node"]}, "the lock must record the names exactly"
    binary = make_with(out, WARNINGS_ARE_ERRORS)
    x = random_input(model, seed=3)
    ours, _ = run_binary(binary, x, folder)
    assert_same_numbers(ours, run_onnxruntime(renamed(onnx_model, folder / "reference.onnx"), x))


def renamed(model: onnx.ModelProto, path: Path) -> Path:
    """`model` with plain unique node names, saved to `path`: ONNX Runtime refuses duplicate names, and names do
    not change what a model computes."""
    for index, node in enumerate(model.graph.node):
        node.name = f"n{index}"
    onnx.save(model, str(path))
    return path


def test_terminal_shows_names_as_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`plan` prints node names in a table: markup stays literal, escapes and bidi overrides are replaced."""
    monkeypatch.setenv("COLUMNS", "400")  # wide enough that rich does not fold the cell
    model = tmp_path / "m.onnx"
    onnx.save(make_model(Net(conv_names=("[bold]x[/bold]\x1b[2J", "[/]", "c\u202e"))), str(model))
    spec = write_target_spec(tmp_path, model, "host", costs="model")
    proc = tasobuild("plan", "-c", str(spec))
    assert "[bold]x[/bold]<U+001B>[2J" in proc.stdout
    assert not any(ch in proc.stdout + proc.stderr for ch in "\x1b\u202e")


def test_error_lines_carry_no_escapes(tmp_path: Path) -> None:
    """A refused model's names reach the one error line shortened and with its escapes made visible."""
    model = tmp_path / "m.onnx"
    onnx.save(make_model(Net(conv_names=("\x1b[31m" + "q" * 5000 + "\u202e", "r", "c"), input_shape=(1, 2, 2, 2),
                             pads=0)), str(model))
    spec = write_target_spec(tmp_path, model, "host", costs="model")
    proc = tasobuild("build", "-c", str(spec), check=False)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "<U+001B>[31m" in proc.stderr and "characters left out" in proc.stderr
    assert len(proc.stderr) < 1000 and "\x1b" not in proc.stderr and "\u202e" not in proc.stderr


def test_case_count() -> None:
    """The corpus docs/trust/names-and-numbers.md counts."""
    assert len(CASES) == 54
