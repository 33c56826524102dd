"""The int8 primitives (kernels in q8_conv.c and q8_ops.c, declared in tb_q8.h): convolution (direct, depthwise,
1x1, im2row + int8 GEMM), fully connected, pooling, add, quantize and dequantize, in HWC and CHW, and the int8
layout transforms.

The requantisation parameters are computed here, at build time, exactly as TensorFlow Lite computes them
(`quantize_multiplier` is TFLite's QuantizeMultiplier): per output channel, the effective scale
in_scale * weight_scale / out_scale in double precision, as a Q31 multiplier and a power-of-two shift. The kernels
take them as one int32 array: the multipliers, then the shifts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tasobuild.errors import UserError
from tasobuild.ir import DTYPE_BYTES, Graph, Layout, Node, Quant, Shape
from tasobuild.primitives import KernelCall, Params, Primitive, no_weights
from tasobuild.primitives.conv_table import ConvGeometry, depthwise, pointwise
from tasobuild.text import comment_text

Q8_HEADERS = ("tb_q8.h", "tb_q8_dot.h", "tb_q8_dot_arm.h")
Q8_SOURCES_CONV = ("q8_conv.c",) + Q8_HEADERS
Q8_SOURCES_OPS = ("q8_ops.c",) + Q8_HEADERS
Q8_LAYOUTS: tuple[Layout, ...] = ("CHW", "HWC")
INT8_MIN, INT8_MAX = -128, 127


# ------------------------------------------------------------------------------------ TFLite's requantisation


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier (tensorflow/lite/kernels/internal/quantization_util.cc): `real` as a Q31
    multiplier in [2^30, 2^31) and a shift, real = multiplier * 2^shift / 2^31 (0, 0 for 0)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    scaled = q * (1 << 31)  # exact in double: q has 53 bits, so does the product
    fixed = int(math.copysign(math.floor(abs(scaled) + 0.5), scaled))  # TfLiteRound: half away from zero
    if fixed == 1 << 31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return fixed, shift


def requant_array(effective: np.ndarray) -> np.ndarray:
    """The `rq` buffer of a kernel: the multipliers of every output channel, then their shifts."""
    pairs = [quantize_multiplier(float(e)) for e in effective]
    return np.array([m for m, _ in pairs] + [s for _, s in pairs], dtype=np.int32)


# -------------------------------------------------------------------------------------------------- helpers


def _in(node: Node, graph: Graph, k: int = 0) -> Shape:
    return graph.shape(node.inputs[k])


def _out(node: Node, graph: Graph) -> Shape:
    return graph.shape(node.output)


def _quant_in(node: Node, graph: Graph, k: int = 0) -> Quant:
    return graph.quant_of(node.inputs[k])


def _quant_out(node: Node, graph: Graph) -> Quant:
    return graph.quant_of(node.output)


def _clamp(node: Node) -> Params:
    return (("act_min", int(node.attr("act_min", INT8_MIN))), ("act_max", int(node.attr("act_max", INT8_MAX))))


def _call(function: str, struct: str, params: Params, roles: tuple[tuple[str, int, str], ...]) -> KernelCall:
    """A call whose buffers are `roles` (role, bytes, C element type) in C argument order."""
    return KernelCall(function, struct, params, tuple(r for r, _, _ in roles), tuple((r, b) for r, b, _ in roles),
                      tuple(t for _, _, t in roles))


def _prim(name: str, op: str, family: str, layout_in: Layout, layout_out: Layout, sources: tuple[str, ...],
          applies: Callable[[Node, Graph], bool], call: Callable[[Node, Graph], tuple[KernelCall, ...]],
          weights: Callable[[Node, Graph], tuple[np.ndarray, ...]] = no_weights,
          workspace: Callable[[Node, Graph], int] = lambda n, g: 0) -> Primitive:
    return Primitive(name, op, family, layout_in, layout_out, sources, lambda n, g: n.op == op and applies(n, g),
                     workspace, weights, call)


def _effective_scales(node: Node, graph: Graph) -> np.ndarray:
    """in_scale * weight_scale[m] / out_scale per output channel, in double precision as TFLite computes it."""
    weight_scales = np.asarray(graph.const(node.weights[2]), dtype=np.float32).astype(np.float64)
    return (float(np.float32(_quant_in(node, graph).scale)) * weight_scales
            / float(np.float32(_quant_out(node, graph).scale)))


# ----------------------------------------------------------------------------------------------- convolution


@dataclass(frozen=True)
class Q8ConvRow:
    """One int8 conv primitive: its kernel tb_q8_conv_<family>_<layout>, when it applies, its weight format and
    workspace (bytes)."""

    family: str
    layout: Layout
    applies: Callable[[ConvGeometry], bool]
    transform: Callable[[np.ndarray], np.ndarray]  # W int8 [M][cg][kh][kw] -> the kernel's format
    workspace_bytes: Callable[[ConvGeometry], int] = lambda geo: 0
    folds_zero_point: bool = False  # the bias holds bias - in_zp * sum of the channel's weights (see tb_q8.h)
    tap_sums: bool = False  # rq ends with each channel's weight sum per tap, [M][kh][kw] (direct HWC's borders)

    @property
    def name(self) -> str:
        return f"q8_conv_{self.family}_{self.layout.lower()}"


def _ohwi(w: np.ndarray) -> np.ndarray:
    return w.transpose(0, 2, 3, 1)


def _depthwise_hwm(w: np.ndarray) -> np.ndarray:
    return w[:, 0].transpose(1, 2, 0)


def _group1_pointwise(geo: ConvGeometry) -> bool:
    return pointwise(geo) and geo.groups == 1


def _conv_params(geo: ConvGeometry, node: Node, graph: Graph) -> Params:
    return (("in_c", geo.c), ("in_h", geo.h), ("in_w", geo.w), ("out_c", geo.m), ("out_h", geo.oh),
            ("out_w", geo.ow), ("k_h", geo.kh), ("k_w", geo.kw), ("stride_h", geo.sh), ("stride_w", geo.sw),
            ("pad_top", geo.pad_top), ("pad_left", geo.pad_left), ("dil_h", geo.dh), ("dil_w", geo.dw),
            ("groups", geo.groups), ("in_zp", _quant_in(node, graph).zero_point),
            ("out_zp", _quant_out(node, graph).zero_point)) + _clamp(node)


def _linear_weights(transform: Callable[[np.ndarray], np.ndarray], folds_zero_point: bool, tap_sums: bool = False
                    ) -> Callable[[Node, Graph], tuple[np.ndarray, ...]]:
    """The weights in the kernel's format, the bias (with the input zero point folded in: bias - in_zp * sum of
    each output's weights, so that the kernel's inner products run over the raw int8 input) and `rq` (followed by
    the weight sums per output channel and tap with `tap_sums`)."""

    def weights(node: Node, graph: Graph) -> tuple[np.ndarray, ...]:
        w = np.asarray(graph.const(node.weights[0]), dtype=np.int8)
        bias = np.ascontiguousarray(graph.const(node.weights[1]), dtype=np.int32).reshape(-1)
        if folds_zero_point:
            sums = w.reshape(w.shape[0], -1).astype(np.int64).sum(axis=1)
            folded = bias.astype(np.int64) - _quant_in(node, graph).zero_point * sums
            if np.abs(folded).max(initial=0) >= 1 << 31:
                raise UserError(f"int8 node {comment_text(node.name)}: its bias less the input zero point times its "
                                f"weights' sum overflows int32; requantise the model with smaller biases")
            bias = folded.astype(np.int32)
        rq = requant_array(_effective_scales(node, graph))
        if tap_sums:  # W [M][cg][kh][kw]: |sums| <= 128 * cg, exact in int32
            rq = np.concatenate([rq, w.sum(axis=1, dtype=np.int32).reshape(-1)])
        return np.ascontiguousarray(transform(w), dtype=np.int8).reshape(-1), bias, rq

    return weights


def q8_conv_primitive(row: Q8ConvRow) -> Primitive:
    def call(node: Node, graph: Graph) -> tuple[KernelCall, ...]:
        geo = ConvGeometry.of(node, graph)
        roles = [("in0", geo.c * geo.h * geo.w, "int8_t"), ("w0", geo.m * geo.cg * geo.kh * geo.kw, "int8_t"),
                 ("w1", 4 * geo.m, "int32_t"), ("w2", 4 * geo.m * (2 + (geo.kh * geo.kw if row.tap_sums else 0)),
                                                   "int32_t"), ("out", geo.m * geo.pixels, "int8_t")]
        if row.workspace_bytes(geo):
            roles.append(("ws", row.workspace_bytes(geo), "int8_t"))
        return (_call(f"tb_{row.name}", "tb_q8_conv", _conv_params(geo, node, graph), tuple(roles)),)

    return _prim(row.name, "qconv", row.family, row.layout, row.layout, Q8_SOURCES_CONV,
                 lambda n, g: row.applies(ConvGeometry.of(n, g)), call,
                 _linear_weights(row.transform, row.folds_zero_point, row.tap_sums),
                 lambda n, g: row.workspace_bytes(ConvGeometry.of(n, g)))


def _any(geo: ConvGeometry) -> bool:
    return True


def _im2row_applies(geo: ConvGeometry) -> bool:
    return geo.groups == 1 and not pointwise(geo)


CONV_ROWS: tuple[Q8ConvRow, ...] = (
    Q8ConvRow("direct", "HWC", _any, _ohwi, folds_zero_point=True, tap_sums=True),
    Q8ConvRow("direct", "CHW", _any, _ohwi),
    Q8ConvRow("depthwise", "HWC", depthwise, _depthwise_hwm),
    Q8ConvRow("depthwise", "CHW", depthwise, _depthwise_hwm),
    Q8ConvRow("1x1", "HWC", _group1_pointwise, lambda w: w.reshape(w.shape[0], -1), folds_zero_point=True),
    Q8ConvRow("1x1", "CHW", _group1_pointwise, lambda w: w.reshape(w.shape[0], -1), folds_zero_point=True),
    Q8ConvRow("im2row", "HWC", _im2row_applies, _ohwi, lambda geo: geo.kh * geo.kw * geo.c, folds_zero_point=True),
)


# ---------------------------------------------------------------------------------------------- other ops


def _is_vector(shape: Shape) -> bool:
    return shape.h == 1 and shape.w == 1


def _fc_call(node: Node, graph: Graph) -> tuple[KernelCall, ...]:
    k, n = _in(node, graph).c, _out(node, graph).c
    params = (("in_n", k), ("out_n", n), ("in_zp", _quant_in(node, graph).zero_point),
              ("out_zp", _quant_out(node, graph).zero_point)) + _clamp(node)
    return (_call("tb_q8_fc_gemv", "tb_q8_fc", params, (("in0", k, "int8_t"), ("w0", k * n, "int8_t"),
                                                         ("w1", 4 * n, "int32_t"), ("w2", 8 * n, "int32_t"),
                                                         ("out", n, "int8_t"))),)


def _same_quant(node: Node, graph: Graph) -> bool:
    return _quant_in(node, graph) == _quant_out(node, graph)


def _pool_call(kind: str, layout: Layout) -> Callable[[Node, Graph], tuple[KernelCall, ...]]:
    def call(node: Node, graph: Graph) -> tuple[KernelCall, ...]:
        src, dst = _in(node, graph), _out(node, graph)
        if node.op == "qgap":
            (kh, kw), (sh, sw), (top, left, bottom, right) = (src.h, src.w), (1, 1), (0, 0, 0, 0)
        else:
            (kh, kw), (sh, sw), (top, left, bottom, right) = node.attr("kernel"), node.attr("stride"), node.attr("pads")
        qi, qo = _quant_in(node, graph), _quant_out(node, graph)
        same = qi == qo
        mult, shift = (0, 0) if same else quantize_multiplier(float(np.float32(qi.scale)) / float(np.float32(qo.scale)))
        params: Params = (("c", src.c), ("in_h", src.h), ("in_w", src.w), ("out_h", dst.h), ("out_w", dst.w),
                          ("k_h", kh), ("k_w", kw), ("stride_h", sh), ("stride_w", sw), ("pad_top", top),
                          ("pad_left", left), ("pad_bottom", bottom), ("pad_right", right),
                          ("count_include_pad", int(node.attr("count_include_pad", 0))), ("in_zp", qi.zero_point),
                          ("out_zp", qo.zero_point), ("same_quant", int(same)), ("mult", mult), ("shift", shift))
        return (_call(f"tb_q8_{kind}_{layout.lower()}", "tb_q8_pool", params + _clamp(node),
                      (("in0", src.count, "int8_t"), ("out", dst.count, "int8_t"))),)

    return call


def add_params(q0: Quant, q1: Quant, qo: Quant) -> Params:
    """TFLite's int8 Add parameters (PrepareGeneralSubOp / Add's Prepare): both inputs shifted left by 20 and
    scaled to twice the larger input scale, the sum requantised to the output's scale."""
    left_shift = 20
    s0, s1, so = (float(np.float32(q.scale)) for q in (q0, q1, qo))
    twice_max = 2.0 * max(s0, s1)
    m0, sh0 = quantize_multiplier(s0 / twice_max)
    m1, sh1 = quantize_multiplier(s1 / twice_max)
    mo, sho = quantize_multiplier(twice_max / ((1 << left_shift) * so))
    return (("left_shift", left_shift), ("in0_zp", q0.zero_point), ("in0_mult", m0), ("in0_shift", sh0),
            ("in1_zp", q1.zero_point), ("in1_mult", m1), ("in1_shift", sh1), ("out_zp", qo.zero_point),
            ("out_mult", mo), ("out_shift", sho))


