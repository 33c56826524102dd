"""Fused tiling: rows (tasobuild.tiling.rows: the band geometry by hand) and channels (tasobuild.tiling.channels:
the slices' identity); the solver's all-or-none groups by hand; networks built under budgets no untiled plan meets,
checked against ONNX Runtime."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tasobuild.errors import UserError
from tasobuild.ir import Graph, Node, Shape, attrs
from tasobuild.memory import Overlap
from tasobuild.solve import Choice, Problem, ProblemNode, ProblemTensor, evaluate, greedy, min_peak_bytes, solve
from tasobuild.tiling import KINDS
from tasobuild.tiling.base import Workspace
from tasobuild.tiling.rows import (
    MemberBand,
    RowGeometry,
    band_conv,
    band_runs,
    band_schedule,
    flipped,
    output_lead,
    output_rise,
    upward_schedule,
)
from tests.e2e import (
    assert_matches,
    build_and_compile,
    inverted_residual_model,
    make_with,
    run_binary,
    save_onnx,
    tasobuild,
    write_spec,
    write_target_spec,
)
from tests.zoo import ensure_model
from tests.zoo.reference import random_input, run_onnxruntime

# MobileNetV2's second block at 112x112: 1x1 expand, 3x3 depthwise stride 2 (112 -> 56 rows), 1x1 project.
EXPAND = RowGeometry(k=1, stride=1, pad_top=0, dilation=1, in_h=112, out_h=112)
DEPTHWISE_S2 = RowGeometry(k=3, stride=2, pad_top=1, dilation=1, in_h=112, out_h=56)
PROJECT = RowGeometry(k=1, stride=1, pad_top=0, dilation=1, in_h=56, out_h=56)


def test_bands_of_an_inverted_residual_block() -> None:
    s = band_schedule([EXPAND, DEPTHWISE_S2, PROJECT], rows=4)
    assert s is not None and len(s.bands) == 14
    # depthwise rows 0-3 read expanded rows 0..7 (row -1 is padding); the project reads what the depthwise made
    assert s.bands[0] == (MemberBand((0, 8), 0, 0, (0, 0)), MemberBand((0, 4), 0, 0, (0, 0)),
                          MemberBand((0, 4), 0, 0, (0, 0)))
    # depthwise rows 4-7 read expanded rows 7..15: row 7 is kept (moved from the window's row 7 to its top), 8..15
    # are new; the depthwise window holds rows 4-7 only (the 1x1 project needs no halo)
    assert s.bands[1] == (MemberBand((8, 16), 0, 7, (7, 1)), MemberBand((4, 8), 7, 4, (0, 0)),
                          MemberBand((4, 8), 4, 0, (0, 0)))
    assert s.bands[2][0] == MemberBand((16, 24), 0, 15, (8, 1))  # window held 7..15: row 15 is its 9th
    assert s.bands[13] == (MemberBand((104, 112), 0, 103, (8, 1)), MemberBand((52, 56), 103, 52, (0, 0)),
                           MemberBand((52, 56), 52, 0, (0, 0)))
    assert s.window_rows == (9, 4)  # 1 kept + 8 new expanded rows; 4 depthwise rows


def test_a_band_that_keeps_more_rows_than_it_advances_is_refused() -> None:
    # stride 1: the second band keeps 2 rows of the 3 the first made, moving row 1 onto row 0: they overlap
    depthwise_s1 = RowGeometry(k=3, stride=1, pad_top=1, dilation=1, in_h=8, out_h=8)
    assert band_schedule([RowGeometry(1, 1, 0, 1, 8, 8), depthwise_s1], rows=2) is None
    s = band_schedule([RowGeometry(1, 1, 0, 1, 8, 8), depthwise_s1], rows=4)
    assert s is not None and s.window_rows == (5,)  # rows 3..7 for output rows 4..7 (row 8 is padding)
    assert s.bands[1][0] == MemberBand((5, 8), 0, 3, (3, 2))


def test_a_chains_output_may_start_the_most_it_runs_ahead_of_the_input_below_it() -> None:
    # 1x1 (8 rows) -> 3x3 stride 2 (4 rows), bands of 2: band 0 reads input rows 0-3 and writes output rows 0-1,
    # band 1 reads rows 4-7 and writes rows 2-3.
    s = band_schedule([RowGeometry(1, 1, 0, 1, 8, 8), RowGeometry(3, 2, 1, 1, 8, 4)], rows=2)
    assert s is not None and [b[0].rows for b in s.bands] == [(0, 4), (4, 8)]
    first = RowGeometry(1, 1, 0, 1, 8, 8)
    # 80-byte input rows, 72-byte output rows: band 0 writes 144 bytes while input row 0 is still to be read;
    # band 1 writes up to 288 with rows 0-3 (320 bytes) done: 144 below the input is far enough
    assert output_lead(s, first, 80, 72) == 144
    assert output_lead(s, first, 80, 200) == 480  # wider output rows: band 1's 800 bytes over 320 done with


def test_bottom_to_top_a_3x3_stride_1_band_needs_the_mirror_of_its_lead() -> None:
    # 8 rows, 3x3, pad 1, bands of 2, rows of R = 40 bytes in and out. Top to bottom, band [a, a+2) reads from row
    # a-1 and writes up to a+2: 3 rows ahead, lead 3R. Bottom to top, bands [6,8), [4,6), [2,4), [0,2): band [a, a+2)
    # reads up to row a+3 (row 8 is padding) and writes from row a: the output starts 3R above the input, and
    # the pair spans 8R + 3R either way.
    conv = RowGeometry(k=3, stride=1, pad_top=1, dilation=1, in_h=8, out_h=8)
    assert flipped(conv) == conv
    down, up = band_schedule([conv], 2), upward_schedule([conv], 2)
    assert down is not None and up is not None
    assert [b[0].rows for b in up.bands] == [(0, 2), (2, 4), (4, 6), (6, 8)]  # counted from the bottom
    assert output_lead(down, conv, 40, 40) == 120 and output_rise(up, conv, 8, 40, 40) == 120
    pair = Overlap("x", "y", 0, 128, 128)
    assert pair.span(320, 320) == 448 == Overlap("x", "y", 0, 128).span(320, 320)


def test_bottom_to_top_a_stride_2_band_starts_its_output_above_the_input_it_still_reads() -> None:
    # 8 -> 4 rows, 3x3 stride 2, pad top 1 (bottom 0: ONNX's SAME_LOWER-like 8 = 2*3 + 3 - 1), bands of 2, rows of
    # R bytes both. Flipped, its pad is 0 on top (the bottom): (4-1)*2 + 3 - 8 - 1.
    conv = RowGeometry(k=3, stride=2, pad_top=1, dilation=1, in_h=8, out_h=4)
    assert flipped(conv) == RowGeometry(3, 2, 0, 1, 8, 4)
    down, up = band_schedule([conv], 2), upward_schedule([conv], 2)
    assert down is not None and up is not None
    # top to bottom: band [0,2) reads rows 0-2 and writes 2R; band [2,4) reads from row 3, writes 4R: lead 2R
    assert output_lead(down, conv, 64, 64) == 128
    # bottom to top: band [2,4) reads up to row 8 and writes from row 2 (8R - 2R); band [0,2) up to row 4 (4R)
    assert output_rise(up, conv, 4, 64, 64) == 6 * 64
    # either way the pair spans 10R (8R of input, the 4R output 2R below it or 6R above its start)
    assert Overlap("x", "y", 0, 128, 384).span(512, 256) == 640 == Overlap("x", "y", 0, 128).span(512, 256)


def _conv(h: int, k: int, stride: int, pad: int) -> tuple[Node, Graph]:
    out_h = (h + 2 * pad - k) // stride + 1
    node = Node("c", "conv", ("x",), "y", ("W", "b"),
                attrs(kernel=(k, k), stride=(stride, stride), pads=(pad, pad, pad, pad), dilation=(1, 1), groups=1))
    graph = Graph((node,), (("x", Shape(4, h, 5)), ("y", Shape(6, out_h, (5 + 2 * pad - k) // stride + 1))), (),
                  "x", "y", (), ())
    return node, graph


@pytest.mark.parametrize("h, k, stride, pad, rows, expect", [
    (112, 3, 2, 1, (0, 4), (0, 8, (1, 0))),  # the first band keeps the top padding
    (112, 3, 2, 1, (4, 8), (7, 9, (0, 0))),
    (8, 3, 1, 1, (6, 8), (5, 3, (0, 1))),  # the last band keeps the bottom padding
    (9, 3, 2, 0, (1, 3), (2, 5, (0, 0))),
])
def test_band_conv_is_a_convolution_of_its_own(h: int, k: int, stride: int, pad: int, rows: tuple[int, int],
                                               expect: tuple[int, int, tuple[int, int]]) -> None:
    node, graph = _conv(h, k, stride, pad)
    band, sub, first = band_conv(node, graph, *rows)
    top, _, bottom, _ = band.attr("pads")
    assert (first, sub.shape("x").h, (top, bottom)) == expect
    assert sub.shape("y").h == rows[1] - rows[0] == (sub.shape("x").h + top + bottom - k) // stride + 1


def test_bands_with_the_same_calls_and_steady_strides_become_one_loop() -> None:
    call = object()
    bodies = [((call, (("in0", 100 + 10 * b), ("w0", "net_w"))),) for b in range(5)]
    bodies[0] = ((call, (("in0", 0), ("w0", "net_w"))),)  # the first band starts elsewhere
    assert band_runs(bodies) == [(0, 1), (1, 4)]


def test_a_groups_workspace_is_its_buffers_end_to_end_then_the_scratch() -> None:
    ws = Workspace((100, 64, 1), scratch_bytes=10)  # each buffer starts on a cache line
    assert [ws.offset(j) for j in range(3)] == [0, 128, 192] and (ws.scratch_offset, ws.total_bytes) == (256, 266)


def test_kinds_have_names_of_their_own() -> None:
    """tiling.groups hands each kind the groups of the options that name it."""
    assert len({kind.name for kind in KINDS}) == len(KINDS) == 3


# ---- the solver: a group is all or none ----

def _pair() -> Problem:
    """in (100 B) -> A -> a (1000 B) -> B -> out (100 B). Fused, `a` never exists whole: the group's last step holds
    in, out and its 200-byte workspace (the window)."""
    nodes = (
        ProblemNode("A", ("in",), "a", (Choice("conv", "HWC", "HWC", 1.0, 0),
                                        Choice("conv", "HWC", "HWC", 1.5, 0, group="g", deferred=True))),
        ProblemNode("B", ("a",), "out", (Choice("pw", "HWC", "HWC", 1.0, 0),
                                         Choice("pw", "HWC", "HWC", 1.5, 200, group="g"))),
    )
    sizes = {"in": 100, "a": 1000, "out": 100}
    return Problem(nodes, {t: ProblemTensor(t, b) for t, b in sizes.items()}, "in", "HWC", "out", "HWC", {},
                   alignment=1)


def test_a_group_trades_time_for_memory() -> None:
    p = _pair()
    fast = solve(p, None)
    assert [c.group for _, c in fast.choices] == ["", ""] and fast.time_ns == 2_000_000
    assert fast.step_bytes == (1100, 1100, 100)
    tiled = solve(p, 500)
    assert [c.group for _, c in tiled.choices] == ["g", "g"] and tiled.time_ns == 3_000_000
    assert tiled.step_bytes == (100, 400, 100)  # `in` lives on through B, where the band loop reads it
    assert min_peak_bytes(p) == 400
    with pytest.raises(UserError, match="smallest budget with a plan is 400 bytes"):
        solve(p, 399)
    assert [c.group for _, c in greedy(p).choices] == ["", ""]  # the per-layer baseline is untiled


def test_a_groups_output_over_its_input_saves_what_they_share_at_its_step() -> None:
    """in (1000 B) -> A -> a (1000 B) -> B -> out (600 B), fused with the output 100 bytes below the input: at B's
    step in and out span 1100 bytes, not 1600."""
    base = _pair()
    last = base.nodes[1]
    lead = replace(last, choices=(last.choices[0], replace(last.choices[1], output_lead=100)))
    sizes = {"in": 1000, "a": 1000, "out": 600}
    p = replace(base, nodes=(base.nodes[0], lead), tensors={t: ProblemTensor(t, b) for t, b in sizes.items()})
    fused = evaluate(p, [p.nodes[0].choices[1], p.nodes[1].choices[1]])
    assert fused.step_bytes == (1000, 1100 + 200, 600)
    assert fused.overlaps == (Overlap("in:HWC", "out:HWC", 1, 100),)
    assert min_peak_bytes(p) == 1300 and [c.group for _, c in solve(p, 1300).choices] == ["g", "g"]
    with pytest.raises(UserError, match="smallest budget with a plan is 1300 bytes"):
        solve(p, 1299)
    with pytest.raises(ValueError, match="an output lead needs a group's last"):
        replace(p, nodes=(replace(p.nodes[0], choices=(replace(p.nodes[0].choices[1], output_lead=100),)),
                          p.nodes[1]))


def test_a_group_picked_by_some_members_only_is_no_plan() -> None:
    p = _pair()
    with pytest.raises(ValueError, match="fused group 'g' is picked by some of its members only"):
        evaluate(p, [p.nodes[0].choices[1], p.nodes[1].choices[0]])


# ---- a real network ----

def _smallest_budget(spec: Path) -> int:
    failed = tasobuild("plan", "-c", str(spec), "--memory", "1B", check=False)
    return int(re.search(r"smallest budget with a plan is (\d+) bytes", failed.stderr).group(1))


def test_tiling_meets_a_budget_no_untiled_plan_meets(tmp_path: Path) -> None:
    """Predicted costs: which budgets have a plan does not depend on them (measured, the tiled build timed every
    group's run: 123 s of CI's hour)."""
    model = ensure_model("mobilenet_v1_vww_tf")
    untiled = _smallest_budget(write_target_spec(tmp_path, model, "host"))
    spec = write_target_spec(tmp_path, model, "host", memory=f"{untiled - 1} B", extra="tiling = true\n")
    built = build_and_compile(spec)
    assert built.report["arena_bytes"] <= untiled - 1
    fused = [n for n in built.report["nodes"] if n["tiling"]]
    assert fused and all(n["layout_in"] == n["layout_out"] == "HWC" for n in fused)
    assert "fused row tiling" in (built.out_dir / "src" / "net.c").read_text()
    x = random_input(model, seed=0)
    ours, _ = run_binary(built.binary, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))
    # the lock records the tiling: --frozen rebuilds the same tree without solving
    again = json.loads(tasobuild("build", "-c", str(spec), "--frozen", "--json").stdout)
    assert again["files"]["written"] == [] and again["arena_bytes"] == built.report["arena_bytes"]


def test_the_smallest_tiled_plan_places_at_its_peak_with_chains_run_both_ways(tmp_path: Path) -> None:
    """Float MobileNetV1-0.25, objective memory, tiled: its row chains follow one another, each output over its
    input; top to bottom only the offsets stepped down chain after chain (bench/tiling.py's profiled plan: 144,384
    B for a 125,952 B peak; with these predicted costs decide.unchained found another plan of that peak). Run
    bottom to top where the placement puts the output above the input, the arena is the plan's peak, and the
    program still matches ONNX Runtime."""
    model = ensure_model("mobilenet_v1_vww_tf")
    spec = write_target_spec(tmp_path, model, "host", memory="64 MiB", extra="tiling = true\n")
    spec.write_text(spec.read_text().replace('memory = "64 MiB"\n', 'memory = "64 MiB"\nobjective = "memory"\n'))
    built = build_and_compile(spec)
    assert built.report["arena_bytes"] == built.report["lower_bound_bytes"]
    assert "bottom to top" in (built.out_dir / "src" / "net.c").read_text()
    x = random_input(model, seed=0)
    ours, _ = run_binary(built.binary, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))


def test_an_output_overlaps_an_input_only_the_group_reads() -> None:
    from tasobuild.candidates import node_candidates
    from tasobuild.decide import overlap_allowed
    from tasobuild.importer import import_onnx
    from tasobuild.tiling.rows import chains

    def allowed(name: str) -> dict[str, bool]:
        graph = import_onnx(ensure_model(name))
        nodes = node_candidates(graph)
        return {graph.nodes[run[0]].name: overlap_allowed(graph, nodes, run) for run in chains(graph)}

    # MobileNetV1: the stem reads the model's input through a transpose view, nothing else reads either
    v1 = allowed("mobilenet_v1_vww_tf")
    assert v1["mobilenet_v1_vww_1/stem_conv_1/BiasAdd"] and all(v1.values())
    # ResNet-8: each block's first conv reads a tensor the residual add reads too; it lives past the group
    resnet = allowed("resnet8_tf")
    assert resnet and not any(resnet.values())


# TensorFlow Lite Micro's arenas (tests/zoo/tflm_arena.py on the TensorFlow exports; issue 16's table).
TFLM_ARENA = {"mobilenet_v1_vww_tf": 294_912, "mobilenet_v2_035": 552_960}


@pytest.mark.parametrize("name, below", [("mobilenet_v1_vww_tf", 2), ("mobilenet_v2_035", 3)])
def test_chains_writing_over_their_input_reach_issue_16s_arenas(tmp_path: Path, name: str, below: int) -> None:
    """MobileNetV1-0.25's 96x96x3 input alone is 110,592 bytes: 2x below TFLM needs the first chain's output over
    it; MobileNetV2-0.35's first block the same."""
    model = Path(__file__).parent / "fixtures" / "int8" / "mobilenet_v2_035.float.onnx" \
        if name == "mobilenet_v2_035" else ensure_model(name)
    budget = TFLM_ARENA[name] // below
    # predicted costs: the arena does not depend on them, and measuring every band, slice and run took minutes
    built = build_and_compile(write_target_spec(tmp_path, model, "host", memory=f"{budget} B",
                                                extra="tiling = true\n"))
    assert built.report["arena_bytes"] <= budget
    x = random_input(model, seed=0)
    ours, _ = run_binary(built.binary, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))


