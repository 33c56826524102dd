"""Patch-based inference (tasobuild.tiling.patches): the geometry by hand, the recomputation identity on the NumPy
reference, and a network built with patch groups, compiled, run and matched against ONNX Runtime."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tasobuild.ir import Constant, Graph, Node, Shape, attrs
from tasobuild.tiling import KINDS
from tasobuild.tiling.patches import MemberPatch, output_lead, patch_conv, patch_copy_call, patch_grid, split
from tasobuild.tiling.rows import RowGeometry
from tests import ir_interpreter as reference
from tests.e2e import (
    assert_matches,
    build_and_compile,
    make_with,
    run_binary,
    save_onnx,
    tasobuild,
    write_spec,
    write_target_spec,
)
from tests.zoo.reference import run_onnxruntime

SAME3 = RowGeometry(k=3, stride=1, pad_top=1, dilation=1, in_h=8, out_h=8)  # 3x3, stride 1, pad 1: 8 -> 8
DOWN3 = RowGeometry(k=3, stride=2, pad_top=1, dilation=1, in_h=8, out_h=4)  # 3x3, stride 2, pad 1: 8 -> 4


def test_patches_are_the_receptive_fields_of_the_last_output_clipped_at_the_borders() -> None:
    grid = patch_grid([(SAME3, SAME3), (DOWN3, DOWN3)], (2, 2))
    # the last member's 4x4 output in 2x2 patches; its output rows [0, 2) read rows 0*2-1 .. 1*2-1+2 = -1..3, clipped
    # to [0, 4); rows [2, 4) read 3..7 = [3, 8); the first member computes those, reading one row more each way
    assert grid.patches[0] == (MemberPatch((0, 4), (0, 4), (0, 5), (0, 5)), MemberPatch((0, 2), (0, 2), (0, 4), (0, 4)))
    assert grid.patches[3] == (MemberPatch((3, 8), (3, 8), (2, 8), (2, 8)), MemberPatch((2, 4), (2, 4), (3, 8), (3, 8)))
    assert [p[1].cols for p in grid.patches] == [(0, 2), (2, 4), (0, 2), (2, 4)]  # row-major over the grid
    # the halo: the first member computes rows 3 (and columns 3) twice: 4x4 + 4x5 + 5x4 + 5x5 = 81 of 64 pixels
    assert (grid.computed(0), grid.computed(1)) == (81, 16)


def test_a_chains_output_may_start_the_most_a_patch_runs_ahead_of_later_patches_input_below_it() -> None:
    grid = patch_grid([(SAME3, SAME3), (DOWN3, DOWN3)], (2, 2))
    # one channel each way, 4 bytes a pixel. Later patches first read input pixels (0, 2), (2, 0), (2, 2): bytes 8,
    # 64, 72. Patch 0 has written output up to pixel (1, 2): 24 bytes, 16 past byte 8 still to be read; patch 1 up
    # to (1, 4): 32 < 64; patch 2 to (3, 2): 56 < 72; the last one reads nothing after it
    assert output_lead(grid, Shape(1, 8, 8), Shape(1, 4, 4)) == 16
    # eight output channels: patch 0's 6 pixels are 192 bytes, 184 past byte 8; patch 2's 14 pixels 448, 376 past 72
    assert output_lead(grid, Shape(1, 8, 8), Shape(8, 4, 4)) == 376


def test_a_grid_splits_an_axis_as_evenly_as_it_can() -> None:
    assert split(7, 3) == ((0, 2), (2, 4), (4, 7))
    assert split(48, 4) == ((0, 12), (12, 24), (24, 36), (36, 48))


def _conv(h: int, w: int, k: int, stride: int, pad: int, c: int = 3, m: int = 4, seed: int = 0
          ) -> tuple[Node, Graph]:
    rng = np.random.default_rng(seed)
    out_h, out_w = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    node = Node("c", "conv", ("x",), "y", ("W", "b"),
                attrs(kernel=(k, k), stride=(stride, stride), pads=(pad, pad, pad, pad), dilation=(1, 1), groups=1))
    constants = (Constant.of("W", rng.standard_normal((m, c, k, k)).astype(np.float32)),
                 Constant.of("b", rng.standard_normal(m).astype(np.float32)))
    return node, Graph((node,), (("x", Shape(c, h, w)), ("y", Shape(m, out_h, out_w))), constants, "x", "y", (), ())


@pytest.mark.parametrize("stride, rows, cols, pads, in_shape", [
    (2, (0, 2), (0, 3), (1, 1, 0, 0), (3, 4, 6)),  # the top-left corner keeps the top and left padding only
    (2, (2, 4), (3, 5), (0, 0, 0, 0), (3, 5, 5)),  # stride 2 reads rows 3-7, columns 5-9: the bottom pad never
    (1, (6, 8), (0, 4), (0, 1, 1, 0), (3, 3, 5)),  # bottom-left: the bottom padding as its size implies, the left
    (1, (2, 4), (3, 6), (0, 0, 0, 0), (3, 4, 5)),  # inside the image: no padding, the whole receptive field
])
def test_a_patch_is_a_convolution_of_its_own(stride: int, rows: tuple[int, int], cols: tuple[int, int],
                                             pads: tuple[int, int, int, int], in_shape: tuple[int, int, int]) -> None:
    node, graph = _conv(8, 10, 3, stride, 1)  # 3x3, pad 1: 8x10 -> 4x5 (stride 2) or 8x10
    patch, sub = patch_conv(node, graph, rows, cols)
    assert patch.attr("pads") == pads and sub.shape("x") == Shape(*in_shape)
    assert sub.shape("y") == Shape(4, rows[1] - rows[0], cols[1] - cols[0])


def test_patches_through_a_chain_recompute_the_whole_output() -> None:
    """On the NumPy reference: every patch computed from its own input region through both convolutions, each a
    convolution of its own (patch_conv), puts together the chain's whole output."""
    first, g1 = _conv(11, 9, 3, 1, 1, c=3, m=5, seed=1)
    second, g2 = _conv(11, 9, 3, 2, 1, c=5, m=4, seed=2)
    x = np.random.default_rng(3).standard_normal((3, 11, 9)).astype(np.float32)

    def run(node: Node, graph: Graph, data: np.ndarray) -> np.ndarray:
        return reference.conv(node, [data], [graph.const("W"), graph.const("b")])

    whole = run(second, g2, run(first, g1, x))
    geos = [(RowGeometry(3, 1, 1, 1, 11, 11), RowGeometry(3, 1, 1, 1, 9, 9)),
            (RowGeometry(3, 2, 1, 1, 11, 6), RowGeometry(3, 2, 1, 1, 9, 5))]
    out = np.full_like(whole, np.nan)
    for p in patch_grid(geos, (3, 2)).patches:
        (r0, r1), (c0, c1) = p[0].in_rows, p[0].in_cols
        mid = run(*patch_conv(first, g1, p[0].rows, p[0].cols), x[:, r0:r1, c0:c1])
        assert (p[1].in_rows, p[1].in_cols) == (p[0].rows, p[0].cols)  # the second reads what the first computed
        part = run(*patch_conv(second, g2, p[1].rows, p[1].cols), mid)
        out[:, p[1].rows[0]:p[1].rows[1], p[1].cols[0]:p[1].cols[1]] = part
    np.testing.assert_allclose(out, whole, rtol=1e-5, atol=1e-5)


