"""The Winograd convolutions (kernels_pyx/conv_winograd.c, tasobuild/primitives/conv_winograd.py): the exact
Cook-Toom matrices, the C transforms rendered from them, every variant and layout against a float64 reference on
shapes with partial tiles, asymmetric padding, channel counts that are not whole lanes and several tile blocks,
channel ranges and accumulation, the exact workspace (every call runs between canaries, tests/guard.py), the
accuracy bound on realistic layers, and the kernel rules (warning-free, stack under 4 KiB)."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tasobuild.ir import Constant, Graph, Node
from tasobuild.primitives import Primitive, registry
from tasobuild.primitives import conv_winograd as cw
from tasobuild.resources import kernels_dir
from tests.test_conv_families import check_tiled_grid
from tests.test_conv_primitives import (
    CLIP6,
    LEAKY,
    RELU,
    SIGMOID,
    Case,
    assert_close,
    buffers_for,
    check_view,
    conv_graph,
    reference,
    run,
)

BY_NAME = {p.name: p for p in cw.PRIMITIVES}


def he_graph(case: Case, seed: int) -> tuple[Node, Graph, np.ndarray]:
    """conv_graph with realistic magnitudes: He-normal weights, small biases, a post-ReLU-like input."""
    node, graph, _ = conv_graph(case, seed)
    rng = np.random.default_rng(seed + 100)
    fan_in = case.c * case.k[0] * case.k[1]
    weight = (rng.standard_normal((case.m, case.c, *case.k)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    bias = (0.1 * rng.standard_normal(case.m)).astype(np.float32)
    x = np.maximum(rng.standard_normal((case.c, case.h, case.w)), 0.0).astype(np.float32)
    graph = dataclasses.replace(graph, constants=(Constant.of("W", weight), Constant.of("b", bias)))
    return node, graph, x


def applicable(node: Node, graph: Graph) -> list[Primitive]:
    return [p for p in cw.PRIMITIVES if p.applies(node, graph)]


# -------------------------------------------------------------------------------------------------- mathematics


def test_f2x2_3x3_matrices_pinned() -> None:
    """Points 0, 1, -1, infinity (hand-checked: y0 = g0 d0 + g1 d1 + g2 d2)."""
    at, g, bt = cw.VARIANTS[0].matrices()
    h = Fraction(1, 2)
    assert at == ((1, 1, 1, 0), (0, 1, -1, 1))
    assert g == ((-1, 0, 0), (h, h, h), (h, -h, h), (0, 0, 1))
    assert bt == ((-1, 0, 1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, -1, 0, 1))


@pytest.mark.parametrize("variant", cw.VARIANTS, ids=[v.name for v in cw.VARIANTS])
def test_matrices_compute_correlation(variant: cw.WinogradVariant) -> None:
    """In float64 on random data the transform pipeline is the 2-D correlation of an alpha x alpha tile."""
    at, g, bt = (np.array([[float(x) for x in row] for row in mat]) for mat in variant.matrices())
    rng = np.random.default_rng(0)
    d, k = rng.standard_normal((variant.alpha, variant.alpha)), rng.standard_normal((variant.r, variant.r))
    y = at @ ((g @ k @ g.T) * (bt @ d @ bt.T)) @ at.T
    want = np.array([[np.sum(d[i:i + variant.r, j:j + variant.r] * k) for j in range(variant.m)]
                     for i in range(variant.m)])
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-12)
    assert (variant.alpha, len(at), len(g[0])) == (variant.m + variant.r - 1, variant.m, variant.r)


def test_cook_toom_rejects_repeated_points() -> None:
    with pytest.raises(AssertionError):
        cw.cook_toom(2, 3, (Fraction(0), Fraction(1), Fraction(1)))


def test_rendered_transforms_are_up_to_date() -> None:
    """tb_winograd_tf.h is exactly what render_transforms() makes of the matrices (regenerate it if this fails)."""
    assert (kernels_dir() / "tb_winograd_tf.h").read_text() == cw.render_transforms()


def test_block_sizes_match_the_c_header() -> None:
    text = (kernels_dir() / "tb_winograd.h").read_text()
    defined = dict(re.findall(r"#define (TB_WINO_\w*BLOCK) (\d+)", text))
    assert defined == {"TB_WINO_BLOCK": str(cw.WINO_BLOCK), "TB_WINO_LOWMEM_BLOCK": str(cw.WINO_LOWMEM_BLOCK)}


# ---------------------------------------------------------------------------------------------------- kernels

R3, R5 = ("f2x2_3x3", "f3x3_3x3", "f4x4_3x3"), ("f2x2_5x5", "f3x3_5x5")

CASES: tuple[tuple[str, Case], ...] = (
    ("3x3_same_odd", Case(3, 7, 9, 5, (3, 3), pads=(1, 1, 1, 1), act=RELU)),
    ("3x3_asym_pad", Case(20, 11, 13, 37, (3, 3), pads=(0, 2, 1, 0), act=CLIP6)),
    ("3x3_no_pad_1px", Case(17, 3, 5, 16, (3, 3), act=LEAKY)),  # a single output row
    ("3x3_many_blocks", Case(9, 41, 39, 18, (3, 3), pads=(1, 1, 1, 1), act=SIGMOID)),  # > 96 tiles for every variant
    ("3x3_wide_pad", Case(16, 6, 7, 33, (3, 3), pads=(2, 0, 3, 2))),  # padding wider than needed
    ("5x5_asym_pad", Case(17, 13, 12, 9, (5, 5), pads=(2, 1, 0, 3), act=RELU)),
    ("5x5_many_blocks", Case(10, 35, 33, 24, (5, 5), pads=(2, 2, 2, 2), act=CLIP6)),
    ("5x5_small", Case(8, 5, 6, 7, (5, 5), pads=(1, 2, 0, 1))),
    # the batched products' depth is in_c: 400 runs as one GEMM k-block (up to 512), 520 as two (384 + 136)
    ("3x3_deep_one_block", Case(400, 5, 6, 20, (3, 3), pads=(1, 1, 1, 1), act=RELU)),
    ("3x3_deep_two_blocks", Case(520, 4, 5, 18, (3, 3), pads=(1, 1, 1, 1), act=CLIP6)),
)


def _expected(case: Case, ow: int, oh: int) -> list[str]:
    names = R3 if case.k == (3, 3) else R5
    return sorted(cw.primitive_name(v, layout, lowmem) for v in cw.VARIANTS if v.name in names
                  for layout in ("CHW", "HWC") for lowmem in (False, True)
                  if not lowmem or -(-oh // v.m) * -(-ow // v.m) > cw.WINO_LOWMEM_BLOCK)


@pytest.mark.parametrize("label, case", CASES, ids=[c[0] for c in CASES])
def test_every_variant_matches_reference(label: str, case: Case) -> None:
    node, graph, x = he_graph(case, seed=len(label))
    prims = applicable(node, graph)
    oh, ow = case.out_hw
    assert sorted(p.name for p in prims) == _expected(case, ow, oh)
    ref = reference(case, graph, x)
    for prim in prims:
        (call,) = prim.call(node, graph)
        got = run(prim, call, graph, buffers_for(prim, node, graph, x))  # guarded: exact workspace, canaries
        assert_close(got, ref, cw.ERROR_BOUND)


@pytest.mark.parametrize("label, case", CASES[1:2] + CASES[3:4] + CASES[5:6], ids=["3x3", "3x3_blocks", "5x5"])
def test_channel_range_and_accumulate(label: str, case: Case) -> None:
    """oc_begin/oc_end compute only those channels (others untouched); accumulate adds, without bias or act."""
    node, graph, x = he_graph(case, seed=7)
    # begin = 3: not on a lane boundary
    check_view(case, node, graph, x, channels=(3, case.m - 2), rows=(0, case.out_hw[0]), tol=cw.ERROR_BOUND,
               primitives=cw.PRIMITIVES)


# Row views, alone and with a channel range. Tiles are 2, 3 or 4 rows tall, so most views start or end inside a
# tile: that tile is computed whole but stores only the view's rows, and reads zeros for the input rows below or
# above the view's window (the check poisons them with NaN).
CASE_OF = dict(CASES)
ROW_VIEWS: tuple[tuple[str, tuple[int, int] | None, tuple[int, int]], ...] = (
    ("3x3_asym_pad", None, (0, 3)),  # first rows: no top padding
    ("3x3_asym_pad", (3, 35), (3, 7)),  # middle rows x a channel range off the lane boundaries
    ("3x3_asym_pad", None, (7, 10)),  # last rows: one row of bottom padding
    ("3x3_asym_pad", (16, 17), (5, 6)),  # one row of one channel
    ("3x3_many_blocks", (1, 17), (10, 30)),  # more than one block of tiles inside the view
    ("3x3_wide_pad", None, (8, 9)),  # the last row: padding wider than the window
    ("3x3_wide_pad", (0, 20), (0, 1)),  # the first row: only padding above it
    ("5x5_asym_pad", (2, 7), (4, 9)),
    ("5x5_many_blocks", None, (13, 14)),  # one row in the middle of a 5-tall window
    ("5x5_small", (1, 6), (1, 2)),  # the last of 2 rows
)


@pytest.mark.parametrize("label, channels, rows", ROW_VIEWS,
                         ids=[f"{c[0]}-ch{c[1]}-rows{c[2]}".replace(" ", "") for c in ROW_VIEWS])
def test_row_view_and_accumulate(label: str, channels: tuple[int, int] | None, rows: tuple[int, int]) -> None:
    """Output rows [rows) (x channels, or all of them) only, reading only the input rows they need (the others are
    NaN); nothing outside the view changes; accumulate adds the raw convolution."""
    case = CASE_OF[label]
    node, graph, x = he_graph(case, seed=5)
    check_view(case, node, graph, x, channels=channels or (0, case.m), rows=rows, tol=cw.ERROR_BOUND,
               primitives=cw.PRIMITIVES)


@pytest.mark.parametrize("label", ["3x3_asym_pad", "3x3_many_blocks", "5x5_asym_pad"])
def test_grid_of_views_reassembles_the_whole_call(label: str) -> None:
    """2 channel ranges x 3 row ranges, one after another, write the whole call's result (and add up to the raw
    convolution when accumulating)."""
    check_tiled_grid(CASE_OF[label], cw.PRIMITIVES, ("conv_winograd",), tol=cw.ERROR_BOUND)


def test_pinned_small_case() -> None:
    """A 3x3 box filter over 1..16 (4x4), bias 0.5, no padding: [[54, 63], [90, 99]] + 0.5, to float rounding."""
    case = Case(1, 4, 4, 1, (3, 3))
    node, graph, _ = conv_graph(case)
    graph = dataclasses.replace(graph, constants=(Constant.of("W", np.ones((1, 1, 3, 3), np.float32)),
                                                  Constant.of("b", np.array([0.5], np.float32))))
    x = np.arange(1, 17, dtype=np.float32).reshape(1, 4, 4)
    for prim in applicable(node, graph):
        (call,) = prim.call(node, graph)
        got = run(prim, call, graph, buffers_for(prim, node, graph, x))
        np.testing.assert_allclose(got.reshape(-1), [54.5, 63.5, 90.5, 99.5], rtol=1e-6, err_msg=prim.name)


# Realistic layers (He-normal weights, post-ReLU inputs): the per-layer error every registered variant must keep.
ACCURACY_LAYERS = (Case(64, 20, 20, 64, (3, 3), pads=(1, 1, 1, 1)), Case(256, 9, 9, 256, (3, 3), pads=(1, 1, 1, 1)),
                   Case(64, 20, 20, 64, (5, 5), pads=(2, 2, 2, 2)), Case(192, 9, 9, 128, (5, 5), pads=(2, 2, 2, 2)))


@pytest.mark.parametrize("case", ACCURACY_LAYERS, ids=[f"{c.c}x{c.h}_{c.k[0]}x{c.k[1]}" for c in ACCURACY_LAYERS])
def test_accuracy_on_realistic_layers(case: Case) -> None:
    node, graph, x = he_graph(case, seed=11)
    ref = reference(case, graph, x)
    scale = float(np.max(np.abs(ref)))
    for prim in applicable(node, graph):
        if "lowmem" in prim.name:
            continue  # the same arithmetic as its default variant
        (call,) = prim.call(node, graph)
        got = run(prim, call, graph, buffers_for(prim, node, graph, x))
        assert float(np.max(np.abs(got - ref))) / scale <= cw.ERROR_BOUND, prim.name


# ------------------------------------------------------------------------------------------------ registry facts


def test_workspace_pinned() -> None:
    """3x3 conv 16 -> 32 on 10x10, pad 1: 100 outputs. F(2x2): 25 tiles, alpha^2 = 16, 16 lanes (C, M whole lanes);
    scratch 2 * 16 * 16 floats; the GEMM packs ceil(25/6)*6 = 30 rows of 16 channels. Low-memory: 12 tiles, 12 rows."""
    node, graph, _ = conv_graph(Case(16, 10, 10, 32, (3, 3), pads=(1, 1, 1, 1)))
    ws = {p.name: p.workspace(node, graph) for p in applicable(node, graph)}
    assert ws["conv_winograd_f2x2_3x3_chw"] == ws["conv_winograd_f2x2_3x3_hwc"] == (512 + 16 * 25 * 48 + 30 * 16) * 4
    assert ws["conv_winograd_f2x2_3x3_lowmem_chw"] == (512 + 16 * 12 * 48 + 12 * 16) * 4
    # F(4x4): 9 tiles, alpha^2 = 36; no low-memory variant (its block would hold all 9 tiles too)
    assert ws["conv_winograd_f4x4_3x3_chw"] == (2 * 36 * 16 + 36 * 9 * 48 + 12 * 16) * 4
    assert "conv_winograd_f4x4_3x3_lowmem_chw" not in ws
    # F(3x3,5x5) runs 8 lanes: 17 input channels round up to 24, 9 outputs to 16
    node, graph, _ = conv_graph(Case(17, 7, 7, 9, (5, 5), pads=(2, 2, 2, 2)))
    ws = {p.name: p.workspace(node, graph) for p in applicable(node, graph)}
    assert ws["conv_winograd_f3x3_5x5_hwc"] == (2 * 49 * 8 + 49 * 9 * (24 + 16) + 12 * 17) * 4


def test_call_declares_exact_sizes() -> None:
    case = Case(20, 11, 13, 37, (3, 3), pads=(0, 2, 1, 0), act=CLIP6)
    node, graph, _ = conv_graph(case)
    for prim in applicable(node, graph):
        (call,) = prim.call(node, graph)
        sizes = dict(call.buffer_bytes)
        w0, w1 = prim.weights(node, graph)
        assert (sizes["w0"], sizes["w1"], sizes["ws"]) == (w0.nbytes, w1.nbytes, prim.workspace(node, graph))
        assert sizes["in0"] == 20 * 11 * 13 * 4 and sizes["out"] == 37 * 10 * 13 * 4
        assert call.args == ("in0", "w0", "w1", "out", "ws") and call.function == "tb_" + prim.name
        assert prim.family == "winograd" and "conv_winograd.c" in prim.sources and "gemm.c" in prim.sources


@pytest.mark.parametrize("label, case", (
    ("stride2", Case(4, 9, 9, 4, (3, 3), (2, 2), (1, 1, 1, 1))),
    ("dilation2", Case(4, 9, 9, 4, (3, 3), dil=(2, 2), pads=(2, 2, 2, 2))),
    ("groups2", Case(4, 9, 9, 4, (3, 3), pads=(1, 1, 1, 1), groups=2)),
    ("1x1", Case(4, 9, 9, 4, (1, 1))),
    ("3x5", Case(4, 9, 9, 4, (3, 5))),
    ("7x7", Case(4, 9, 9, 4, (7, 7))),
), ids=lambda v: v if isinstance(v, str) else "")
def test_does_not_apply(label: str, case: Case) -> None:
    node, graph, _ = conv_graph(case)
    assert applicable(node, graph) == []


def test_registered_in_the_library() -> None:
    assert "conv_winograd" in registry.family_modules()
    names = {p.name for p in registry.library()}
    assert {p.name for p in cw.PRIMITIVES} <= names and len(cw.PRIMITIVES) == 20
    for p in cw.PRIMITIVES:
        assert p.op == "conv" and p.layout_in == p.layout_out and p.name.endswith("_" + p.layout_in.lower())


# -------------------------------------------------------------------------------------------------- kernel rules


@pytest.mark.parametrize("flags", [("-march=native",), ("-ffreestanding", "-fno-builtin")], ids=["native", "portable"])
def test_kernel_compiles_warning_free_with_small_stack(tmp_path: Path, flags: tuple[str, ...]) -> None:
    """-Wall -Wextra -pedantic clean (also freestanding, no SIMD extensions assumed), and every frame
    (gcc -fstack-usage) bounded and under 2 KiB: the kernel inlines its driver and transforms into one frame, and
    the deepest call chain (that frame, tb_gemm and its A packing, about 1.6 KiB) stays under the 4 KiB rule."""
    src = kernels_dir() / "conv_winograd.c"
    done = subprocess.run(["cc", "-O3", *flags, "-ffp-contract=off", "-std=c99", "-Wall", "-Wextra", "-pedantic",
                           "-Werror", "-fstack-usage", f"-I{kernels_dir()}", "-c", str(src), "-o",
                           str(tmp_path / "w.o")], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    usage = [line.split("\t") for line in (tmp_path / "w.su").read_text().splitlines()]
    assert usage and all(kind in ("static", "dynamic,bounded") for _, _, kind in usage), usage
    assert max(int(size) for _, size, _ in usage) < 2048, usage


# ------------------------------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_resnet8_with_winograd_matches_onnxruntime(tmp_path: Path) -> None:
    """A whole network whose convs may only be Winograd (or direct, for the strided ones): the emitted project
    compiles with the Winograd sources and matches ONNX Runtime within the end-to-end tolerance."""
    from tests.e2e import assert_matches, build_and_compile, run_binary, write_spec
    from tests.zoo import ensure_model
    from tests.zoo.reference import random_input, run_onnxruntime

    model = ensure_model("resnet8_torch")
    allow = sorted(BY_NAME) + ["conv_direct_chw", "conv_direct_hwc"]
    spec = write_spec(tmp_path, model, extra="primitives = [" + ", ".join(f'"{a}"' for a in allow) + "]\n")
    built = build_and_compile(spec)
    x = random_input(model, seed=0)
    ours, _ = run_binary(built.binary, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))
    chosen = [n["primitive"] for n in built.report["nodes"] if n["op"] == "conv"]
    assert any(name in BY_NAME for name in chosen), chosen  # measured 4x+ faster than direct on its 3x3 convs


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None or shutil.which("qemu-aarch64") is None,
                    reason="needs aarch64-linux-gnu-gcc and qemu-aarch64")
def test_resnet8_with_winograd_for_the_cortex_a72_runs_under_qemu(tmp_path: Path) -> None:
    """The same network for AArch64 (the transforms' plain-lane path, the GEMM's NEON one): built with the A72's
    cross compiler from the model's costs, run under qemu-aarch64, within the end-to-end tolerance of ONNX
    Runtime, with a Winograd conv in the plan."""
    from tests.e2e import assert_matches, build_and_compile, run_binary, wrap_binary, write_target_spec
    from tests.zoo import ensure_model
    from tests.zoo.reference import random_input, run_onnxruntime

    model = ensure_model("resnet8_torch")
    allow = sorted(BY_NAME) + ["conv_direct_chw", "conv_direct_hwc"]
    spec = write_target_spec(tmp_path, model, "cortex-a72", costs="model",
                             extra="primitives = [" + ", ".join(f'"{a}"' for a in allow) + "]\n")
    built = build_and_compile(spec)
    chosen = [n["primitive"] for n in built.report["nodes"] if n["op"] == "conv"]
    assert any(name in BY_NAME for name in chosen), chosen
    x = random_input(model, seed=0)
    ours, _ = run_binary(wrap_binary(built.binary, ("qemu-aarch64", "-L", "/usr/aarch64-linux-gnu")), x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))
