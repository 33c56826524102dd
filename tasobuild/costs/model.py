"""The performance model: predicts the time of any kernel call from its features (after Mulder, Radu, Dubach 2021).

Per kernel function, a ridge regression of log2(time) on the call's feature vector (tasobuild.costs.features), plus
a nearest-neighbour correction of its residuals (shapes close to a trained shape inherit that shape's error: cache
effects and tile fill are not linear in the logs). A call whose function the model never saw (a primitive added
after training) falls back to the model of its parameter struct, trained on every function of that struct (an
in-place kernel: to its copying twin's), and a call with an unknown struct to a model over the generic features
(work, bytes, intensity) of every sample.

Thin functions (a Winograd variant has 11-24 samples for 36 features) extrapolate badly on their own, so each
function has a second, "shrunk" regression: its slopes are a ridge correction of the slopes shared by its variant
(the function without its layout suffix: tb_conv_winograd_f4x4_3x3 for its chw/hwc versions), which are in turn a
correction of the slopes shared by its whole struct (every level with a free intercept per function, every ridge
strength chosen by cross-validation). The prediction is the mean of the two regressions (in log2): on layer shapes
held out of the training data that mean beats either alone (bench/costs_eval.py, BENCHMARKS.md).

Fine-tuning to another machine or flag set (`CostModel.fine_tuned`) keeps the shape of the model and fits, from a
few measured samples, log2(measured) = offset + slope * log2(predicted) (slope pulled towards 1) and a per-function
offset shrunk towards zero: few samples move the whole model, many move each function.

A call on another element type than float32 (the int8 kernels) has no regression of its own: the shipped model's
samples are float32 calls, and its int8 calls fall back to the generic regression, which prices work and bytes as a
float kernel's. A `DtypeCorrection` per element type (`dtype_of(call)`) moves those predictions by a log2 offset
fitted on measured calls of that type (`fit_dtype_correction`, bench/costs_int8.py): one for the type, plus one per
function shrunk towards it as the calibration's are. A bounded stand-in for retraining on int8 samples with the
element type as a feature; float32 predictions are untouched.

Serialised as JSON (`to_json` / `from_json`); everything is deterministic (fixed folds, closed-form fits).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from tasobuild.costs.features import GENERIC_NAMES, features
from tasobuild.primitives import KernelCall

FORMAT = 1
# An in-place kernel (primitives.sharing) the model was not trained on is predicted as its copying twin, on its own
# features: it does the same work with one buffer fewer (bench/inplace_kernels.py measures it no slower).
IN_PLACE_SUFFIX = "_inplace"
ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0)  # ridge strengths tried by cross-validation
FOLDS = 5
NEIGHBOURS = 4  # residual correction: the k nearest training samples of the same function
MIN_SAMPLES = 8  # fewer samples than this: no per-function model, the struct's model stands in
SLOPE_PRIOR = 8.0  # fine-tuning: the slope is pulled towards 1 as if by this many samples at the extremes
SHRINK_ALPHAS = ALPHAS + (1e3, 1e4, 1e6)  # shrunk regressions: up to "no correction of the shared slopes"
FUNCTION_SHRINK = 0.5  # fine-tuning: a function's own offset counts as n / (n + this) of its mean residual
# (0.5: chosen on the transfer bench, -O2 no-SIMD -> -O3 native with 50 samples; 3.0 left ranks at 0.38-0.50)


@dataclass(frozen=True)
class Sample:
    """A measured call: the training and fine-tuning unit."""

    call: KernelCall
    ms: float


# ------------------------------------------------------------------------------------------------ one regression


@dataclass(frozen=True)
class Regression:
    """log2(ms) = intercept + coef . (x - mean) / scale, plus the mean residual of the nearest training samples."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    sigma: float  # cross-validated residual standard deviation, log2 units (0.5 ~ 41% typical error)
    samples: int
    memory: tuple[tuple[float, ...], ...] = ()  # standardised training rows, for the neighbour correction
    residuals: tuple[float, ...] = ()

    @property
    def width(self) -> int:
        return len(self.mean)

    def standardise(self, x: np.ndarray) -> np.ndarray:
        return (x - np.asarray(self.mean)) / np.asarray(self.scale)

    def predict_log2(self, x: np.ndarray) -> np.ndarray:
        z = self.standardise(np.atleast_2d(x))
        linear = self.intercept + z @ np.asarray(self.coef)
        if not self.memory:
            return linear
        return linear + _neighbour_mean(np.asarray(self.memory), np.asarray(self.residuals), z)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": _round(self.mean), "scale": _round(self.scale), "coef": _round(self.coef),
                "intercept": round(self.intercept, 6), "sigma": round(self.sigma, 6), "samples": self.samples,
                "memory": [_round(r) for r in self.memory], "residuals": _round(self.residuals)}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Regression:
        return Regression(tuple(d["mean"]), tuple(d["scale"]), tuple(d["coef"]), float(d["intercept"]),
                          float(d["sigma"]), int(d["samples"]), tuple(tuple(r) for r in d.get("memory", ())),
                          tuple(d.get("residuals", ())))


