"""im2col / im2row + GEMM between every pair of layouts (kernels_pyx/conv_im2col.c), in two variants (triNNity's
"copy" and "scan"): "gemm" builds the whole patch matrix at once, "scan" the patch matrix of 96 output pixels at a
time (small workspace); and the HCW-layout direct, depthwise and 1x1-GEMM kernels (kernels_pyx/conv_hcw.c).

The GEMM operand order follows the output layout: CHW and HCW outputs are W . patches (patches as B panels, weights
A-packed with k = (c, ki, kj), family "im2col"); HWC outputs are patches . W^T (patches as A panels, weights B-packed
with k = (ki, kj, c), family "im2row"). A primitive whose input and output layouts differ changes layout inside the
convolution, at no extra cost: the solver then needs no separate transform.
"""

from __future__ import annotations

from tasobuild.ir import LAYOUTS, Layout
from tasobuild.primitives import Primitive
from tasobuild.primitives.conv_table import (
    FAMILY_HEADERS,
    ConvGeometry,
    ConvRow,
    any_conv,
    conv_primitive,
    depthwise,
    floats_packed_a,
    floats_packed_b,
    floats_plain,
    layout_suffix,
    no_workspace,
    packed_a_c_taps,
    packed_b_taps_c,
    plain,
    pointwise,
)
from tasobuild.primitives.gemm import GEMM_MR, GEMM_NR, gemm_workspace_floats, round_up

IM2COL_SOURCES = ("conv_im2col.c", "gemm.c") + FAMILY_HEADERS
HCW_SOURCES = ("conv_hcw.c", "gemm.c") + FAMILY_HEADERS
SCAN_PIXELS = 96  # TB_SCAN_PIXELS in tb_conv_families.h: output pixels per block of the scan variants


def _depth(geo: ConvGeometry) -> int:
    return geo.cg * geo.kh * geo.kw


def _ws_copy_cols(geo: ConvGeometry) -> int:
    return _depth(geo) * round_up(geo.pixels, GEMM_NR)


def _ws_copy_rows(geo: ConvGeometry) -> int:
    return round_up(geo.pixels, GEMM_MR) * _depth(geo)


def _ws_scan_cols(geo: ConvGeometry) -> int:
    return _depth(geo) * round_up(min(geo.pixels, SCAN_PIXELS), GEMM_NR)


def _ws_scan_rows(geo: ConvGeometry) -> int:
    return round_up(min(geo.pixels, SCAN_PIXELS), GEMM_MR) * _depth(geo)


def _im2col_row(variant: str, layout_in: Layout, layout_out: Layout) -> ConvRow:
    """variant "gemm" (copy) or "scan"; the output layout decides im2col (B panels) or im2row (A panels)."""
    rows = layout_out == "HWC"
    family = "im2row" if rows else "im2col"
    if variant == "gemm":
        workspace = _ws_copy_rows if rows else _ws_copy_cols
    else:
        workspace = _ws_scan_rows if rows else _ws_scan_cols
    return ConvRow(f"conv_{family}_{variant}_{layout_suffix(layout_in, layout_out)}", family, layout_in, layout_out,
                   IM2COL_SOURCES, any_conv, workspace, packed_b_taps_c if rows else packed_a_c_taps,
                   floats_packed_b if rows else floats_packed_a)


def _ws_1x1_hcw(geo: ConvGeometry) -> int:
    """The GEMM's packing of one block of one input row [cg][w]."""
    return gemm_workspace_floats(geo.mg, geo.w, geo.cg, a_packed=True, b_packed=False)


_ROWS: tuple[ConvRow, ...] = tuple(
    _im2col_row(variant, src, dst) for variant in ("gemm", "scan") for src in LAYOUTS for dst in LAYOUTS
) + (
    ConvRow("conv_direct_hcw", "direct", "HCW", "HCW", HCW_SOURCES, any_conv, no_workspace, plain, floats_plain,
            uses_workspace=False),
    ConvRow("conv_depthwise_direct_hcw", "depthwise", "HCW", "HCW", HCW_SOURCES, depthwise, no_workspace, plain,
            floats_plain, uses_workspace=False),
    ConvRow("conv_1x1_gemm_hcw", "1x1", "HCW", "HCW", HCW_SOURCES, pointwise, _ws_1x1_hcw, packed_a_c_taps,
            floats_packed_a),
)

PRIMITIVES: tuple[Primitive, ...] = tuple(conv_primitive(row) for row in _ROWS)
