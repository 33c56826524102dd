"""int8 networks: TFLite's requantisation arithmetic in C against a Python port of TFLite's reference (hand-checked
cases first), every int8 kernel bit-exact against a NumPy port of TFLite's reference kernels, the importer's int8
patterns and its errors, and end to end: DS-CNN quantised by onnxruntime.quantization (QDQ per-channel and
per-tensor, QOperator) built, compiled, run and compared with ONNX Runtime."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tasobuild import ir
from tasobuild.errors import UserError
from tasobuild.importer import import_onnx
from tasobuild.primitives.q8 import PRIMITIVES, quantize_multiplier
from tasobuild.primitives.transforms import from_layout, to_layout
from tasobuild.resources import kernels_dir
from tests import q8_reference as ref
from tests.e2e import build_and_compile, run_binary, tasobuild, write_spec, write_target_spec
from tests.guard import guarded_kernels, run_guarded
from tests.int8_models import assert_within_range, ort_outputs, quantise, with_int8_input

FIXTURES = Path(__file__).parent / "fixtures" / "models"
INT32_MIN = -(1 << 31)

# ------------------------------------------------------------------------------------ requantisation arithmetic

# (x, multiplier, shift) -> MultiplyByQuantizedMultiplier, worked out by hand from TFLite's definition.
HAND_CHECKED = [
    ((1, 1 << 30, 0), 1),  # 0.5: the doubling high multiply's nudge rounds a positive half up
    ((-1, 1 << 30, 0), 0),  # -0.5: the nudge 1 - 2^30 and C's truncation round it toward zero
    ((3, 1 << 30, -1), 1),  # 1.5 * 0.5: high mul rounds 1.5 to 2, then 2 / 2 = 1
    ((-3, 1 << 30, -1), -1),  # -1.5 -> -1, then -1 / 2 = -0.5 rounds away from zero: -1
    ((5, 1 << 30, -1), 2),  # 2.5 -> 3, then 3 / 2 = 1.5: remainder 1 > threshold 0 rounds it up to 2
    ((100, 1 << 30, 2), 200),  # shift left: 100 * 4 * 0.5
    ((INT32_MIN, INT32_MIN, 0), (1 << 31) - 1),  # the one overflow saturates
    ((1000, 0, 0), 0),
]


def _c_requant(cases: list[tuple[int, int, int]], tmp_path: Path, flags: tuple[str, ...] = ()) -> list[int]:
    """tb_q8_requant of tb_q8.h, compiled with `flags` and run on `cases`; where the flags enable AVX2, eight at a
    time by tb_q8_requant8 (the cases padded with zeros), which the kernels' requantisation loops run."""
    padded = cases + [(0, 0, 0)] * (-len(cases) % 8)
    rows = ",\n".join(f"    {{{x if x != INT32_MIN else '(-2147483647 - 1)'}, "
                      f"{m if m != INT32_MIN else '(-2147483647 - 1)'}, {s}}}" for x, m, s in padded)
    src = tmp_path / "requant.c"
    src.write_text(f"""#include <stdio.h>
#include "tb_q8.h"
static const int32_t cases[][3] = {{
{rows}
}};
#define N (sizeof cases / sizeof cases[0])
int main(void)
{{
#ifdef __AVX2__
    for (unsigned i = 0; i < N; i += 8) {{
        int32_t x[8], m[8], s[8], r[8];
        for (int k = 0; k < 8; ++k) {{ x[k] = cases[i + k][0]; m[k] = cases[i + k][1]; s[k] = cases[i + k][2]; }}
        _mm256_storeu_si256((__m256i *)(void *)r, tb_q8_requant8(_mm256_loadu_si256((const __m256i *)(void *)x),
                            _mm256_loadu_si256((const __m256i *)(void *)m),
                            _mm256_loadu_si256((const __m256i *)(void *)s)));
        for (int k = 0; k < 8; ++k) printf("%ld\\n", (long)r[k]);
    }}
#else
    for (unsigned i = 0; i < N; ++i)
        printf("%ld\\n", (long)tb_q8_requant(cases[i][0], cases[i][1], (int)cases[i][2]));
#endif
    return 0;
}}
""")
    exe = tmp_path / "requant"
    subprocess.run(["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", *flags, "-I", str(kernels_dir()), str(src),
                    "-o", str(exe)], check=True, capture_output=True, text=True)
    return [int(line) for line in subprocess.run([str(exe)], check=True, capture_output=True,
                                                 text=True).stdout.split()][:len(cases)]


