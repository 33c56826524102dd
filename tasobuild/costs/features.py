"""Features of a kernel call for the performance model: work, bytes moved, workspace, intensity and shape.

Everything comes from the `KernelCall` alone (function, struct, params, buffer sizes), so any call — including
primitives added after the model was trained — has features. The struct says how to count work (a conv's
multiply-adds, a pool's window reads); a struct this module does not know counts one operation per output element.

All features are logarithms (log2 of 1 + value) or small flags: times grow multiplicatively with shape, so a linear
model in log space fits power laws (time ~ flops^a * bytes^b) per kernel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from tasobuild.primitives import ACT_CODES, KernelCall

# Bumped whenever a feature is added, removed or redefined: a model trained on other features must be retrained.
FEATURE_VERSION = 5

# Names of the generic features every call has, in vector order (see `generic`).
GENERIC_NAMES: tuple[str, ...] = (
    "log_flops", "log_in_bytes", "log_weight_bytes", "log_out_bytes", "log_ws_bytes", "log_bytes_moved",
    "log_intensity", "log_out_elems",
)
# Shape features of a convolution, in vector order (see `conv_shape`).
CONV_NAMES: tuple[str, ...] = (
    "log_in_c", "log_out_c", "log_cg", "log_mg", "log_in_pixels", "log_out_pixels", "log_out_w", "log_taps",
    "log_stride", "log_groups", "depthwise", "pointwise", "log_gemm_k", "mr_fill", "nr_fill_pixels", "nr_fill_mg",
    "vec8_fill_out_c", "vec8_fill_out_w", "mr_fill_pixels", "vec8_fill_cg", "act_costly", "depthwise_x_log_flops",
    "pointwise_x_log_flops", "depthwise_x_log_out_pixels", "pointwise_x_log_out_pixels", "multiplied_depthwise",
    "multiplied_depthwise_x_log_flops", "act_leaky", "depthwise_tail", "depthwise_generic",
)


def log2p(x: float) -> float:
    return math.log2(1.0 + max(0.0, float(x)))


@dataclass(frozen=True)
class CallFeatures:
    """What the model sees of a call: the raw counts (for reports) and the feature vector (for the regression)."""

    function: str
    struct: str
    flops: float  # the work: multiply-adds x 2 for conv/fc, window reads for pools, elements otherwise
    bytes_moved: float  # inputs + weights + output + workspace (written then read: counted twice)
    workspace_bytes: float
    vector: tuple[float, ...]  # GENERIC_NAMES, then the struct's shape features (names: `feature_names`)

    @property
    def intensity(self) -> float:
        """Arithmetic intensity: work per byte moved."""
        return self.flops / max(1.0, self.bytes_moved)


def _roles(call: KernelCall) -> dict[str, float]:
    sums = {"in": 0.0, "w": 0.0, "out": 0.0, "ws": 0.0}
    for role, size in call.buffer_bytes:
        kind = "ws" if role == "ws" else "out" if role == "out" else "w" if role.startswith("w") else "in"
        sums[kind] += float(size)
    return sums


def work(call: KernelCall) -> float:
    """The call's arithmetic (see CallFeatures.flops); unknown structs count output elements."""
    p: Mapping[str, float] = dict(call.params)
    out_elems = _roles(call)["out"] / 4.0
    try:
        if call.struct in ("tb_conv", "tb_q8_conv"):
            pixels = p["out_h"] * p["out_w"]
            return 2.0 * p["out_c"] * pixels * (p["in_c"] / max(1, p["groups"])) * p["k_h"] * p["k_w"] + \
                p["out_c"] * pixels
        if call.struct == "tb_pool":
            return p["c"] * p["out_h"] * p["out_w"] * p["k_h"] * p["k_w"]
        if call.struct == "tb_fc":
            return 2.0 * p["in_n"] * p["out_n"]
        if call.struct == "tb_lrn":
            return p["c"] * p["h"] * p["w"] * (p["size"] + 4)  # the window sum plus a powf per element
        if call.struct == "tb_channels":
            return p["c"] * p["h"] * p["w"]  # it copies its slice, not the whole output buffer it is handed
        if call.struct == "tb_patch_copy":
            return p["rows"] * p["row_floats"]  # its rows, not the strides between them
    except KeyError:  # a struct of that name with other fields: count elements
        pass
    return max(1.0, out_elems)


