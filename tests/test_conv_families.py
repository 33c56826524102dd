"""The conv families beyond conv.py (im2col/im2row copy and scan across layouts, MEC, kn2row/kn2col, HCW kernels)
against a float64 NumPy reference, every call between canary regions with exactly its declared workspace
(tests/guard.py). Shapes hit the awkward cases: odd sizes, stride 2, asymmetric padding, dilation, groups,
depthwise, 1x1, more pixels than a scan block (blocks that split output rows), depth past the GEMM's KC."""

from __future__ import annotations

import dataclasses
import subprocess

import numpy as np
import pytest

from tasobuild.ir import Constant
from tasobuild.primitives import Primitive, conv_kn2row, conv_mec, conv_variants
from tasobuild.primitives.conv_table import ConvGeometry
from tasobuild.primitives.transforms import from_layout
from tasobuild.resources import kernels_dir
from tests.guard import guarded_kernels, run_guarded
from tests.test_conv_primitives import (
    CLIP6,
    LEAKY,
    RELU,
    SIGMOID,
    Case,
    assert_close,
    buffers_for,
    check_every_applicable,
    check_view,
    conv_graph,
    reference,
    run,
    with_params,
)

FAMILIES: tuple[Primitive, ...] = conv_variants.PRIMITIVES + conv_mec.PRIMITIVES + conv_kn2row.PRIMITIVES
IM2COL = tuple(p.name for p in conv_variants.PRIMITIVES if p.family in ("im2col", "im2row"))
MEC = tuple(p.name for p in conv_mec.PRIMITIVES)
KN2ROW = tuple(p.name for p in conv_kn2row.PRIMITIVES)
DIRECT_HCW = ("conv_direct_hcw",)
DEPTHWISE_HCW = ("conv_depthwise_direct_hcw",)
POINTWISE_HCW = ("conv_1x1_gemm_hcw",)


def applicable(node, graph) -> list[Primitive]:
    return [p for p in FAMILIES if p.applies(node, graph)]


CASES: tuple[tuple[str, Case, tuple[str, ...]], ...] = (
    ("3x3_same_odd", Case(3, 7, 9, 5, (3, 3), pads=(1, 1, 1, 1), act=RELU), IM2COL + MEC + KN2ROW + DIRECT_HCW),
    ("3x3_stride2_asym", Case(4, 11, 10, 7, (3, 3), (2, 2), (0, 1, 1, 0), act=CLIP6), IM2COL + MEC + DIRECT_HCW),
    ("5x3_stride_2x1_dil", Case(3, 13, 12, 6, (5, 3), (2, 1), (2, 0, 1, 3), (2, 3), act=LEAKY), IM2COL + DIRECT_HCW),
    ("3x3_dil_w_only", Case(3, 9, 12, 5, (3, 3), (1, 1), (1, 2, 0, 2), (1, 2), act=RELU),
     IM2COL + MEC + KN2ROW + DIRECT_HCW),
    ("5x5_dil_stride1", Case(2, 11, 10, 4, (3, 5), (1, 1), (2, 1, 3, 0), (2, 1)), IM2COL + KN2ROW + DIRECT_HCW),
    ("7x7_stride2_wide_pad", Case(2, 15, 17, 8, (7, 7), (2, 2), (3, 3, 3, 3), act=SIGMOID), IM2COL + MEC + DIRECT_HCW),
    ("groups3", Case(6, 8, 9, 9, (3, 3), (1, 2), (1, 1, 0, 2), groups=3, act=RELU), IM2COL + MEC + DIRECT_HCW),
    ("groups2_stride1", Case(4, 7, 6, 6, (2, 3), pads=(0, 1, 1, 1), groups=2, act=LEAKY),
     IM2COL + MEC + KN2ROW + DIRECT_HCW),
    ("1x1", Case(13, 6, 7, 11, (1, 1), act=RELU), IM2COL + MEC + KN2ROW + DIRECT_HCW + POINTWISE_HCW),
    ("1x1_groups2", Case(8, 5, 5, 6, (1, 1), groups=2, act=CLIP6),
     IM2COL + MEC + KN2ROW + DIRECT_HCW + POINTWISE_HCW),
    ("1x1_stride2", Case(8, 9, 9, 10, (1, 1), (2, 2)), IM2COL + MEC + DIRECT_HCW),
    ("depthwise_3x3", Case(10, 9, 8, 10, (3, 3), pads=(1, 1, 1, 1), groups=10, act=CLIP6),
     IM2COL + MEC + KN2ROW + DIRECT_HCW + DEPTHWISE_HCW),
    ("depthwise_mult2_s2", Case(5, 10, 11, 10, (3, 3), (2, 2), (1, 0, 1, 1), groups=5, act=RELU),
     IM2COL + MEC + DIRECT_HCW + DEPTHWISE_HCW),
    ("depthwise_5x5_dil", Case(7, 12, 12, 14, (5, 5), (1, 1), (4, 4, 4, 4), (2, 2), groups=7),
     IM2COL + KN2ROW + DIRECT_HCW + DEPTHWISE_HCW),
    ("single_channel", Case(1, 5, 5, 3, (2, 2), act=LEAKY), IM2COL + MEC + KN2ROW + DIRECT_HCW + DEPTHWISE_HCW),
    # 143 output pixels: two scan blocks, the second starting mid-row; K = 64*9 > KC_WHOLE; M = 100 > MC
    ("deep_k_many_pixels", Case(64, 13, 11, 100, (3, 3), pads=(1, 1, 1, 1), act=RELU),
     IM2COL + MEC + KN2ROW + DIRECT_HCW),
    ("stride2_blocks_split_rows", Case(5, 29, 23, 17, (3, 3), (2, 2), (1, 1, 1, 1), act=SIGMOID),
     IM2COL + MEC + DIRECT_HCW),
    # wider than a GEMM column block is not needed here; 1x1 over more pixels than NC (4080) is conv.py's case
    ("1x1_wide_rows", Case(7, 3, 70, 9, (1, 1), act=RELU), IM2COL + MEC + KN2ROW + DIRECT_HCW + POINTWISE_HCW),
)


