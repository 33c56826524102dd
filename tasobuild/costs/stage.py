"""The costs stage: the time of every candidate call on the target, per `optimizer.costs`.

* "profile": every call from the cost cache or measured now (cache misses only).
* "model":   every call from the cache (measured, imported or emulated) or predicted by the shipped performance
             model (with the target's own calibration where tasobuild ships one), fine-tuned on the cached costs of
             this target: zero measurements.
* "auto":    predict everything, then measure only the calls that could change a node's decision — in every layer
             whose best candidates are within the model's error of each other, all of those candidates — biggest
             layers first, up to AutoPolicy.fraction of the calls; refit the calibration, predict the rest again,
             and repeat (AutoPolicy.rounds): a layer's unmeasured candidate that now looks as good as its measured
             best is measured too, so an under-predicted alternative cannot win just because it was never timed.
             The first round's choice comes from the model and the cache alone, so every fresh build times the
             same calls; the later rounds' share is AutoPolicy.reveal of the calls. A fused group's pass over its
             calls (profile.SequenceCall) is always measured: no model predicts it.
Measuring here ("profile", "auto"), a layer's measured alternatives close to its best are settled: timed again
alternating, ordered by their per-round ratios, a tie to the model's pick (costs/settle.py), so timing noise does not
pick the plan. A target that cannot run kernels here (profile = false) never times them: its costs are imported or
predicted, or, for a microcontroller whose board QEMU emulates, counted on that board ("profile" and "auto" count
there what they would measure here; costs/emulated.py). Every cost says where it came from (Cost.source: measured |
imported | emulated | predicted).
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from tasobuild.costs.cache import Cost, CostCache, CostKey, kernel_digest
from tasobuild.costs.features import FEATURE_VERSION
from tasobuild.costs.model import Calibration, CostModel, Sample
from tasobuild.costs.settle import SETTLE, SettlePolicy, alternating_ratios, close_alternatives, settled
from tasobuild.errors import UserError
from tasobuild.ir import LAYOUTS
from tasobuild.primitives import KernelCall
from tasobuild.primitives.parallel import largest_share, whole_call
from tasobuild.primitives.sharing import dense_call
from tasobuild.resources import targets_dir
from tasobuild.spec import Spec
from tasobuild.target import Target, host_fingerprint

if TYPE_CHECKING:
    from tasobuild.costs.profile import Bench

log = logging.getLogger("tasobuild")

Mode = Literal["profile", "model", "auto"]
MODEL_FILE = "cost_model.json"
SAMPLES_FILE = "cost_samples.csv"
_IQR_Z = 0.6745  # a normal's quartiles sit this many standard deviations from its median


@dataclass(frozen=True)
class Costed:
    """Every candidate's cost, how many measurements this run took to know them, and which came from taso.lock."""

    costs: Mapping[str, Cost]
    profiled: int
    from_lock: frozenset[str] = frozenset()  # call keys whose cost is the lock's (neither looked up nor measured)


@dataclass(frozen=True)
class AutoPolicy:
    """Which calls "auto" measures: in layers whose candidates are within `z` combined model standard deviations
    of the layer's best, all of those candidates, largest layers first: first at most `fraction` of the calls, chosen
    from the predictions of the model fitted on the cache alone (so every fresh build measures the same calls,
    whatever its timings say); then over at most `rounds` - 1 rounds of refit-predict-measure, at most `reveal` of
    the calls more, those the measurements made contested."""

    fraction: float = 0.08
    z: float = 1.0
    rounds: int = 4
    reveal: float = 0.03


def data_dir() -> Path:
    """The package's data folder: the shipped performance model and the samples it was trained on."""
    return Path(__file__).resolve().parents[1] / "data"


@functools.cache
def shipped_model() -> CostModel | None:
    """The performance model shipped with tasobuild (None if the data file is missing)."""
    path = data_dir() / MODEL_FILE
    if not path.is_file():
        return None
    try:
        model = CostModel.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: the shipped performance model cannot be read ({e}); reinstall tasobuild "
                        f"or regenerate it with bench/costs_train.py") from None
    if model.trained_on.get("features") != FEATURE_VERSION:
        raise UserError(f"{path}: the shipped performance model was trained on features version "
                        f"{model.trained_on.get('features')}, this tasobuild computes version {FEATURE_VERSION}; "
                        f"regenerate it with bench/costs_train.py")
    return model


