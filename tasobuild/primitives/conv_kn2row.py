"""kn2row (CHW input) and kn2col (HWC input): one 1x1 GEMM per kernel tap over the whole input, shifted and added
into the output (kernels_pyx/conv_kn2row.c). Two variants each:
  full: all taps in one GEMM into a [k_h*k_w*mg][in_h*in_w] temporary (fast, workspace grows with the kernel);
  acc:  one tap at a time into an [mg][in_h*in_w] buffer, accumulated into the output (low memory).
kn2row also writes HCW (its shift-add runs along output rows, contiguous in CHW and HCW alike).
Offered for stride 1 (any kernel, padding, dilation, groups): with stride s the GEMMs compute s*s times too much.
Workspace (floats): the temporary or tap buffer, then tb_gemm's packing of one block of the input.
"""

from __future__ import annotations

import numpy as np

from tasobuild.primitives import Primitive
from tasobuild.primitives.conv_table import FAMILY_HEADERS, ConvGeometry, ConvRow, conv_primitive, groups_of
from tasobuild.primitives.gemm import GEMM_MR, GEMM_NR, gemm_workspace_floats, pack_a, pack_b, round_up

KN2ROW_SOURCES = ("conv_kn2row.c", "gemm.c") + FAMILY_HEADERS


def _taps(geo: ConvGeometry) -> int:
    return geo.kh * geo.kw


def _stride1(geo: ConvGeometry) -> bool:
    return (geo.sh, geo.sw) == (1, 1)


# ------------------------------------------------------------------------------------------------------ weights


def _stacked_a(w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Per group [taps*mg][cg] (row tap*mg + m = W[m, :, ki, kj]) packed as A."""
    return np.concatenate([pack_a(wg.transpose(2, 3, 0, 1).reshape(-1, geo.cg)) for wg in groups_of(w, geo)])


def _per_tap_a(w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Per group, per tap, W_tap [mg][cg] packed as A."""
    return np.concatenate([pack_a(wg[:, :, ki, kj]) for wg in groups_of(w, geo)
                           for ki in range(geo.kh) for kj in range(geo.kw)])


def _stacked_b(w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Per group [cg][taps*mg] (column tap*mg + m = W[m, :, ki, kj]) packed as B."""
    return np.concatenate([pack_b(wg.transpose(1, 2, 3, 0).reshape(geo.cg, -1)) for wg in groups_of(w, geo)])


def _per_tap_b(w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Per group, per tap, W_tap^T [cg][mg] packed as B."""
    return np.concatenate([pack_b(wg[:, :, ki, kj].T) for wg in groups_of(w, geo)
                           for ki in range(geo.kh) for kj in range(geo.kw)])


def _floats_stacked_a(geo: ConvGeometry) -> int:
    return geo.groups * round_up(_taps(geo) * geo.mg, GEMM_MR) * geo.cg


def _floats_per_tap_a(geo: ConvGeometry) -> int:
    return geo.groups * _taps(geo) * round_up(geo.mg, GEMM_MR) * geo.cg


def _floats_stacked_b(geo: ConvGeometry) -> int:
    return geo.groups * round_up(_taps(geo) * geo.mg, GEMM_NR) * geo.cg


def _floats_per_tap_b(geo: ConvGeometry) -> int:
    return geo.groups * _taps(geo) * round_up(geo.mg, GEMM_NR) * geo.cg


# ---------------------------------------------------------------------------------------------------- workspace


def _pack_chw(geo: ConvGeometry) -> int:
    """The input [cg][h*w] is the GEMM's B operand, packed one block at a time."""
    return gemm_workspace_floats(geo.mg, geo.h * geo.w, geo.cg, a_packed=True, b_packed=False)


def _pack_hwc(geo: ConvGeometry) -> int:
    """The input [h*w][cg] (row stride in_c) is the GEMM's A operand, packed one block at a time."""
    return gemm_workspace_floats(geo.h * geo.w, geo.mg, geo.cg, a_packed=False, b_packed=True)


def _ws_full_chw(geo: ConvGeometry) -> int:
    return _taps(geo) * geo.mg * geo.h * geo.w + _pack_chw(geo)


def _ws_acc_chw(geo: ConvGeometry) -> int:
    return geo.mg * geo.h * geo.w + _pack_chw(geo)


def _ws_full_hwc(geo: ConvGeometry) -> int:
    return _taps(geo) * geo.mg * geo.h * geo.w + _pack_hwc(geo)


def _ws_acc_hwc(geo: ConvGeometry) -> int:
    return geo.mg * geo.h * geo.w + _pack_hwc(geo)


_ROWS: tuple[ConvRow, ...] = (
    ConvRow("conv_kn2row_chw", "kn2row", "CHW", "CHW", KN2ROW_SOURCES, _stride1, _ws_full_chw, _stacked_a,
            _floats_stacked_a),
    ConvRow("conv_kn2row_chw_to_hcw", "kn2row", "CHW", "HCW", KN2ROW_SOURCES, _stride1, _ws_full_chw, _stacked_a,
            _floats_stacked_a),
    ConvRow("conv_kn2row_acc_chw", "kn2row", "CHW", "CHW", KN2ROW_SOURCES, _stride1, _ws_acc_chw, _per_tap_a,
            _floats_per_tap_a),
    ConvRow("conv_kn2row_acc_chw_to_hcw", "kn2row", "CHW", "HCW", KN2ROW_SOURCES, _stride1, _ws_acc_chw,
            _per_tap_a, _floats_per_tap_a),
    ConvRow("conv_kn2col_hwc", "kn2col", "HWC", "HWC", KN2ROW_SOURCES, _stride1, _ws_full_hwc, _stacked_b,
            _floats_stacked_b),
    ConvRow("conv_kn2col_acc_hwc", "kn2col", "HWC", "HWC", KN2ROW_SOURCES, _stride1, _ws_acc_hwc, _per_tap_b,
            _floats_per_tap_b),
)

PRIMITIVES: tuple[Primitive, ...] = tuple(conv_primitive(row) for row in _ROWS)