@pytest.mark.parametrize("label, case, expected", CASES, ids=[c[0] for c in CASES])
def test_every_applicable_primitive_matches_reference(label: str, case: Case, expected: tuple[str, ...]) -> None:
    check_every_applicable(case, expected, FAMILIES)


RANGE_CASES = [c for c in CASES if c[0] in ("3x3_same_odd", "groups3", "groups2_stride1", "1x1_groups2",
                                            "depthwise_3x3", "deep_k_many_pixels")]


@pytest.mark.parametrize("label, case, expected", RANGE_CASES, ids=[c[0] for c in RANGE_CASES])
def test_channel_range_and_accumulate(label: str, case: Case, expected: tuple[str, ...]) -> None:
    """oc_begin/oc_end compute only those channels (others untouched); accumulate adds, without bias or act."""
    node, graph, x = conv_graph(case, seed=1)
    check_view(case, node, graph, x, channels=(1, case.m - 2), rows=(0, case.out_hw[0]), primitives=FAMILIES)


# Row views (with and without a channel range) of the MEC and kn2row/kn2col kernels; the im2col-scan and HCW
# kernels' row views are tested with their own families.
ROW_VIEW_FAMILIES = ("conv_mec", "conv_kn2row", "conv_kn2col")
CASE_OF = {label: case for label, case, _ in CASES}
ROW_VIEWS: tuple[tuple[str, tuple[int, int] | None, tuple[int, int]], ...] = (
    ("3x3_same_odd", None, (0, 2)),  # first rows: the top padding
    ("3x3_same_odd", (1, 3), (2, 5)),  # middle rows x middle channels
    ("3x3_same_odd", None, (5, 7)),  # last rows: the bottom padding
    ("3x3_same_odd", (4, 5), (3, 4)),  # one row of one channel
    ("3x3_stride2_asym", (2, 6), (1, 3)),  # stride 2 (MEC): the view's windows overlap by one input row
    ("3x3_stride2_asym", None, (4, 5)),  # stride 2, last row: the window runs into the bottom padding
    ("7x7_stride2_wide_pad", (3, 8), (2, 5)),  # 7 rows tall, stride 2, padding 3
    ("3x3_dil_w_only", (0, 2), (4, 7)),  # dilated along the width only (MEC's limit)
    ("5x5_dil_stride1", (1, 3), (3, 6)),  # dilation 2 down the height (kn2row)
    ("5x5_dil_stride1", None, (0, 1)),  # first row of a dilated kernel: mostly padding
    ("groups3", (2, 7), (3, 6)),  # a channel range across 3 groups
    ("groups2_stride1", (1, 5), (2, 4)),
    ("depthwise_3x3", (3, 9), (8, 9)),
    ("deep_k_many_pixels", (3, 97), (4, 9)),  # K > KC, M > MC
    ("1x1_wide_rows", (2, 8), (1, 2)),
)


@pytest.mark.parametrize("label, channels, rows", ROW_VIEWS,
                         ids=[f"{c[0]}-ch{c[1]}-rows{c[2]}".replace(" ", "") for c in ROW_VIEWS])