def test_a_patch_copy_names_the_bytes_it_touches() -> None:
    # 3 rows of 2 pixels x 4 channels out of a 6-pixel-wide tensor: rows 24 floats apart, 8 floats each
    call = patch_copy_call(3, 8, 24, 8)
    assert dict(call.params) == {"rows": 3, "row_floats": 8, "in_stride": 24, "out_stride": 8}
    assert dict(call.buffer_bytes) == {"in0": (2 * 24 + 8) * 4, "out": 24 * 4}


def test_patches_is_a_kind() -> None:
    assert [k.name for k in KINDS] == ["rows", "channels", "patches"]


# ---- a built network ----

def stem_model(path: Path) -> Path:
    """x (3x40x36) -> 3x3 conv to 32, stride 2, ReLU -> 3x3 depthwise, ReLU -> 1x1 conv to 8: an MCUNet-like first
    stage, at a size whose patches split unevenly (20x18 outputs)."""
    from onnx import helper

    rng = np.random.default_rng(5)

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    weights = {"w1": rand(32, 3, 3, 3), "b1": rand(32), "w2": rand(32, 1, 3, 3), "b2": rand(32),
               "w3": rand(8, 32, 1, 1), "b3": rand(8)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="stem", strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["cr"]),
             helper.make_node("Conv", ["cr", "w2", "b2"], ["d"], name="depthwise", group=32, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["d"], ["dr"]),
             helper.make_node("Conv", ["dr", "w3", "b3"], ["y"], name="project")]
    return save_onnx(path, nodes, [1, 3, 40, 36], [1, 8, 20, 18], weights)