# ---- channel tiling (FDT) ----

def test_channel_slices_of_an_inverted_residual_block(tmp_path: Path) -> None:
    from tasobuild.importer import import_onnx
    from tasobuild.tiling.channels import paths

    model = inverted_residual_model(tmp_path / "block.onnx")
    # expand -> depthwise -> project (a slice starts at a dense conv), and the same ending on the residual add
    assert paths(import_onnx(model)) == [(0, 1, 2), (0, 1, 2, 3)]
    untiled = _smallest_budget(write_spec(tmp_path, model))
    tiled = _smallest_budget(write_spec(tmp_path, model, extra="tiling = true\n"))
    # untiled, the 96-channel tensors of the expand and the depthwise are live together: 2 x 6144 B, plus x
    assert untiled >= 2 * 96 * 16 * 4 and tiled < untiled // 2
    spec = write_spec(tmp_path, model, memory=f"{tiled} B", extra="tiling = true\n")
    built = build_and_compile(spec)
    assert {n["tiling"].split(" ")[1].split("=")[0] for n in built.report["nodes"] if n["tiling"]} == {"channels"}
    assert "fused channel tiling (FDT)" in (built.out_dir / "src" / "net.c").read_text()
    x = np.random.default_rng(0).standard_normal((1, 8, 4, 4)).astype(np.float32)
    ours, _ = run_binary(built.binary, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))