REQUANT_FLAGS = [(), ("-mavx2",), ("-march=native",)]


@pytest.mark.parametrize("flags", REQUANT_FLAGS)
def test_requant_hand_checked_cases(tmp_path: Path, flags: tuple[str, ...]) -> None:
    cases = [c for c, _ in HAND_CHECKED]
    expected = [e for _, e in HAND_CHECKED]
    assert [int(v) for v in ref.multiply_by_quantized_multiplier(*map(np.array, zip(*cases)))] == expected
    assert _c_requant(cases, tmp_path, flags) == expected


@pytest.mark.parametrize("flags", REQUANT_FLAGS)
def test_requant_c_matches_tflite_port_on_random_and_edge_cases(tmp_path: Path, flags: tuple[str, ...]) -> None:
    rng = np.random.default_rng(11)
    cases = []
    for _ in range(3000):
        shift = int(rng.integers(-31, 8))
        bound = (1 << 31) >> max(shift, 0)  # no int32 overflow before the multiply (UB in TFLite too)
        x = int(rng.integers(-bound, bound))
        cases.append((x, int(rng.integers(1 << 30, 1 << 31)), shift))
    for x in (0, 1, -1, 2, -2, 3, -3, (1 << 31) - 1, INT32_MIN, 1 << 30, -(1 << 30)):
        for m in ((1 << 30), (1 << 31) - 1, 1518500250, 1):
            cases += [(x, m, s) for s in (0, -1, -2, -7, -31)]
    ours = _c_requant(cases, tmp_path, flags)
    theirs = ref.multiply_by_quantized_multiplier(*map(np.array, zip(*cases)))
    assert ours == [int(v) for v in theirs]


@pytest.mark.parametrize(("real", "expected"), [
    (0.0, (0, 0)), (0.5, (1 << 30, 0)), (1.0, (1 << 30, 1)), (0.75, (3 << 29, 0)), (2.0 ** -32, (1 << 30, -31)),
    (2.0 ** -33, (0, 0)), (0.1, (1717986918, -3)),  # 0.1 = 0.8 * 2^-3; round(0.8 * 2^31) = 1717986918
])
def test_quantize_multiplier_as_tflite(real: float, expected: tuple[int, int]) -> None:
    assert quantize_multiplier(real) == expected == ref.quantize_multiplier(real)


# --------------------------------------------------------------------------- int8 dot products (tb_q8_dot.h)