def measure_costs(spec: Spec, target: Target, calls: Sequence[KernelCall], progress: bool,
                  locked: Mapping[str, Cost] | None = None) -> Costed:
    """The costs stage the build calls (see the module docstring). `locked`: the costs taso.lock lists, by call key;
    they are taken as they are (with the source they were locked with), so only the calls the lock does not list
    are looked up, measured or predicted — a rebuild on another machine re-measures nothing the lock knows."""
    pinned = {c.key(): locked[c.key()] for c in calls if locked and c.key() in locked}
    rest = [c for c in calls if c.key() not in pinned]
    if not rest:  # the cost cache is not even opened: an empty cache folder stays empty
        return Costed(_sorted(pinned), 0, frozenset(pinned))
    fresh = _measure_costs(spec, target, rest, progress)
    return Costed(_sorted({**fresh.costs, **pinned}), fresh.profiled, frozenset(pinned))


def _measure_costs(spec: Spec, target: Target, calls: Sequence[KernelCall], progress: bool) -> Costed:
    mode: Mode = spec.optimizer.costs

    def kernels() -> Bench:
        from tasobuild import native

        return native.load(target.cc, tuple(target.cflags), progress=progress)

    emulate = emulator(target, progress) if mode != "model" else None
    with CostCache(on_warning=log.warning) as cache:
        return cost_calls(mode, calls, cache, fingerprint=cost_fingerprint(target),
                          kernels_digest=kernel_digest(), kernels=kernels if target.profile else None,
                          model=model_for(target) if mode != "profile" or emulate else None, progress=progress,
                          where=f"{spec.where('optimizer.costs')}: target {target.name!r}", emulate=emulate)


Emulate = Callable[[Sequence[KernelCall]], Mapping[str, Cost]]


def measures_here(spec: Spec, target: Target) -> bool:
    """Costs are measured here (optimizer.costs "profile", or "auto" which measures what decides, on a target that
    runs kernels here): only then is a fused group timed as it runs (profile.SequenceCall), a pass over its calls,
    which "auto" always measures (the model knows single calls only); elsewhere a group's cost is its calls'."""
    return spec.optimizer.costs in ("profile", "auto") and target.profile


def cost_fingerprint(target: Target) -> str:
    """Whose costs the cache holds for `target`: a microcontroller's are its emulated board's (and what is imported
    from the device beside them), never the host's; every other target's, its fingerprint's."""
    from tasobuild.costs.emulated import board_of, emulated_fingerprint

    return emulated_fingerprint(target) if board_of(target) is not None else host_fingerprint(target).digest


def emulator(target: Target, progress: bool) -> Emulate | None:
    """How to count `target`'s calls on its emulated board here, or None (no board, or no compiler or QEMU)."""
    from tasobuild.costs.emulated import board_of, can_emulate, count_calls

    board = board_of(target)
    if board is None or not can_emulate(target):
        return None

    def emulate(calls: Sequence[KernelCall]) -> Mapping[str, Cost]:
        message = (f"counting {len({c.key() for c in calls})} kernel calls on the emulated {board.machine} "
                   f"(qemu-system-arm -icount)")
        if progress:
            from rich.console import Console

            Console(stderr=True).print(message, markup=False, highlight=False)
        else:
            log.info(message)
        counted = count_calls(calls, board)
        if counted.too_large:
            log.warning(f"target {target.name!r}: {len(counted.too_large)} kernel calls need more than the board's "
                        f"RAM for their buffers; their costs are predicted")
        return counted.costs

    return emulate


def target_calibration_file(target: Target) -> Path:
    """A built-in target's own calibration of the shipped model, fitted to its emulated counts (the transfer of
    Mulder et al.; bench/costs_emulated.py --write-calibrations)."""
    return data_dir() / f"cost_calibration.{target.name}.json"


def has_target_model(target: Target) -> bool:
    return target.source.parent == targets_dir() and target_calibration_file(target).is_file()


def model_for(target: Target) -> CostModel | None:
    """The model that predicts `target`'s costs: the shipped model with the target's own calibration if tasobuild
    ships one, else the shipped model as it is."""
    model = shipped_model()
    if model is None or not has_target_model(target):
        return model
    return replace(model, calibration=_calibration(target_calibration_file(target)))


@functools.cache
def _calibration(path: Path) -> Calibration:
    try:
        return Calibration.from_dict(json.loads(path.read_text(encoding="utf-8"))["calibration"])
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: the shipped calibration cannot be read ({e}); reinstall tasobuild or regenerate "
                        f"it with bench/costs_emulated.py --write-calibrations") from None


