"""Convolution primitives: direct, depthwise, im2col/im2row + GEMM and 1x1-GEMM, in CHW and HWC.

A rule table (`_FAMILIES`) lists each primitive's kernel, when it applies, its exact workspace and its build-time
weight transform; `_primitive` turns a row into a `Primitive`. Every call passes oc_begin=0, oc_end=M, oh_begin=0,
oh_end=OH, accumulate=0 (the whole output); the kernels also honour channel and row ranges and accumulation for fused
tiling (see tb_conv.h).

The GEMM-based kernels share kernels_pyx/gemm.c, whose packed-panel format and cache blocking are mirrored here
(GEMM_* constants, `pack_a`, `pack_b`, `gemm_workspace_floats`); tests/test_gemm.py checks both sides agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from tasobuild.ir import FLOAT_BYTES, Activation, Graph, Layout, Node
from tasobuild.primitives import KernelCall, ParamValue, Primitive

# tb_gemm.h: micro-tile MR x NR, cache blocks KC (depth), MC (rows), NC (columns).
GEMM_MR, GEMM_NR, GEMM_KC, GEMM_MC, GEMM_NC = 6, 16, 384, 96, 4080
ACT_CODES = {"none": 0, "relu": 1, "clip": 2, "leaky_relu": 3, "sigmoid": 4}  # TB_ACT_* in tb_kernels.h
CONV_HEADERS = ("tb_conv.h", "tb_gemm.h")
GEMM_SOURCES = ("gemm.c",) + CONV_HEADERS
DIRECT_SOURCES = ("conv_direct.c", "tb_conv_layout.h") + CONV_HEADERS  # the strided axpy is shared with conv_hcw.c

Params = tuple[tuple[str, ParamValue], ...]


def _round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


@dataclass(frozen=True)
class ConvGeometry:
    """Everything a conv kernel needs to know about a node, as plain ints."""

    c: int
    h: int
    w: int
    m: int
    oh: int
    ow: int
    kh: int
    kw: int
    sh: int
    sw: int
    pad_top: int
    pad_left: int
    pad_bottom: int
    pad_right: int
    dh: int
    dw: int
    groups: int

    @property
    def cg(self) -> int:
        return self.c // self.groups

    @property
    def mg(self) -> int:
        return self.m // self.groups

    @property
    def pixels(self) -> int:
        return self.oh * self.ow

    @staticmethod
    def of(node: Node, graph: Graph) -> "ConvGeometry":
        src, dst = graph.shape(node.inputs[0]), graph.shape(node.output)
        (kh, kw), (sh, sw) = node.attr("kernel"), node.attr("stride")
        top, left, bottom, right = node.attr("pads")
        dh, dw = node.attr("dilation", (1, 1))
        return ConvGeometry(src.c, src.h, src.w, dst.c, dst.h, dst.w, kh, kw, sh, sw, top, left, bottom, right,
                            dh, dw, int(node.attr("groups", 1)))


def conv_params(geo: ConvGeometry, act: Activation) -> Params:
    """The tb_conv struct, field by field in declaration order, for the whole output."""
    return (("in_c", geo.c), ("in_h", geo.h), ("in_w", geo.w), ("out_c", geo.m), ("out_h", geo.oh),
            ("out_w", geo.ow), ("k_h", geo.kh), ("k_w", geo.kw), ("stride_h", geo.sh), ("stride_w", geo.sw),
            ("pad_top", geo.pad_top), ("pad_left", geo.pad_left), ("dil_h", geo.dh), ("dil_w", geo.dw),
            ("groups", geo.groups), ("act", ACT_CODES[act.kind]), ("act_a", float(act.a)), ("act_b", float(act.b)),
            ("oc_begin", 0), ("oc_end", geo.m), ("oh_begin", 0), ("oh_end", geo.oh), ("accumulate", 0))


# ------------------------------------------------------------------------------------------------------ GEMM side


def pack_a(a: np.ndarray) -> np.ndarray:
    """A[M][K] as MR-row panels: panel p holds A[p*MR + r][k] at p*K*MR + k*MR + r (rows past M zero)."""
    rows, depth = a.shape
    padded = np.zeros((_round_up(rows, GEMM_MR), depth), np.float32)
    padded[:rows] = a
    return np.ascontiguousarray(padded.reshape(-1, GEMM_MR, depth).transpose(0, 2, 1)).reshape(-1)


def pack_b(b: np.ndarray) -> np.ndarray:
    """B[K][N] as NR-column panels: panel q holds B[k][q*NR + c] at q*K*NR + k*NR + c (columns past N zero)."""
    depth, cols = b.shape
    padded = np.zeros((depth, _round_up(cols, GEMM_NR)), np.float32)
    padded[:, :cols] = b
    return np.ascontiguousarray(padded.reshape(depth, -1, GEMM_NR).transpose(1, 0, 2)).reshape(-1)


def gemm_workspace_floats(rows: int, cols: int, depth: int, a_packed: bool, b_packed: bool) -> int:
    """tb_gemm's workspace for a rows x cols x depth product: the packing of one cache block of each operand that
    is not pre-packed."""
    kc = min(depth, GEMM_KC)
    a = 0 if a_packed else _round_up(min(GEMM_MC, rows), GEMM_MR) * kc
    b = 0 if b_packed else kc * _round_up(min(GEMM_NC, cols), GEMM_NR)
    return a + b


# ---------------------------------------------------------------------------------------------- weight transforms


def _weight(node: Node, graph: Graph) -> np.ndarray:
    return np.asarray(graph.const(node.weights[0]), np.float32)


def _bias(node: Node, graph: Graph) -> np.ndarray:
    return np.ascontiguousarray(graph.const(node.weights[1]), np.float32).reshape(-1)


def _groups(w: np.ndarray, geo: ConvGeometry) -> list[np.ndarray]:
    return [w[g * geo.mg:(g + 1) * geo.mg] for g in range(geo.groups)]


def _w_oihw(w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    return np.ascontiguousarray(w).reshape(-1)


def w_hwio(w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """[kh][kw][cg][M]: for each tap and input channel, a contiguous row over the output channels."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(-1)


