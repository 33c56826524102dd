"""Primitives of every op except convolution: pooling, fc, element-wise ops, concat, softmax, LRN, transpose, reshape.

Rule tables: each op lists the layouts it runs in; a small function per op builds its KernelCall from the node.
Ops whose kernel ignores `node.act` apply only to nodes without a fused activation. Vector ops (fc, softmax) and
layout-free element-wise ops (add, act) run the same kernel in every layout L -> L.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import product

import numpy as np

from tasobuild.ir import LAYOUTS, Activation, Graph, Layout, Node, Shape
from tasobuild.primitives import KernelCall, Params, Primitive, activation_fields, no_weights, no_workspace
from tasobuild.primitives.transforms import memory_order

CallFn = Callable[[Node, Graph], tuple[KernelCall, ...]]
WeightsFn = Callable[[Node, Graph], tuple[np.ndarray, ...]]

OPS_HEADERS = ("tb_ops.h",)
ACT_HEADERS = ("tb_ops.h", "ops_act.h")


def _in(node: Node, graph: Graph, k: int = 0) -> Shape:
    return graph.shape(node.inputs[k])


def _out(node: Node, graph: Graph) -> Shape:
    return graph.shape(node.output)


def _is_vector(shape: Shape) -> bool:
    return shape.h == 1 and shape.w == 1


def _call(function: str, struct: str, params: Params, roles: tuple[tuple[str, int], ...]) -> KernelCall:
    """A call whose buffers are `roles` (role, bytes) in C argument order."""
    return KernelCall(function, struct, params, tuple(r for r, _ in roles), roles)


def _tensor_params(shape: Shape, act: Activation) -> Params:
    return (("c", shape.c), ("h", shape.h), ("w", shape.w)) + activation_fields(act)


def _no_act(node: Node) -> bool:
    return node.act.kind == "none"


def _prim(op: str, family: str, layout_in: Layout, layout_out: Layout, sources: tuple[str, ...],
          applies: Callable[[Node, Graph], bool], call: CallFn, weights: WeightsFn = no_weights,
          name: str | None = None, aliases_input: bool = False) -> Primitive:
    suffix = layout_in.lower() if layout_in == layout_out else f"{layout_in.lower()}_{layout_out.lower()}"
    return Primitive(name or f"{op}_{family}_{suffix}", op, family, layout_in, layout_out, sources,
                     lambda n, g: n.op == op and applies(n, g), no_workspace, weights, call, aliases_input)


# ----------------------------------------------------------------------------------------------------- pooling


def _pool_call(kind: str, layout: Layout) -> CallFn:
    def call(node: Node, graph: Graph) -> tuple[KernelCall, ...]:
        src, dst = _in(node, graph), _out(node, graph)
        (kh, kw), (sh, sw), (top, left, bottom, right) = node.attr("kernel"), node.attr("stride"), node.attr("pads")
        params: Params = (("c", src.c), ("in_h", src.h), ("in_w", src.w), ("out_h", dst.h), ("out_w", dst.w),
                          ("k_h", kh), ("k_w", kw), ("stride_h", sh), ("stride_w", sw), ("pad_top", top),
                          ("pad_left", left), ("pad_bottom", bottom), ("pad_right", right),
                          ("count_include_pad", int(node.attr("count_include_pad", 0))))
        return (_call(f"tb_{kind}_{layout.lower()}", "tb_pool", params, (("in0", src.bytes), ("out", dst.bytes))),)

    return call


def _pool_applies(node: Node, graph: Graph) -> bool:
    return _no_act(node) and tuple(node.attr("dilation", (1, 1))) == (1, 1)


def _gap_call(layout: Layout) -> CallFn:
    def call(node: Node, graph: Graph) -> tuple[KernelCall, ...]:
        src, dst = _in(node, graph), _out(node, graph)
        params = _tensor_params(src, node.act)
        return (_call(f"tb_gap_{layout.lower()}", "tb_tensor", params, (("in0", src.bytes), ("out", dst.bytes))),)

    return call


# ----------------------------------------------------------------------------------- vectors and element-wise


FC_PANEL = 16  # TB_FC_PANEL in ops_fc.c


def _fc_weights(node: Node, graph: Graph) -> tuple[np.ndarray, ...]:
    """W (ONNX [N][K]) as panels of FC_PANEL outputs, the last one narrower, each W^T of its rows: [K][its outputs]."""
    w, b = graph.const(node.weights[0]).astype(np.float32), graph.const(node.weights[1])
    panels = [np.ascontiguousarray(w[n:n + FC_PANEL].T).reshape(-1) for n in range(0, w.shape[0], FC_PANEL)]
    return np.concatenate(panels), np.ascontiguousarray(b, dtype=np.float32)


def _fc_call(node: Node, graph: Graph) -> tuple[KernelCall, ...]:
    k, n = _in(node, graph).c, _out(node, graph).c
    params = (("in_n", k), ("out_n", n)) + activation_fields(node.act)
    return (_call("tb_fc_gemv", "tb_fc", params, (("in0", 4 * k), ("w0", 4 * k * n), ("w1", 4 * n), ("out", 4 * n))),)


def _vectors(node: Node, graph: Graph) -> bool:
    return _is_vector(_in(node, graph)) and _is_vector(_out(node, graph))


def _flat_call(function: str, n_inputs: int) -> CallFn:
    def call(node: Node, graph: Graph) -> tuple[KernelCall, ...]:
        shape = _out(node, graph)
        ins = tuple((f"in{k}", _in(node, graph, k).bytes) for k in range(n_inputs))
        params = (("n", shape.count),) + activation_fields(node.act)
        return (_call(function, "tb_flat", params, ins + (("out", shape.bytes),)),)

    return call


def _add_applies(node: Node, graph: Graph) -> bool:
    return len(node.inputs) == 2 and _in(node, graph, 0) == _in(node, graph, 1) == _out(node, graph)


def _scale_weights(node: Node, graph: Graph) -> tuple[np.ndarray, ...]:
    return tuple(np.ascontiguousarray(graph.const(w), dtype=np.float32).reshape(-1) for w in node.weights[:2])


def _scale_call(layout: Layout) -> CallFn:
    def call(node: Node, graph: Graph) -> tuple[KernelCall, ...]:
        shape = _in(node, graph)
        roles = (("in0", shape.bytes), ("w0", 4 * shape.c), ("w1", 4 * shape.c), ("out", shape.bytes))
        return (_call(f"tb_scale_{layout.lower()}", "tb_tensor", _tensor_params(shape, node.act), roles),)

    return call


# ------------------------------------------------------------------------------------------- concat and LRN


def _concat_applies(node: Node, graph: Graph) -> bool:
    out, ins = _out(node, graph), [_in(node, graph, k) for k in range(len(node.inputs))]
    return _no_act(node) and all((s.h, s.w) == (out.h, out.w) for s in ins) and sum(s.c for s in ins) == out.c


def _concat_call(layout: Layout) -> CallFn:
    def call(node: Node, graph: Graph) -> tuple[KernelCall, ...]:
        out = _out(node, graph)
        calls, offset = [], 0
        for k in range(len(node.inputs)):
            src = _in(node, graph, k)
            params = (("c", src.c), ("h", src.h), ("w", src.w), ("out_c", out.c), ("c_offset", offset))
            # the slice is strided through the whole output in HWC/HCW: the call needs the whole output buffer
            calls.append(_call(f"tb_copy_channels_{layout.lower()}", "tb_channels", params,
                               ((f"in{k}", src.bytes), ("out", out.bytes))))
            offset += src.c
        return tuple(calls)

    return call


def _lrn_call(layout: Layout) -> CallFn:
    def call(node: Node, graph: Graph) -> tuple[KernelCall, ...]:
        s = _in(node, graph)
        params = (("c", s.c), ("h", s.h), ("w", s.w), ("size", int(node.attr("size"))),
                  ("alpha", float(node.attr("alpha", 1e-4))), ("beta", float(node.attr("beta", 0.75))),
                  ("bias", float(node.attr("bias", 1.0))))
        return (_call(f"tb_lrn_{layout.lower()}", "tb_lrn", params, (("in0", s.bytes), ("out", s.bytes))),)

    return call


# --------------------------------------------------------------------------------------- transpose and reshape


def transpose_is_view(perm: tuple[int, int, int], shape_in: Shape, layout_in: Layout, layout_out: Layout) -> bool:
    """True when the transposed tensor in `layout_out` has exactly the bytes of the input in `layout_in`.

    Output logical axis o is input axis perm[o], so the output's memory order, written in input axes, is
    perm[o] for o in layout_out's order; it must equal the input's order (axes of extent 1 do not count)."""
    extents = (shape_in.c, shape_in.h, shape_in.w)
    out_extents = tuple(extents[p] for p in perm)
    out_order_in_input_axes = tuple(perm[o] for o in memory_order(out_extents, layout_out))  # type: ignore[arg-type]
    return out_order_in_input_axes == memory_order(extents, layout_in)


def _perm(node: Node) -> tuple[int, int, int]:
    perm = tuple(int(p) for p in node.attr("perm"))
    assert sorted(perm) == [0, 1, 2], f"node {node.name}: perm {perm} is not a permutation of (0, 1, 2)"
    return perm  # type: ignore[return-value]


def _view_call(node: Node, graph: Graph) -> tuple[KernelCall, ...]:
    return ()


def _transpose_view_applies(layout_in: Layout, layout_out: Layout) -> Callable[[Node, Graph], bool]:
    return lambda n, g: _no_act(n) and transpose_is_view(_perm(n), _in(n, g), layout_in, layout_out)


def _permute_call(node: Node, graph: Graph) -> tuple[KernelCall, ...]:
    s, p = _in(node, graph), _perm(node)
    params = (("d0", s.c), ("d1", s.h), ("d2", s.w), ("perm0", p[0]), ("perm1", p[1]), ("perm2", p[2]))
    return (_call("tb_permute_copy", "tb_permute", params, (("in0", s.bytes), ("out", s.bytes))),)


# ------------------------------------------------------------------------------------------------ the table


def _always(node: Node, graph: Graph) -> bool:
    return True


def _primitives() -> tuple[Primitive, ...]:
    prims: list[Primitive] = []
    pool_src = ("ops_pool.c",) + OPS_HEADERS
    for layout in LAYOUTS:
        for kind in ("maxpool", "avgpool"):
            prims.append(_prim(kind, "direct", layout, layout, pool_src, _pool_applies, _pool_call(kind, layout)))
        prims.append(_prim("gap", "direct", layout, layout, pool_src, lambda n, g: _no_act(n), _gap_call(layout)))
        prims.append(_prim("fc", "gemv", layout, layout, ("ops_fc.c",) + ACT_HEADERS, _vectors, _fc_call,
                           weights=_fc_weights))
        prims.append(_prim("add", "eltwise", layout, layout, ("ops_eltwise.c",) + ACT_HEADERS, _add_applies,
                           _flat_call("tb_add", 2)))
        prims.append(_prim("act", "eltwise", layout, layout, ("ops_eltwise.c",) + ACT_HEADERS, _always,
                           _flat_call("tb_act", 1)))
        prims.append(_prim("softmax", "vector", layout, layout, ("ops_softmax.c",) + ACT_HEADERS, _vectors,
                           _flat_call("tb_softmax", 1)))
        prims.append(_prim("scale", "eltwise", layout, layout, ("ops_eltwise.c",) + ACT_HEADERS, _always,
                           _scale_call(layout), weights=_scale_weights))
        prims.append(_prim("concat", "copy", layout, layout, ("ops_concat.c",) + OPS_HEADERS, _concat_applies,
                           _concat_call(layout)))
    for layout in ("CHW", "HWC"):
        prims.append(_prim("lrn", "direct", layout, layout, ("ops_lrn.c",) + ACT_HEADERS, lambda n, g: _no_act(n),
                           _lrn_call(layout)))
    for lin, lout in product(LAYOUTS, LAYOUTS):
        prims.append(_prim("transpose", "view", lin, lout, (), _transpose_view_applies(lin, lout), _view_call,
                           aliases_input=True))
    prims.append(_prim("transpose", "permute", "CHW", "CHW", ("ops_permute.c",) + OPS_HEADERS,
                       lambda n, g: _no_act(n) and g.dtype(n.output) == "float32", _permute_call))  # int8: views
    prims.append(_prim("reshape", "view", "CHW", "CHW", (), lambda n, g: _no_act(n), _view_call, aliases_input=True))
    for layout in ("HWC", "HCW"):
        prims.append(_prim("reshape", "view", layout, layout, (), lambda n, g: _no_act(n) and _vectors(n, g),
                           _view_call, name=f"reshape_view_vector_{layout.lower()}", aliases_input=True))
    return tuple(sorted(prims, key=lambda p: p.name))


PRIMITIVES: tuple[Primitive, ...] = _primitives()