def cost_calls(mode: Mode, calls: Sequence[KernelCall], cache: CostCache, *, fingerprint: str, kernels_digest: str,
               kernels: Callable[[], Bench] | None, model: CostModel | None, progress: bool,
               policy: AutoPolicy = AutoPolicy(), where: str = "optimizer.costs", emulate: Emulate | None = None,
               settle: SettlePolicy | None = SETTLE) -> Costed:
    """The stage on explicit parts: `kernels` loads the bindings to time calls (None: this target cannot run
    here), `emulate` counts calls on the target's emulated board (None: it has none here; the calls it cannot run
    are missing from its answer and predicted), `model` predicts (None: no model). `settle`: how the close
    alternatives of a layer measured in this run are timed again alternating (costs.settle; None: not)."""
    from tasobuild.costs.profile import measure

    unique = sorted({c.key(): c for c in calls}.values(), key=KernelCall.key)
    keys = [CostKey(fingerprint, kernels_digest, c.key()) for c in unique]
    known = {ck.call_key: cost for ck, cost in cache.get_many(keys).items()}
    missing = [c for c in unique if c.key() not in known]

    def timed(todo: Sequence[KernelCall]) -> int:
        if emulate is not None and kernels is None:
            counted = emulate(todo)
            cache.put_many((CostKey(fingerprint, kernels_digest, k), counted[k]) for k in sorted(counted))
            known.update(counted)
            return len(counted)
        assert kernels is not None
        result = measure(todo, kernels(), cache, fingerprint=fingerprint, kernel_digest=kernels_digest,
                         progress=progress)
        known.update(result.costs)
        if settle is not None:  # the close calls of the layers just measured, timed again alternating
            fresh = {c.key() for c in todo}
            layers = [layer for layer in _layers(unique).values() if any(c.key() in fresh for c in layer)]
            now = settle_layers(layers, known, kernels(), cache, (fingerprint, kernels_digest), model, settle)
            known.update(now)
        return result.measured

    if mode == "profile" and kernels is not None:
        # only the misses: measure() checks them again under the cache's lock, so two builds never time one call
        measured = timed(missing) if missing else 0
        return Costed(_sorted(known), measured)
    if mode == "profile" and emulate is not None:
        measured = timed(missing) if missing else 0
        left = [c for c in missing if c.key() not in known]  # too large for the board's RAM: predicted
        return Costed(_sorted({**_predicted_from(model, unique, known, left), **known}), measured)
    if not missing:
        return Costed(_sorted(known), 0)
    if mode == "profile" or model is None:
        why = "this target cannot run kernels here" if mode == "profile" else "the performance model is missing"
        raise UserError(f"{where}: {len(missing)} of {len(unique)} costs are neither measured nor imported and "
                        f"{why}; import them (`tasobuild profile --emit-harness DIR` on the device, then "
                        f"`tasobuild costs import FILE.csv`)"
                        + (" or set optimizer.costs = \"model\"" if mode == "profile" else
                           " or reinstall tasobuild (its data/cost_model.json)"))
    if mode == "auto" and (kernels is not None or emulate is not None):
        # a fused group's pass (profile.SequenceCall) is no call the model predicts: where it runs here, it is timed
        passes = [c for c in missing if c.function == "sequence" and kernels is not None]
        measured = timed(passes) if passes else 0
        rest = [c for c in unique if c.key() not in known or c.function != "sequence"]
        auto = auto_costs(model, rest, known, timed, policy) if len(rest) > 0 else Costed({}, 0)
        return Costed(_sorted({**known, **auto.costs}), measured + auto.profiled)
    return Costed(_sorted({**_predicted_from(model, unique, known, missing), **known}), 0)


