"""The memory-aware execution order (tasobuild.schedule): hand-computed peaks of a branching graph whose given
order is beaten, the given order kept when it is as good, and a build of such a network that still matches ONNX
Runtime."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tasobuild.schedule import Dataflow, best_order, in_order, peak
from tests.e2e import (
    assert_matches,
    build_and_compile,
    run_binary,
    save_onnx,
    tasobuild,
    write_target_spec,
)
from tests.zoo.reference import run_onnxruntime

# Two branches off input x (1 byte), each a big tensor (10) reduced to a small one (1), then a concat (2):
#   0: a1 = A1(x) 10    1: b1 = B1(x) 10    2: a2 = A2(a1) 1    3: b2 = B2(b1) 1    4: y = cat(a2, b2) 2
# Given order 0 1 2 3 4: step 1 holds x (B1 reads it), a1 (A2 reads it later) and b1: 21 bytes.
# Branch by branch, 0 2 1 3 4: step 0 x+a1 11, step 1 x+a1+a2 12, step 2 x+a2+b1 12, step 3 a2+b1+b2 12,
# step 4 a2+b2+y 4, epilogue y 2: 12 bytes.
BRANCHES = Dataflow(
    steps=((("x",), "a1"), (("x",), "b1"), (("a1",), "a2"), (("b1",), "b2"), (("a2", "b2"), "y")),
    sizes={"x": 1, "a1": 10, "b1": 10, "a2": 1, "b2": 1, "y": 2},
    graph_input="x", graph_output="y")


def test_branch_by_branch_beats_the_given_interleaving() -> None:
    assert peak(BRANCHES, (0, 1, 2, 3, 4)) == 21
    chosen = best_order(BRANCHES)
    assert chosen.order == (0, 2, 1, 3, 4) and chosen.peak_bytes == 12 and chosen.given_peak_bytes == 21
    assert chosen.proven


def test_given_order_kept_when_it_is_already_best() -> None:
    branch_first = Dataflow(tuple(BRANCHES.steps[i] for i in (0, 2, 1, 3, 4)), BRANCHES.sizes, "x", "y")
    assert best_order(branch_first).order == (0, 1, 2, 3, 4)
    chain = Dataflow(((("x",), "a"), (("a",), "b"), (("b",), "y")), {"x": 4, "a": 8, "b": 2, "y": 1}, "x", "y")
    assert best_order(chain).order == (0, 1, 2) and best_order(chain).peak_bytes == 12  # step 0: x + a


def test_too_many_states_falls_back_to_greedy_never_worse_than_given() -> None:
    chosen = best_order(BRANCHES, state_limit=2)  # the exact search gives up: the greedy order is tried
    assert not chosen.proven and chosen.peak_bytes == 12 and chosen.order == (0, 2, 1, 3, 4)
    # when greedy is no better, the given order stays
    chain = Dataflow(((("x",), "a"), (("a",), "y")), {"x": 1, "a": 1, "y": 1}, "x", "y")
    assert best_order(chain, state_limit=0).order == (0, 1)


def _two_branch_model(tmp_path: Path) -> Path:
    """x 1x4x8x8 -> per branch a 1x1 conv to 32 channels (8 KiB) then one to 2 (512 B) -> concat, its nodes
    interleaved in the file (A1 B1 A2 B2)."""
    from onnx import helper

    rng = np.random.default_rng(5)
    weights = {f"w{b}1": rng.standard_normal((32, 4, 1, 1)).astype(np.float32) / 2 for b in "ab"}
    weights |= {f"w{b}2": rng.standard_normal((2, 32, 1, 1)).astype(np.float32) / 6 for b in "ab"}
    nodes = [helper.make_node("Conv", ["x", "wa1"], ["a1"], name="A1"),
             helper.make_node("Conv", ["x", "wb1"], ["b1"], name="B1"),
             helper.make_node("Conv", ["a1", "wa2"], ["a2"], name="A2"),
             helper.make_node("Conv", ["b1", "wb2"], ["b2"], name="B2"),
             helper.make_node("Concat", ["a2", "b2"], ["y"], name="cat", axis=1)]
    return save_onnx(tmp_path / "branches.onnx", nodes, [1, 4, 8, 8], [1, 4, 8, 8], weights)


@pytest.mark.slow  # 20-55 s on a busy 2-core machine: a build, a compile
def test_build_runs_branch_by_branch_and_matches_onnxruntime(tmp_path: Path) -> None:
    model = _two_branch_model(tmp_path)
    spec = write_target_spec(tmp_path, model, "host", costs="model", memory="64 KiB")
    spec.write_text(spec.read_text().replace('memory = "64 KiB"', 'memory = "64 KiB"\nobjective = "memory"', 1))
    built = build_and_compile(spec)
    lock = tomllib.loads((tmp_path / "taso.lock").read_text())
    assert [n["name"] for n in lock["node"]] == ["A1", "A2", "B1", "B2", "cat"]
    # x 1 KiB + a1 8 KiB + a2 512 B while A2 runs (and x + a2 + b1 while B1 runs): 9728 bytes, not the given
    # order's x + a1 + b1 = 17408
    assert built.report["lower_bound_bytes"] == 9728
    assert built.report["arena_bytes"] == 9728 and built.report["placement"]["status"] == "optimal"
    assert (lock["plan"]["placement"], lock["plan"]["placement_bound_bytes"]) == ("optimal", 9728)
    x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
    ours, _ = run_binary(built.binary, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))


# Workspace the tensors do not show: x (1), branch A: a1 = A1(x) 4, a2 = A2(a1) 1; branch B: b = B(x) 2, holding a
# workspace of 9 while it runs; y = cat(a2, b) 3.
#   By tensors, A first (0 1 2 3): A1 x+a1 5, A2 x+a1+a2 6, B x+a2+b 4, cat a2+b+y 6: 6 bytes; B first (2 0 1 3):
#   B x+b 3, A1 x+b+a1 7, A2 b+a1+a2 7: 7 bytes. With B's workspace, A first: B x+a2+b+9 13; B first: B x+b+9 12,
#   then 7: 12 bytes, so the size-only order is the wrong one.
WORKSPACE = Dataflow(
    steps=((("x",), "a1"), (("a1",), "a2"), (("x",), "b"), (("a2", "b"), "y")),
    sizes={"x": 1, "a1": 4, "a2": 1, "b": 2, "y": 3}, graph_input="x", graph_output="y")


def test_a_workspace_changes_the_best_order() -> None:
    assert best_order(WORKSPACE).order == (0, 1, 2, 3) and best_order(WORKSPACE).peak_bytes == 6
    assert peak(WORKSPACE, (2, 0, 1, 3)) == 7
    held = replace(WORKSPACE, workspace=(0, 0, 9, 0))
    assert peak(held, (0, 1, 2, 3)) == 13 and peak(held, (2, 0, 1, 3)) == 12
    chosen = best_order(held)
    assert chosen.order == (2, 0, 1, 3) and chosen.peak_bytes == 12 and chosen.given_peak_bytes == 13


def test_in_order_checks_the_names_and_the_dataflow(tmp_path: Path) -> None:
    from tasobuild.importer import import_onnx

    graph = import_onnx(_workspace_model(tmp_path))
    assert [n.name for n in graph.nodes] == ["A1", "A2", "B", "cat"]
    assert in_order(graph, ["A1", "A2", "B", "cat"]) is graph
    assert [n.name for n in in_order(graph, ["B", "A1", "A2", "cat"]).nodes] == ["B", "A1", "A2", "cat"]
    assert in_order(graph, ["A2", "A1", "B", "cat"]) is None  # A2 before its input exists
    assert in_order(graph, ["A1", "A2", "B"]) is None and in_order(graph, ["A1", "A2", "B", "cat", "cat"]) is None


def _workspace_model(tmp_path: Path) -> Path:
    """WORKSPACE at 1 KiB a unit: x 1x4x8x8 (1 KiB); A1 a 1x1 conv to 16 channels (4 KiB), A2 a 1x1 conv to 4
    (1 KiB); B a 3x3 conv (pad 1) to 8 channels (2 KiB), whose im2col workspace is 4 x 9 x 8 x 8 floats (9 KiB);
    concat to 12 channels (3 KiB). The file lists A1 A2 B cat."""
    from onnx import helper

    rng = np.random.default_rng(7)
    weights = {"wa1": rng.standard_normal((16, 4, 1, 1)).astype(np.float32) / 2,
               "wa2": rng.standard_normal((4, 16, 1, 1)).astype(np.float32) / 4,
               "wb": rng.standard_normal((8, 4, 3, 3)).astype(np.float32) / 6}
    nodes = [helper.make_node("Conv", ["x", "wa1"], ["a1"], name="A1"),
             helper.make_node("Conv", ["a1", "wa2"], ["a2"], name="A2"),
             helper.make_node("Conv", ["x", "wb"], ["b"], name="B", pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["a2", "b"], ["y"], name="cat", axis=1)]
    return save_onnx(tmp_path / "workspace.onnx", nodes, [1, 4, 8, 8], [1, 12, 8, 8], weights)


@pytest.mark.slow  # a build, a frozen rebuild, a compile
def test_the_order_is_chosen_with_the_plan_and_matches_onnxruntime(tmp_path: Path) -> None:
    """Only im2col can run B (9 KiB of workspace); the 1x1 GEMM packs its input (A1 1 KiB, A2 4 KiB of workspace).
    In the order by tensors (the file's): A1 x+a1+1 6, A2 x+a1+a2+4 10, B x+a2+b+9 13 KiB. B first: B x+b+9 12,
    A1 x+b+a1+1 8, A2 b+a1+a2+4 11, cat a2+b+y 6 KiB. The build runs B first, says so in the lock, and rebuilds it
    --frozen byte for byte."""
    model = _workspace_model(tmp_path)
    spec = write_target_spec(tmp_path, model, "host", costs="model", memory="64 KiB")
    allow = 'primitives = ["concat_copy_chw", "conv_1x1_gemm_chw", "conv_im2col_gemm_chw"]\n'
    spec.write_text(spec.read_text().replace('memory = "64 KiB"', 'memory = "64 KiB"\nobjective = "memory"', 1)
                    .replace("[optimizer]\n", "[optimizer]\n" + allow, 1))
    built = build_and_compile(spec)
    lock_text = (tmp_path / "taso.lock").read_text()
    lock = tomllib.loads(lock_text)
    assert [n["name"] for n in lock["node"]] == ["B", "A1", "A2", "cat"]
    assert lock["plan"]["order"] in ("fastest", "plan")
    assert [n["workspace_bytes"] for n in lock["node"]] == [9216, 1024, 4096, 0]
    assert built.report["lower_bound_bytes"] == 12 * 1024 and built.report["arena_bytes"] == 12 * 1024
    x = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)
    ours, _ = run_binary(built.binary, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))
    source = (tmp_path / "out" / "src" / "net.c").read_bytes()
    tasobuild("build", "-c", str(spec), "--frozen")  # the lock's order, not the tensors'
    assert (tmp_path / "taso.lock").read_text() == lock_text
    assert (tmp_path / "out" / "src" / "net.c").read_bytes() == source
