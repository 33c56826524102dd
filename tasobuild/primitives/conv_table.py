"""The conv rule table: what every conv family module (conv, conv_variants, conv_mec, conv_kn2row,
conv_direct_blocked, conv_winograd) describes its primitives with, and the one builder that turns a row into a
`Primitive`.

A row (`ConvRow`) is plain data: the kernel tb_<name>, the layouts it reads and writes (equal for most families;
the ones that change layout inside the convolution differ), the C files it needs, and as functions of the node's
`ConvGeometry` when it applies, its exact workspace, its build-time weight transform and that transform's size.
`conv_primitive` builds every conv primitive the same way: one tb_conv call over the whole output (oc_begin=0,
oc_end=M, oh_begin=0, oh_end=OH, accumulate=0; the kernels also honour channel and row ranges and accumulation for
fused tiling, see tb_conv.h) with exact buffer sizes, the workspace included.

Below the row type: the weight formats and applicability tests several families share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tasobuild.ir import FLOAT_BYTES, Activation, Graph, Layout, Node
from tasobuild.primitives import KernelCall, Params, Primitive, activation_fields
from tasobuild.primitives.gemm import GEMM_MR, GEMM_NR, pack_a, pack_b, round_up

# Headers the conv kernels include besides tb_kernels.h: tb_conv.h's families, and the ones beyond them
# (tb_conv_families.h) with their internal layout helpers (tb_conv_layout.h).
CONV_HEADERS = ("tb_conv.h", "tb_gemm.h")
FAMILY_HEADERS = CONV_HEADERS + ("tb_conv_families.h", "tb_conv_layout.h")


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
    def of(node: Node, graph: Graph) -> ConvGeometry:
        src, dst = graph.shape(node.inputs[0]), graph.shape(node.output)
        (kh, kw), (sh, sw) = node.attr("kernel"), node.attr("stride")
        top, left, bottom, right = node.attr("pads")
        dh, dw = node.attr("dilation", (1, 1))
        return ConvGeometry(src.c, src.h, src.w, dst.c, dst.h, dst.w, kh, kw, sh, sw, top, left, bottom, right,
                            dh, dw, int(node.attr("groups", 1)))


def conv_params(geo: ConvGeometry, act: Activation) -> Params:
    """The tb_conv struct, field by field in declaration order, for the whole output."""
    shape: Params = (
        ("in_c", geo.c), ("in_h", geo.h), ("in_w", geo.w), ("out_c", geo.m), ("out_h", geo.oh), ("out_w", geo.ow),
        ("k_h", geo.kh), ("k_w", geo.kw), ("stride_h", geo.sh), ("stride_w", geo.sw), ("pad_top", geo.pad_top),
        ("pad_left", geo.pad_left), ("dil_h", geo.dh), ("dil_w", geo.dw), ("groups", geo.groups))
    whole_output: Params = (("oc_begin", 0), ("oc_end", geo.m), ("oh_begin", 0), ("oh_end", geo.oh),
                            ("accumulate", 0))
    return shape + activation_fields(act) + whole_output


def layout_suffix(layout_in: Layout, layout_out: Layout) -> str:
    """'chw' for a same-layout primitive, 'chw_to_hwc' for one that changes layout."""
    src, dst = layout_in.lower(), layout_out.lower()
    return src if src == dst else f"{src}_to_{dst}"


# ------------------------------------------------------------------------------------------------------ the row


@dataclass(frozen=True)
class ConvRow:
    """One conv primitive: its kernel (tb_<name>) and the facts the registry needs about it."""

    name: str
    family: str
    layout_in: Layout
    layout_out: Layout
    sources: tuple[str, ...]  # the C files it needs (and headers), relative to the kernels folder
    applies: Callable[[ConvGeometry], bool]
    workspace_floats: Callable[[ConvGeometry], int]
    transform: Callable[[np.ndarray, ConvGeometry], np.ndarray]  # W[M][cg][kh][kw] -> w0
    weight_floats: Callable[[ConvGeometry], int]  # size of w0, without running the transform
    uses_workspace: bool = True  # False: the kernel takes no workspace argument at all


def _weight(node: Node, graph: Graph) -> np.ndarray:
    return np.asarray(graph.const(node.weights[0]), np.float32)


def _bias(node: Node, graph: Graph) -> np.ndarray:
    return np.ascontiguousarray(graph.const(node.weights[1]), np.float32).reshape(-1)


def conv_primitive(row: ConvRow) -> Primitive:
    """The row as a Primitive: its applicability, exact workspace, build-time weight transform and one tb_conv call."""

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

    return Primitive(row.name, "conv", row.family, row.layout_in, row.layout_out, row.sources, applies, workspace,
                     weights, call)


# ---------------------------------------------------------------------------------------------- weight formats


def groups_of(w: np.ndarray, geo: ConvGeometry) -> list[np.ndarray]:
    return [w[g * geo.mg:(g + 1) * geo.mg] for g in range(geo.groups)]


def plain(w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """W as ONNX stores it, [M][cg][kh][kw]."""
    return np.ascontiguousarray(w).reshape(-1)


def w_hwio(w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """[kh][kw][cg][M]: for each tap and input channel, a contiguous row over the output channels."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(-1)


def packed_a_c_taps(w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Per group W_g[mg][K], k = (c, ki, kj), packed as GEMM A panels (im2col's format)."""
    return np.concatenate([pack_a(wg.reshape(geo.mg, -1)) for wg in groups_of(w, geo)])


def packed_a_taps_c(w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Per group W_g[mg][K], k = (ki, kj, c), packed as GEMM A panels (MEC with CHW/HCW output)."""
    return np.concatenate([pack_a(wg.transpose(0, 2, 3, 1).reshape(geo.mg, -1)) for wg in groups_of(w, geo)])


def packed_b_taps_c(w: np.ndarray, geo: ConvGeometry) -> np.ndarray:
    """Per group W_g^T[K][mg], k = (ki, kj, c), packed as GEMM B panels (im2row's format)."""
    return np.concatenate([pack_b(wg.transpose(2, 3, 1, 0).reshape(-1, geo.mg)) for wg in groups_of(w, geo)])


def floats_plain(geo: ConvGeometry) -> int:
    return geo.m * geo.cg * geo.kh * geo.kw


def floats_packed_a(geo: ConvGeometry) -> int:
    return geo.groups * round_up(geo.mg, GEMM_MR) * geo.cg * geo.kh * geo.kw


def floats_packed_b(geo: ConvGeometry) -> int:
    return geo.groups * round_up(geo.mg, GEMM_NR) * geo.cg * geo.kh * geo.kw


# ------------------------------------------------------------------------------------ applicability, workspace


def any_conv(geo: ConvGeometry) -> bool:
    return True


def depthwise(geo: ConvGeometry) -> bool:
    """groups == in_c, any channel multiplier."""
    return geo.groups == geo.c and geo.m % geo.c == 0


def pointwise(geo: ConvGeometry) -> bool:
    """1x1, stride 1, no padding: the input is a GEMM operand as it is."""
    return (geo.kh, geo.kw, geo.sh, geo.sw, geo.pad_top, geo.pad_left, geo.pad_bottom, geo.pad_right) == (
        1, 1, 1, 1, 0, 0, 0, 0)


def no_workspace(geo: ConvGeometry) -> int:
    return 0