def settle_layers(layers: Sequence[Sequence[KernelCall]], known: Mapping[str, Cost], kernels: Bench,
                  cache: CostCache, where: tuple[str, str], model: CostModel | None,
                  policy: SettlePolicy = SETTLE) -> dict[str, Cost]:
    """The close measured alternatives of each layer (costs.settle.close_alternatives) timed again alternating and
    settled (costs.settle.settled: a tie goes to the model's pick), stored in the cache at once under the measuring
    lock; returns the new costs by call key. `where`: the cache rows' (fingerprint, kernel digest)."""
    from tasobuild.costs.profile import make_buffers

    groups = [close for layer in layers if (close := close_alternatives(layer, known, policy))]
    if not groups:
        return {}
    out: dict[str, Cost] = {}
    with cache.measuring_lock():
        for calls in groups:
            buffers = {c.key(): make_buffers(c) for c in calls}

            def batch(call: KernelCall, warmup: int, reps: int, arrays: Mapping[str, dict[str, np.ndarray]] = buffers
                      ) -> np.ndarray:
                return kernels.bench(call, arrays[call.key()], warmup, reps)

            ratios = alternating_ratios(calls, batch, known, policy)
            preference = {k: cost.median_ms for k, cost in predict(model, calls).items()} if model else {}
            reference = known[calls[0].key()]
            for key, ms in settled(reference.median_ms, ratios, preference, policy).items():
                first = known[key]
                out[key] = Cost(ms, first.spread_ms, first.reps + len(ratios[key]), "measured")
            cache.put_many((CostKey(*where, k), out[k]) for k in sorted(out) if k in ratios)
    log.info(f"settled {len(out)} close measured calls of {len(groups)} layers (timed again, alternating)")
    return out


def _predicted_from(model: CostModel | None, calls: Sequence[KernelCall], known: Mapping[str, Cost],
                    missing: Sequence[KernelCall]) -> dict[str, Cost]:
    """The `missing` calls predicted by `model` fine-tuned on the `known` costs of `calls` (as shipped if none are
    known: a target's own model keeps its calibration)."""
    if not missing:
        return {}
    assert model is not None
    samples = _samples(calls, known)
    factor = split_factor(calls, known)
    guesses = predict(model.fine_tuned(samples) if samples else model, missing, factor)
    return {**guesses, **split_from_whole(missing, known, factor)}


def auto_costs(model: CostModel, calls: Sequence[KernelCall], known: dict[str, Cost],
               timed: Callable[[Sequence[KernelCall]], int], policy: AutoPolicy = AutoPolicy()) -> Costed:
    """"auto" on explicit parts: `known` holds the cached costs and grows as `timed(calls)` measures (it returns
    how many it measured). The first choice from the model fitted on the cache alone (policy.fraction of the calls),
    then rounds of refit -> predict -> choose -> measure, until nothing more is contested, the reveal budget
    (policy.reveal of the calls) is spent, or policy.rounds have run."""
    def predicted_now() -> dict[str, Cost]:
        samples = _samples(calls, known)
        tuned = model.fine_tuned(samples) if samples else model  # a target's own model keeps its calibration
        factor = split_factor(calls, known)
        todo = [c for c in calls if c.key() not in known]
        guesses = layer_corrected(tuned, calls, known, predict(tuned, todo, factor))
        return {**guesses, **split_from_whole(todo, known, factor)}

    # The first choice is a function of the cache and the model only: a choice made from this run's timings would
    # follow their noise (which calls get timed, and so the calibration and every prediction, differed per build).
    predicted = predicted_now()
    first = choose_measurements(calls, {**predicted, **known}, policy, math.floor(policy.fraction * len(calls)))
    measured = timed(first) if first else 0
    budget = measured + math.floor(policy.reveal * len(calls))
    for _ in range(policy.rounds - 1):
        predicted = predicted_now()  # refit the calibration on what was just measured
        left = budget - measured
        if left <= 0:
            break
        todo = choose_measurements(calls, {**predicted, **known}, policy, budget=left)
        if not todo:
            break
        measured += timed(todo)
    predicted = predicted_now()
    return Costed(_sorted({**predicted, **known}), measured)


# Model errors of one layer's alternatives are correlated (the layer is harder or easier than its features say):
# on layer shapes held out of the training data, the per-layer mean of the log2 errors varies 0.6x as much as the
# errors around it. A layer's unmeasured candidates are shifted by its measured candidates' mean log2 error, shrunk
# as that ratio says: n measured candidates count n / (n + LAYER_SHRINK).
LAYER_SHRINK = 2.0


def layer_corrected(model: CostModel, calls: Sequence[KernelCall], known: Mapping[str, Cost],
                    predicted: Mapping[str, Cost]) -> dict[str, Cost]:
    """`predicted` with each layer's unmeasured candidates shifted by the shrunk mean error of its known ones."""
    layers = _layers(calls)
    timed = [c for group in layers.values() for c in group
             if c.parts == 1 and c.key() in known and known[c.key()].median_ms > 0]
    if not timed:
        return dict(predicted)
    log2_predicted, _ = model.predict_log2(timed)
    errors: dict[tuple[str, tuple[object, ...]], list[float]] = {}
    for call, guess in zip(timed, log2_predicted):
        errors.setdefault((call.struct, call.params), []).append(math.log2(known[call.key()].median_ms) - guess)
    out = dict(predicted)
    for layer, errs in errors.items():
        factor = float(2.0 ** (sum(errs) / (len(errs) + LAYER_SHRINK)))  # errs are NumPy scalars
        for call in layers[layer]:
            cost = out.get(call.key())
            if cost is not None:
                out[call.key()] = Cost(cost.median_ms * factor, cost.spread_ms * factor, 0, "predicted")
    return out