def test_row_view_and_accumulate(label: str, channels: tuple[int, int] | None, rows: tuple[int, int]) -> None:
    """Output rows [rows) (x channels, or all of them) only, reading only the input rows they need (the others are
    NaN); nothing outside the view changes; accumulate adds the raw convolution."""
    case = CASE_OF[label]
    node, graph, x = conv_graph(case, seed=3)
    check_view(case, node, graph, x, channels=channels or (0, case.m), rows=rows, primitives=FAMILIES,
               prefixes=ROW_VIEW_FAMILIES)


def grid_views(case: Case) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """A 2 x 3 grid of (channel range, row range) views covering the whole output."""
    oh = case.out_hw[0]
    channels, rows = (0, case.m // 2, case.m), (0, oh // 3, 2 * oh // 3, oh)
    return [((channels[i], channels[i + 1]), (rows[j], rows[j + 1])) for i in range(2) for j in range(3)]


def check_tiled_grid(case: Case, primitives: tuple[Primitive, ...], prefixes: tuple[str, ...], tol: float) -> None:
    """Every applicable primitive run as the 6 views of grid_views, one after another on one output: from NaN, they
    write the whole call's result; accumulating onto zeros, each adds its part exactly once (the raw convolution)."""
    node, graph, x = conv_graph(case, seed=4)
    raw = reference(case, graph, x, with_bias_act=False)
    prims = [p for p in primitives if p.applies(node, graph) and p.name.startswith(prefixes)]
    assert prims
    for prim in prims:
        (call,) = prim.call(node, graph)
        buffers = buffers_for(prim, node, graph, x)
        whole = run(prim, call, graph, buffers)
        for accumulate, start, want in ((0, np.nan, whole), (1, 0.0, raw)):
            out = np.full(whole.size, start, np.float32)
            for (cb, ce), (rb, re) in grid_views(case):
                view = with_params(call, oc_begin=cb, oc_end=ce, oh_begin=rb, oh_end=re, accumulate=accumulate)
                out = run_guarded(guarded_kernels(), view, {**buffers, "out": out})["out"]
            got = from_layout(out, graph.shape("y"), prim.layout_out).astype(np.float64)
            try:
                assert_close(got, want, tol)
            except AssertionError as e:
                raise AssertionError(f"{prim.name} accumulate={accumulate}: {e}") from None


@pytest.mark.parametrize("label", ["3x3_same_odd", "groups2_stride1", "deep_k_many_pixels",
                                   "stride2_blocks_split_rows"])
def test_grid_of_views_reassembles_the_whole_call(label: str) -> None:
    check_tiled_grid(CASE_OF[label], FAMILIES, ROW_VIEW_FAMILIES, tol=1e-5)


def test_grid_views_cover_the_output_once() -> None:
    """The grid of a 100-channel, 13-row output: channels 0..50..100 x rows 0..4..8..13."""
    assert grid_views(CASE_OF["deep_k_many_pixels"]) == [((0, 50), (0, 4)), ((0, 50), (4, 8)), ((0, 50), (8, 13)),
                                                         ((50, 100), (0, 4)), ((50, 100), (4, 8)),
                                                         ((50, 100), (8, 13))]


def test_pinned_small_case() -> None:
    """A hand-checked 2x2 box filter over 1..9 (3x3), bias 0.5, stride 1, no pad: [[12,16],[24,28]] + 0.5."""
    case = Case(1, 3, 3, 1, (2, 2))
    node, graph, _ = conv_graph(case)
    graph = dataclasses.replace(graph, constants=(Constant.of("W", np.ones((1, 1, 2, 2), np.float32)),
                                                  Constant.of("b", np.array([0.5], np.float32))))
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3)
    prims = applicable(node, graph)
    assert len(prims) == len(IM2COL + MEC + KN2ROW + DIRECT_HCW + DEPTHWISE_HCW)
    for prim in prims:
        (call,) = prim.call(node, graph)
        got = run(prim, call, graph, buffers_for(prim, node, graph, x))
        assert got.reshape(-1).tolist() == [12.5, 16.5, 24.5, 28.5], prim.name


# ---------------------------------------------------------------------------------------------- registry facts


@pytest.mark.parametrize("label, case, expected", CASES, ids=[c[0] for c in CASES])
def test_call_declares_exact_sizes(label: str, case: Case, expected: tuple[str, ...]) -> None:
    node, graph, _ = conv_graph(case)
    oh, ow = case.out_hw
    for prim in applicable(node, graph):
        (call,) = prim.call(node, graph)
        sizes = dict(call.buffer_bytes)
        w0, w1 = prim.weights(node, graph)
        assert sizes["in0"] == case.c * case.h * case.w * 4 and sizes["out"] == case.m * oh * ow * 4
        assert (sizes["w0"], sizes["w1"]) == (w0.nbytes, w1.nbytes) and w0.dtype == np.float32, prim.name
        assert sizes.get("ws", 0) == prim.workspace(node, graph)
        assert call.args == tuple(r for r, _ in call.buffer_bytes) and call.function == "tb_" + prim.name


