"""Every non-conv primitive against a float64 NumPy (or ONNX Runtime) reference, in every layout it registers, with
every call run between canary regions (tests/guard.py)."""

from __future__ import annotations

import itertools
import math
import re
import typing

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from tasobuild.ir import LAYOUTS, Activation, Constant, Graph, Node, Shape, attrs
from tasobuild.primitives import ACT_CODES, Primitive
from tasobuild.primitives.ops import PRIMITIVES, transpose_is_view
from tasobuild.primitives.transforms import from_layout, same_memory, to_layout, transform_call
from tasobuild.resources import kernels_dir
from tests.guard import guarded_kernels, run_guarded

RNG_SEED = 7
ACTS = (Activation("none"), Activation("relu"), Activation("clip", 0.0, 6.0), Activation("leaky_relu", 0.1),
        Activation("sigmoid"))


# ------------------------------------------------------------------------------------------------- helpers


def test_activation_codes_match_the_kernel_header() -> None:
    """ACT_CODES mirrors tb_kernels.h's TB_ACT_* enum, the one C definition every kernel switches on."""
    text = (kernels_dir() / "tb_kernels.h").read_text()
    enum = {name.lower(): int(value) for name, value in re.findall(r"TB_ACT_(\w+) = (\d+)", text)}
    assert enum == ACT_CODES
    assert set(typing.get_args(typing.get_type_hints(Activation)["kind"])) == set(ACT_CODES)  # every IR activation


def graph_of(node: Node, shapes: dict[str, Shape], constants: dict[str, np.ndarray] | None = None) -> Graph:
    consts = tuple(sorted((Constant.of(k, v) for k, v in (constants or {}).items()), key=lambda c: c.name))
    return Graph((node,), tuple(sorted(shapes.items())), consts, node.inputs[0], node.output, (), ())


def prims(op: str) -> list[Primitive]:
    return [p for p in PRIMITIVES if p.op == op]


def run_prim(prim: Primitive, node: Node, graph: Graph, inputs: list[np.ndarray]) -> np.ndarray:
    """Run a primitive on logical (C,H,W) inputs; return the logical output (float64)."""
    assert prim.applies(node, graph), f"{prim.name} should apply to {node}"
    buffers = {f"in{k}": to_layout(x, prim.layout_in) for k, x in enumerate(inputs)}
    buffers.update({f"w{k}": w for k, w in enumerate(prim.weights(node, graph))})
    calls = prim.call(node, graph)
    assert prim.workspace(node, graph) == 0
    out = run_guarded(guarded_kernels(), calls, buffers)["out"]
    return from_layout(out, graph.shape(node.output), prim.layout_out).astype(np.float64)


def assert_close(got: np.ndarray, ref: np.ndarray) -> None:
    assert got.shape == ref.shape
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * scale)


def activate(x: np.ndarray, act: Activation) -> np.ndarray:
    return {"none": lambda: x, "relu": lambda: np.maximum(x, 0),
            "clip": lambda: np.minimum(np.maximum(x, act.a), act.b),
            "leaky_relu": lambda: np.where(x < 0, act.a * x, x), "sigmoid": lambda: 1 / (1 + np.exp(-x))}[act.kind]()


def rand(*shape: int, seed: int = RNG_SEED) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-3, 3, shape).astype(np.float32)


