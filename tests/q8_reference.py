"""A NumPy port of TensorFlow Lite's int8 reference arithmetic and kernels (tensorflow/lite/kernels/internal/
common.h, quantization_util.cc, reference/integer_ops/{conv,depthwise_conv,fully_connected,pooling,add}.h), written
from TFLite's source independently of tasobuild's own Python (primitives/q8.py): the oracle the int8 kernels must
match bit for bit. Integers are int64 throughout; C's truncating division and int32 wrap-around are spelt out."""

from __future__ import annotations

import math

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def quantize_multiplier(real: float) -> tuple[int, int]:
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    fixed = round_half_away(q * (1 << 31))
    if fixed == 1 << 31:
        fixed, shift = fixed // 2, shift + 1
    if shift < -31:
        return 0, 0
    return fixed, shift


def round_half_away(x: float) -> int:
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _wrap32(x: np.ndarray) -> np.ndarray:
    return ((x + (1 << 31)) % (1 << 32)) - (1 << 31)


def doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    total = ab + nudge
    quotient = np.sign(total) * (np.abs(total) // (1 << 31))  # C's division truncates toward zero
    return np.where((a == b) & (a == INT32_MIN), INT32_MAX, quotient)


def divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    x, exponent = np.asarray(x, np.int64), np.asarray(exponent, np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(x: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    shift = np.asarray(shift, np.int64)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    return divide_by_pot(doubling_high_mul(_wrap32(np.asarray(x, np.int64) << left), multiplier), right)


def _finish(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray, out_zp: int, lo: int, hi: int) -> np.ndarray:
    return np.clip(multiply_by_quantized_multiplier(acc, mult, shift) + out_zp, lo, hi).astype(np.int8)


def channel_multipliers(in_scale: float, weight_scales: np.ndarray, out_scale: float) -> tuple[np.ndarray, ...]:
    pairs = [quantize_multiplier(float(np.float32(in_scale)) * float(s) / float(np.float32(out_scale)))
             for s in np.asarray(weight_scales, np.float32)]
    return np.array([m for m, _ in pairs], np.int64), np.array([s for _, s in pairs], np.int64)


def conv_per_channel(x: np.ndarray, in_zp: int, w: np.ndarray, bias: np.ndarray, mult: np.ndarray,
                     shift: np.ndarray, out_zp: int, stride: tuple[int, int], pads: tuple[int, int, int, int],
                     dilation: tuple[int, int], groups: int, out_hw: tuple[int, int], lo: int = -128,
                     hi: int = 127) -> np.ndarray:
    """ConvPerChannel / DepthwiseConvPerChannel: x (C,H,W) int8, w (M, C/g, kh, kw) int8 -> (M, OH, OW) int8.
    Padding holds the zero point (TFLite skips the taps outside the input: the same sum)."""
    c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    top, left, bottom, right = pads
    xp = np.full((c, h + top + bottom + kh * dilation[0], wd + left + right + kw * dilation[1]), in_zp, np.int64)
    xp[:, top:top + h, left:left + wd] = x
    oh, ow = out_hw
    acc = np.tile(np.asarray(bias, np.int64)[:, None, None], (1, oh, ow))
    mg = m // groups
    for o in range(m):
        g = o // mg
        for ky in range(kh):
            for kx in range(kw):
                y0, x0 = ky * dilation[0], kx * dilation[1]
                patch = xp[g * cg:(g + 1) * cg, y0:y0 + stride[0] * oh:stride[0], x0:x0 + stride[1] * ow:stride[1]]
                acc[o] += np.tensordot(w[o, :, ky, kx].astype(np.int64), patch - in_zp, axes=(0, 0))
    return _finish(acc, mult[:, None, None], shift[:, None, None], out_zp, lo, hi)


def fully_connected(x: np.ndarray, in_zp: int, w: np.ndarray, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray,
                    out_zp: int, lo: int = -128, hi: int = 127) -> np.ndarray:
    acc = np.asarray(bias, np.int64) + w.astype(np.int64) @ (x.astype(np.int64) - in_zp)
    return _finish(acc, mult, shift, out_zp, lo, hi)


def average_pool(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], pads: tuple[int, int, int, int],
                 out_hw: tuple[int, int], lo: int = -128, hi: int = 127) -> np.ndarray:
    """TFLite's int8 AveragePool (input and output share their quantisation); count excludes the padding."""
    c, h, w = x.shape
    out = np.zeros((c,) + out_hw, np.int64)
    for oy in range(out_hw[0]):
        for ox in range(out_hw[1]):
            y0, x0 = oy * stride[0] - pads[0], ox * stride[1] - pads[1]
            ys, xs = slice(max(y0, 0), min(y0 + kernel[0], h)), slice(max(x0, 0), min(x0 + kernel[1], w))
            window = x[:, ys, xs].astype(np.int64)
            count = window.shape[1] * window.shape[2]
            total = window.sum(axis=(1, 2))
            out[:, oy, ox] = np.where(total > 0, (total + count // 2) // count,
                                      -((-total + count // 2) // count))
    return np.clip(out, lo, hi).astype(np.int8)


def mean(x: np.ndarray, in_zp: int, in_scale: float, out_zp: int, out_scale: float) -> np.ndarray:
    """TFLite's int8 Mean over H and W (reference_integer_ops::Mean) with its own output quantisation."""
    c, h, w = x.shape
    count = h * w
    mult, shift = quantize_multiplier(float(np.float32(in_scale)) / float(np.float32(out_scale)))
    s = min(count.bit_length() - 1, 32, 31 + shift)
    mult = (mult << s) // count
    total = (x.astype(np.int64) - in_zp).sum(axis=(1, 2))
    return np.clip(multiply_by_quantized_multiplier(total, mult, shift - s) + out_zp, -128, 127).astype(np.int8)


def add(a: np.ndarray, a_zp: int, a_scale: float, b: np.ndarray, b_zp: int, b_scale: float, out_zp: int,
        out_scale: float, lo: int = -128, hi: int = 127) -> np.ndarray:
    left_shift = 20
    sa, sb, so = (float(np.float32(s)) for s in (a_scale, b_scale, out_scale))
    twice_max = 2 * max(sa, sb)
    ma, sha = quantize_multiplier(sa / twice_max)
    mb, shb = quantize_multiplier(sb / twice_max)
    mo, sho = quantize_multiplier(twice_max / ((1 << left_shift) * so))
    xa = multiply_by_quantized_multiplier((a.astype(np.int64) - a_zp) << left_shift, ma, sha)
    xb = multiply_by_quantized_multiplier((b.astype(np.int64) - b_zp) << left_shift, mb, shb)
    return np.clip(multiply_by_quantized_multiplier(xa + xb, mo, sho) + out_zp, lo, hi).astype(np.int8)


def quantize(x: np.ndarray, scale: float, zp: int) -> np.ndarray:
    """TFLite's AffineQuantize: round half away from zero of x / scale (in float32), plus the zero point."""
    q = np.asarray(x, np.float32) / np.float32(scale)
    rounded = np.sign(q) * np.floor(np.abs(q).astype(np.float64) + 0.5)
    return np.clip(rounded + zp, -128, 127).astype(np.int8)