def _add_call(node: Node, graph: Graph) -> tuple[KernelCall, ...]:
    n = _out(node, graph).count
    params = (("n", n),) + add_params(_quant_in(node, graph, 0), _quant_in(node, graph, 1),
                                      _quant_out(node, graph)) + _clamp(node)
    return (_call("tb_q8_add_flat", "tb_q8_add", params,
                  (("in0", n, "int8_t"), ("in1", n, "int8_t"), ("out", n, "int8_t"))),)


def _convert_call(node: Node, graph: Graph) -> tuple[KernelCall, ...]:
    n = _out(node, graph).count
    if node.op == "quantize":
        q, src, dst = _quant_out(node, graph), "float", "int8_t"
    else:
        q, src, dst = _quant_in(node, graph), "int8_t", "float"
    params = (("n", n), ("zp", q.zero_point), ("scale", float(np.float32(q.scale))))
    return (_call(f"tb_q8_{node.op}", "tb_q8_quant", params,
                  (("in0", n * _bytes(src), src), ("out", n * _bytes(dst), dst))),)


def _bytes(c_type: str) -> int:
    return DTYPE_BYTES["int8" if c_type == "int8_t" else "float32"]


def _always(node: Node, graph: Graph) -> bool:
    return True


def _add_applies(node: Node, graph: Graph) -> bool:
    return len(node.inputs) == 2 and _in(node, graph, 0) == _in(node, graph, 1) == _out(node, graph)