def ort_run(op: str, x: np.ndarray, **kw) -> np.ndarray:
    n = helper.make_node(op, ["x"], ["y"], **kw)
    g = helper.make_graph([n], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


# --------------------------------------------------------------------------------------------- the registry


def test_registry_is_consistent() -> None:
    names = [p.name for p in PRIMITIVES]
    assert names == sorted(set(names))
    functions = set(guarded_kernels().functions())
    for p in PRIMITIVES:
        assert p.op not in ("conv",)
        assert p.name.startswith(f"{p.op}_{p.family}_")
        for src in p.sources:
            assert (kernels_dir() / src).is_file(), f"{p.name}: missing source {src}"
        assert p.aliases_input == (p.family == "view")
    kernel_calls = {"maxpool": "tb_maxpool", "avgpool": "tb_avgpool", "gap": "tb_gap", "fc": "tb_fc_gemv",
                    "add": "tb_add", "act": "tb_act", "softmax": "tb_softmax", "scale": "tb_scale",
                    "concat": "tb_copy_channels", "lrn": "tb_lrn"}
    assert all(any(f.startswith(prefix) for f in functions) for prefix in kernel_calls.values())
    layouts_of = {op: sorted(p.layout_in for p in prims(op)) for op in kernel_calls}
    assert layouts_of["lrn"] == ["CHW", "HWC"]
    assert all(layouts_of[op] == sorted(LAYOUTS) for op in kernel_calls if op != "lrn")


# ------------------------------------------------------------------------------------------------- pooling

# (C, H, W, kernel, stride, onnx pads (t, l, b, r), ceil_mode)
POOL_CASES = [
    (3, 7, 9, (3, 3), (2, 2), (1, 1, 1, 1), 0),
    (5, 6, 7, (2, 3), (2, 1), (0, 1, 1, 0), 0),  # asymmetric
    (4, 5, 5, (2, 2), (2, 2), (0, 0, 0, 0), 1),  # ceil mode: last window hangs over the input
    (2, 8, 11, (3, 2), (3, 2), (1, 0, 0, 1), 1),  # ceil mode with asymmetric pads
    (17, 4, 4, (4, 4), (1, 1), (0, 0, 0, 0), 0),
]


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("kind,count_include_pad", [("maxpool", 0), ("avgpool", 0), ("avgpool", 1)])
def test_pool_matches_onnxruntime(case, kind: str, count_include_pad: int) -> None:
    c, h, w, kernel, stride, pads, ceil = case
    x = rand(c, h, w)
    onnx_pads = [pads[0], pads[1], pads[2], pads[3]]
    extra = {"count_include_pad": count_include_pad} if kind == "avgpool" else {}
    ref = ort_run("MaxPool" if kind == "maxpool" else "AveragePool", x[None], kernel_shape=list(kernel),
                  strides=list(stride), pads=onnx_pads, ceil_mode=ceil, **extra)[0]
    node = Node("p", kind, ("x",), "y", attrs=attrs(kernel=kernel, stride=stride, pads=pads,
                                                    count_include_pad=count_include_pad))
    graph = graph_of(node, {"x": Shape(c, h, w), "y": Shape(*ref.shape)})
    for prim in prims(kind):
        assert_close(run_prim(prim, node, graph, [x]), ref.astype(np.float64))


def test_avgpool_ceil_mode_pinned() -> None:
    """5x5 ones, 3x3 window, stride 2, pads 1, ceil mode (ORT): corners 4/9, edges 6/9, centre 1."""
    node = Node("p", "avgpool", ("x",), "y", attrs=attrs(kernel=(3, 3), stride=(2, 2), pads=(1, 1, 1, 1),
                                                         count_include_pad=1))
    graph = graph_of(node, {"x": Shape(1, 5, 5), "y": Shape(1, 3, 3)})
    expected = np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]], np.float64)[None] / 9
    for prim in prims("avgpool"):
        assert_close(run_prim(prim, node, graph, [np.ones((1, 5, 5), np.float32)]), expected)


def test_gap() -> None:
    x = rand(5, 3, 7)
    node = Node("g", "gap", ("x",), "y")
    graph = graph_of(node, {"x": Shape(5, 3, 7), "y": Shape(5, 1, 1)})
    for prim in prims("gap"):
        assert_close(run_prim(prim, node, graph, [x]), x.astype(np.float64).mean(axis=(1, 2), keepdims=True))


# ---------------------------------------------------------------------------------- vectors and element-wise


def test_fc_pinned_and_random() -> None:
    w, b = np.array([[1, 2], [3, 4]], np.float32), np.array([0.5, -10], np.float32)
    node = Node("f", "fc", ("x",), "y", weights=("W", "b"), act=Activation("relu"))
    graph = graph_of(node, {"x": Shape(2, 1, 1), "y": Shape(2, 1, 1)}, {"W": w, "b": b})
    for prim in prims("fc"):
        assert_close(run_prim(prim, node, graph, [np.ones((2, 1, 1), np.float32)]), np.array([3.5, 0.0])[:, None, None])
    w, b, x = rand(13, 37), rand(13, seed=1), rand(37, 1, 1, seed=2)
    for act in ACTS:
        node = Node("f", "fc", ("x",), "y", weights=("W", "b"), act=act)
        graph = graph_of(node, {"x": Shape(37, 1, 1), "y": Shape(13, 1, 1)}, {"W": w, "b": b})
        ref = activate(w.astype(np.float64) @ x[:, 0, 0] + b, act)[:, None, None]
        for prim in prims("fc"):
            assert_close(run_prim(prim, node, graph, [x]), ref)


