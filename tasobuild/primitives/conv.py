"""Convolution primitives: direct, depthwise and 1x1-GEMM, in CHW and HWC (tb_conv.h).

Rows of the conv rule table (conv_table.py), each reading and writing one layout. im2col / im2row + GEMM, in these
layouts and between every pair of layouts, is conv_variants.py's.
"""

from __future__ import annotations

from tasobuild.primitives import Primitive
from tasobuild.primitives.conv_table import (
    CONV_HEADERS,
    ConvGeometry,
    ConvRow,
    any_conv,
    conv_primitive,
    depthwise,
    floats_packed_a,
    floats_packed_b,
    floats_plain,
    no_workspace,
    packed_a_c_taps,
    packed_b_taps_c,
    plain,
    pointwise,
    w_hwio,
)
from tasobuild.primitives.gemm import gemm_workspace_floats

DIRECT_SOURCES = ("conv_direct.c", "tb_conv_layout.h") + CONV_HEADERS  # the strided axpy is shared with conv_hcw.c
DEPTHWISE_SOURCES = ("conv_depthwise.c",) + CONV_HEADERS
POINTWISE_SOURCES = ("conv_1x1.c", "gemm.c") + CONV_HEADERS


def _ws_1x1_chw(geo: ConvGeometry) -> int:
    return gemm_workspace_floats(geo.mg, geo.pixels, geo.cg, a_packed=True, b_packed=False)


def _ws_1x1_hwc(geo: ConvGeometry) -> int:
    return gemm_workspace_floats(geo.pixels, geo.mg, geo.cg, a_packed=False, b_packed=True)


_ROWS: tuple[ConvRow, ...] = (
    ConvRow("conv_direct_chw", "direct", "CHW", "CHW", DIRECT_SOURCES, any_conv, no_workspace, plain, floats_plain,
            uses_workspace=False),
    ConvRow("conv_direct_hwc", "direct", "HWC", "HWC", DIRECT_SOURCES, any_conv, no_workspace, w_hwio, floats_plain,
            uses_workspace=False),
    ConvRow("conv_depthwise_direct_chw", "depthwise", "CHW", "CHW", DEPTHWISE_SOURCES, depthwise, no_workspace,
            plain, floats_plain, uses_workspace=False),
    ConvRow("conv_depthwise_direct_hwc", "depthwise", "HWC", "HWC", DEPTHWISE_SOURCES, depthwise, no_workspace,
            w_hwio, floats_plain, uses_workspace=False),
    ConvRow("conv_1x1_gemm_chw", "1x1", "CHW", "CHW", POINTWISE_SOURCES, pointwise, _ws_1x1_chw, packed_a_c_taps,
            floats_packed_a),
    ConvRow("conv_1x1_gemm_hwc", "1x1", "HWC", "HWC", POINTWISE_SOURCES, pointwise, _ws_1x1_hwc, packed_b_taps_c,
            floats_packed_b),
)

PRIMITIVES: tuple[Primitive, ...] = tuple(conv_primitive(row) for row in _ROWS)