def build_with_groups(spec: Path, keep: Callable[[str], bool]) -> tuple[dict[str, str], Path]:
    """The smallest plan (objective memory) with only the fused groups `keep` takes, through the pipeline's stages,
    rendered next to the spec and compiled with -Wall -Werror: (node -> its group's name, the binary)."""
    chosen, out = render_with_groups(spec, keep)
    return chosen, make_with(out, ["-Wall", "-Wextra", "-Werror"])


def render_with_groups(spec: Path, keep: Callable[[str], bool]) -> tuple[dict[str, str], Path]:
    """The smallest plan (objective memory) with only the fused groups `keep` takes, through the pipeline's stages,
    rendered into the spec's folder's out/: (node -> its group's name, that folder)."""
    from tasobuild.decide import decide, to_problem
    from tasobuild.memory import check_no_overlap
    from tasobuild.pipeline import Planned, Solve, load, price, program_of, render

    inputs = load(spec)
    priced = price(inputs, Solve(inputs.spec, inputs.target))
    groups = tuple(g for g in priced.groups if keep(g.name))
    problem = to_problem(inputs.graph, priced.nodes, priced.transforms, priced.costed.costs, groups)
    decision = decide(problem, 2**32, "memory", None, inputs.spec.optimizer.time_limit / 1000.0)
    plan = decision.plan
    check_no_overlap(plan.buffers(), decision.arena, plan.regions, plan.overlaps)  # decide checks too: say so here
    planned = Planned(inputs.spec, inputs.target, inputs.graph, priced.nodes, priced.transforms, priced.costed,
                      decision, groups)
    out = spec.parent / "out"
    for path, data in render(program_of(planned)).items():
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_bytes(data)
    return {name: c.group for name, c in plan.choices if c.group}, out


@pytest.mark.parametrize("grid", ["2x2", "3x3", "4x4"])
def test_a_patch_group_runs_as_onnx_runtime_does(tmp_path: Path, grid: str) -> None:
    model = stem_model(tmp_path / "stem.onnx")
    spec = write_spec(tmp_path, model, extra="tiling = true\n")
    chosen, binary = build_with_groups(spec, lambda name: name.split(" ")[1:3] == ["patches", grid])
    # the smallest plan runs the whole stem as one group of that grid: its 20x18x32 tensors never exist whole
    assert set(chosen.values()) in ({f"l0-l2 patches {grid}"}, {f"l0-l2 patches {grid} lean"}), chosen
    source = (tmp_path / "out" / "src" / "net.c").read_text()
    assert "patch-based inference" in source and "tb_copy_patch" in source
    x = np.random.default_rng(0).standard_normal((1, 3, 40, 36)).astype(np.float32)
    ours, _ = run_binary(binary, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))


def test_the_solver_picks_patches_where_they_win_and_plan_names_them(tmp_path: Path) -> None:
    """With every kind on offer (rows, channels, patches), the stem's smallest plan is a 4x4 patch group. Built by
    the command line, compiled, matched against ONNX Runtime, named in `plan`, and rebuilt from the lock alone."""
    model = stem_model(tmp_path / "stem.onnx")
    spec = write_spec(tmp_path, model, extra="tiling = true\n")
    failed = tasobuild("plan", "-c", str(spec), "--memory", "1B", check=False)
    smallest = int(re.search(r"smallest budget with a plan is (\d+) bytes", failed.stderr).group(1))
    spec = write_spec(tmp_path, model, memory=f"{smallest} B", extra="tiling = true\n")
    built = build_and_compile(spec)
    assert {n["tiling"] for n in built.report["nodes"]} == {"l0-l2 patches 4x4"}
    assert built.report["arena_bytes"] == smallest
    plan = tasobuild("plan", "-c", str(spec), "--json")
    assert {n["tiling"] for n in json.loads(plan.stdout)["nodes"]} == {"l0-l2 patches 4x4"}
    # the frontier's smallest point says so too, and that the group's output runs on over its input
    pareto = json.loads(tasobuild("pareto", "-c", str(spec), "--json").stdout)
    assert "1 fused group (l0-l2 patches 4x4 over its input)" in pareto["points"][0]["what"]
    x = np.random.default_rng(1).standard_normal((1, 3, 40, 36)).astype(np.float32)
    ours, _ = run_binary(built.binary, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))
    again = json.loads(tasobuild("build", "-c", str(spec), "--frozen", "--json").stdout)
    assert again["files"]["written"] == [] and again["arena_bytes"] == smallest