def _residual_program(planned: object, out: Path) -> Path:
    """A plan made in process, rendered into `out` and compiled warning-free; its program adds a path's residual
    once the sum is whole."""
    from tasobuild.pipeline import program_of, render

    for path, data in render(program_of(planned)).items():  # type: ignore[arg-type]
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_bytes(data)
    binary = make_with(out, ["-Wall", "-Werror"])
    assert "residual add, once its sum is whole" in (out / "src" / "net.c").read_text()
    return binary


def test_a_path_ends_on_its_residual_add_applied_once_the_sum_is_whole(tmp_path: Path) -> None:
    """MobileNetV2's block: expand -> depthwise -> project -> + x as one path. The projection's slices add into the
    add's output, then one in-place add of x (kept live until then) finishes it; planned with those groups only,
    built, compiled, run and matched against ONNX Runtime."""
    from tasobuild.decide import decide, to_problem
    from tasobuild.pipeline import Planned, Solve, load, price
    from tasobuild.tiling.channels import ChannelGroup, sequence

    model = inverted_residual_model(tmp_path / "block.onnx")
    inputs = load(write_spec(tmp_path, model, extra="tiling = true\n"))
    priced = price(inputs, Solve(inputs.spec, inputs.target))
    ending = tuple(g for g in priced.groups if isinstance(g, ChannelGroup) and g.members == (0, 1, 2, 3))
    assert ending and all(g.sliced == 3 and g.chosen[-1].primitive.startswith("add_eltwise_") for g in ending)
    narrow = next(g for g in ending if g.slices[0] == (0, 8) and g.workspace.scratch_bytes == 0)
    # 12 slices of 8 channels: the slices of the two 96-channel tensors only (8 x 4 x 4 floats, 512 B each)
    assert narrow.workspace.buffer_bytes == (512, 512)
    steps = sequence(narrow)
    assert len(steps) == 12 + 1 and steps[-1] == [(narrow.chosen[-1].calls[0], {"out": "out", "in1": "res"})]
    assert steps[-1][0][0].function == "tb_add_inplace"
    problem = to_problem(inputs.graph, priced.nodes, priced.transforms, priced.costed.costs, ending)
    decision = decide(problem, 2**32, "memory", None, 10.0)
    picked = {c.group for _, c in decision.plan.choices}
    assert picked & {g.name for g in ending}, decision.plan.choices
    # x (512 B, live to the add: it is the residual) + y (512 B) + the group's workspace, nothing else
    group = next(g for g in ending if g.name in picked)
    assert decision.lower_bound_bytes == 512 + 512 + group.workspace_bytes
    planned = Planned(inputs.spec, inputs.target, inputs.graph, priced.nodes, priced.transforms, priced.costed,
                      decision, ending)
    binary = _residual_program(planned, tmp_path / "out")
    x = np.random.default_rng(0).standard_normal((1, 8, 4, 4)).astype(np.float32)
    ours, _ = run_binary(binary, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))