def _layers(calls: Sequence[KernelCall]) -> dict[tuple[str, tuple[object, ...]], list[KernelCall]]:
    """The alternatives of each layer shape: calls with the same struct and parameters (transforms excluded)."""
    transforms = _transform_functions()
    layers: dict[tuple[str, tuple[object, ...]], list[KernelCall]] = {}
    for call in calls:
        if call.function not in transforms:
            layers.setdefault((call.struct, call.params), []).append(call)
    return layers


def _sorted(costs: Mapping[str, Cost]) -> Mapping[str, Cost]:
    return {k: costs[k] for k in sorted(costs)}


def _samples(calls: Sequence[KernelCall], known: Mapping[str, Cost]) -> list[Sample]:
    """What the model is fitted on: the known costs of one-thread calls (a split call's features are its whole
    call's, its time is not)."""
    return [Sample(c, known[c.key()].median_ms) for c in calls
            if c.parts == 1 and c.key() in known and known[c.key()].median_ms > 0]


# What one parallel step costs beyond its largest part on idle cores (waking the workers, waiting for the last).
SPLIT_OVERHEAD_MS = 0.005


def split_ideal_ms(call: KernelCall, whole_ms: float) -> float:
    """A split call's time on idle cores, from its whole call's: its largest part plus the step's overhead."""
    return whole_ms * largest_share(call) + SPLIT_OVERHEAD_MS


def split_factor(calls: Sequence[KernelCall], known: Mapping[str, Cost]) -> float:
    """How much slower than `split_ideal_ms` the split calls run here: the median ratio over the split calls whose
    cost and whole call's cost are both known (measured or imported); 1.0 when there are none. A ratio, not a
    constant added: a large layer's split loses time in proportion (shared caches and memory bandwidth), a small
    one's in the step's fixed overhead, and a machine whose other cores are busy slows both by the same factor."""
    ratios = sorted(known[c.key()].median_ms / split_ideal_ms(c, known[whole_call(c).key()].median_ms)
                    for c in calls if c.parts > 1 and c.key() in known and whole_call(c).key() in known)
    return float(np.median(ratios)) if ratios else 1.0


def split_from_whole(calls: Sequence[KernelCall], known: Mapping[str, Cost], factor: float) -> dict[str, Cost]:
    """The split calls among `calls` whose whole call's cost is known, predicted from it as `predict` does from the
    model's: `factor` times `split_ideal_ms`. A measured whole call is a better base than the model's guess shrunk
    toward it by `layer_corrected`."""
    out = {}
    for call in calls:
        whole = known.get(whole_call(call).key()) if call.parts > 1 else None
        if whole is not None and whole.median_ms > 0:
            share = largest_share(call)
            out[call.key()] = Cost(factor * split_ideal_ms(call, whole.median_ms), factor * whole.spread_ms * share,
                                   0, "predicted")
    return out


def predict(model: CostModel, calls: Sequence[KernelCall], split_factor: float = 1.0) -> dict[str, Cost]:
    """Predicted costs: the median and, as spread, the interquartile range of the model's log-normal error. A call
    split over threads is predicted from the model's prediction of its whole call: `split_factor` times its largest
    part plus the step's overhead (`split_ideal_ms`), the parts running at once; a strided call (an HWC concat
    slice's producer) from its dense twin (`sharing.dense_call`)."""
    if not calls:
        return {}
    log2_ms, sigma = model.predict_log2([dense_call(whole_call(c)) for c in calls])
    out = {}
    for call, mu, s in zip(calls, log2_ms, sigma):
        whole = float(2.0 ** mu)
        median = split_factor * split_ideal_ms(call, whole) if call.parts > 1 else whole
        spread = median * (2.0 ** (_IQR_Z * s) - 2.0 ** (-_IQR_Z * s))
        out[call.key()] = Cost(median, float(spread), 0, "predicted")
    return out