def _w_packed_a(w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Per group W_g[mg][cg*kh*kw] (k = c, ki, kj) packed as GEMM A panels, groups one after another."""
    return np.concatenate([pack_a(wg.reshape(geo.mg, -1)) for wg in _groups(w, geo)])


def _w_packed_b(w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Per group W_g^T[kh*kw*cg][mg] (k = ki, kj, c) packed as GEMM B panels, groups one after another."""
    return np.concatenate([pack_b(wg.transpose(2, 3, 1, 0).reshape(-1, geo.mg)) for wg in _groups(w, geo)])


def _floats_plain(geo: ConvGeometry) -> int:
    return geo.m * geo.cg * geo.kh * geo.kw


def _floats_packed_a(geo: ConvGeometry) -> int:
    return geo.groups * _round_up(geo.mg, GEMM_MR) * geo.cg * geo.kh * geo.kw


def _floats_packed_b(geo: ConvGeometry) -> int:
    return geo.groups * _round_up(geo.mg, GEMM_NR) * geo.cg * geo.kh * geo.kw


# ---------------------------------------------------------------------------------------- applicability, workspace


def _any(geo: ConvGeometry) -> bool:
    return True


def _depthwise(geo: ConvGeometry) -> bool:
    return geo.groups == geo.c and geo.m % geo.c == 0


def _pointwise(geo: ConvGeometry) -> bool:
    """1x1, stride 1, no padding: the input is a GEMM operand as it is."""
    return (geo.kh, geo.kw, geo.sh, geo.sw) == (1, 1, 1, 1) and (geo.pad_top, geo.pad_left, geo.pad_bottom,
                                                                 geo.pad_right) == (0, 0, 0, 0)


def _ws_none(geo: ConvGeometry) -> int:
    return 0


def _ws_im2col(geo: ConvGeometry) -> int:
    return geo.cg * geo.kh * geo.kw * _round_up(geo.pixels, GEMM_NR)


def _ws_im2row(geo: ConvGeometry) -> int:
    return _round_up(geo.pixels, GEMM_MR) * geo.kh * geo.kw * geo.cg


def _ws_1x1_chw(geo: ConvGeometry) -> int:
    return gemm_workspace_floats(geo.mg, geo.pixels, geo.cg, a_packed=True, b_packed=False)


def _ws_1x1_hwc(geo: ConvGeometry) -> int:
    return gemm_workspace_floats(geo.pixels, geo.mg, geo.cg, a_packed=False, b_packed=True)


# ------------------------------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class ConvFamily:
    """One row of the table: a conv kernel and the facts the registry needs about it."""

    name: str  # the primitive name; the C function is tb_<name>
    family: str
    layout: Layout  # in and out
    sources: tuple[str, ...]
    applies: Callable[[ConvGeometry], bool]
    workspace_floats: Callable[[ConvGeometry], int]
    transform: Callable[[np.ndarray, ConvGeometry], np.ndarray]  # W[M][cg][kh][kw] -> w0
    weight_floats: Callable[[ConvGeometry], int]  # size of w0, without running the transform
    uses_workspace: bool


_FAMILIES: tuple[ConvFamily, ...] = (
    ConvFamily("conv_direct_chw", "direct", "CHW", DIRECT_SOURCES, _any, _ws_none,
               _w_oihw, _floats_plain, False),
    ConvFamily("conv_direct_hwc", "direct", "HWC", DIRECT_SOURCES, _any, _ws_none,
               w_hwio, _floats_plain, False),
    ConvFamily("conv_depthwise_direct_chw", "depthwise", "CHW", ("conv_depthwise.c",) + CONV_HEADERS, _depthwise,
               _ws_none, _w_oihw, _floats_plain, False),
    ConvFamily("conv_depthwise_direct_hwc", "depthwise", "HWC", ("conv_depthwise.c",) + CONV_HEADERS, _depthwise,
               _ws_none, w_hwio, _floats_plain, False),
    ConvFamily("conv_im2col_gemm_chw", "im2col", "CHW", ("conv_im2col.c",) + GEMM_SOURCES, _any, _ws_im2col,
               _w_packed_a, _floats_packed_a, True),
    ConvFamily("conv_im2row_gemm_hwc", "im2row", "HWC", ("conv_im2col.c",) + GEMM_SOURCES, _any, _ws_im2row,
               _w_packed_b, _floats_packed_b, True),
    ConvFamily("conv_1x1_gemm_chw", "1x1", "CHW", ("conv_1x1.c",) + GEMM_SOURCES, _pointwise, _ws_1x1_chw,
               _w_packed_a, _floats_packed_a, True),
    ConvFamily("conv_1x1_gemm_hwc", "1x1", "HWC", ("conv_1x1.c",) + GEMM_SOURCES, _pointwise, _ws_1x1_hwc,
               _w_packed_b, _floats_packed_b, True),
)


def conv_primitive(row: Any, layout_in: Layout, layout_out: Layout) -> Primitive:
    """A conv primitive from a table row (ConvFamily here, conv_table.ConvRow for the families that change layout):
    its applicability, exact workspace, build-time weight transform and the one tb_conv call."""

    def applies(node: Node, graph: Graph) -> bool:
        return node.op == "conv" and row.applies(ConvGeometry.of(node, graph))

    def workspace(node: Node, graph: Graph) -> int:
        return row.workspace_floats(ConvGeometry.of(node, graph)) * FLOAT_BYTES

    def weights(node: Node, graph: Graph) -> tuple[np.ndarray, ...]:
        geo = ConvGeometry.of(node, graph)
        return np.ascontiguousarray(row.transform(_weight(node, graph), geo), np.float32), _bias(node, graph)

    def call(node: Node, graph: Graph) -> tuple[KernelCall, ...]:
        geo = ConvGeometry.of(node, graph)
        roles = [("in0", geo.c * geo.h * geo.w * FLOAT_BYTES), ("w0", row.weight_floats(geo) * FLOAT_BYTES),
                 ("w1", geo.m * FLOAT_BYTES), ("out", geo.m * geo.pixels * FLOAT_BYTES)]
        if row.uses_workspace:
            roles.append(("ws", row.workspace_floats(geo) * FLOAT_BYTES))
        return (KernelCall(f"tb_{row.name}", "tb_conv", conv_params(geo, node.act), tuple(r for r, _ in roles),
                           tuple(roles)),)

    return Primitive(row.name, "conv", row.family, layout_in, layout_out, row.sources, applies, workspace, weights,
                     call)


PRIMITIVES: tuple[Primitive, ...] = tuple(conv_primitive(row, row.layout, row.layout) for row in _FAMILIES)