def test_mobilenet_v2s_blocks_run_as_paths_ending_on_their_residual_adds(tmp_path: Path) -> None:
    """MobileNetV2-0.35 (MLPerf Tiny's float model): every block with a residual add has a path that ends on it;
    planned with every such block run as one of those groups (its members' other choices made a second slower), the
    fastest such plan's program matches ONNX Runtime."""
    from tasobuild.decide import decide, to_problem
    from tasobuild.pipeline import Planned, Solve, load, price
    from tasobuild.tiling.channels import ChannelGroup, paths

    model = Path(__file__).parent / "fixtures" / "int8" / "mobilenet_v2_035.float.onnx"
    # predicted costs: the plan is forced below, and timing every slice and run would take minutes
    inputs = load(write_target_spec(tmp_path, model, "host", extra="tiling = true\n"))
    graph = inputs.graph
    adds = [i for i, n in enumerate(graph.nodes) if n.op == "add"]
    ending = [p for p in paths(graph) if p[-1] in adds]
    assert len(adds) == 10 and sorted(p[-1] for p in ending) == adds
    assert all(graph.nodes[p[-2]].output in graph.nodes[p[-1]].inputs for p in ending)
    priced = price(inputs, Solve(inputs.spec, inputs.target))
    offered = tuple(g for g in priced.groups if isinstance(g, ChannelGroup) and g.members in ending)
    problem = to_problem(graph, priced.nodes, priced.transforms, priced.costed.costs, offered)
    forced = {graph.nodes[i].name for p in ending for i in p}
    problem = replace(problem, nodes=tuple(
        replace(n, choices=tuple(c if c.group else replace(c, time_ms=c.time_ms + 1000.0) for c in n.choices))
        if n.name in forced else n for n in problem.nodes))
    decision = decide(problem, 2**32, "latency", None, 20.0)
    picked = {c.group for _, c in decision.plan.choices if c.group}
    assert sorted(g.members for g in offered if g.name in picked) == ending, picked
    planned = Planned(inputs.spec, inputs.target, graph, priced.nodes, priced.transforms, priced.costed, decision,
                      offered)
    binary = _residual_program(planned, tmp_path / "out")
    x = random_input(model, seed=0)
    ours, _ = run_binary(binary, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))