def test_workspace_pinned() -> None:
    """Hand-computed workspace floats for a 3x3 conv 16 -> 32 on 10x10, pad 1: N = 100 pixels, K = 144."""
    node, graph, _ = conv_graph(Case(16, 10, 10, 32, (3, 3), pads=(1, 1, 1, 1)))
    ws = {p.name: p.workspace(node, graph) // 4 for p in applicable(node, graph)}
    assert ws["conv_im2col_gemm_hwc_to_chw"] == 144 * 112  # K x N rounded up to 16 columns
    assert ws["conv_im2row_gemm_chw_to_hwc"] == 102 * 144  # N rounded up to 6 rows x K
    assert ws["conv_im2col_scan_chw"] == 144 * 96  # one block of 96 pixels
    assert ws["conv_im2row_scan_hwc"] == 96 * 144
    # MEC: 12 padded rows x 3 taps wide x 16 channels x 10 columns, + packing K=144 x 16 (CHW) or 12 x 144 (HWC)
    assert ws["conv_mec_chw"] == 12 * 3 * 16 * 10 + 144 * 16
    assert ws["conv_mec_hwc"] == 12 * 3 * 16 * 10 + 12 * 144
    # kn2row: 9 taps x 32 x 100 (acc: one tap) + the input packed in a 16 x 112 block (CHW) or 96 x 16 (HWC)
    assert ws["conv_kn2row_chw"] == 9 * 32 * 100 + 16 * 112
    assert ws["conv_kn2row_acc_chw"] == 32 * 100 + 16 * 112
    assert ws["conv_kn2col_hwc"] == 9 * 32 * 100 + 96 * 16
    assert ws["conv_kn2col_acc_hwc"] == 32 * 100 + 96 * 16
    assert ws["conv_direct_hcw"] == 0
    node, graph, _ = conv_graph(Case(16, 10, 10, 32, (1, 1)))
    ws = {p.name: p.workspace(node, graph) // 4 for p in applicable(node, graph)}
    assert ws["conv_1x1_gemm_hcw"] == 16 * 16  # one K x 10-column input row, packed to 16 columns


def test_names_layouts_and_library_size() -> None:
    from tasobuild.primitives.registry import family_modules, library

    for p in FAMILIES:
        src, dst = p.layout_in.lower(), p.layout_out.lower()
        assert p.op == "conv" and p.name.endswith("_" + src if src == dst else f"_{src}_to_{dst}"), p.name
        assert p.sources[0].endswith(".c") and "tb_conv_families.h" in p.sources
    assert {"conv_variants", "conv_mec", "conv_kn2row"} <= set(family_modules())
    convs = [p for p in library() if p.op == "conv"]
    assert len(convs) >= 41 and len({p.family for p in convs}) >= 8
    assert {(p.layout_in, p.layout_out) for p in convs} == {(a, b) for a in ("CHW", "HWC", "HCW")
                                                             for b in ("CHW", "HWC", "HCW")}


def test_geometry_of_mec_lowering() -> None:
    """Hl = (out_h - 1) * stride_h + k_h rows are lowered: 5 output rows at stride 2 of a 3-tall kernel read 11."""
    node, graph, _ = conv_graph(Case(2, 11, 8, 3, (3, 2), (2, 1), (1, 0, 0, 0)))
    geo = ConvGeometry.of(node, graph)
    assert (geo.oh, geo.ow) == (5, 7) and conv_mec.lowered_floats(geo) == 11 * 2 * 2 * 7


@pytest.mark.parametrize("flags", [("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"),
                                   ("-std=c99", "-Wall", "-Wextra", "-Werror", "-ffreestanding", "-O2",
                                    "-DTB_GEMM_SCALAR")])
def test_kernels_compile_warning_free(flags: tuple[str, ...], tmp_path) -> None:
    for name in ("conv_im2col.c", "conv_mec.c", "conv_kn2row.c", "conv_hcw.c"):
        done = subprocess.run(["cc", *flags, "-c", str(kernels_dir() / name), "-o", str(tmp_path / "k.o")],
                              capture_output=True, text=True)
        assert done.returncode == 0 and not done.stderr, f"{name}: {done.stderr}"


def test_scan_block_matches_the_c_header() -> None:
    from tasobuild.primitives.conv_variants import SCAN_PIXELS

    text = (kernels_dir() / "tb_conv_families.h").read_text()
    assert f"#define TB_SCAN_PIXELS {SCAN_PIXELS}\n" in text
    assert SCAN_PIXELS % 6 == 0 and SCAN_PIXELS % 16 == 0  # whole MR-row and NR-column panels