def test_fc_sums_in_input_order() -> None:
    """The kernel reads four panels of 16 outputs side by side but adds each output's terms in order k = 0, 1, ...:
    bit for bit the float32 result of the plain loop (no FMA: the host flags have -ffp-contract=off). 69 outputs:
    four whole panels, then a narrower one."""
    w, b, x = rand(69, 43), rand(69, seed=1), rand(43, 1, 1, seed=2)
    node = Node("f", "fc", ("x",), "y", weights=("W", "b"))
    graph = graph_of(node, {"x": Shape(43, 1, 1), "y": Shape(69, 1, 1)}, {"W": w, "b": b})
    want = np.zeros(69, np.float32)
    for k in range(43):
        want = want + w[:, k] * x[k, 0, 0]
    want = want + b
    for prim in prims("fc"):
        assert np.array_equal(run_prim(prim, node, graph, [x]).reshape(-1).astype(np.float32), want)
        packed, _ = prim.weights(node, graph)
        # panels of 16 outputs, each [K][16]; outputs 64..68 are the last panel, [K][5], after 64*43 floats
        assert packed[3 * 16 + 7] == w[7, 3] and packed[16 * 43 + 2 * 16 + 1] == w[17, 2]
        assert packed[64 * 43 + 10 * 5 + 4] == w[68, 10]


def test_fc_needs_a_vector_input() -> None:
    node = Node("f", "fc", ("x",), "y", weights=("W", "b"))
    graph = graph_of(node, {"x": Shape(2, 2, 1), "y": Shape(2, 1, 1)}, {"W": rand(2, 4), "b": rand(2)})
    assert not any(p.applies(node, graph) for p in prims("fc"))


@pytest.mark.parametrize("act", ACTS, ids=str)
def test_add_act_scale(act: Activation) -> None:
    shape = Shape(3, 5, 7)
    a, b = rand(3, 5, 7, seed=1), rand(3, 5, 7, seed=2)
    shapes = {"a": shape, "b": shape, "y": shape}
    add = Node("add", "add", ("a", "b"), "y", act=act)
    for prim in prims("add"):
        assert_close(run_prim(prim, add, graph_of(add, shapes), [a, b]), activate(a.astype(np.float64) + b, act))
    standalone = Node("act", "act", ("a",), "y", act=act)
    for prim in prims("act"):
        assert_close(run_prim(prim, standalone, graph_of(standalone, shapes), [a]), activate(a.astype(np.float64), act))
    s, t = rand(3, seed=3), rand(3, seed=4)
    scale = Node("s", "scale", ("a",), "y", weights=("s", "t"), act=act)
    graph = graph_of(scale, shapes, {"s": s, "t": t})
    ref = activate(a.astype(np.float64) * s[:, None, None] + t[:, None, None], act)
    for prim in prims("scale"):
        assert_close(run_prim(prim, scale, graph, [a]), ref)


def test_softmax() -> None:
    node = Node("s", "softmax", ("x",), "y")
    graph = graph_of(node, {"x": Shape(2, 1, 1), "y": Shape(2, 1, 1)})
    pinned = np.array([0.0, math.log(3.0)], np.float32)[:, None, None]
    x = rand(1000, 1, 1) * 10
    graph_big = graph_of(node, {"x": Shape(1000, 1, 1), "y": Shape(1000, 1, 1)})
    e = np.exp(x.astype(np.float64) - x.max())
    for prim in prims("softmax"):
        assert_close(run_prim(prim, node, graph, [pinned]), np.array([0.25, 0.75])[:, None, None])
        assert_close(run_prim(prim, node, graph_big, [x]), e / e.sum())


# --------------------------------------------------------------------------------------------- concat, LRN