def _weights(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)


def pointwise_pair_model(path: Path) -> Path:
    """MobileNetV1's block at 4x4: x (8) -> 1x1 conv to 96, ReLU -> 3x3 depthwise, ReLU -> 1x1 conv to 8, ReLU. The
    path ends on a convolution with its activation."""
    from onnx import helper

    rng = np.random.default_rng(5)
    weights = {"w1": _weights(rng, 96, 8, 1, 1), "b1": _weights(rng, 96), "w2": _weights(rng, 96, 1, 3, 3),
               "b2": _weights(rng, 96), "w3": _weights(rng, 8, 96, 1, 1), "b3": _weights(rng, 8)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["e"], name="pw1"), helper.make_node("Relu", ["e"], ["er"]),
             helper.make_node("Conv", ["er", "w2", "b2"], ["d"], name="dw", group=96, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["d"], ["dr"]),
             helper.make_node("Conv", ["dr", "w3", "b3"], ["p"], name="pw2"), helper.make_node("Relu", ["p"], ["y"])]
    return save_onnx(path, nodes, [1, 8, 4, 4], [1, 8, 4, 4], weights)


def per_channel_path_model(path: Path) -> Path:
    """x (8x6x6) -> 3x3 conv to 64 -> 2x2 max pool -> Sigmoid -> BatchNorm, ReLU -> 3x3 depthwise, Clip(0, 6) ->
    3x3 depthwise -> 3x3 average pool (stride 1, padded) -> 1x1 conv to 10, LeakyReLU: one path of eight members,
    every operator between the convolutions per channel (the sigmoid and the pool stay nodes of their own)."""
    from onnx import helper

    rng = np.random.default_rng(6)
    weights = {"w1": _weights(rng, 64, 8, 3, 3), "b1": _weights(rng, 64),
               "g": (1 + 0.1 * rng.standard_normal(64)).astype(np.float32), "beta": _weights(rng, 64),
               "mean": _weights(rng, 64), "var": (1 + rng.random(64)).astype(np.float32),
               "w2": _weights(rng, 64, 1, 3, 3), "b2": _weights(rng, 64), "w3": _weights(rng, 64, 1, 3, 3),
               "b3": _weights(rng, 64), "w4": _weights(rng, 10, 64, 1, 1), "b4": _weights(rng, 10),
               "lo": np.array(0, np.float32), "hi": np.array(6, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["c"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Sigmoid", ["m"], ["s"]),
             helper.make_node("BatchNormalization", ["s", "g", "beta", "mean", "var"], ["n"]),
             helper.make_node("Relu", ["n"], ["nr"]),
             helper.make_node("Conv", ["nr", "w2", "b2"], ["d1"], name="dw1", group=64, pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["d1", "lo", "hi"], ["d1c"]),
             helper.make_node("Conv", ["d1c", "w3", "b3"], ["d2"], name="dw2", group=64, pads=[1, 1, 1, 1]),
             helper.make_node("AveragePool", ["d2"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["a", "w4", "b4"], ["p"], name="pw"),
             helper.make_node("LeakyRelu", ["p"], ["y"], alpha=0.1)]
    return save_onnx(path, nodes, [1, 8, 6, 6], [1, 10, 3, 3], weights)


def _fdt_groups(report: dict) -> set[str]:
    return {n["tiling"] for n in report["nodes"] if n["tiling"] and " channels=" in n["tiling"]}


def _channel_group(graph: Graph, width: int, layout: str = "CHW") -> object:
    """The path's group at this slice width, every call costed alike (the geometry does not depend on the costs)."""
    from tasobuild.candidates import node_candidates
    from tasobuild.costs.cache import Cost
    from tasobuild.tiling import calls
    from tasobuild.tiling.channels import fusable

    nodes = node_candidates(graph)
    costs = {c.key(): Cost(1.0, 0.0, 1, "measured") for nc in nodes for o in nc.options for c in o.calls}
    options = [o for o in fusable(graph, nodes, costs, widths=(width,)) if o.layout == layout and o.pick == "fastest"]
    costs.update({c.key(): Cost(1.0, 0.0, 1, "measured") for c in calls(options)})
    longest = max(len(o.members) for o in options)  # a path ending on a residual add: the one with the add
    options = [o for o in options if len(o.members) == longest]
    assert len(options) == 1
    return options[0].group(graph, costs)


@pytest.mark.parametrize(("name", "expected"), [
    ("ds_cnn_tf", [(1, 2, 3), (3, 4, 5), (5, 6, 7), (7, 8, 9)]),  # pointwise, ReLU -> depthwise -> pointwise, ReLU
    # a block's two 3x3 convs, nothing between them; and the same ending on the block's residual add
    ("resnet8_tf", [(2, 3), (2, 3, 4), (6, 7), (6, 7, 8), (10, 11), (10, 11, 12)]),
])
def test_paths_are_found_over_the_graph_of_real_networks(name: str, expected: list[tuple[int, ...]]) -> None:
    from tasobuild.importer import import_onnx
    from tasobuild.tiling.channels import paths

    assert paths(import_onnx(ensure_model(name))) == expected


def test_slice_widths_are_the_fixed_ones_and_half_the_channels() -> None:
    from tasobuild.tiling.channels import slice_widths

    assert slice_widths(16) == (8,)
    assert slice_widths(48) == (8, 16, 24, 32)  # 24: two slices
    assert slice_widths(96) == (8, 16, 32, 48, 64)
    assert slice_widths(40) == (8, 16, 24, 32)  # half of 40 rounded up to 8: 24 + 16
    assert slice_widths(8) == ()


def test_a_path_ending_on_a_conv_with_its_activation_applies_it_once_the_sum_is_whole(tmp_path: Path) -> None:
    from tasobuild.importer import import_onnx
    from tasobuild.tiling.channels import paths

    model = pointwise_pair_model(tmp_path / "pair.onnx")
    graph = import_onnx(model)
    assert [n.act.kind for n in graph.nodes] == ["relu", "relu", "relu"] and paths(graph) == [(0, 1, 2)]
    group = _channel_group(graph, 32)
    last = group.chosen[-1]  # type: ignore[attr-defined]
    # 3 slices of 32 channels: the first writes with the bias and no activation, two add, then one ReLU pass
    assert group.slices == ((0, 32), (32, 64), (64, 96))  # type: ignore[attr-defined]
    assert [dict(c.params).get("accumulate") for c in last.calls] == [0, 1, 1, None]
    assert {dict(c.params)["act"] for c in last.calls} == {0, 1}
    assert last.calls[-1].function == "tb_act_inplace" and dict(last.calls[-1].params)["n"] == 8 * 4 * 4
    # the slices of the two 96-channel tensors: 32 x 4 x 4 floats each (2,048 B, whole cache lines)
    assert group.workspace.buffer_bytes == (2048, 2048)  # type: ignore[attr-defined]
    assert group.kernel_sources == ("ops_eltwise.c", "tb_ops.h", "ops_act.h")  # type: ignore[attr-defined]
    tiled = _smallest_budget(write_spec(tmp_path, model, extra="tiling = true\n"))
    built = build_and_compile(write_spec(tmp_path, model, memory=f"{tiled} B", extra="tiling = true\n"))
    assert _fdt_groups(built.report), built.report["nodes"]
    assert "activation, once its sum is whole" in (built.out_dir / "src" / "net.c").read_text()
    x = random_input(model, seed=0)
    ours, _ = run_binary(built.binary, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))


def test_a_path_runs_slices_through_pooling_element_wise_and_depthwise_operators(tmp_path: Path) -> None:
    from tasobuild.importer import import_onnx
    from tasobuild.tiling.channels import paths

    model = per_channel_path_model(tmp_path / "path.onnx")
    graph = import_onnx(model)
    assert [n.op for n in graph.nodes] == ["conv", "maxpool", "act", "scale", "conv", "conv", "avgpool", "conv"]
    assert paths(graph) == [tuple(range(8))]
    group = _channel_group(graph, 16)
    assert group.slices == ((0, 16), (16, 32), (32, 48), (48, 64))  # type: ignore[attr-defined]
    # a slice of 16 channels: 6x6 after the conv (2,304 B), 3x3 after the pool (576 B) x 6, all whole cache lines
    assert group.workspace.buffer_bytes == (2304,) + (576,) * 6  # type: ignore[attr-defined]
    assert group.workspace.scratch_offset == 2304 + 6 * 576  # type: ignore[attr-defined]
    scale = group.chosen[3].parts[1]  # type: ignore[attr-defined]
    np.testing.assert_array_equal(scale[1].const(scale[0].weights[0]), graph.const(graph.nodes[3].weights[0])[16:32])
    built = build_and_compile(write_spec(tmp_path, model, memory="64 KiB", extra="tiling = true\n"))
    x = random_input(model, seed=0)
    untiled_ours, _ = run_binary(built.binary, x, tmp_path)
    assert_matches(untiled_ours, run_onnxruntime(model, x))
    tiled = _smallest_budget(write_spec(tmp_path, model, extra="tiling = true\n"))
    built = build_and_compile(write_spec(tmp_path, model, memory=f"{tiled} B", extra="tiling = true\n"))
    assert any(g.startswith("l0-l7 channels=") for g in _fdt_groups(built.report)), built.report["nodes"]
    ours, _ = run_binary(built.binary, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))


def test_a_groups_calls_in_sequence_name_the_buffers_the_program_shares(tmp_path: Path) -> None:
    """What the profiler times for a channel group is what the program runs: per slice each member's call, the
    first reading the path's input, each next one the slice its predecessor wrote, the last adding into the whole
    output; then the activation pass."""
    from tasobuild.importer import import_onnx
    from tasobuild.tiling.channels import sequence

    group = _channel_group(import_onnx(pointwise_pair_model(tmp_path / "pair.onnx")), 32)
    steps = sequence(group)  # type: ignore[arg-type]
    assert [len(step) for step in steps] == [3, 3, 3, 1]
    assert [(names["in0"], names["out"]) for _, names in steps[1]] == [("in", "slice0"), ("slice0", "slice1"),
                                                                       ("slice1", "out")]
    assert [names["w0"] for _, names in steps[2]] == ["w0.2.w0", "w1.2.w0", "w2.2.w0"]  # slice 2's own weights
    assert all(names["ws"] == "ws" for step in steps[:3] for call, names in step if "ws" in call.args)
    assert {role: name for role, name in steps[0][0][1].items() if role.startswith("w") and role != "ws"} == {
        "w0": "w0.0.w0", "w1": "w0.0.w1"}  # the first conv's weights and bias for slice 0
    assert steps[3][0][0].function == "tb_act_inplace" and steps[3][0][1] == {"out": "out"}


@pytest.mark.parametrize("model", [pointwise_pair_model, inverted_residual_model])
def test_a_groups_sequence_run_through_the_bindings_computes_the_path(tmp_path: Path, model: object) -> None:
    """Kernels.bench_sequence makes the calls one after another on shared buffers: one pass of a channel group's
    sequence, with its slices' real weights, leaves the untiled network's output in "out" (for a path ending on the
    residual add, with the block's input as "res")."""
    from tasobuild import native
    from tasobuild.costs.profile import sequence_buffers
    from tasobuild.importer import import_onnx
    from tasobuild.primitives.registry import library
    from tasobuild.tiling.channels import sequence
    from tests import ir_interpreter

    graph = import_onnx(model(tmp_path / "model.onnx"))  # type: ignore[operator]
    group = _channel_group(graph, 32)
    assert group.members == tuple(range(len(graph.nodes)))  # type: ignore[attr-defined]
    named = [c for step in sequence(group) for c in step]  # type: ignore[arg-type]
    buffers = sequence_buffers(named)
    primitives = {p.name: p for p in library()}
    x = np.random.default_rng(1).standard_normal(8 * 4 * 4).astype(np.float32)
    for (call, names), arrays in zip(named, buffers):
        for role in call.args:
            if names[role] in ("in", "res"):
                arrays[role][:] = x
            elif names[role].startswith("w"):  # "w<member>.<slice>.w<k>": that slice's k-th transformed weight
                j, s, k = names[role][1:].split(".")
                run = group.chosen[int(j)]  # type: ignore[attr-defined]
                weight = primitives[run.primitive].weights(*run.parts[int(s)])[int(k[1:])].reshape(-1)
                arrays[role][:weight.size] = weight
    native.load().bench_sequence([c for c, _ in named], buffers, 0, 1)
    out = next(a["out"] for (_, names), a in zip(named, buffers) if names.get("out") == "out")
    np.testing.assert_allclose(out, ir_interpreter.run(graph, x).reshape(-1), rtol=1e-4, atol=1e-5)


def test_channel_groups_are_costed_as_they_run_and_a_frozen_build_replays_it(tmp_path: Path) -> None:
    """Where every cost is measured here, each channel group is timed as one pass over its calls in sequence (its
    run), and the solver sees that time, shared by its members; the lock records the runs' costs, so a --frozen
    build replays the plan without measuring."""
    from tasobuild.pipeline import Solve, load, price
    from tasobuild.tiling.channels import ChannelGroup, run_call

    model = pointwise_pair_model(tmp_path / "pair.onnx")
    tiled = _smallest_budget(write_spec(tmp_path, model, extra="tiling = true\n"))
    spec = write_spec(tmp_path, model, memory=f"{tiled} B", extra="tiling = true\n")
    inputs = load(spec)
    priced = price(inputs, Solve(inputs.spec, inputs.target))
    groups = [g for g in priced.groups if isinstance(g, ChannelGroup)]
    assert groups
    for group in groups:
        run = priced.costed.costs[run_call(group).key()]
        assert run.source == "measured" and run_call(group).key().startswith("sequence(calls=")
        assert sum(group.member_ms) == pytest.approx(run.median_ms, rel=1e-9)
    built = build_and_compile(spec)
    assert _fdt_groups(built.report), built.report["nodes"]
    lock = (tmp_path / "taso.lock").read_text()
    assert 'call = "sequence(calls=' in lock
    frozen = json.loads(tasobuild("build", "-c", str(spec), "--frozen", "--json").stdout)
    assert frozen["profiled"] == 0 and _fdt_groups(frozen) == _fdt_groups(built.report)
    x = random_input(model, seed=0)
    ours, _ = run_binary(built.binary, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))