DOT_PROGRAM = r"""#include <stdio.h>
#include "tb_q8_dot.h"
static int8_t x[64], w[4 * 64];
int main(void)
{
#if defined(TB_Q8_DOT_VNNI)
    puts("vnni");
#elif defined(__AVX2__)
    puts("avx2");
#else
    puts("portable");
#endif
    for (int i = 0; i < 64; ++i) x[i] = -128;
    for (int i = 0; i < 4 * 64; ++i) w[i] = -128;
    printf("%ld %ld %ld\n", (long)tb_q8_dot(x, w, 0), (long)tb_q8_dot(x, w, 1), (long)tb_q8_dot(x, w, 33));
    for (int i = 0; i < 41; ++i) {
        x[i] = (int8_t)i;
        w[i] = 1;
    }
    printf("%ld %ld\n", (long)tb_q8_dot(x, w, 15), (long)tb_q8_dot(x, w, 41));
    /* four rows 44 apart, 3 bytes of 99 between them that no sum may read */
    for (int i = 0; i < 64; ++i) x[i] = i < 41 ? -128 : 99;
    for (int i = 0; i < 4 * 44; ++i) {
        const int row = i / 44, k = i % 44;
        w[i] = (int8_t)(k >= 41 ? 99 : row == 0 ? -128 : row == 1 ? 127 : row == 2 ? k % 3 - 1 : 1);
    }
    int32_t acc[4] = {1, 2, 3, 4}, empty[4] = {1, 2, 3, 4};
    tb_q8_dot4(x, w, 44, 41, acc);
    tb_q8_dot4(x, w, 44, 0, empty);
    printf("%ld %ld %ld %ld\n", (long)acc[0], (long)acc[1], (long)acc[2], (long)acc[3]);
    printf("%ld %ld %ld %ld\n", (long)empty[0], (long)empty[1], (long)empty[2], (long)empty[3]);
    return 0;
}
"""
# Worked out by hand: n = 0 sums nothing; (-128)^2 = 16384, 33 of them 540672; 0 + 1 + ... + 14 = 105 and
# 0 + ... + 40 = 820; 41 x (-128) times the rows: 41 * 16384 + 1, 41 * -16256 + 2, -128 * (13 * 0 - 1 + 0) + 3
# (k % 3 - 1 over k < 41), -128 * 41 + 4.
DOT_EXPECTED = ["0 16384 540672", "105 820", "671745 -666494 131 -5244", "1 2 3 4"]
CPU_FLAGS = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""


@pytest.mark.parametrize(("flags", "path"), [((), "portable"), (("-mavx2",), "avx2"),
                                             (("-mavx2", "-mavxvnni"), "vnni"),
                                             (("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni"), "vnni"),
                                             (("-march=native",), None)])
def test_dot_products_hand_checked(flags: tuple[str, ...], path: str | None, tmp_path: Path) -> None:
    """tb_q8_dot and tb_q8_dot4 in each version this machine can run: odd lengths, n = 0, the vector steps' tails,
    extreme values, rows with bytes between them."""
    needs = {"-mavx2": "avx2", "-mavxvnni": "avx_vnni", "-mavx512vnni": "avx512_vnni"}
    missing = [cpu for flag, cpu in needs.items() if flag in flags and cpu not in CPU_FLAGS]
    src = tmp_path / "dot.c"
    src.write_text(DOT_PROGRAM)
    exe = tmp_path / "dot"
    subprocess.run(["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", *flags, "-I", str(kernels_dir()),
                    str(src), "-o", str(exe)], check=True, capture_output=True, text=True)
    if missing:
        pytest.skip(f"this CPU lacks {missing}")
    lines = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()
    assert lines[0] == path or path is None
    assert lines[1:] == DOT_EXPECTED


# --------------------------------------------------------------------------------- kernels against TFLite's


def _graph(node: ir.Node, shapes: dict[str, ir.Shape], quant: dict[str, ir.Quant],
           constants: dict[str, np.ndarray] | None = None) -> ir.Graph:
    return ir.Graph((node,), tuple(sorted(shapes.items())),
                    tuple(ir.Constant.of(k, v) for k, v in sorted((constants or {}).items())),
                    node.inputs[0], node.output, (1,), (1,), dtypes=tuple(sorted((t, "int8") for t in quant)),
                    quant=tuple(sorted(quant.items())))


