"""Shared by the conv family modules beyond conv.py (conv_variants, conv_mec, conv_kn2row): a rule-table row that
may read and write different layouts, its turning into a `Primitive`, and the packed weight formats they share.

A row is plain data (`ConvRow`); `conv_primitive` builds the Primitive the same way conv.py does: every call passes
the whole output (oc_begin=0, oc_end=M, oh_begin=0, oh_end=OH, accumulate=0) and declares exact buffer sizes, the workspace included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tasobuild.ir import Layout
from tasobuild.primitives import Primitive
from tasobuild.primitives import conv
from tasobuild.primitives.conv import CONV_HEADERS, GEMM_MR, GEMM_NR, ConvGeometry, pack_a, pack_b

# Headers every kernel of these families includes besides tb_kernels.h.
FAMILY_HEADERS = CONV_HEADERS + ("tb_conv_families.h", "tb_conv_layout.h")
# tb_conv_families.h: output pixels per block of the im2col/im2row scan variants.
SCAN_PIXELS = 96


def round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


def layout_suffix(layout_in: Layout, layout_out: Layout) -> str:
    """'chw' for a same-layout primitive, 'chw_to_hwc' for one that changes layout."""
    src, dst = layout_in.lower(), layout_out.lower()
    return src if src == dst else f"{src}_to_{dst}"


@dataclass(frozen=True)
class ConvRow:
    """One conv primitive: its kernel (tb_<name>) and the facts the registry needs about it."""

    name: str
    family: str
    layout_in: Layout
    layout_out: Layout
    sources: tuple[str, ...]
    applies: Callable[[ConvGeometry], bool]
    workspace_floats: Callable[[ConvGeometry], int]
    transform: Callable[[np.ndarray, ConvGeometry], np.ndarray]  # W[M][cg][kh][kw] -> w0
    weight_floats: Callable[[ConvGeometry], int]  # size of w0, without running the transform
    uses_workspace: bool = True


def conv_primitive(row: ConvRow) -> Primitive:
    return conv.conv_primitive(row, row.layout_in, row.layout_out)


# ---------------------------------------------------------------------------------------------- weight formats


def groups_of(w: np.ndarray, geo: ConvGeometry) -> list[np.ndarray]:
    return [w[g * geo.mg:(g + 1) * geo.mg] for g in range(geo.groups)]


def packed_a_c_taps(w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Per group W_g[mg][K], k = (c, ki, kj), packed as GEMM A panels (im2col's format)."""
    return np.concatenate([pack_a(wg.reshape(geo.mg, -1)) for wg in groups_of(w, geo)])


def packed_a_taps_c(w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Per group W_g[mg][K], k = (ki, kj, c), packed as GEMM A panels (MEC with CHW/HCW output)."""
    return np.concatenate([pack_a(wg.transpose(0, 2, 3, 1).reshape(geo.mg, -1)) for wg in groups_of(w, geo)])


def packed_b_taps_c(w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Per group W_g^T[K][mg], k = (ki, kj, c), packed as GEMM B panels (im2row's format)."""
    return np.concatenate([pack_b(wg.transpose(2, 3, 1, 0).reshape(-1, geo.mg)) for wg in groups_of(w, geo)])


def floats_packed_a(geo: ConvGeometry) -> int:
    return geo.groups * round_up(geo.mg, GEMM_MR) * geo.cg * geo.kh * geo.kw


def floats_packed_b(geo: ConvGeometry) -> int:
    return geo.groups * round_up(geo.mg, GEMM_NR) * geo.cg * geo.kh * geo.kw


def plain(w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """W as ONNX stores it, [M][cg][kh][kw]."""
    return np.ascontiguousarray(w).reshape(-1)


def floats_plain(geo: ConvGeometry) -> int:
    return geo.m * geo.cg * geo.kh * geo.kw


def any_conv(geo: ConvGeometry) -> bool:
    return True


def no_workspace(geo: ConvGeometry) -> int:
    return 0