def test_slices_of_the_last_conv_sum_to_the_whole() -> None:
    """FDT's identity, on the NumPy reference: the last conv over input channels [c0, c1), summed over the slices
    (the bias once), is the whole conv."""
    from tasobuild.ir import Constant
    from tasobuild.tiling.channels import sliced_node
    from tests import ir_interpreter as reference

    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((5, 12, 3, 3)).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    node = Node("last", "conv", ("x",), "y", ("W", "b"),
                attrs(kernel=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1), dilation=(1, 1), groups=1))
    graph = Graph((node,), (("x", Shape(12, 6, 7)), ("y", Shape(5, 6, 7))),
                  (Constant.of("W", w), Constant.of("b", b)), "x", "y", (), ())
    x = rng.standard_normal((12, 6, 7)).astype(np.float32)
    whole = reference.conv(node, [x], [w, b])
    parts = []
    for c0, c1 in ((0, 5), (5, 10), (10, 12)):
        part, sub = sliced_node(node, graph, "last", c0, c1)
        assert (part.name, sub.shape("x"), sub.shape("y")) == (f"last[{c0}:{c1}]", Shape(c1 - c0, 6, 7), Shape(5, 6, 7))
        parts.append(reference.conv(part, [x[c0:c1]], [sub.const(part.weights[0]), 0 * sub.const(part.weights[1])]))
    np.testing.assert_allclose(sum(parts) + b[:, None, None], whole, rtol=1e-5, atol=1e-5)