def test_a_patch_groups_workspace_is_exact(tmp_path: Path) -> None:
    """The stem's 2x2 grid, by hand. The 20x18 output in patches of rows 0-9 / 10-19 and columns 0-8 / 9-17. The
    1x1 project reads its own patch; the depthwise, one pixel around it clipped at the border (11x10 pixels at
    most); the stride-2 stem reads rows 2r-1 .. 2r+1: for the last patch rows 17-39 and columns 15-35 (23x21)."""
    from tasobuild.candidates import node_candidates
    from tasobuild.costs.cache import Cost
    from tasobuild.importer import import_onnx
    from tasobuild.tiling.patches import fusable

    graph = import_onnx(stem_model(tmp_path / "stem.onnx"))
    nodes = node_candidates(graph)
    unit = Cost(1.0, 0.0, 1, "measured")
    costs = {c.key(): unit for nc in nodes for cand in nc.options for c in cand.calls}
    option = next(o for o in fusable(graph, nodes, costs, grids=((2, 2),)) if o.name == "l0-l2 patches 2x2")
    group = option.group(graph, {c.key(): unit for c in option.calls()})
    # input patch 23x21x3 floats, the stem's 11x10x32, the depthwise's 10x9x32, the output patch 10x9x8; the
    # depthwise writes over the input patch (dead once the stem ran), the project over the stem's
    assert group.workspace.buffer_bytes == (max(23 * 21 * 3, 10 * 9 * 32) * 4, max(11 * 10 * 32, 10 * 9 * 8) * 4)
    # the recomputed halo: the stem computes 4 x 110 pixels of its 360, the depthwise and the project none again
    assert [option.grid.computed(j) for j in range(3)] == [440, 360, 360]
    # every patch is narrower than its tensor: each is copied in and out, and costed with the first and last member
    assert all(c is not None for c in (*option.copies_in, *option.copies_out))
    assert group.member_ms == (4 + 4, 4, 4 + 4)


# ---- int8 ----

@pytest.fixture(scope="module")
def int8_stem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stem quantised by onnxruntime (QDQ, per-channel int8 weights, int8 activations) with an int8 input, as
    TFLite's int8 networks take theirs: three int8 convolutions (l0-l2), then the output's dequantize."""
    from tests.int8_models import quantise, with_int8_input

    folder = tmp_path_factory.mktemp("int8_stem")
    model = with_int8_input(quantise(stem_model(folder / "stem.onnx"), folder / "stem_qdq.onnx"),
                            folder / "stem_int8.onnx")
    assert model is not None
    return model


def test_an_int8_chains_patches_are_bytes_by_hand(int8_stem: Path) -> None:
    """The int8 stem's 2x2 grid, by hand (the float one's geometry, test_a_patch_groups_workspace_is_exact): every
    buffer, copy and offset in bytes, one per value; each patch an int8 convolution with its node's quantisation,
    padded only where it meets the image's border (with the input zero point, by the kernel, as untiled)."""
    from tasobuild.candidates import node_candidates
    from tasobuild.costs.cache import Cost
    from tasobuild.importer import import_onnx
    from tasobuild.tiling.patches import fusable

    graph = import_onnx(int8_stem)
    assert [n.op for n in graph.nodes] == ["qconv", "qconv", "qconv", "dequantize"]
    stem = graph.nodes[0]
    x_quant = graph.quant_of(stem.inputs[0])
    assert x_quant.zero_point != 0  # so padding with anything but the zero point would show in the outputs
    nodes = node_candidates(graph)
    unit = Cost(1.0, 0.0, 1, "measured")
    costs = {c.key(): unit for nc in nodes for cand in nc.options for c in cand.calls}
    option = next(o for o in fusable(graph, nodes, costs, grids=((2, 2),)) if o.name == "l0-l2 patches 2x2")
    group = option.group(graph, {c.key(): unit for c in option.calls()})
    # input patch 23x21x3 bytes, the stem's 11x10x32, the depthwise's 10x9x32, the output patch 10x9x8, in turns
    assert group.workspace.buffer_bytes == (max(23 * 21 * 3, 10 * 9 * 32), max(11 * 10 * 32, 10 * 9 * 8))
    # patch 0 (output rows 0-9, columns 0-8): the depthwise reads rows 0-10, columns 0-9 of the stem's output, the
    # stem input rows 0-21, columns 0-19 of the 40x36x3 input: 22 rows of 60 bytes, 108 apart, into rows 60 apart
    copy_in, copy_out = option.copies_in[0], option.copies_out[0]
    assert copy_in is not None and copy_out is not None
    assert (copy_in.function, copy_in.arg_types) == ("tb_q8_copy_patch", ("int8_t", "int8_t"))
    assert dict(copy_in.params) == {"rows": 22, "row_bytes": 60, "in_stride": 108, "out_stride": 60}
    assert dict(copy_in.buffer_bytes) == {"in0": 21 * 108 + 60, "out": 22 * 60}
    # its 10x9x8 output patch back into the 20x18x8 output: 10 rows of 72 bytes, 144 apart
    assert dict(copy_out.params) == {"rows": 10, "row_bytes": 72, "in_stride": 72, "out_stride": 144}
    # the stem's patch calls: the corner keeps the top and left padding, the last patch (input rows 17-39,
    # columns 15-35) none on those sides; each reads and writes with the node's zero points
    first, last = (dict(option.options[0][0].calls[k].params) for k in (0, 3))
    assert (first["pad_top"], first["pad_left"], first["in_h"], first["in_w"]) == (1, 1, 22, 20)
    assert (last["pad_top"], last["pad_left"], last["in_h"], last["in_w"]) == (0, 0, 23, 21)
    assert first["in_zp"] == last["in_zp"] == x_quant.zero_point
    assert first["out_zp"] == graph.quant_of(stem.output).zero_point
    _, sub = patch_conv(stem, graph, (0, 10), (0, 9))
    assert sub.quant_of(stem.inputs[0]) == x_quant and sub.dtype(stem.output) == "int8"
    assert group.kernel_sources == ("q8_ops.c", "tb_q8.h", "tb_q8_dot.h", "tb_q8_dot_arm.h")