def _run(primitive_name: str, node: ir.Node, graph: ir.Graph, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The primitive's call on the logical (C,H,W) int8 inputs, guarded; the logical int8 output."""
    prim = next(p for p in PRIMITIVES if p.name == primitive_name)
    assert prim.applies(node, graph), primitive_name
    buffers = {f"in{k}": to_layout(x, prim.layout_in) for k, x in enumerate(inputs.values())}
    buffers |= {f"w{k}": w for k, w in enumerate(prim.weights(node, graph))}
    (call,) = prim.call(node, graph)
    out_shape = graph.shape(node.output)
    raw = run_guarded(guarded_kernels(), call, buffers)["out"].view(np.int8)[:out_shape.count]
    return from_layout(raw, out_shape, prim.layout_out)


CONV_CASES = [  # (c, h, w, m, (kh, kw), stride, pads, dilation, groups)
    (3, 9, 7, 5, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (4, 8, 8, 6, (3, 2), (2, 1), (0, 1, 1, 0), (1, 1), 1),
    (6, 7, 9, 4, (3, 3), (1, 2), (2, 2, 2, 2), (2, 1), 2),
    (8, 6, 5, 8, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 8),
    (5, 10, 6, 10, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 5),
    (16, 5, 4, 12, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    (1, 12, 5, 7, (10, 4), (2, 2), (4, 1, 5, 1), (1, 1), 1),
    # long contiguous runs (the dot products' 32-, 16- and 8-byte steps and their tails), 4-channel blocks + 1
    (45, 6, 5, 9, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (45, 4, 3, 13, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    # depthwise HWC's runs of pixels x channels (stride 1 across), two pixels a run, right columns outside them
    (48, 7, 7, 48, (3, 3), (2, 1), (1, 0, 1, 2), (1, 1), 48),
]


def _conv_case(case: tuple, rng: np.random.Generator, relu: bool) -> tuple[ir.Node, ir.Graph, np.ndarray,
                                                                          np.ndarray]:
    c, h, w, m, kernel, stride, pads, dil, groups = case
    oh = (h + pads[0] + pads[2] - dil[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    ow = (w + pads[1] + pads[3] - dil[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    weights = rng.integers(-127, 128, (m, c // groups) + kernel).astype(np.int8)
    bias = rng.integers(-3000, 3000, m).astype(np.int32)
    scales = rng.uniform(0.002, 0.02, m).astype(np.float32)
    q_in, q_out = ir.Quant(0.05, int(rng.integers(-20, 20))), ir.Quant(0.2, int(rng.integers(-20, 20)))
    act_min = q_out.zero_point if relu else -128
    node = ir.Node("conv", "qconv", ("x",), "y", ("conv.W", "conv.b", "conv.s"),
                   ir.attrs(kernel=kernel, stride=stride, pads=pads, dilation=dil, groups=groups, act_min=act_min,
                            act_max=127))
    graph = _graph(node, {"x": ir.Shape(c, h, w), "y": ir.Shape(m, oh, ow)}, {"x": q_in, "y": q_out},
                   {"conv.W": weights, "conv.b": bias, "conv.s": scales})
    x = rng.integers(-128, 128, (c, h, w)).astype(np.int8)
    mult, shift = ref.channel_multipliers(q_in.scale, scales, q_out.scale)
    expected = ref.conv_per_channel(x, q_in.zero_point, weights, bias, mult, shift, q_out.zero_point, stride, pads,
                                    dil, groups, (oh, ow), act_min, 127)
    return node, graph, x, expected


@pytest.mark.parametrize("name", sorted(p.name for p in PRIMITIVES if p.op == "qconv"))
def test_conv_kernels_bit_exact_with_tflite_reference(name: str) -> None:
    rng = np.random.default_rng(5)
    ran = 0
    for case in CONV_CASES:
        for relu in (False, True):
            node, graph, x, expected = _conv_case(case, rng, relu)
            prim = next(p for p in PRIMITIVES if p.name == name)
            if not prim.applies(node, graph):
                continue
            np.testing.assert_array_equal(_run(name, node, graph, {"x": x}), expected, err_msg=f"{name} {case}")
            ran += 1
    assert ran >= 2, f"{name} ran on {ran} cases only"


def test_zero_point_folding_that_overflows_int32_is_one_clear_line() -> None:
    """The GEMM-like kernels' bias holds bias - in_zp * sum w, built in int64 and refused when it leaves int32."""
    node = ir.Node("conv\n*/", "qconv", ("x",), "y", ("conv.W", "conv.b", "conv.s"),
                   ir.attrs(kernel=(1, 1), stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1,
                            act_min=-128, act_max=127))

    def graph(first_bias: int) -> ir.Graph:
        return _graph(node, {"x": ir.Shape(3, 2, 2), "y": ir.Shape(2, 2, 2)},
                      {"x": ir.Quant(0.1, -20), "y": ir.Quant(0.1, 0)},
                      {"conv.W": np.full((2, 3, 1, 1), 127, np.int8), "conv.b": np.array([first_bias, 5], np.int32),
                       "conv.s": np.full(2, 0.01, np.float32)})

    with pytest.raises(UserError, match="overflows int32") as info:  # + 20 * 381 leaves int32
        next(p for p in PRIMITIVES if p.name == "q8_conv_1x1_hwc").weights(node, graph((1 << 31) - 100))
    assert "\n" not in str(info.value)
    folded = next(p for p in PRIMITIVES if p.name == "q8_conv_1x1_chw").weights(node, graph(1000))[1]
    assert folded.tolist() == [1000 + 20 * 381, 5 + 20 * 381]


@pytest.mark.parametrize("layout", ["chw", "hwc", "hcw"])
def test_fc_bit_exact(layout: str) -> None:
    rng = np.random.default_rng(6)
    k, n = 37, 11
    weights = rng.integers(-127, 128, (n, k)).astype(np.int8)
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    scales = np.full(n, 0.011, np.float32)
    q_in, q_out = ir.Quant(0.07, -3), ir.Quant(0.3, 9)
    node = ir.Node("fc", "qfc", ("x",), "y", ("fc.W", "fc.b", "fc.s"), ir.attrs(act_min=-128, act_max=127))
    graph = _graph(node, {"x": ir.Shape(k, 1, 1), "y": ir.Shape(n, 1, 1)}, {"x": q_in, "y": q_out},
                   {"fc.W": weights, "fc.b": bias, "fc.s": scales})
    x = rng.integers(-128, 128, (k, 1, 1)).astype(np.int8)
    mult, shift = ref.channel_multipliers(q_in.scale, scales, q_out.scale)
    expected = ref.fully_connected(x.reshape(-1), q_in.zero_point, weights, bias, mult, shift, q_out.zero_point)
    np.testing.assert_array_equal(_run(f"q8_fc_gemv_{layout}", node, graph, {"x": x}).reshape(-1), expected)


@pytest.mark.parametrize("layout", ["chw", "hwc"])
def test_pools_bit_exact(layout: str) -> None:
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, (5, 9, 8)).astype(np.int8)
    q = ir.Quant(0.1, 4)
    geometry = dict(kernel=(3, 3), stride=(2, 2), pads=(1, 1, 1, 1), act_min=-128, act_max=127)
    avg = ir.Node("p", "qavgpool", ("x",), "y", attrs=ir.attrs(count_include_pad=0, **geometry))
    shapes = {"x": ir.Shape(5, 9, 8), "y": ir.Shape(5, 5, 4)}
    got = _run(f"q8_avgpool_{layout}", avg, _graph(avg, shapes, {"x": q, "y": q}), {"x": x})
    np.testing.assert_array_equal(got, ref.average_pool(x, (3, 3), (2, 2), (1, 1, 1, 1), (5, 4)))
    mx = ir.Node("p", "qmaxpool", ("x",), "y", attrs=ir.attrs(**geometry))
    got = _run(f"q8_maxpool_{layout}", mx, _graph(mx, shapes, {"x": q, "y": q}), {"x": x})
    padded = np.pad(x.astype(np.int64), ((0, 0), (1, 1), (1, 1)), constant_values=-128)
    expected = np.stack([[[padded[c, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max() for j in range(4)] for i in range(5)]
                         for c in range(5)])
    np.testing.assert_array_equal(got, expected)
    # global average pool with its own output quantisation: TFLite's Mean
    gap = ir.Node("g", "qgap", ("x",), "y", attrs=ir.attrs(act_min=-128, act_max=127))
    q_out = ir.Quant(0.03, -7)
    got = _run(f"q8_gap_{layout}", gap, _graph(gap, {"x": ir.Shape(5, 9, 8), "y": ir.Shape(5, 1, 1)},
                                               {"x": q, "y": q_out}), {"x": x})
    np.testing.assert_array_equal(got.reshape(-1), ref.mean(x, q.zero_point, q.scale, q_out.zero_point, q_out.scale))


def test_add_and_quantize_bit_exact() -> None:
    rng = np.random.default_rng(8)
    a, b = (rng.integers(-128, 128, (4, 6, 5)).astype(np.int8) for _ in range(2))
    qa, qb, qo = ir.Quant(0.05, -10), ir.Quant(0.13, 7), ir.Quant(0.11, 2)
    node = ir.Node("add", "qadd", ("a", "b"), "y", attrs=ir.attrs(act_min=-128, act_max=127))
    shape = ir.Shape(4, 6, 5)
    graph = _graph(node, {"a": shape, "b": shape, "y": shape}, {"a": qa, "b": qb, "y": qo})
    got = _run("q8_add_hwc", node, graph, {"a": a, "b": b})
    np.testing.assert_array_equal(got, ref.add(a, qa.zero_point, qa.scale, b, qb.zero_point, qb.scale,
                                               qo.zero_point, qo.scale))
    # quantize: float in, int8 out; ties (x / scale = k + 0.5) round away from zero as TFLite's Quantize does
    x = np.concatenate([rng.normal(0, 3, 200), [0.25, -0.25, 0.75, -0.75, 1e9, -1e9]]).astype(np.float32)
    q = ir.Quant(0.5, -3)
    qn = ir.Node("q", "quantize", ("x",), "y")
    graph = ir.Graph((qn,), (("x", ir.Shape(x.size, 1, 1)), ("y", ir.Shape(x.size, 1, 1))), (), "x", "y", (1,), (1,),
                     dtypes=(("y", "int8"),), quant=(("y", q),))
    prim = next(p for p in PRIMITIVES if p.name == "q8_quantize_chw")
    (call,) = prim.call(qn, graph)
    got = run_guarded(guarded_kernels(), call, {"in0": x})["out"].view(np.int8)[:x.size]
    np.testing.assert_array_equal(got, ref.quantize(x, q.scale, q.zero_point))
    assert list(got[-6:-2]) == [-3 + 1, -3 - 1, -3 + 2, -3 - 2]  # 0.5, -0.5, 1.5, -1.5 away from zero


# ------------------------------------------------------------------------------------------- import and errors


@pytest.fixture(scope="module")
def ds_cnn_int8(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("int8")
    return {kind: quantise(FIXTURES / "ds_cnn_tf.onnx", folder / f"ds_cnn_{kind}.onnx", fmt, per_channel)
            for kind, fmt, per_channel in (("qdq_channel", "QDQ", True), ("qdq_tensor", "QDQ", False),
                                           ("qoperator", "QOperator", True))}


def test_qdq_and_qoperator_import_to_the_same_int8_ops(ds_cnn_int8: dict[str, Path]) -> None:
    for kind, path in sorted(ds_cnn_int8.items()):
        graph = import_onnx(path)
        ops = [n.op for n in graph.nodes]
        assert ops == ["reshape", "quantize"] + ["qconv"] * 9 + ["qavgpool", "qfc", "dequantize", "softmax"], kind
        conv = graph.nodes[2]
        assert [graph.const(w).dtype for w in conv.weights] == [np.int8, np.int32, np.float32]
        assert graph.dtype(conv.output) == "int8" and graph.dtype(graph.output) == "float32"
        assert graph.tensor_bytes(conv.output) == graph.shape(conv.output).count
        # ORT folds every Relu into the output quantisation: the zero point is the clamp's floor
        assert graph.quant_of(conv.output).zero_point == -128


def _one_node_qoperator(tmp_path: Path, zero_point_type: int, weight_zp: int = 0, out_scale: float = 0.1) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    np_type = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8}[zero_point_type]
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(out_scale, np.float32), "ys"),
             numpy_helper.from_array(np.array(0, np_type), "zp"),
             numpy_helper.from_array(np.ones((2, 3, 1, 1), np.int8), "w"),
             numpy_helper.from_array(np.array(0.01, np.float32), "ws"),
             numpy_helper.from_array(np.array(weight_zp, np.int8), "wzp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="quant"),
             helper.make_node("QLinearConv", ["xq", "s", "zp", "w", "ws", "wzp", "ys", "zp"], ["yq"], name="the_conv"),
             helper.make_node("DequantizeLinear", ["yq", "ys", "zp"], ["y"], name="dequant")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], inits)
    path = tmp_path / "one.onnx"
    import onnx

    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


@pytest.mark.parametrize(("zp_type", "weight_zp", "out_scale", "message"), [
    ("UINT8", 0, 0.1, "node 'quant' (QuantizeLinear): output is uint8; only int8 activations are supported"),
    ("INT8", 3, 0.1, "node 'the_conv' (QLinearConv): weights must be symmetric int8 (zero point 0)"),
    ("INT8", 0, 1e-15, "node 'the_conv' (QLinearConv): requantisation multiplier 1e+12"),
])
def test_unsupported_quantisation_is_one_clear_line(tmp_path: Path, zp_type: str, weight_zp: int, out_scale: float,
                                                    message: str) -> None:
    from onnx import TensorProto

    model = _one_node_qoperator(tmp_path, getattr(TensorProto, zp_type), weight_zp, out_scale)
    spec = write_spec(tmp_path, model)
    proc = tasobuild("build", "-c", str(spec), check=False)
    assert proc.returncode == 1
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# ------------------------------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("kind", ["qdq_channel", "qdq_tensor", "qoperator"])
def test_ds_cnn_int8_matches_onnxruntime(ds_cnn_int8: dict[str, Path], tmp_path: Path, kind: str) -> None:
    model = ds_cnn_int8[kind]
    spec = write_spec(tmp_path, model)
    built = build_and_compile(spec)
    graph = import_onnx(model)
    # the output is the softmax of dequantised logits: one logit step moves a probability by at most step / 4
    unit = next(graph.quant_of(n.inputs[0]).scale for n in graph.nodes if n.op == "dequantize")
    assert built.report["arena_bytes"] < 24 * 1024  # int8 activations: a quarter of float's 70 KiB or so
    kernels = (built.out_dir / "src" / "kernels")
    assert (kernels / "tb_q8.h").is_file() and (kernels / "tb_q8_dot.h").is_file()
    rng = np.random.default_rng(21)
    for _ in range(4):
        x = rng.standard_normal((1, 49, 10, 1)).astype(np.float32)
        ours, _ = run_binary(built.binary, x, tmp_path)
        assert_within_range(ours, ort_outputs(model, x), unit)


def test_int8_input_and_output_api(tmp_path: Path) -> None:
    """A model whose input and output are int8: the API takes and returns int8_t, with the scales as macros and
    float helpers; the runner (float files, through infer_float) agrees with ONNX Runtime on the int8 model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(4)
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(3, np.int8), "zp"),
             numpy_helper.from_array(np.array(0.25, np.float32), "ys"),
             numpy_helper.from_array(np.array(-5, np.int8), "yzp"),
             numpy_helper.from_array(rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8), "w"),
             numpy_helper.from_array(np.array([0.01, 0.02, 0.005, 0.03], np.float32), "ws"),
             numpy_helper.from_array(np.zeros(4, np.int8), "wzp"),
             numpy_helper.from_array(rng.integers(-500, 500, 4).astype(np.int32), "b")]
    conv = helper.make_node("QLinearConv", ["x", "s", "zp", "w", "ws", "wzp", "ys", "yzp", "b"], ["y"], name="conv",
                            pads=[1, 1, 1, 1])
    graph = helper.make_graph([conv], "g", [helper.make_tensor_value_info("x", TensorProto.INT8, [1, 3, 6, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.INT8, [1, 4, 6, 5])], inits)
    model = tmp_path / "int8_io.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(model))
    built = build_and_compile(write_spec(tmp_path, model))
    header = (built.out_dir / "include" / "net.h").read_text()
    for line in ("int8_t *net_input(void *arena);", "const int8_t *net_output(void *arena);",
                 "int net_infer(const int8_t *in, int8_t *out, void *arena);", "#define NET_INPUT_ZERO_POINT 3",
                 "#define NET_OUTPUT_SCALE      0.25f",
                 "int net_infer_float(const float *in, float *out, void *arena);"):
        assert line in header, line
    xq = rng.integers(-128, 128, (1, 3, 6, 5)).astype(np.int8)
    x = ((xq.astype(np.float32) - 3) * np.float32(0.1)).astype(np.float32)  # quantises back to xq exactly
    ours, _ = run_binary(built.binary, x, tmp_path)
    import onnxruntime as ort

    yq = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": xq})[0]
    assert_within_range(ours, [(yq.reshape(-1).astype(np.float32) + 5) * np.float32(0.25)], 0.25)


@pytest.mark.parametrize("network", ["ds_cnn_tf", "resnet8_tf", "mobilenet_v1_vww_tf"])
def test_int8_on_cortex_m4_equals_the_host(ds_cnn_int8: dict[str, Path], tmp_path: Path, network: str) -> None:
    """The int8 network cross-built for the Cortex-M4 (costs from the model) and run under qemu-system-arm gives the
    host build's output: the int8 layers are integer arithmetic, so any difference there would move a probability
    by about a logit step / 4 (~1e-2), far above the float softmax's last-bit differences allowed here."""
    from tests.test_embedded import make, needs_tools, run_on_board

    if needs_tools("cortex-m4").args[0]:
        pytest.skip("the cortex-m4 tools are not installed")
    model = ds_cnn_int8["qdq_channel"] if network == "ds_cnn_tf" else quantise(
        FIXTURES / f"{network}.onnx", tmp_path / f"{network}_int8.onnx")
    board, host = tmp_path / "board", tmp_path / "host"
    board.mkdir()
    host.mkdir()
    spec = write_target_spec(board, model, "cortex-m4", costs="model")
    spec.write_text(spec.read_text().replace('[constraints]\nmemory = "2 GiB"\n', ""))
    tasobuild("build", "-c", str(spec))
    make(board / "out")
    built = build_and_compile(write_spec(host, model))
    rng = np.random.default_rng(3)
    for _ in range(2):
        x = rng.standard_normal(import_onnx(model).onnx_input_shape).astype(np.float32)
        ours_host, _ = run_binary(built.binary, x, host)
        np.testing.assert_allclose(run_on_board(board / "out", x), ours_host, rtol=0, atol=1e-6)


def test_resnet8_int8_with_int8_input_matches_onnxruntime(tmp_path: Path) -> None:
    """ResNet-8 (int8 adds) quantised, then given an int8 input as TFLite's int8 models have: the NHWC->NCHW
    Transpose runs on the int8 input (a view), which takes the quantisation its first int8 reader declares."""
    model = with_int8_input(quantise(FIXTURES / "resnet8_tf.onnx", tmp_path / "resnet8.onnx"),
                            tmp_path / "resnet8_int8_input.onnx")
    assert model is not None
    graph = import_onnx(model)
    assert graph.dtype(graph.input) == "int8" and "qadd" in {n.op for n in graph.nodes}
    q = graph.quant_of(graph.input)
    built = build_and_compile(write_spec(tmp_path, model))
    unit = next(graph.quant_of(n.inputs[0]).scale for n in graph.nodes if n.op == "dequantize")
    rng = np.random.default_rng(9)
    for _ in range(2):
        xq = rng.integers(-128, 128, graph.onnx_input_shape).astype(np.int8)
        x = ((xq.astype(np.float32) - q.zero_point) * np.float32(q.scale)).astype(np.float32)  # quantises to xq
        ours, _ = run_binary(built.binary, x, tmp_path)
        assert_within_range(ours, ort_outputs(model, xq), unit)