def _round(values: Sequence[float]) -> list[float]:
    return [float(f"{v:.6g}") for v in values]


def _neighbour_mean(memory: np.ndarray, residuals: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Per row of z: the distance-weighted mean residual of its NEIGHBOURS nearest rows of memory."""
    d2 = ((z[:, None, :] - memory[None, :, :]) ** 2).sum(axis=2)
    k = min(NEIGHBOURS, memory.shape[0])
    nearest = np.argsort(d2, axis=1, kind="stable")[:, :k]
    dist = np.sqrt(np.take_along_axis(d2, nearest, axis=1))
    weight = 1.0 / (1.0 + dist)  # a far neighbour counts less, but a lone far one still says something
    return (residuals[nearest] * weight).sum(axis=1) / weight.sum(axis=1) * _damping(dist)


def _damping(dist: np.ndarray) -> np.ndarray:
    """Trust the neighbours' residuals fully when they are close (within ~1 standard deviation), less far away."""
    return 1.0 / (1.0 + (dist.min(axis=1) / 2.0) ** 2)


def _ridge(z: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    intercept = float(y.mean())
    a = z.T @ z + alpha * np.eye(z.shape[1])
    coef = np.linalg.solve(a, z.T @ (y - intercept))
    return coef, intercept


def fit_regression(x: np.ndarray, y: np.ndarray, neighbours: bool = True) -> Regression:
    """Ridge regression with its strength chosen by FOLDS-fold cross-validation (fixed folds: row i in fold
    i mod FOLDS of a seeded permutation), then the residual memory for the neighbour correction."""
    n = x.shape[0]
    mean, scale, z = _standardised(x)
    best = _cross_validated(z, y, ALPHAS)
    coef, intercept = _ridge(z, y, best[0])
    reg = Regression(tuple(mean), tuple(scale), tuple(coef), intercept, best[1], n)
    if not neighbours:
        return reg
    # The neighbour correction's own error, leave-one-out: a sample's prediction from the others' residuals.
    return _with_neighbours(reg, z, y - (intercept + z @ coef), best[1])


def _standardised(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    return mean, scale, (x - mean) / scale


def _folds(n: int) -> np.ndarray:
    return np.random.default_rng(0).permutation(n) % FOLDS


def _least_error(alphas: Sequence[float], errors_of: Callable[[float], np.ndarray]) -> tuple[float, float]:
    """(ridge strength, its RMS error): the first of `alphas` whose held-out errors are smallest."""
    best: tuple[float, float] | None = None
    for alpha in alphas:
        errors = errors_of(alpha)
        rms = float(np.sqrt(np.mean(np.square(errors)))) if len(errors) else 0.0
        if best is None or rms < best[1] - 1e-12:
            best = (alpha, rms)
    assert best is not None
    return best


def _cross_validated(z: np.ndarray, y: np.ndarray, alphas: Sequence[float]) -> tuple[float, float]:
    """(ridge strength, its cross-validated RMS error): the first of `alphas` with the least error."""
    folds = _folds(len(y))

    def errors_of(alpha: float) -> np.ndarray:
        errors = np.zeros(len(y))  # a fold too small to fit counts as no error
        for f in range(FOLDS):
            train_rows, test_rows = folds != f, folds == f
            if train_rows.sum() < 2 or not test_rows.any():
                continue
            coef, intercept = _ridge(z[train_rows], y[train_rows], alpha)
            errors[test_rows] = y[test_rows] - (intercept + z[test_rows] @ coef)
        return errors

    return _least_error(alphas, errors_of)


def _with_neighbours(reg: Regression, z: np.ndarray, residuals: np.ndarray, cv_rms: float) -> Regression:
    """`reg` plus the neighbour correction of its residuals, if that lowers the leave-one-out error."""
    n = z.shape[0]
    if n < 2 * NEIGHBOURS:
        return reg
    loo = np.empty(n)
    for i in range(n):
        others = np.arange(n) != i
        loo[i] = residuals[i] - _neighbour_mean(z[others], residuals[others], z[i:i + 1])[0]
    sigma = float(np.sqrt(np.mean(loo ** 2)))
    if sigma >= cv_rms:  # the correction does not help on this function: keep the plain regression
        return reg
    return replace(reg, sigma=sigma, memory=tuple(tuple(r) for r in z), residuals=tuple(residuals))


def _within_ridge(z: np.ndarray, y: np.ndarray, groups: np.ndarray, alpha: float
                  ) -> tuple[np.ndarray, dict[object, np.ndarray], dict[object, float]]:
    """Ridge slopes shared by all rows, with a free level per group: fitted on the rows minus their group's means."""
    zd, yd = z.copy(), y.astype(float).copy()
    z_mean: dict[object, np.ndarray] = {}
    level: dict[object, float] = {}
    for g in np.unique(groups):
        rows = groups == g
        z_mean[g], level[g] = zd[rows].mean(axis=0), float(yd[rows].mean())
        zd[rows] -= z_mean[g]
        yd[rows] -= level[g]
    coef = np.linalg.solve(zd.T @ zd + alpha * np.eye(z.shape[1]), zd.T @ yd)
    return coef, z_mean, level


def shared_slopes(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Slopes (per unit of each raw feature) shared by every group of rows, each group with its own level; ridge
    strength by cross-validation (a held-out row is predicted with its group's level from the other rows)."""
    _, scale, z = _standardised(x)
    folds = _folds(len(y))

    def errors_of(alpha: float) -> np.ndarray:
        errors = []
        for f in range(FOLDS):
            train_rows, test_rows = folds != f, folds == f
            if train_rows.sum() < 2 or not test_rows.any():
                continue
            coef, z_mean, level = _within_ridge(z[train_rows], y[train_rows], groups[train_rows], alpha)
            errors += [y[i] - (level[groups[i]] + (z[i] - z_mean[groups[i]]) @ coef)
                       for i in np.flatnonzero(test_rows) if groups[i] in level]
        return np.asarray(errors)

    return _within_ridge(z, y, groups, _least_error(SHRINK_ALPHAS, errors_of)[0])[0] / scale


def fit_shrunk(x: np.ndarray, y: np.ndarray, parent_slopes: np.ndarray) -> Regression:
    """A function's regression as its parent's slopes (raw units) plus a ridge correction with its own intercept,
    the ridge strength chosen by cross-validation among SHRINK_ALPHAS; folded into one Regression."""
    n = x.shape[0]
    target = y - x @ parent_slopes
    mean, scale, z = _standardised(x)
    best = _cross_validated(z, target, SHRINK_ALPHAS)
    coef, _ = _ridge(z, target, best[0])
    total = coef + parent_slopes * scale  # the parent's slopes in this function's standardised units
    intercept = float(y.mean())  # z is centred: the fit passes through the mean
    reg = Regression(tuple(mean), tuple(scale), tuple(total), intercept, best[1], n)
    return _with_neighbours(reg, z, y - (intercept + z @ total), best[1])


_LAYOUT_SUFFIX = re.compile(r"_(chw|hwc|hcw)(_to_(chw|hwc|hcw))?$")


def variant_of(function: str) -> str:
    """The function without its layout suffix: the kernels that share an algorithm (tb_conv_mec_hwc_to_chw ->
    tb_conv_mec)."""
    return _LAYOUT_SUFFIX.sub("", function)


def shrunk_regressions(functions: Sequence[str], x: np.ndarray, y: np.ndarray) -> dict[str, Regression]:
    """The shrunk regression (module docstring) of every function with MIN_SAMPLES rows, for the rows of one
    struct: struct slopes, corrected per variant, corrected per function."""
    names = np.asarray(functions)
    slopes = np.zeros_like(x)
    for level in (lambda f: "", variant_of):
        keys = np.array([level(f) for f in functions])
        for key in sorted(set(keys)):
            rows = keys == key
            slopes[rows] += shared_slopes(x[rows], y[rows] - (x[rows] * slopes[rows]).sum(axis=1), names[rows])
    out = {}
    for f in sorted(set(functions)):
        rows = names == f
        if rows.sum() >= MIN_SAMPLES:
            out[f] = fit_shrunk(x[rows], y[rows], slopes[rows][0])
    return out


# ------------------------------------------------------------------------------------------------ calibration


@dataclass(frozen=True)
class Calibration:
    """log2(ms here) = offset + slope * log2(ms predicted) + per_function[f]: the fine-tuning to this machine."""

    offset: float = 0.0
    slope: float = 1.0
    per_function: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    samples: int = 0

    def apply(self, function: str, log2_ms: np.ndarray) -> np.ndarray:
        return self.offset + self.slope * log2_ms + self.per_function.get(function, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"offset": round(self.offset, 6), "slope": round(self.slope, 6), "samples": self.samples,
                "per_function": {k: round(v, 6) for k, v in sorted(self.per_function.items())}}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Calibration:
        return Calibration(float(d["offset"]), float(d["slope"]), MappingProxyType(dict(d["per_function"])),
                           int(d["samples"]))


def fit_calibration(functions: Sequence[str], predicted_log2: np.ndarray, measured_log2: np.ndarray) -> Calibration:
    """The Calibration that maps the uncalibrated predictions onto the measurements (see the module docstring)."""
    n = len(functions)
    if n == 0:
        return Calibration()
    p, m = np.asarray(predicted_log2, float), np.asarray(measured_log2, float)
    # Slope: least squares on centred values with a prior pulling it to 1, as SLOPE_PRIOR samples whose
    # predictions sit one standard deviation (at least one octave) from the mean and agree with slope 1.
    pc, mc = p - p.mean(), m - m.mean()
    spread2 = max(float(np.mean(pc ** 2)), 1.0)
    slope = (float(pc @ mc) + SLOPE_PRIOR * spread2) / (float(pc @ pc) + SLOPE_PRIOR * spread2)
    offset = float(m.mean() - slope * p.mean())
    residual = np.clip(m - (offset + slope * p), -3.0, 3.0)  # one wild timing must not drag a function off
    per_function: dict[str, float] = {}
    for f in sorted(set(functions)):
        r = residual[[i for i, g in enumerate(functions) if g == f]]
        per_function[f] = float(r.sum() / (len(r) + FUNCTION_SHRINK))
    return Calibration(offset, slope, MappingProxyType(per_function), n)


# ------------------------------------------------------------------------------------------------ element types


def dtype_of(call: KernelCall) -> str:
    """The element type a call computes in: "int8" when any buffer is int8_t, else "float32"."""
    return "int8" if "int8_t" in call.arg_types else "float32"


@dataclass(frozen=True)
class DtypeCorrection:
    """log2(ms) of a call of this element type = the model's prediction + offset + per_function[f]."""

    offset: float
    per_function: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    samples: int = 0

    def apply(self, function: str, log2_ms: float) -> float:
        return log2_ms + self.offset + self.per_function.get(function, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"offset": round(self.offset, 6), "samples": self.samples,
                "per_function": {k: round(v, 6) for k, v in sorted(self.per_function.items())}}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> DtypeCorrection:
        return DtypeCorrection(float(d["offset"]), MappingProxyType(dict(d["per_function"])), int(d["samples"]))


def fit_dtype_correction(functions: Sequence[str], predicted_log2: np.ndarray, measured_log2: np.ndarray
                         ) -> DtypeCorrection:
    """The offset that maps the model's predictions of one element type's calls onto their measurements: the
    median residual overall (one wild timing moves it little), then per function its mean residual from that,
    shrunk towards zero as a calibration's per-function offsets are (FUNCTION_SHRINK)."""
    if not len(functions):
        raise ValueError("a data type correction needs measured calls")
    residual = np.asarray(measured_log2, float) - np.asarray(predicted_log2, float)
    offset = float(np.median(residual))
    left = np.clip(residual - offset, -3.0, 3.0)
    per_function = {f: float(left[[i for i, g in enumerate(functions) if g == f]].sum()
                             / (functions.count(f) + FUNCTION_SHRINK)) for f in sorted(set(functions))}
    return DtypeCorrection(offset, MappingProxyType(per_function), len(functions))


# ------------------------------------------------------------------------------------------------ the model


@dataclass(frozen=True)
class CostModel:
    """Per-function regressions (and their shrunk twins), per-struct fallbacks, a generic fallback, and the
    calibration to this machine."""

    functions: Mapping[str, Regression]
    structs: Mapping[str, Regression]
    generic: Regression
    trained_on: Mapping[str, Any]  # the fingerprint (cpu, compiler, cflags, ...) and kernel digest of the data
    calibration: Calibration = Calibration()
    shrunk: Mapping[str, Regression] = field(default_factory=lambda: MappingProxyType({}))
    dtypes: Mapping[str, DtypeCorrection] = field(default_factory=lambda: MappingProxyType({}))  # by dtype_of

    def _route(self, call: KernelCall, x: np.ndarray) -> tuple[str, tuple[Regression, ...], np.ndarray]:
        """The regressions whose mean predicts `call`: its function's (and their shrunk twin), else its struct's,
        else the generic one."""
        function = call.function
        if function not in self.functions and function.endswith(IN_PLACE_SUFFIX):
            function = function.removesuffix(IN_PLACE_SUFFIX)  # untrained in-place twin: its copying kernel's model
        reg = self.functions.get(function)
        if reg is not None and reg.width == x.size:
            twin = self.shrunk.get(function)
            return f"f:{function}", (reg,) if twin is None or twin.width != x.size else (reg, twin), x
        reg = self.structs.get(call.struct)
        if reg is not None and reg.width == x.size:
            return f"s:{call.struct}", (reg,), x
        return "g", (self.generic,), x[: len(GENERIC_NAMES)]

    def predict_log2(self, calls: Sequence[KernelCall]) -> tuple[np.ndarray, np.ndarray]:
        """(log2 ms, sigma in log2 units) of every call, calibrated; calls are batched per regression."""
        routed = [self._route(c, np.asarray(features(c).vector)) for c in calls]
        raw, sigma = np.empty(len(calls)), np.empty(len(calls))
        groups: dict[str, list[int]] = {}
        for i, (name, _, _) in enumerate(routed):
            groups.setdefault(name, []).append(i)
        for name in sorted(groups):
            idx = groups[name]
            regs = routed[idx[0]][1]
            x = np.stack([routed[i][2] for i in idx])
            raw[idx] = np.mean([reg.predict_log2(x) for reg in regs], axis=0)
            sigma[idx] = float(np.mean([reg.sigma for reg in regs]))  # the mean's own error is not known: no less
        if self.dtypes:
            raw = np.array([self.dtypes[dtype_of(c)].apply(c.function, raw[i]) if dtype_of(c) in self.dtypes
                            else raw[i] for i, c in enumerate(calls)])
        calibrated = np.array([self.calibration.apply(c.function, raw[i]) for i, c in enumerate(calls)])
        return calibrated, sigma

    def predict_ms(self, calls: Sequence[KernelCall]) -> dict[str, float]:
        """call.key() -> predicted milliseconds."""
        log2_ms, _ = self.predict_log2(calls)
        return {c.key(): float(2.0 ** v) for c, v in zip(calls, log2_ms)}

    def uncalibrated(self) -> CostModel:
        return replace(self, calibration=Calibration())

    def fine_tuned(self, samples: Sequence[Sample]) -> CostModel:
        """This model calibrated to the machine the samples were measured on (replacing any earlier calibration)."""
        base = self.uncalibrated()
        if not samples:
            return base
        calls = [s.call for s in samples]
        predicted, _ = base.predict_log2(calls)
        measured = np.log2(np.maximum([s.ms for s in samples], 1e-9))
        return replace(base, calibration=fit_calibration([c.function for c in calls], predicted, measured))

    def to_json(self) -> str:
        doc = {
            "format": FORMAT,
            "trained_on": dict(sorted(self.trained_on.items())),
            "calibration": self.calibration.to_dict(),
            "generic": self.generic.to_dict(),
            "structs": {k: v.to_dict() for k, v in sorted(self.structs.items())},
            "functions": {k: v.to_dict() for k, v in sorted(self.functions.items())},
            "shrunk": {k: v.to_dict() for k, v in sorted(self.shrunk.items())},
        }
        if self.dtypes:  # a model without corrections writes the bytes it wrote before they existed
            doc["dtypes"] = {k: v.to_dict() for k, v in sorted(self.dtypes.items())}
        return json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n"

    @staticmethod
    def from_json(text: str) -> CostModel:
        doc = json.loads(text)
        if doc.get("format") != FORMAT:
            raise ValueError(f"performance model format {doc.get('format')!r}, this tasobuild reads {FORMAT}")
        return CostModel(
            functions=MappingProxyType({k: Regression.from_dict(v) for k, v in doc["functions"].items()}),
            structs=MappingProxyType({k: Regression.from_dict(v) for k, v in doc["structs"].items()}),
            generic=Regression.from_dict(doc["generic"]),
            trained_on=MappingProxyType(doc["trained_on"]),
            calibration=Calibration.from_dict(doc["calibration"]),
            # a model written before shrunk regressions existed predicts with its plain ones alone
            shrunk=MappingProxyType({k: Regression.from_dict(v) for k, v in doc.get("shrunk", {}).items()}),
            dtypes=MappingProxyType({k: DtypeCorrection.from_dict(v) for k, v in doc.get("dtypes", {}).items()}),
        )

    def with_dtype_correction(self, dtype: str, samples: Sequence[Sample], reference: Sequence[Sample] = ()
                              ) -> CostModel:
        """This model with `dtype`'s correction fitted on measured calls of that type (replacing any earlier one).
        `reference`: float32 calls measured on the same machine, to which the model is fine-tuned first, so that
        the correction is the data type's own and not the machine's (the calibration applies on top of it)."""
        calls = [s.call for s in samples]
        if any(dtype_of(c) != dtype for c in calls) or any(dtype_of(s.call) == dtype for s in reference):
            raise ValueError(f"the samples must be {dtype} calls, the reference calls of another type")
        base = replace(self, dtypes=MappingProxyType({k: v for k, v in self.dtypes.items() if k != dtype}))
        predicted, _ = base.fine_tuned(reference).predict_log2(calls)
        measured = np.log2(np.maximum([s.ms for s in samples], 1e-9))
        fitted = fit_dtype_correction([c.function for c in calls], predicted, measured)
        return replace(self, dtypes=MappingProxyType({**self.dtypes, dtype: fitted}))


def train(samples: Sequence[Sample], trained_on: Mapping[str, Any]) -> CostModel:
    """Fit every regression from measured samples (sorted by call key first, so the order given does not matter)."""
    ordered = sorted(samples, key=lambda s: s.call.key())
    if len(ordered) < MIN_SAMPLES:
        raise ValueError(f"training needs at least {MIN_SAMPLES} samples, got {len(ordered)}")
    vectors = [np.asarray(features(s.call).vector) for s in ordered]
    y = np.log2(np.maximum([s.ms for s in ordered], 1e-9))
    generic = fit_regression(np.stack([v[: len(GENERIC_NAMES)] for v in vectors]), y, neighbours=False)
    structs: dict[str, Regression] = {}
    functions: dict[str, Regression] = {}
    for attr, out, use_memory in (("struct", structs, False), ("function", functions, True)):
        groups: dict[tuple[str, int], list[int]] = {}
        for i, s in enumerate(ordered):
            groups.setdefault((getattr(s.call, attr), len(vectors[i])), []).append(i)
        for (name, _), idx in sorted(groups.items()):
            if len(idx) < MIN_SAMPLES or name in out:  # the first width of a name wins (a name has one struct)
                continue
            out[name] = fit_regression(np.stack([vectors[i] for i in idx]), y[idx], neighbours=use_memory)
    shrunk: dict[str, Regression] = {}
    by_struct: dict[tuple[str, int], list[int]] = {}
    for i, s in enumerate(ordered):
        by_struct.setdefault((s.call.struct, len(vectors[i])), []).append(i)
    for (struct, width), idx in sorted(by_struct.items()):
        if struct in structs and structs[struct].width == width:  # the width the struct's functions were fit at
            fitted = shrunk_regressions([ordered[i].call.function for i in idx],
                                        np.stack([vectors[i] for i in idx]), y[idx])
            shrunk.update({f: r for f, r in fitted.items() if f in functions and functions[f].width == width})
    return CostModel(MappingProxyType(functions), MappingProxyType(structs), generic,
                     MappingProxyType(dict(trained_on)), shrunk=MappingProxyType(shrunk))


def errors(model: CostModel, samples: Sequence[Sample]) -> dict[str, float]:
    """call.key() -> |predicted / measured - 1| (absolute percentage error as a fraction)."""
    predicted = model.predict_ms([s.call for s in samples])
    return {s.call.key(): abs(predicted[s.call.key()] / max(s.ms, 1e-12) - 1.0) for s in samples}


# ------------------------------------------------------------------------------------------------ sample files

# The training data file: the cost CSV of tasobuild.costs.cache plus what features need beyond the call key
# (the parameter struct and the buffer sizes), e.g.
#   function,struct,params,buffers,median_ms,spread_ms,reps
#   tb_add,tb_flat,"n=1024,act=0,act_a=0.0,act_b=0.0","in0=4096,in1=4096,out=4096",0.00125,4.1e-05,200
SAMPLE_HEADER = ("function", "struct", "params", "buffers", "median_ms", "spread_ms", "reps")


def _number(text: str) -> int | float:
    return float(text) if any(ch in text for ch in ".eEn") else int(text)  # repr: floats always carry . e or nan


def write_samples(rows: Sequence[tuple[KernelCall, float, float, int]]) -> str:
    """(call, median_ms, spread_ms, reps) rows as sample CSV text, sorted by call key."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SAMPLE_HEADER)
    for call, median, spread, reps in sorted(rows, key=lambda r: r[0].key()):
        params = ",".join(f"{k}={v!r}" for k, v in call.params)
        buffers = ",".join(f"{role}={dict(call.buffer_bytes)[role]}" for role in call.args)
        writer.writerow((call.function, call.struct, params, buffers, repr(median), repr(spread), reps))
    return out.getvalue()


# tb_conv gained a row range (oh_begin, oh_end: the output rows computed) after the shipped samples were measured;
# whole calls pass 0..out_h, the same work as before, so an older sample is today's call with those two fields added.
ROW_RANGE_FIELDS = ("oh_begin", "oh_end")


def with_row_range(call: KernelCall) -> KernelCall:
    """`call` as today's library writes it: a tb_conv call without oh_begin/oh_end gets the whole output's rows
    (0, out_h), inserted before `accumulate` as in the struct; any other call is returned unchanged."""
    names = [k for k, _ in call.params]
    if call.struct != "tb_conv" or "oh_begin" in names or "accumulate" not in names or "out_h" not in names:
        return call
    at = names.index("accumulate")
    rows = (("oh_begin", 0), ("oh_end", dict(call.params)["out_h"]))
    return replace(call, params=call.params[:at] + rows + call.params[at:])


def read_samples(text: str) -> list[Sample]:
    """Parse sample CSV text back into Samples (the calls are rebuilt exactly: same key, same buffers), tb_conv
    calls normalised by `with_row_range` (files written before the row range read like files written after)."""
    lines = list(csv.reader(io.StringIO(text)))
    if not lines or tuple(lines[0]) != SAMPLE_HEADER:
        raise ValueError(f"sample file must start with {','.join(SAMPLE_HEADER)}")
    samples = []
    for cells in lines[1:]:
        function, struct, params, buffers, median, _, _ = cells
        pairs = [p.split("=", 1) for p in params.split(",") if p]
        roles = [b.split("=", 1) for b in buffers.split(",") if b]
        call = KernelCall(function, struct, tuple((k, _number(v)) for k, v in pairs), tuple(r for r, _ in roles),
                          tuple((r, int(v)) for r, v in roles))
        samples.append(Sample(with_row_range(call), float(median)))
    return samples


__all__ = [
    "ROW_RANGE_FIELDS",
    "SAMPLE_HEADER",
    "Calibration",
    "CostModel",
    "Regression",
    "Sample",
    "errors",
    "fit_calibration",
    "fit_regression",
    "fit_shrunk",
    "read_samples",
    "shared_slopes",
    "shrunk_regressions",
    "train",
    "variant_of",
    "with_row_range",
    "write_samples",
]
