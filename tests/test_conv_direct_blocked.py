"""The register-blocked direct convolution (conv_direct_blocked.c): every input layout, every ISA path, views."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from tasobuild import native
from tasobuild.primitives.conv_direct_blocked import PRIMITIVES
from tasobuild.primitives.transforms import from_layout, to_layout
from tests.guard import guarded_kernels, run_guarded
from tests.test_conv_primitives import (
    CASES,
    CLIP6,
    LEAKY,
    RELU,
    SIGMOID,
    Case,
    assert_close,
    buffers_for,
    check_view,
    conv_graph,
    grid,
    reference,
    run,
    run_tiles,
)
from tests.test_gemm import VARIANTS

# Shapes that reach each path of the kernel: blocks of 2 vectors, of 1 vector and the channel tail (45 = 32 + 13 on
# AVX-512, 2x16 + 8 + 5 on AVX2: masked where the ISA has masked loads, else single channels; 24 = a vector and a masked
# one, or on AVX-512 with an HWC input 3 vectors of channel pairs), rows split into near-equal blocks of at most 12 or 6
# pixels, between border pixels, stride 2, dilation, the first layers of MobileNetV2 (3 -> 32, 3x3 s2) and ResNet-18 (3
# -> 64, 7x7 s2) at reduced size, a channel count below one vector, and 1x1 convolutions: run as one long row of pixels
# across row ends (7x9 and 5x5 maps, so blocks straddle rows), and padded or strided ones, which are not; a 1x1 with
# small weights runs in chunks of pixels that do not stop at row ends either; weights large enough to be prefetched a
# panel ahead; two panels at once where the input has few channels.
BLOCKED_CASES = (
    ("first_layer_3x3_s2", Case(3, 23, 21, 32, (3, 3), (2, 2), (1, 1, 1, 1), act=CLIP6)),
    ("first_layer_7x7_s2", Case(3, 30, 29, 64, (7, 7), (2, 2), (3, 3, 3, 3), act=RELU)),
    ("tails_45_channels", Case(5, 9, 31, 45, (3, 3), pads=(1, 1, 1, 1), act=LEAKY)),
    ("dilated_asym_pads", Case(4, 17, 19, 24, (3, 5), (1, 2), (2, 0, 1, 3), (2, 3), act=SIGMOID)),
    ("narrow_4_channels", Case(6, 8, 14, 4, (3, 3), pads=(0, 1, 2, 1))),
    ("pointwise_flat_24_channels", Case(16, 7, 9, 24, (1, 1), act=CLIP6)),
    ("pointwise_flat_45_channels", Case(37, 5, 5, 45, (1, 1), act=RELU)),
    ("pointwise_chunked", Case(64, 23, 21, 40, (1, 1), act=CLIP6)),  # chunks of 60 pixels (16 KiB of input)
    ("pointwise_padded", Case(8, 6, 7, 20, (1, 1), pads=(1, 0, 0, 1))),
    ("pointwise_stride_2", Case(8, 9, 11, 17, (1, 1), (2, 2))),
    # weights past 64 KiB (160 x 120 floats): every block prefetches the next panel's lines, the last panel none
    ("pointwise_prefetched_panels", Case(160, 7, 7, 120, (1, 1), act=CLIP6)),
    # channel pairs (AVX-512): a 24-wide panel as 3 pair vectors, an odd input channel count (the last channel
    # alone), and a 3x3 over 32 + 24 channels (its second panel in pairs, between border pixels)
    ("pairs_24_odd_inputs", Case(17, 6, 11, 24, (1, 1), act=CLIP6)),
    ("pairs_3x3_56_channels", Case(9, 7, 10, 56, (3, 3), pads=(1, 1, 1, 1), act=RELU)),
    # at most 16 input channels (AVX-512): two whole panels as one block of 6 pixels x 64 channels, then a third
    # panel alone (a 1x1 run flat, SqueezeNet's fire expansions), or a masked tail (a 3x3 between border pixels)
    ("two_panels_pointwise_16_to_96", Case(16, 7, 9, 96, (1, 1), act=RELU)),
    ("two_panels_3x3_5_to_77", Case(5, 8, 13, 77, (3, 3), (2, 1), (1, 1, 1, 1), act=CLIP6)),
)
UNGROUPED = tuple((label, case) for label, case, _ in CASES if case.groups == 1) + BLOCKED_CASES


def test_registry() -> None:
    assert [(p.name, p.family, p.layout_in, p.layout_out) for p in PRIMITIVES] == [
        ("conv_direct_blocked_chw_to_hwc", "direct", "CHW", "HWC"),
        ("conv_direct_blocked_hwc", "direct", "HWC", "HWC"),
        ("conv_direct_blocked_hcw_to_hwc", "direct", "HCW", "HWC")]
    node, graph, _ = conv_graph(Case(6, 8, 9, 9, (3, 3), groups=3))
    assert not any(p.applies(node, graph) for p in PRIMITIVES)  # groups == 1 only
    node, graph, _ = conv_graph(Case(3, 8, 9, 5, (3, 3)))
    assert all(p.applies(node, graph) and p.workspace(node, graph) == 0 for p in PRIMITIVES)
    (w0, w1) = PRIMITIVES[0].weights(node, graph)
    # one panel, [kh][kw][c][M]: weight W[m][c][ki][kj] at ((ki*3 + kj)*3 + c)*5 + m
    assert w0[((1 * 3 + 2) * 3 + 1) * 5 + 4] == graph.const("W")[4, 1, 1, 2] and w1.shape == (5,)
    node, graph, _ = conv_graph(Case(3, 8, 9, 40, (3, 3)))
    (w0, _) = PRIMITIVES[0].weights(node, graph)
    # panels of 32 channels: channels 32..39 are the second panel, [kh][kw][c][8], after the first one's 32*9*3
    assert w0.shape == (40 * 9 * 3,)
    assert w0[((1 * 3 + 2) * 3 + 1) * 32 + 31] == graph.const("W")[31, 1, 1, 2]
    assert w0[32 * 9 * 3 + ((1 * 3 + 2) * 3 + 1) * 8 + 3] == graph.const("W")[35, 1, 1, 2]


@pytest.mark.parametrize("label, case", UNGROUPED, ids=[c[0] for c in UNGROUPED])
def test_matches_reference(label: str, case: Case) -> None:
    node, graph, x = conv_graph(case)
    ref = reference(case, graph, x)
    for prim in PRIMITIVES:
        (call,) = prim.call(node, graph)
        try:
            assert_close(run(prim, call, graph, buffers_for(prim, node, graph, x)), ref)
        except AssertionError as e:
            raise AssertionError(f"{prim.name}: {e}") from None


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_isa_path(variant: str) -> None:
    """AVX-512, AVX2+FMA, the plain one-float 'vector' (the vector-extension and plain-C builds both take it)."""
    kernels = native.load("cc", VARIANTS[variant], Path(tempfile.gettempdir()) / "tasobuild-test-bindings")
    for _, case in BLOCKED_CASES:
        node, graph, x = conv_graph(case, seed=4)
        ref = reference(case, graph, x)
        for prim in PRIMITIVES:
            (call,) = prim.call(node, graph)
            buffers = {"in0": to_layout(x, prim.layout_in)}
            buffers.update({f"w{k}": w for k, w in enumerate(prim.weights(node, graph))})
            out = run_guarded(kernels, call, buffers)["out"]
            assert_close(from_layout(out, graph.shape("y"), prim.layout_out).astype(np.float64), ref)


@pytest.mark.parametrize("label, case", BLOCKED_CASES, ids=[c[0] for c in BLOCKED_CASES])
def test_views(label: str, case: Case) -> None:
    """Channel x row views: the first rows with the first channels, a middle slab, the last row with a range that
    starts mid-vector; accumulate off and on; the input rows a view does not need are NaN."""
    node, graph, x = conv_graph(case, seed=5)
    oh, _ = case.out_hw
    views = (((0, min(9, case.m)), (0, 2)), ((3, case.m), (oh // 3, oh - oh // 3)), ((1, case.m - 1), (oh - 1, oh)))
    for channels, rows in views:
        check_view(case, node, graph, x, channels=channels, rows=rows, primitives=PRIMITIVES)


@pytest.mark.parametrize("label, case", BLOCKED_CASES, ids=[c[0] for c in BLOCKED_CASES])
def test_tiled_views_are_bit_identical(label: str, case: Case) -> None:
    """A 3 (channel ranges, cut mid-vector and mid-pair-group) x 2 (row ranges) grid of views gives the whole
    call's output bit for bit: an output channel sums in the same order whatever view computes it."""
    node, graph, x = conv_graph(case, seed=6)
    oh, _ = case.out_hw
    tiles = [(c, r) for c in grid(case.m, 3) for r in grid(oh, 2)]
    for prim in PRIMITIVES:
        (call,) = prim.call(node, graph)
        buffers = buffers_for(prim, node, graph, x)
        whole = run_guarded(guarded_kernels(), call, buffers)["out"]
        tiled = run_tiles(call, buffers, tiles)
        assert not np.isnan(whole).any() and np.array_equal(tiled, whole), prim.name