def test_profile_times_the_tiled_calls_after_the_untiled_ones(tmp_path: Path) -> None:
    """`profile` measures the band and slice calls too (which ones depends on the untiled costs, so they come
    second), then the groups timed as they run, through the build's own loop (pipeline.fused_tiling); a harness
    emitted once every untiled cost is known times them as well; the build then measures nothing. MobileNetV1-VWW:
    its first round of runs keeps groups whose runs are timed only in a second (DS-CNN's needs one round)."""
    model = ensure_model("mobilenet_v1_vww_tf")
    untiled = json.loads(tasobuild("profile", "-c", str(write_spec(tmp_path, model)), "--json").stdout)
    spec = write_spec(tmp_path, model, extra="tiling = true\n")
    tiled = json.loads(tasobuild("profile", "-c", str(spec), "--json").stdout)
    assert tiled["calls"] > untiled["calls"]
    harness = json.loads(tasobuild("profile", "-c", str(spec), "--emit-harness", str(tmp_path / "h"), "--json").stdout)
    assert harness["calls"] == tiled["calls"]
    assert json.loads(tasobuild("plan", "-c", str(spec), "--json").stdout)["profiled"] == 0


# ---- row groups timed as they run ----

MOBILENET_V2_035 = Path(__file__).parent / "fixtures" / "int8" / "mobilenet_v2_035.float.onnx"


def _row_group(graph: Graph, members: tuple[int, ...], rows: int, runs: dict[str, object] | None = None) -> object:
    """The chain's group at this band height, every call costed alike (the bands do not depend on the costs), and
    the `runs`' costs by key."""
    from tasobuild.candidates import node_candidates
    from tasobuild.costs.cache import Cost
    from tasobuild.tiling.rows import fusable

    nodes = node_candidates(graph)
    costs = {c.key(): Cost(1.0, 0.0, 1, "measured") for nc in nodes for o in nc.options for c in o.calls}
    [option] = [o for o in fusable(graph, nodes, costs, heights=(rows,))
                if o.members == members and o.pick == "fastest"]
    costs.update({c.key(): Cost(1.0, 0.0, 1, "measured") for c in option.calls()})
    return option.group(graph, {**costs, **(runs or {})})  # type: ignore[dict-item]