def _transform_functions() -> frozenset[str]:
    from tasobuild.primitives.transforms import transform_function

    return frozenset(transform_function(a, b) for a in LAYOUTS for b in LAYOUTS if a != b)


def _sigma_log2(cost: Cost) -> float:
    """A cost's uncertainty in log2 units: 0 when timed, else recovered from the predicted spread."""
    if cost.source != "predicted" or cost.median_ms <= 0:
        return 0.0
    ratio = cost.spread_ms / cost.median_ms  # = 2^(z s) - 2^(-z s) = 2 sinh(z s ln 2)
    return math.asinh(ratio / 2.0) / (_IQR_Z * math.log(2.0))


def choose_measurements(calls: Sequence[KernelCall], costs: Mapping[str, Cost],
                        policy: AutoPolicy = AutoPolicy(), budget: int | None = None) -> list[KernelCall]:
    """The calls "auto" measures (see AutoPolicy), at most `budget` (default: policy.fraction of the calls). A
    layer is the set of calls with the same parameter struct and values but different functions — the alternative
    primitives of one layer shape (layout transforms are not alternatives of each other and are left to the
    model)."""
    layers = _layers(calls)
    contested: list[tuple[float, str, list[KernelCall]]] = []
    for group in layers.values():
        if len({(c.function, c.parts) for c in group}) < 2:  # a call on one thread and split are alternatives
            continue
        best = min(group, key=lambda c: (costs[c.key()].median_ms, c.key()))
        best_log, best_sigma = np.log2(max(costs[best.key()].median_ms, 1e-12)), _sigma_log2(costs[best.key()])
        close = [c for c in group
                 if np.log2(max(costs[c.key()].median_ms, 1e-12)) - best_log
                 <= policy.z * math.hypot(_sigma_log2(costs[c.key()]), best_sigma)]
        todo = [c for c in close if costs[c.key()].source == "predicted"]
        if len(close) >= 2 and todo:
            contested.append((costs[best.key()].median_ms, best.key(), todo))
    if budget is None:
        budget = math.floor(policy.fraction * len({c.key() for c in calls}))
    chosen: list[KernelCall] = []
    for _, _, todo in sorted(contested, key=lambda t: (-t[0], t[1])):
        if len(chosen) + len(todo) <= budget:
            chosen += todo
    return sorted(chosen, key=KernelCall.key)


# ------------------------------------------------------------------------------------------------ CLI helpers


def profile_costs(spec: Spec, target: Target, calls: Sequence[KernelCall], progress: bool) -> Costed:
    """`tasobuild profile`: measure every call the cache misses, whatever optimizer.costs says."""
    emulate = None if target.profile else emulator(target, progress)
    if not target.profile and emulate is None:
        board = "" if target.board is None else (f" and its board needs {target.cc_argv[0]} and qemu-system-arm "
                                                 f"(apt-get install {target.cc_package} {target.emulator_package})")
        raise UserError(f"{spec.where('target.name')}: target {target.name!r} cannot run kernels here{board}; "
                        f"use `tasobuild profile --emit-harness DIR` and run the harness on the device")
    from tasobuild import native

    with CostCache(on_warning=log.warning) as cache:
        return cost_calls("profile", calls, cache, fingerprint=cost_fingerprint(target),
                          kernels_digest=kernel_digest(),
                          kernels=(lambda: native.load(target.cc, tuple(target.cflags), progress=progress))
                          if target.profile else None,
                          model=model_for(target) if emulate else None, progress=progress, emulate=emulate)


def cached_costs(target: Target, calls: Sequence[KernelCall]) -> dict[str, Cost]:
    """The costs of `target` the cache already has for these calls (measured or imported), by call key."""
    with CostCache(on_warning=log.warning) as cache:
        found = cache.get_many(CostKey(cost_fingerprint(target), kernel_digest(), c.key()) for c in calls)
    return {key.call_key: cost for key, cost in found.items()}


def export_costs(target: Target, path: Path) -> int:
    """`tasobuild costs export FILE.csv`: the cached costs of `target` for the current kernels; returns the count."""
    with CostCache(on_warning=log.warning) as cache:
        return cache.export_csv(path, fingerprint=cost_fingerprint(target), kernel_digest=kernel_digest())


def import_costs(target: Target, path: Path) -> int:
    """`tasobuild costs import FILE.csv`: store the file's costs as "imported" costs of `target`."""
    with CostCache(on_warning=log.warning) as cache:
        return cache.import_csv(path, cost_fingerprint(target), kernel_digest())