def generic(call: KernelCall) -> tuple[float, float, float, tuple[float, ...]]:
    """(flops, bytes moved, workspace bytes, GENERIC_NAMES vector)."""
    r = _roles(call)
    flops = work(call)
    if call.struct in ("tb_channels", "tb_patch_copy"):  # see work(): only the slice or the patch is written
        r["out"] = min(r["out"], r["in"])
    moved = r["in"] + r["w"] + r["out"] + 2.0 * r["ws"]
    vector = (log2p(flops), log2p(r["in"]), log2p(r["w"]), log2p(r["out"]), log2p(r["ws"]), log2p(moved),
              math.log2(max(flops, 1.0) / max(moved, 1.0)), log2p(r["out"] / 4.0))
    return flops, moved, r["ws"], vector


def _fill(x: float, multiple: int) -> float:
    """How full the last tile is when x is cut into tiles of `multiple`: 1.0 when x divides evenly."""
    x = max(1.0, x)
    return x / (math.ceil(x / multiple) * multiple)


def conv_shape(p: Mapping[str, float]) -> tuple[float, ...]:
    """CONV_NAMES for a tb_conv parameter set (GEMM micro-tile 6x16, 8-float vectors: tb_gemm.h and AVX)."""
    groups = max(1, p["groups"])
    cg, mg = p["in_c"] / groups, p["out_c"] / groups
    pixels = p["out_h"] * p["out_w"]
    taps = p["k_h"] * p["k_w"]
    depthwise, pointwise = float(groups > 1 and groups == p["in_c"]), float(taps == 1)
    multiplied = float(groups == p["in_c"] and mg > 1 and (groups > 1 or p["in_c"] == 1))
    flops = 2.0 * p["out_c"] * pixels * cg * taps
    vector_depthwise = (p["k_h"] == p["k_w"] == 3 and p["stride_h"] == p["stride_w"] and p["stride_h"] in (1, 2)
                        and p["dil_h"] == p["dil_w"] == 1 and p["out_c"] >= 16)
    return (
        log2p(p["in_c"]), log2p(p["out_c"]), log2p(cg), log2p(mg), log2p(p["in_h"] * p["in_w"]), log2p(pixels),
        log2p(p["out_w"]), log2p(taps), log2p(p["stride_h"] * p["stride_w"]), log2p(groups),
        depthwise, pointwise, log2p(cg * taps),
        _fill(mg, 6), _fill(pixels, 16), _fill(mg, 16), _fill(p["out_c"], 8), _fill(p["out_w"], 8),
        # HWC kernels: the GEMM's rows are pixels (6-row micro-tile) and the vectors run along input channels.
        _fill(pixels, 6), _fill(cg, 8),
        float(p["act"] == ACT_CODES["sigmoid"]),  # sigmoid calls expf per element
        # Interactions: one kernel (e.g. direct) runs depthwise, pointwise and full convolutions at very different
        # speeds per FLOP; a linear model in the logs needs these to bend per kind.
        depthwise * log2p(flops), pointwise * log2p(flops), depthwise * log2p(pixels), pointwise * log2p(pixels),
        # A depthwise conv with a channel multiplier (out_c > in_c, or one input channel feeding many) takes the
        # kernels' generic path, 10-50x slower per FLOP than the vectorised one-output-per-channel path.
        multiplied, multiplied * log2p(flops),
        # Leaky ReLU takes a scalar path in some kernels: a depthwise HWC layer runs 4-5x slower than with ReLU.
        float(p["act"] == ACT_CODES["leaky_relu"]),
        # The HWC depthwise kernel vectorises 3x3, stride 1 or 2 layers 16 channels at a time and sends the channels
        # past the last full 16, and every other shape, to a generic path up to 45x slower per FLOP.
        depthwise * (p["out_c"] % 16) / max(1.0, p["out_c"]), depthwise * float(not vector_depthwise),
    )


def _param_logs(call: KernelCall) -> tuple[float, ...]:
    """Any other struct: log2(1 + |v|) of every numeric parameter, in struct order."""
    return tuple(log2p(abs(float(v))) for _, v in call.params)


def features(call: KernelCall) -> CallFeatures:
    flops, moved, ws, vector = generic(call)
    if call.struct == "tb_conv":
        try:
            shape = conv_shape(dict(call.params))
        except KeyError:
            shape = _param_logs(call)
    else:
        shape = _param_logs(call)
    return CallFeatures(call.function, call.struct, flops, moved, ws, vector + shape)


def feature_names(call: KernelCall) -> tuple[str, ...]:
    """The names of `features(call).vector`, for reports and debugging."""
    shape = CONV_NAMES if call.struct == "tb_conv" and len(features(call).vector) == len(GENERIC_NAMES) + len(
        CONV_NAMES) else tuple(f"log_{k}" for k, _ in call.params)
    return GENERIC_NAMES + shape
