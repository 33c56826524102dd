"""Register-blocked direct convolution into HWC (kernels_pyx/conv_direct_blocked.c), family "direct".

For convolutions with few input channels per tap, such as a network's first layer (3 -> 32, 3x3 stride 2 at 224): a
GEMM-based kernel there spends more building its patch matrix, and holds a workspace the size of the input times the
taps, than it spends multiplying, while this kernel keeps a block of up to 12 pixels x 2 vectors of output channels (6
pixels x 4 vectors, two panels, over at most 16 input channels on AVX-512) in registers (bias, relu and clip included)
and reads the input in place. It reads any input layout through strides and writes HWC, so a first layer fed CHW
images also changes layout for free. groups == 1; no workspace; weights in panels of 32 output channels.
"""

from __future__ import annotations

import numpy as np

from tasobuild.ir import LAYOUTS, Layout
from tasobuild.primitives import Primitive
from tasobuild.primitives.conv_table import (
    CONV_HEADERS,
    ConvGeometry,
    ConvRow,
    conv_primitive,
    floats_plain,
    layout_suffix,
    no_workspace,
    w_hwio,
)

SOURCES = ("conv_direct_blocked.c", "tb_conv_blocked.h", "tb_conv_layout.h") + CONV_HEADERS
PANEL = 32  # TB_BLOCKED_PANEL in tb_conv_blocked.h


def w_panels(w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Panels of PANEL output channels, the last one narrower, one after another; each [kh][kw][c][its channels]
    (w_hwio of those channels): a block of output channels reads its weights as one sequential stream."""
    return np.concatenate([w_hwio(w[m:m + PANEL], geo) for m in range(0, w.shape[0], PANEL)])


def _ungrouped(geo: ConvGeometry) -> bool:
    return geo.groups == 1


def _row(layout_in: Layout) -> ConvRow:
    return ConvRow(f"conv_direct_blocked_{layout_suffix(layout_in, 'HWC')}", "direct", layout_in, "HWC", SOURCES,
                   _ungrouped, no_workspace, w_panels, floats_plain, uses_workspace=False)


PRIMITIVES: tuple[Primitive, ...] = tuple(conv_primitive(_row(layout)) for layout in LAYOUTS)
