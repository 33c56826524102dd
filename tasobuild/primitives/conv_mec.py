"""MEC (memory-efficient convolution, Cho & Brand 2017) between every pair of layouts (kernels_pyx/conv_mec.c).

Each output column's k_w-wide input strip is lowered once (Hl*k_w*cg values, Hl = (out_h-1)*stride_h + k_h), and
one GEMM per output row reads its k_h-row window of the lowered matrix in place. The output layout picks the GEMM
operand order: CHW/HCW out = W . lowered (weights A-packed, k = (ki, kj, c)); HWC out = lowered . W^T (weights
B-packed, k = (ki, kj, c), im2row's format). Applies when dil_h == 1 (the k_h window must be contiguous rows).
Workspace (floats): the lowered matrix Hl*k_w*cg*out_w, then tb_gemm's packing of one block of it.
"""

from __future__ import annotations

from tasobuild.ir import LAYOUTS, Layout
from tasobuild.primitives import Primitive
from tasobuild.primitives.conv_table import (
    FAMILY_HEADERS,
    ConvGeometry,
    ConvRow,
    conv_primitive,
    floats_packed_a,
    floats_packed_b,
    layout_suffix,
    packed_a_taps_c,
    packed_b_taps_c,
)
from tasobuild.primitives.gemm import gemm_workspace_floats

MEC_SOURCES = ("conv_mec.c", "gemm.c") + FAMILY_HEADERS


def lowered_floats(geo: ConvGeometry) -> int:
    rows = (geo.oh - 1) * geo.sh + geo.kh
    return rows * geo.kw * geo.cg * geo.ow


def _applies(geo: ConvGeometry) -> bool:
    return geo.dh == 1


def _ws_cols(geo: ConvGeometry) -> int:
    """Out CHW/HCW: per output row, W_g [mg][K] . lowered window [K][out_w] (the window packed as B)."""
    depth = geo.kh * geo.kw * geo.cg
    return lowered_floats(geo) + gemm_workspace_floats(geo.mg, geo.ow, depth, a_packed=True, b_packed=False)


def _ws_rows(geo: ConvGeometry) -> int:
    """Out HWC: per output row, lowered window [out_w][K] . W_g^T [K][mg] (the window packed as A)."""
    depth = geo.kh * geo.kw * geo.cg
    return lowered_floats(geo) + gemm_workspace_floats(geo.ow, geo.mg, depth, a_packed=False, b_packed=True)


def _row(layout_in: Layout, layout_out: Layout) -> ConvRow:
    rows = layout_out == "HWC"
    return ConvRow(f"conv_mec_{layout_suffix(layout_in, layout_out)}", "mec", layout_in, layout_out, MEC_SOURCES,
                   _applies, _ws_rows if rows else _ws_cols, packed_b_taps_c if rows else packed_a_taps_c,
                   floats_packed_b if rows else floats_packed_a)


PRIMITIVES: tuple[Primitive, ...] = tuple(conv_primitive(_row(src, dst)) for src in LAYOUTS for dst in LAYOUTS)
