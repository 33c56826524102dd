"""Every convolution primitive against a float64 NumPy reference, on shapes chosen to hit the awkward cases (odd
sizes, stride 2, asymmetric padding, dilation, groups, depthwise with multipliers, 1x1, GEMM block edges). Every call
runs between canary regions with a workspace of exactly the declared size (tests/guard.py): a kernel that writes
outside its output or workspace, or into its inputs or weights, fails."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tasobuild.ir import Activation, Constant, Graph, Node, Shape, attrs
from tasobuild.primitives import KernelCall, Primitive, conv, conv_variants
from tasobuild.primitives.conv_table import ConvGeometry
from tasobuild.primitives.transforms import from_layout, to_layout
from tests.guard import guarded_kernels, run_guarded

# The same-layout CHW and HWC kernels: direct, depthwise, 1x1 and the im2col / im2row copies.
PRIMITIVES: tuple[Primitive, ...] = conv.PRIMITIVES + tuple(
    p for p in conv_variants.PRIMITIVES if p.name in ("conv_im2col_gemm_chw", "conv_im2row_gemm_hwc"))

RELU, CLIP6, LEAKY, SIGMOID, NONE = (Activation("relu"), Activation("clip", 0.0, 6.0), Activation("leaky_relu", 0.1),
                                     Activation("sigmoid"), Activation("none"))


# ------------------------------------------------------------------------------------------------------ helpers


@dataclasses.dataclass(frozen=True)
class Case:
    c: int
    h: int
    w: int
    m: int
    k: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    dil: tuple[int, int] = (1, 1)
    groups: int = 1
    act: Activation = NONE

    @property
    def out_hw(self) -> tuple[int, int]:
        (kh, kw), (sh, sw), (dh, dw), (t, left, b, r) = self.k, self.stride, self.dil, self.pads
        return (self.h + t + b - dh * (kh - 1) - 1) // sh + 1, (self.w + left + r - dw * (kw - 1) - 1) // sw + 1


def conv_graph(case: Case, seed: int = 0) -> tuple[Node, Graph, np.ndarray]:
    """A one-conv graph with random weights, and a random logical (C,H,W) input."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((case.m, case.c // case.groups, *case.k)).astype(np.float32)
    bias = rng.standard_normal(case.m).astype(np.float32)
    x = rng.standard_normal((case.c, case.h, case.w)).astype(np.float32)
    node = Node("conv0", "conv", ("x",), "y", ("W", "b"),
                attrs(kernel=case.k, stride=case.stride, pads=case.pads, dilation=case.dil, groups=case.groups),
                case.act)
    oh, ow = case.out_hw
    shapes = {"x": Shape(case.c, case.h, case.w), "y": Shape(case.m, oh, ow)}
    consts = (Constant.of("W", weight), Constant.of("b", bias))
    return node, Graph((node,), tuple(sorted(shapes.items())), consts, "x", "y", (), ()), x