def _primitives() -> tuple[Primitive, ...]:
    prims = [q8_conv_primitive(row) for row in CONV_ROWS]
    for layout in Q8_LAYOUTS:
        low = layout.lower()
        prims.append(_prim(f"q8_maxpool_{low}", "qmaxpool", "direct", layout, layout, Q8_SOURCES_OPS, _same_quant,
                           _pool_call("maxpool", layout)))
        prims.append(_prim(f"q8_avgpool_{low}", "qavgpool", "direct", layout, layout, Q8_SOURCES_OPS, _always,
                           _pool_call("avgpool", layout)))
        prims.append(_prim(f"q8_gap_{low}", "qgap", "direct", layout, layout, Q8_SOURCES_OPS, _always,
                           _pool_call("avgpool", layout)))
    for layout in ("CHW", "HWC", "HCW"):
        low = layout.lower()
        prims.append(_prim(f"q8_fc_gemv_{low}", "qfc", "gemv", layout, layout, Q8_SOURCES_OPS,
                           lambda n, g: _is_vector(_in(n, g)) and _is_vector(_out(n, g)), _fc_call,
                           _linear_weights(lambda w: w, folds_zero_point=True)))
        prims.append(_prim(f"q8_add_{low}", "qadd", "eltwise", layout, layout, Q8_SOURCES_OPS, _add_applies,
                           _add_call))
        for op in ("quantize", "dequantize"):
            prims.append(_prim(f"q8_{op}_{low}", op, "eltwise", layout, layout, Q8_SOURCES_OPS, _always,
                               _convert_call))
    return tuple(sorted(prims, key=lambda p: p.name))


PRIMITIVES: tuple[Primitive, ...] = _primitives()