def test_a_row_groups_run_reads_and_writes_each_band_where_the_program_does() -> None:
    """The pass the profiler times makes the program's calls on the program's places: band by band down the whole
    input and output ("in@<byte>", "out@<byte>"), each member but the last into its window; run through the
    bindings with the members' real weights, it leaves the untiled chain's output in "out"."""
    from tasobuild.costs.profile import buffer_part
    from tasobuild.importer import import_onnx
    from tasobuild.tiling.rows import FusedGroup, row_bytes, runs

    graph = import_onnx(MOBILENET_V2_035)
    members = (1, 2, 3)  # the stem (3x3, stride 2), the first block's 3x3 depthwise and 1x1 projection at 48x48
    group = _row_group(graph, members, 4)
    assert isinstance(group, FusedGroup) and group.run is not None and runs([group]) == (group.run,)
    named = [(call, dict(names)) for call, names in group.run.sequence]
    last = graph.nodes[members[-1]]
    outs = [buffer_part(names["out"]) for call, names in named if buffer_part(names["out"])[0] == "out"]
    assert [offset for _, offset in outs] == [k * 4 * row_bytes(graph, last.output) for k in range(len(outs))]
    assert buffer_part(named[0][1]["in0"]) == ("in", 0)
    np.testing.assert_allclose(*_run_in_bindings(graph, group, named), rtol=1e-4, atol=1e-4)


def _run_in_bindings(graph: Graph, group: object, named: list) -> tuple[np.ndarray, np.ndarray]:
    """A row group's calls with their places ("in@<byte>", ...) run through the bindings on the members' real
    weights and an input: (the output they leave in "out", the untiled chain's, both HWC and flat)."""
    from tasobuild import native
    from tasobuild.costs.profile import buffer_part, sequence_buffers
    from tasobuild.primitives.registry import library
    from tests import ir_interpreter

    members = group.members  # type: ignore[attr-defined]
    last = graph.nodes[members[-1]]
    env = ir_interpreter.run_all(graph, ir_interpreter_input(graph))
    x = graph.nodes[members[0]].inputs[0]
    buffers = sequence_buffers(named)
    primitives = {p.name: p for p in library()}
    for (call, names), arrays in zip(named, buffers):
        for role in call.args:
            base, offset = buffer_part(names[role])
            if base == "in":
                hwc = env[x].transpose(1, 2, 0).reshape(-1).astype(np.float32)
                arrays[role][:] = hwc[offset // 4:offset // 4 + arrays[role].size]
            elif base.startswith("w") and not base.startswith("win"):  # "w<member>.<role>": its transformed weight
                j, k = base[1:].split(".")
                node = graph.nodes[members[int(j)]]
                weight = primitives[group.chosen[int(j)].primitive].weights(node, graph)[int(k[1:])].reshape(-1)  # type: ignore[attr-defined]
                arrays[role][:weight.size] = weight
    native.load().bench_sequence([c for c, _ in named], buffers, 0, 1)
    out = next(a["out"].base for (_, names), a in zip(named, buffers) if names.get("out", "").startswith("out@"))
    want = env[last.output].transpose(1, 2, 0).reshape(-1)
    return out[:want.size], want


@pytest.mark.parametrize("members, rows", [((1, 2, 3), 4), ((1, 2, 3), 8), ((2, 3), 2), ((4, 5, 6), 4)])
def test_a_row_group_run_bottom_to_top_leaves_the_same_output(members: tuple[int, ...], rows: int) -> None:
    """Bottom to top (the bands of the chain upside down, windows filled from their ends): the last member computes
    the same rows per band as top to bottom, in the reverse order, the output bit for bit the same; the output
    may start output_rise bytes above the input."""
    from tasobuild.importer import import_onnx
    from tasobuild.tiling.rows import FusedGroup, band_places, real_rows

    graph = import_onnx(MOBILENET_V2_035)
    group = _row_group(graph, members, rows)
    assert isinstance(group, FusedGroup) and group.upward is not None and group.output_rise > 0
    last = graph.nodes[members[-1]].output
    down, up = band_places(group, graph), band_places(group, graph, upward=True)
    outs = [[place[1] for body in places for _, roles in body for role, place in roles
             if role == "out" and place[0] == "out"] for places in (down, up)]
    assert outs[1] == outs[0][::-1]  # the same bands of the output, the other way
    assert [real_rows(b[-1].rows, graph.shape(last).h) for b in group.upward.bands] == \
        [b[-1].rows for b in group.schedule.bands][::-1]
    results = []
    for places in (down, up):
        named = [(call, {role: f"{buffer}@{offset}" for role, (buffer, offset) in roles})
                 for body in places for call, roles in body]
        got, want = _run_in_bindings(graph, group, named)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        results.append(got.copy())
    assert results[0].tobytes() == results[1].tobytes()


def ir_interpreter_input(graph: Graph) -> np.ndarray:
    s = graph.shape(graph.input)
    return np.random.default_rng(5).standard_normal((s.c, s.h, s.w)).astype(np.float32)


def test_auto_costs_time_a_groups_run_and_predict_its_calls(tmp_path: Path) -> None:
    """costs = "auto" predicts a row group's band calls (the model knows single calls) but times its run, a pass no
    model predicts: the group's members then share the measured time, which the solver sees."""
    from tasobuild import native
    from tasobuild.costs.cache import CostCache
    from tasobuild.costs.stage import cost_calls, shipped_model
    from tasobuild.importer import import_onnx
    from tasobuild.tiling.rows import FusedGroup

    graph = import_onnx(MOBILENET_V2_035)
    group = _row_group(graph, (1, 2, 3), 4)
    assert isinstance(group, FusedGroup) and group.run is not None
    calls = [c for o in group.chosen for c in o.calls if c is not None]
    kernels = native.load()
    with CostCache(tmp_path / "cache") as cache:
        costed = cost_calls("auto", [*calls, group.run], cache, fingerprint="test-host", kernels_digest="k",
                            kernels=lambda: kernels, model=shipped_model(), progress=False)
    run = costed.costs[group.run.key()]
    assert run.source == "measured" and run.median_ms > 0 and costed.profiled >= 1
    assert {costed.costs[c.key()].source for c in calls} <= {"predicted", "measured"}
    # the group costed with its run's time: its members share it (as their calls share the sum of their costs)
    timed = _row_group(graph, (1, 2, 3), 4, {group.run.key(): run})
    assert isinstance(timed, FusedGroup) and timed.run == group.run
    assert sum(timed.member_ms) == pytest.approx(run.median_ms, rel=1e-9)
    assert run.median_ms != pytest.approx(sum(group.member_ms))  # not the calls' (each costed 1 ms here)