def test_an_int8_chains_output_lead_is_in_bytes() -> None:
    """test_a_chains_output_may_start_the_most_a_patch_runs_ahead_of_later_patches_input_below_it at one byte a
    value: later patches first read input bytes 2, 16 and 18; patch 0 has written 6 bytes (one channel), 48 (eight)."""
    grid = patch_grid([(SAME3, SAME3), (DOWN3, DOWN3)], (2, 2))
    assert output_lead(grid, Shape(1, 8, 8), Shape(1, 4, 4), 1, 1) == 6 - 2
    # eight output channels: patch 2's 14 pixels are 112 bytes, 94 past byte 18
    assert output_lead(grid, Shape(1, 8, 8), Shape(8, 4, 4), 1, 1) == 112 - 18


def test_an_int8_patch_copy_moves_bytes() -> None:
    call = patch_copy_call(3, 8, 24, 8, "int8")
    assert (call.function, call.struct) == ("tb_q8_copy_patch", "tb_q8_patch_copy")
    assert dict(call.buffer_bytes) == {"in0": 2 * 24 + 8, "out": 24}


def _int8_stem_outputs(model: Path, folder: Path, binary: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(int8 input, the program's output) for three seeded int8 inputs, each fed as the runner's float file
    ((q - zp) * scale, which quantises back to q exactly)."""
    from tasobuild.importer import import_onnx

    x_quant = import_onnx(model).quant_of("x")
    rng = np.random.default_rng(7)
    outputs = []
    for _ in range(3):
        q = rng.integers(-128, 128, (1, 3, 40, 36), dtype=np.int8)
        x = ((q.astype(np.float32) - x_quant.zero_point) * np.float32(x_quant.scale)).astype(np.float32)
        outputs.append((q, run_binary(binary, x, folder)[0]))
    return outputs


@pytest.fixture(scope="module")
def int8_stem_untiled(int8_stem: Path, tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """The untiled int8 plan's outputs (_int8_stem_outputs)."""
    folder = tmp_path_factory.mktemp("int8_untiled")
    spec = write_target_spec(folder, int8_stem, "host", costs="model")
    return [y for _, y in _int8_stem_outputs(int8_stem, folder, build_and_compile(spec).binary)]


@pytest.mark.parametrize("grid", ["2x2", "3x3", "4x4"])
def test_an_int8_patch_group_is_bit_exact(int8_stem: Path, int8_stem_untiled: list[np.ndarray], tmp_path: Path,
                                          grid: str) -> None:
    """The int8 stem run as one patch group of each grid, compiled warning-free: its outputs are the untiled int8
    plan's and TFLite's reference kernels' (tests/q8_interpreter.py) bit for bit."""
    from tasobuild.importer import import_onnx
    from tests import q8_interpreter

    spec = write_target_spec(tmp_path, int8_stem, "host", costs="model", extra="tiling = true\n")
    chosen, binary = build_with_groups(spec, lambda name: name.split(" ")[:3] == ["l0-l2", "patches", grid])
    assert set(chosen.values()) in ({f"l0-l2 patches {grid}"}, {f"l0-l2 patches {grid} lean"}), chosen
    assert len(chosen) == 3
    source = (tmp_path / "out" / "src" / "net.c").read_text()
    assert "patch-based inference" in source and "tb_q8_copy_patch" in source and "tb_copy_patch(" not in source
    graph = import_onnx(int8_stem)
    for (q, ours), untiled in zip(_int8_stem_outputs(int8_stem, tmp_path, binary), int8_stem_untiled):
        assert np.array_equal(ours, untiled)
        assert np.array_equal(ours, q8_interpreter.run(graph, q).reshape(-1))


def test_an_int8_patch_group_runs_on_a_cortex_m4(int8_stem: Path, tmp_path: Path) -> None:
    """The int8 stem's 4x4 patch group cross-built for the Cortex-M4 (warning-free), run by `make run` under
    qemu-system-arm on int8 inputs: TFLite's reference kernels' outputs bit for bit."""
    from tasobuild.importer import import_onnx
    from tests import q8_interpreter
    from tests.test_embedded import make, missing_tools, target

    board = target("cortex-m4")
    if missing_tools(board):
        pytest.skip(f"cortex-m4 needs {', '.join(missing_tools(board))}")
    spec = write_target_spec(tmp_path, int8_stem, "cortex-m4", costs="model", extra="tiling = true\n")
    chosen, out = render_with_groups(spec, lambda name: name.split(" ")[:3] == ["l0-l2", "patches", "4x4"])
    assert len(chosen) == 3 and "tb_q8_copy_patch" in (out / "src" / "net.c").read_text()
    make(out)
    graph = import_onnx(int8_stem)
    for seed in range(2):
        q = np.random.default_rng(seed).integers(-128, 128, (1, 3, 40, 36), dtype=np.int8)
        q.tofile(out / "in.bin")
        (out / "out.bin").unlink(missing_ok=True)
        done = subprocess.run(["make", "-s", "-C", str(out), "run"], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        on_board = np.fromfile(out / "out.bin", "<f4")
        assert np.array_equal(on_board, q8_interpreter.run(graph, q).reshape(-1))


def test_int8_mobilenet_v2_in_patches_is_bit_exact_with_tflite(tmp_path: Path) -> None:
    """MobileNetV2-0.35 as TensorFlow quantised it (tests/fixtures/int8), its smallest plan with patch groups only:
    its first blocks run in patches (int8 halos recomputed), compiled warning-free, the outputs TFLite's reference
    kernels' bit for bit on every reference input, in less memory than TFLM's arena."""
    from tests.int8_oracle import assert_bit_exact
    from tests.zoo.int8 import tflite_fixture
    from tests.zoo.tflm_arena import tflm_arena_head

    fixture = tflite_fixture("mobilenet_v2_035")
    spec = write_target_spec(tmp_path, fixture.onnx, "host", costs="model", extra="tiling = true\n")
    chosen, binary = build_with_groups(spec, lambda name: " patches " in name)
    assert {g.split(" ")[0] for g in chosen.values()} >= {"l1-l3"}, chosen  # the first block, at least
    header = (tmp_path / "out" / "include" / "net.h").read_text()
    arena = int(re.search(r"NET_ARENA_BYTES\s+(\d+)", header).group(1))
    assert arena < tflm_arena_head(fixture.tflite) / 2
    for k, (q, tflite) in enumerate(zip(fixture.inputs, fixture.outputs)):
        x = ((q.astype(np.float32) - fixture.input_zero_point) * np.float32(fixture.input_scale)).astype(np.float32)
        y = run_binary(binary, x, tmp_path)[0]
        got = (np.round(y / np.float32(fixture.output_scale)) + fixture.output_zero_point).astype(np.int8)
        try:
            assert_bit_exact(got.reshape(tflite.shape), tflite)
        except AssertionError as error:
            raise AssertionError(f"reference input {k}: {error}") from None