def reference(case: Case, graph: Graph, x: np.ndarray, with_bias_act: bool = True) -> np.ndarray:
    """Convolution in float64: zero-pad, then one tensor contraction per tap and group."""
    (kh, kw), (sh, sw), (dh, dw), (t, left, b, r) = case.k, case.stride, case.dil, case.pads
    weight, bias = graph.const("W").astype(np.float64), graph.const("b").astype(np.float64)
    xp = np.pad(x.astype(np.float64), ((0, 0), (t, b), (left, r)))
    oh, ow = case.out_hw
    cg, mg = case.c // case.groups, case.m // case.groups
    out = np.zeros((case.m, oh, ow))
    for g in range(case.groups):
        for ki in range(kh):
            for kj in range(kw):
                patch = xp[g * cg:(g + 1) * cg, ki * dh:ki * dh + sh * (oh - 1) + 1:sh,
                           kj * dw:kj * dw + sw * (ow - 1) + 1:sw]
                out[g * mg:(g + 1) * mg] += np.einsum("mc,chw->mhw", weight[g * mg:(g + 1) * mg, :, ki, kj], patch)
    if not with_bias_act:
        return out
    out += bias[:, None, None]
    act = case.act
    return {"none": lambda v: v, "relu": lambda v: np.maximum(v, 0.0),
            "clip": lambda v: np.clip(v, act.a, act.b), "leaky_relu": lambda v: np.where(v < 0, act.a * v, v),
            "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v))}[act.kind](out)


def buffers_for(prim: Primitive, node: Node, graph: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    buffers = {"in0": to_layout(x, prim.layout_in)}
    buffers.update({f"w{k}": w for k, w in enumerate(prim.weights(node, graph))})
    return buffers


def run(prim: Primitive, call: KernelCall, graph: Graph, buffers: dict[str, np.ndarray]) -> np.ndarray:
    out = run_guarded(guarded_kernels(), call, buffers)["out"]
    return from_layout(out, graph.shape("y"), prim.layout_out).astype(np.float64)


def assert_close(got: np.ndarray, ref: np.ndarray, tol: float = 1e-5) -> None:
    scale = float(np.max(np.abs(ref))) or 1.0
    err = float(np.max(np.abs(got - ref)))
    assert err <= tol * scale, f"max error {err:.3g} > {tol} x max|ref| {scale:.3g}"


def applicable(node: Node, graph: Graph) -> list[Primitive]:
    return [p for p in PRIMITIVES if p.applies(node, graph)]


def check_every_applicable(case: Case, expected: tuple[str, ...],
                           primitives: tuple[Primitive, ...] = PRIMITIVES) -> None:
    """The primitives of `primitives` that apply to the case are exactly `expected`, and each matches the reference.
    Shared by the conv family tests."""
    node, graph, x = conv_graph(case)
    prims = [p for p in primitives if p.applies(node, graph)]
    assert sorted(p.name for p in prims) == sorted(expected)
    ref = reference(case, graph, x)
    for prim in prims:
        (call,) = prim.call(node, graph)
        got = run(prim, call, graph, buffers_for(prim, node, graph, x))
        try:
            assert_close(got, ref)
        except AssertionError as e:
            raise AssertionError(f"{prim.name}: {e}") from None


def with_params(call: KernelCall, **changes: int) -> KernelCall:
    return dataclasses.replace(call, params=tuple((k, changes.get(k, v)) for k, v in call.params))


# -------------------------------------------------------------------------------------------------------- cases

GENERAL = ("conv_direct_chw", "conv_direct_hwc", "conv_im2col_gemm_chw", "conv_im2row_gemm_hwc")
POINTWISE = ("conv_1x1_gemm_chw", "conv_1x1_gemm_hwc")
DEPTHWISE = ("conv_depthwise_direct_chw", "conv_depthwise_direct_hwc")

CASES: tuple[tuple[str, Case, tuple[str, ...]], ...] = (
    ("3x3_same_odd", Case(3, 7, 9, 5, (3, 3), pads=(1, 1, 1, 1), act=RELU), GENERAL),
    ("3x3_stride2_asym", Case(4, 11, 10, 7, (3, 3), (2, 2), (0, 1, 1, 0), act=CLIP6), GENERAL),
    ("5x3_stride_2x1_dil", Case(3, 13, 12, 6, (5, 3), (2, 1), (2, 0, 1, 3), (2, 3), act=LEAKY), GENERAL),
    ("7x7_stride2_wide_pad", Case(2, 15, 17, 8, (7, 7), (2, 2), (3, 3, 3, 3), act=SIGMOID), GENERAL),
    ("groups3", Case(6, 8, 9, 9, (3, 3), (1, 2), (1, 1, 0, 2), groups=3, act=RELU), GENERAL),
    ("1x1", Case(13, 6, 7, 11, (1, 1), act=RELU), GENERAL + POINTWISE),
    ("1x1_groups2", Case(8, 5, 5, 6, (1, 1), groups=2, act=CLIP6), GENERAL + POINTWISE),
    ("1x1_stride2", Case(8, 9, 9, 10, (1, 1), (2, 2)), GENERAL),
    ("depthwise_3x3", Case(10, 9, 8, 10, (3, 3), pads=(1, 1, 1, 1), groups=10, act=CLIP6), GENERAL + DEPTHWISE),
    ("depthwise_mult2_s2", Case(5, 10, 11, 10, (3, 3), (2, 2), (1, 0, 1, 1), groups=5, act=RELU),
     GENERAL + DEPTHWISE),
    ("depthwise_5x5_dil", Case(7, 12, 12, 14, (5, 5), (1, 1), (4, 4, 4, 4), (2, 2), groups=7), GENERAL + DEPTHWISE),
    ("single_channel", Case(1, 5, 5, 3, (2, 2), act=LEAKY), GENERAL + DEPTHWISE),
    # GEMM block edges: K = 64*9 > KC_WHOLE (two depth blocks), M > MC, pixels not a multiple of the micro-tile
    ("deep_k", Case(64, 7, 9, 100, (3, 3), pads=(1, 1, 1, 1), act=RELU), GENERAL),
    # pixels > NC (4080): the 1x1 GEMM packs the input in more than one column block
    ("many_pixels_1x1", Case(5, 65, 65, 7, (1, 1), act=SIGMOID), GENERAL + POINTWISE),
    # depthwise 3x3 with >= 16 channels: the vectorised HWC path (2 full 16-channel vectors + a 5-channel tail,
    # 4-pixel blocks + border pixels), stride 2 with asymmetric pads, and a map narrower than the 3x3 window
    ("depthwise_3x3_vec", Case(37, 9, 11, 37, (3, 3), pads=(1, 1, 1, 1), groups=37, act=CLIP6), GENERAL + DEPTHWISE),
    ("depthwise_3x3_vec_s2", Case(32, 12, 13, 32, (3, 3), (2, 2), (0, 1, 1, 1), groups=32, act=LEAKY),
     GENERAL + DEPTHWISE),
    ("depthwise_3x3_vec_narrow", Case(16, 3, 2, 16, (3, 3), pads=(1, 1, 1, 1), groups=16, act=SIGMOID),
     GENERAL + DEPTHWISE),
    # maps up to 16 wide, stride 1: whole rows in registers (AVX-512), 7x7 as MobileNetV2's last blocks, and a
    # 16-wide map with a 4-channel tail
    ("depthwise_3x3_vec_7x7", Case(48, 7, 7, 48, (3, 3), pads=(1, 1, 1, 1), groups=48, act=CLIP6),
     GENERAL + DEPTHWISE),
    ("depthwise_3x3_vec_16_wide", Case(20, 5, 16, 20, (3, 3), pads=(1, 1, 1, 1), groups=20, act=RELU),
     GENERAL + DEPTHWISE),
    # im2row's panel-by-panel packing of row-contiguous inputs (CHW, HCW): rows wide enough for its in-bounds
    # panels (one load per tap, AVX-512: strides up to 3, dilation) beside its edge panels; stride 4 per value
    ("stem_7x7_s2_wide", Case(3, 20, 45, 9, (7, 7), (2, 2), (3, 3, 3, 3), act=RELU), GENERAL),
    ("3x3_s3_dil_wide", Case(2, 9, 50, 5, (3, 3), (1, 3), (1, 2, 1, 0), (2, 2), act=CLIP6), GENERAL),
    ("5x5_s4_wide", Case(3, 11, 47, 4, (5, 5), (4, 4), (2, 2, 2, 2)), GENERAL),
)


@pytest.mark.parametrize("label, case, expected", CASES, ids=[c[0] for c in CASES])
def test_every_applicable_primitive_matches_reference(label: str, case: Case, expected: tuple[str, ...]) -> None:
    check_every_applicable(case, expected)


RANGED = CASES[:1] + CASES[4:7] + CASES[8:10] + CASES[14:16]


@pytest.mark.parametrize("label, case, expected", RANGED, ids=[c[0] for c in RANGED])
def test_channel_range_and_accumulate(label: str, case: Case, expected: tuple[str, ...]) -> None:
    """oc_begin/oc_end compute only those channels (others untouched); accumulate adds, without bias or act."""
    node, graph, x = conv_graph(case, seed=1)
    check_channel_range_and_accumulate(case, node, graph, x, begin=1, end=case.m - 2)


def check_channel_range_and_accumulate(case: Case, node: Node, graph: Graph, x: np.ndarray, begin: int, end: int,
                                       tol: float = 1e-5) -> None:
    """check_view over output channels [begin, end) and every row."""
    check_view(case, node, graph, x, channels=(begin, end), rows=(0, case.out_hw[0]), tol=tol)


def needed_input_rows(case: Case, rows: tuple[int, int]) -> tuple[int, int]:
    """The input rows [first, last) that output rows [rows) read: their windows, clipped to the input."""
    (kh, _), (sh, _), (dh, _), (top, *_) = case.k, case.stride, case.dil, case.pads
    first = rows[0] * sh - top
    last = (rows[1] - 1) * sh - top + dh * (kh - 1) + 1
    return max(0, first), min(case.h, last)


def check_view(case: Case, node: Node, graph: Graph, x: np.ndarray, channels: tuple[int, int],
               rows: tuple[int, int], tol: float = 1e-5, primitives: tuple[Primitive, ...] = PRIMITIVES,
               prefixes: tuple[str, ...] = ("",)) -> None:
    """Every applicable primitive (of `primitives` whose name starts with one of `prefixes`) computing only output
    channels [channels) x rows [rows), with accumulate off and on, against the reference. Outside the view the output
    must be left exactly as it was, and the input rows the view does not need hold NaN, so reading any of them spoils
    the result. Shared by the conv family tests."""
    full, raw = reference(case, graph, x), reference(case, graph, x, with_bias_act=False)
    (cb, ce), (rb, re) = channels, rows
    first, last = needed_input_rows(case, rows)
    poisoned = np.full_like(x, np.nan)
    poisoned[:, first:last] = x[:, first:last]
    inside = np.zeros(full.shape, bool)
    inside[cb:ce, rb:re] = True
    rng = np.random.default_rng(2)
    checked = [p for p in primitives if p.applies(node, graph) and p.name.startswith(prefixes)]
    assert checked, f"no primitive starting with {prefixes} applies"
    for prim in checked:
        (call,) = prim.call(node, graph)
        prior = rng.standard_normal(full.shape)
        view = with_params(call, oc_begin=cb, oc_end=ce, oh_begin=rb, oh_end=re)
        for accumulate in (0, 1):
            buffers = buffers_for(prim, node, graph, poisoned)
            buffers["out"] = to_layout(prior.astype(np.float32), prim.layout_out)
            got = run(prim, with_params(view, accumulate=accumulate), graph, buffers)
            want = np.where(inside, prior + raw if accumulate else full, prior)
            try:
                assert_close(got[inside], want[inside], tol)
            except AssertionError as e:
                raise AssertionError(f"{prim.name} channels {channels} rows {rows}: {e}") from None
            assert np.array_equal(got[~inside], prior[~inside].astype(np.float32)), f"{prim.name} wrote outside"


def test_pinned_small_case() -> None:
    """A hand-checked 2x2 box filter over 1..9 (3x3), bias 0.5, stride 1, no pad: [[12,16],[24,28]] + 0.5."""
    case = Case(1, 3, 3, 1, (2, 2))
    node, graph, _ = conv_graph(case)
    graph = dataclasses.replace(graph, constants=(Constant.of("W", np.ones((1, 1, 2, 2), np.float32)),
                                                  Constant.of("b", np.array([0.5], np.float32))))
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3)
    for prim in applicable(node, graph):
        (call,) = prim.call(node, graph)
        got = run(prim, call, graph, buffers_for(prim, node, graph, x))
        assert got.reshape(-1).tolist() == [12.5, 16.5, 24.5, 28.5], prim.name


# ---------------------------------------------------------------------------------------------- registry facts


def test_registry_names_and_layouts() -> None:
    names = [p.name for p in PRIMITIVES]
    assert len(set(names)) == len(names)
    for p in PRIMITIVES:
        assert p.op == "conv" and p.layout_in == p.layout_out and p.name.endswith("_" + p.layout_in.lower())
        assert "tb_conv.h" in p.sources


@pytest.mark.parametrize("label, case, expected", CASES, ids=[c[0] for c in CASES])
def test_call_declares_exact_sizes(label: str, case: Case, expected: tuple[str, ...]) -> None:
    """The call's buffer sizes are the tensors', the transformed weights' and the workspace formula's."""
    node, graph, _ = conv_graph(case)
    oh, ow = case.out_hw
    for prim in applicable(node, graph):
        (call,) = prim.call(node, graph)
        sizes = dict(call.buffer_bytes)
        w0, w1 = prim.weights(node, graph)
        assert sizes["in0"] == case.c * case.h * case.w * 4 and sizes["out"] == case.m * oh * ow * 4
        assert (sizes["w0"], sizes["w1"]) == (w0.nbytes, w1.nbytes) and w0.dtype == np.float32
        assert sizes.get("ws", 0) == prim.workspace(node, graph)
        assert call.args == tuple(r for r, _ in call.buffer_bytes)
        params = dict(call.params)
        assert (params["oc_begin"], params["oc_end"], params["oh_begin"], params["oh_end"], params["accumulate"]) == (
            0, case.m, 0, oh, 0)


def test_workspace_pinned() -> None:
    """Hand-computed workspace bytes for a 3x3 conv 16 -> 32 on 10x10 (pad 1): N = 100 pixels, K = 144."""
    node, graph, _ = conv_graph(Case(16, 10, 10, 32, (3, 3), pads=(1, 1, 1, 1)))
    ws = {p.name: p.workspace(node, graph) for p in applicable(node, graph)}
    assert ws == {"conv_direct_chw": 0, "conv_direct_hwc": 0,
                  "conv_im2col_gemm_chw": 144 * 112 * 4,  # K x N rounded up to 16 columns
                  "conv_im2row_gemm_hwc": 102 * 144 * 4}  # N rounded up to 6 rows x K
    node, graph, _ = conv_graph(Case(16, 10, 10, 32, (1, 1)))
    ws = {p.name: p.workspace(node, graph) for p in applicable(node, graph)}
    assert ws["conv_1x1_gemm_chw"] == 16 * 112 * 4  # one K x N block of the input, packed
    assert ws["conv_1x1_gemm_hwc"] == 96 * 16 * 4  # one MC x K block of the input, packed


def test_geometry_reads_node_attributes() -> None:
    node, graph, _ = conv_graph(Case(6, 8, 9, 9, (3, 2), (1, 2), (1, 0, 2, 1), (2, 1), groups=3))
    geo = ConvGeometry.of(node, graph)
    assert (geo.c, geo.h, geo.w, geo.m, geo.kh, geo.kw, geo.sh, geo.sw) == (6, 8, 9, 9, 3, 2, 1, 2)
    assert (geo.pad_top, geo.pad_left, geo.pad_bottom, geo.pad_right, geo.dh, geo.dw) == (1, 0, 2, 1, 2, 1)
    assert (geo.cg, geo.mg, geo.oh, geo.ow) == (2, 3, 7, 5)


# ------------------------------------------------------------------------------------- row x channel views (tiling)

# The kernels of these files honour row views by narrowing loops or the GEMM's pixel slab (tb_conv.h); across the
# families (library()) that is every direct, depthwise, 1x1, im2col/im2row copy and scan, and HCW primitive.
SLAB_KERNEL_FILES = ("conv_direct.c", "conv_depthwise.c", "conv_1x1.c", "conv_hcw.c", "conv_im2col.c")


def slab_primitives() -> tuple[Primitive, ...]:
    from tasobuild.primitives.registry import library

    return tuple(p for p in library() if p.op == "conv" and p.sources[0] in SLAB_KERNEL_FILES)


# Shapes the families add: more pixels than a scan block (a view's blocks start mid-row), stride-2 blocks that
# split rows, rows wider than a GEMM micro-panel, dilation along W only.
SLAB_CASES = tuple((label, case) for label, case, _ in CASES) + (
    ("deep_k_many_pixels", Case(64, 13, 11, 100, (3, 3), pads=(1, 1, 1, 1), act=RELU)),
    ("stride2_blocks_split_rows", Case(5, 29, 23, 17, (3, 3), (2, 2), (1, 1, 1, 1), act=SIGMOID)),
    ("1x1_wide_rows", Case(7, 3, 70, 9, (1, 1), act=RELU)),
    ("3x3_dil_w_only", Case(3, 9, 12, 5, (3, 3), (1, 1), (1, 2, 0, 2), (1, 2), act=RELU)),
)


def row_views(oh: int, m: int) -> tuple[tuple[tuple[int, int], tuple[int, int]], ...]:
    """(channels, rows) views: rows at the start, in the middle, at the end and a single row, alone and combined
    with a channel range (all channels, a middle range, the upper half, the lower half). Needs oh >= 3."""
    assert oh >= 3, oh
    third = oh // 3
    return (((0, m), (0, third)),
            ((min(1, m - 1), max(m - 1, 1)), (third, max(oh - third, third + 1))),
            ((m // 2, m), (oh - third, oh)),
            ((0, max(1, m // 2)), (oh // 2, oh // 2 + 1)))


@pytest.mark.parametrize("label, case", SLAB_CASES, ids=[c[0] for c in SLAB_CASES])
def test_row_and_channel_views(label: str, case: Case) -> None:
    """Each view computes exactly its channels x rows (accumulate off and on), reads only the input rows it needs
    (the others are NaN) and leaves the rest of the output as it was: every slab primitive of every family."""
    node, graph, x = conv_graph(case, seed=3)
    oh, _ = case.out_hw
    for channels, rows in row_views(oh, case.m):
        check_view(case, node, graph, x, channels, rows, primitives=slab_primitives())


def test_row_views_cover_the_cases() -> None:
    """The views above are what the docstring says: start/middle/end/single rows, stride 2 and dilation included."""
    assert row_views(7, 5) == (((0, 5), (0, 2)), ((1, 4), (2, 5)), ((2, 5), (5, 7)), ((0, 2), (3, 4)))
    assert row_views(3, 1) == (((0, 1), (0, 1)), ((0, 1), (1, 2)), ((0, 1), (2, 3)), ((0, 1), (1, 2)))
    labels = {label for label, _ in SLAB_CASES}
    assert {"3x3_stride2_asym", "5x3_stride_2x1_dil", "depthwise_5x5_dil", "depthwise_3x3_vec_s2"} <= labels
    assert {p.family for p in slab_primitives()} == {"direct", "depthwise", "1x1", "im2col", "im2row"}
    assert {p.layout_in for p in slab_primitives()} == {"CHW", "HWC", "HCW"}


TILED = [c for c in SLAB_CASES if c[0] in ("3x3_stride2_asym", "5x3_stride_2x1_dil", "groups3", "depthwise_3x3_vec",
                                           "depthwise_mult2_s2", "deep_k", "many_pixels_1x1", "deep_k_many_pixels",
                                           "stride2_blocks_split_rows", "1x1_wide_rows", "depthwise_3x3_vec_7x7")]


def grid(extent: int, parts: int) -> list[tuple[int, int]]:
    """[0, extent) cut into `parts` consecutive non-empty ranges, as even as can be."""
    cuts = [extent * i // parts for i in range(parts + 1)]
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if a < b]


# Kernels whose per-element summation order depends on the channel range (never on the row range): the HWC
# depthwise 3x3 runs 16-channel vectors from oc_begin (sums start from the bias; FMA on AVX-512) and the channels
# past the last full vector through the scalar path, so a channel range that moves the vector boundaries rounds a
# few channels differently. Their channel-split tiles match to 1e-6; row-only tiles still match bit for bit.
CHANNEL_SPLIT_ROUNDS = ("conv_depthwise_direct_hwc",)


def run_tiles(call: KernelCall, buffers: dict[str, np.ndarray],
              tiles: list[tuple[tuple[int, int], tuple[int, int]]]) -> np.ndarray:
    """The output of accumulate=0 views (channels, rows), one after another on one output starting as NaN."""
    views = [with_params(call, oc_begin=cb, oc_end=ce, oh_begin=rb, oh_end=re) for (cb, ce), (rb, re) in tiles]
    return run_guarded(guarded_kernels(), views, buffers)["out"]


@pytest.mark.parametrize("label, case", TILED, ids=[c[0] for c in TILED])
def test_tiled_views_reassemble_the_whole_call(label: str, case: Case) -> None:
    """A 2 (channel ranges) x 3 (row ranges) grid of accumulate=0 views, run one after another on one output that
    starts as NaN, gives the whole call's output bit for bit: a view sums each element in the whole call's order
    (except CHANNEL_SPLIT_ROUNDS: within 1e-6, and bit for bit over row-only tiles)."""
    node, graph, x = conv_graph(case, seed=4)
    oh, _ = case.out_hw
    tiles = [(c, r) for c in grid(case.m, 2) for r in grid(oh, 3)]
    assert len(tiles) == 6
    for prim in [p for p in slab_primitives() if p.applies(node, graph)]:
        (call,) = prim.call(node, graph)
        buffers = buffers_for(prim, node, graph, x)
        whole = run_guarded(guarded_kernels(), call, buffers)["out"]
        tiled = run_tiles(call, buffers, tiles)
        assert not np.isnan(whole).any() and not np.isnan(tiled).any(), prim.name
        if prim.name in CHANNEL_SPLIT_ROUNDS:
            assert_close(tiled.astype(np.float64), whole.astype(np.float64), tol=1e-6)
            tiled = run_tiles(call, buffers, [((0, case.m), r) for r in grid(oh, 3)])
        assert np.array_equal(tiled, whole), prim.name


def test_a_primitive_whose_workspace_overflows_the_kernels_index_types_is_no_candidate() -> None:
    """64 channels of 2048x2048 fit (1 GiB), but a 3x3 im2col patch matrix of them would be 9 GiB: direct
    convolutions (no workspace) stay candidates, the patch-matrix ones do not."""
    from tasobuild.candidates import node_candidates
    from tasobuild.importer.context import MAX_TENSOR_BYTES

    node = Node("big", "conv", ("x",), "y", ("W", "b"),
                attrs(kernel=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1), dilation=(1, 1), groups=1), Activation("none"))
    shapes = {"x": Shape(64, 2048, 2048), "y": Shape(8, 2048, 2048)}
    consts = (Constant.of("W", np.zeros((8, 64, 3, 3), np.float32)), Constant.of("b", np.zeros(8, np.float32)))
    graph = Graph((node,), tuple(sorted(shapes.items())), consts, "x", "y", (), ())
    (nc,) = node_candidates(graph)
    names = {c.primitive.name for c in nc.options}
    assert "conv_direct_chw" in names and not any("im2col_gemm" in n for n in names)
    assert all(c.workspace_bytes <= MAX_TENSOR_BYTES for c in nc.options)