def test_concat_copies_each_input_into_its_slice() -> None:
    chans = (3, 1, 5)
    xs = [rand(c, 4, 3, seed=k) for k, c in enumerate(chans)]
    shapes = {f"x{k}": Shape(c, 4, 3) for k, c in enumerate(chans)} | {"y": Shape(9, 4, 3)}
    node = Node("c", "concat", tuple(f"x{k}" for k in range(3)), "y")
    graph = graph_of(node, shapes)
    for prim in prims("concat"):
        calls = prim.call(node, graph)
        assert [dict(c.params)["c_offset"] for c in calls] == [0, 3, 4]
        assert_close(run_prim(prim, node, graph, xs), np.concatenate(xs).astype(np.float64))


def lrn_reference(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """The ONNX LRN definition, float64."""
    x = x.astype(np.float64)
    sq = np.zeros_like(x)
    for c in range(x.shape[0]):
        lo, hi = max(0, c - (size - 1) // 2), min(x.shape[0] - 1, c + math.ceil((size - 1) / 2))
        sq[c] = (x[lo : hi + 1] ** 2).sum(axis=0)
    return x / (bias + alpha / size * sq) ** beta


@pytest.mark.parametrize(("size", "beta", "channels"),
                         [(1, 0.75, 7), (3, 0.75, 7), (4, 0.75, 7), (5, 0.75, 7), (5, 0.5, 7), (5, 1.0, 7),
                          (5, 0.6, 7), (5, 0.75, 70), (4, 0.75, 130)])
def test_lrn(size: int, beta: float, channels: int) -> None:
    """Every exponent branch of lrn_normalise (0.75, 0.5, 1 by square roots, others by powf), channel counts across
    the HWC kernel's 64-channel chunks, and the HWC and CHW kernels giving the same bits."""
    x = rand(channels, 3, 5)
    ref = lrn_reference(x, size, 0.01, beta, 2.0)
    if size % 2:  # ONNX Runtime only implements odd sizes: check the reference against it there
        assert_close(ort_run("LRN", x[None], size=size, alpha=0.01, beta=beta, bias=2.0)[0].astype(np.float64), ref)
    node = Node("l", "lrn", ("x",), "y", attrs=attrs(size=size, alpha=0.01, beta=beta, bias=2.0))
    graph = graph_of(node, {"x": Shape(channels, 3, 5), "y": Shape(channels, 3, 5)})
    outputs = [run_prim(prim, node, graph, [x]) for prim in prims("lrn")]
    for out in outputs:
        assert_close(out, ref)
    assert len(outputs) == 2 and np.array_equal(outputs[0], outputs[1])


# ----------------------------------------------------------------------------------- transpose and reshape

PERMS = list(itertools.permutations(range(3)))


@pytest.mark.parametrize("perm", PERMS)
def test_transpose_view_table_is_right(perm) -> None:
    """A view is claimed exactly when the permuted tensor's bytes in layout_out equal the input's in layout_in."""
    x = rand(2, 3, 4)
    y = np.transpose(x, perm)
    node = Node("t", "transpose", ("x",), "y", attrs=attrs(perm=perm))
    graph = graph_of(node, {"x": Shape(2, 3, 4), "y": Shape(*y.shape)})
    views = {(p.layout_in, p.layout_out) for p in prims("transpose") if p.family == "view" and p.applies(node, graph)}
    for lin, lout in itertools.product(LAYOUTS, LAYOUTS):
        same = np.array_equal(to_layout(x, lin).reshape(-1), to_layout(y, lout).reshape(-1))
        assert ((lin, lout) in views) == same, (perm, lin, lout)
    if perm == (0, 1, 2):
        assert views == {(layout, layout) for layout in LAYOUTS}
    if perm == (1, 0, 2):  # swapping C and H: CHW read as HCW and back
        assert views == {("CHW", "HCW"), ("HCW", "CHW")}
    copy = next(p for p in prims("transpose") if p.family == "permute")
    assert_close(run_prim(copy, node, graph, [x]), y.astype(np.float64))


def test_transpose_view_nhwc_to_nchw() -> None:
    """ONNX perm (0,3,1,2) on a TF NHWC tensor, i.e. logical perm (2,0,1), is a CHW -> HWC view."""
    assert transpose_is_view((2, 0, 1), Shape(8, 8, 3), "CHW", "HWC")
    assert not transpose_is_view((2, 0, 1), Shape(8, 8, 3), "CHW", "CHW")
    assert transpose_is_view((1, 0, 2), Shape(4, 1, 5), "CHW", "CHW")  # extent-1 axes do not count


def test_reshape_views() -> None:
    node = Node("r", "reshape", ("x",), "y")
    flat = graph_of(node, {"x": Shape(6, 2, 2), "y": Shape(24, 1, 1)})
    vec = graph_of(node, {"x": Shape(24, 1, 1), "y": Shape(2, 12, 1)})
    both = graph_of(node, {"x": Shape(24, 1, 1), "y": Shape(24, 1, 1)})
    names = lambda g: sorted(p.name for p in prims("reshape") if p.applies(node, g))  # noqa: E731
    assert names(flat) == names(vec) == ["reshape_view_chw"]
    assert names(both) == ["reshape_view_chw", "reshape_view_vector_hcw", "reshape_view_vector_hwc"]
    assert all(p.call(node, both) == () and p.aliases_input for p in prims("reshape"))


# ---------------------------------------------------------------------------------------------- transforms


def test_transform_pinned_bytes() -> None:
    x = np.arange(12, dtype=np.float32).reshape(2, 2, 3)  # C=2, H=2, W=3
    out = run_guarded(guarded_kernels(), transform_call(Shape(2, 2, 3), "CHW", "HWC"), {"in0": x})["out"]
    assert out.tolist() == [0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11]


@pytest.mark.parametrize("shape", [Shape(3, 5, 7), Shape(33, 17, 19), Shape(1, 1, 40), Shape(20, 1, 1)])
def test_every_transform_pair_is_exact_and_round_trips(shape: Shape) -> None:
    x = rand(shape.c, shape.h, shape.w)
    for src, dst in itertools.permutations(LAYOUTS, 2):
        there = run_guarded(guarded_kernels(), transform_call(shape, src, dst), {"in0": to_layout(x, src)})["out"]
        assert np.array_equal(there, to_layout(x, dst).reshape(-1)), (src, dst)
        back = run_guarded(guarded_kernels(), transform_call(shape, dst, src), {"in0": there})["out"]
        assert np.array_equal(back, to_layout(x, src).reshape(-1)), (dst, src)
        assert same_memory(shape, src, dst) == np.array_equal(to_layout(x, src).reshape(-1), there)


def test_transform_call_rejects_identity() -> None:
    with pytest.raises(ValueError):
        transform_call(Shape(1, 2, 3), "CHW", "CHW")


# -------------------------------------------------------------------------------------------------- guard


def test_guard_catches_a_write_past_the_declared_output() -> None:
    node = Node("a", "act", ("x",), "y", act=Activation("relu"))
    graph = graph_of(node, {"x": Shape(10, 1, 1), "y": Shape(10, 1, 1)})
    (call,) = prims("act")[0].call(node, graph)
    lying = call.__class__(call.function, call.struct, call.params, call.args, (("in0", 40), ("out", 36)))
    with pytest.raises(AssertionError, match="canary"):
        run_guarded(guarded_kernels(), lying, {"in0": rand(10)})


# ---------------------------------------------------------------------------------------------- portability

OPS_SOURCES = sorted(p.name for p in kernels_dir().glob("ops_*.c"))


@pytest.mark.parametrize("cc,flags", [
    ("cc", ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffreestanding")),
    ("arm-none-eabi-gcc", ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-mcpu=cortex-m4", "-mfloat-abi=hard",
                           "-mfpu=fpv4-sp-d16", "-ffreestanding")),
])
def test_ops_kernels_compile_warning_free(cc: str, flags: tuple[str, ...], tmp_path) -> None:
    import shutil
    import subprocess

    if shutil.which(cc) is None:
        pytest.skip(f"{cc} not installed")
    for src in OPS_SOURCES:
        done = subprocess.run([cc, *flags, "-I", str(kernels_dir()), "-c", str(kernels_dir() / src), "-o",
                               str(tmp_path / "k.o")], capture_output=True, text=True)
        assert done.returncode == 0 and not done.stderr, f"{src}: {done.stderr}"
