"""The profiler: time every kernel call the cache does not know yet, on this machine, and remember it.

A call is timed on buffers of exactly its declared sizes filled with seeded random float32 data, after a warm-up,
in batches until the median of the last two batches agrees within a tolerance (bounded by a time cap per call and a
minimum number of repetitions). The result is the median and interquartile range over every timed repetition.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import filelock
import numpy as np

from tasobuild.costs.cache import Cost, CostCache, CostKey
from tasobuild.digest import sha256_bytes
from tasobuild.primitives import KernelCall
from tasobuild.primitives.parallel import buffer_bytes
from tasobuild.progress import counting

log = logging.getLogger("tasobuild.costs")


class Bench(Protocol):
    """What the profiler needs of `tasobuild.native.Kernels`."""

    def bench(self, call: KernelCall, buffers: Mapping[str, np.ndarray], warmup: int, reps: int) -> np.ndarray: ...

    def bench_sequence(self, calls: Sequence[KernelCall], buffers: Sequence[Mapping[str, np.ndarray]], warmup: int,
                       reps: int) -> np.ndarray: ...


# A call made in a sequence, its roles' buffers named: calls naming the same buffer share it, as the program's
# calls share arena memory (a fused group's slice buffers, its whole input and output). A name "buf@N" is the part
# of buffer "buf" from byte N on, as long as the role's bytes (a row band's rows of its input or output): calls
# naming parts of one buffer share it as they do in the arena, and parts that do not overlap are distinct memory.
Named = tuple[KernelCall, Mapping[str, str]]


def buffer_part(name: str) -> tuple[str, int | None]:
    """A sequence's buffer name as (buffer, byte offset of the part), or (buffer, None): the whole buffer."""
    base, at, offset = name.partition("@")
    return (base, int(offset)) if at else (base, None)


@dataclass(frozen=True)
class SequenceCall(KernelCall):
    """Calls made one after another on named shared buffers (a fused group as the program runs it), costed as one
    call: `measure_call` times a pass over them all (`measure_sequence`). It runs no kernel of its own; its key is
    "sequence(calls=N,of=D)", D a digest of the calls' keys and buffer names."""

    sequence: tuple[tuple[KernelCall, tuple[tuple[str, str], ...]], ...] = ()

    @staticmethod
    def of(named: Sequence[Named]) -> SequenceCall:
        calls = tuple((call, tuple(sorted(names.items()))) for call, names in named)
        digest = sha256_bytes(repr([(call.key(), names) for call, names in calls]).encode())
        return SequenceCall("sequence", "", (("calls", len(calls)), ("of", int(digest[:15], 16))), (), (),
                            sequence=calls)


@dataclass(frozen=True)
class MeasurePolicy:
    """When a measurement is good enough. Defaults keep one call under ~0.2 s unless a single run is longer."""

    min_reps: int = 5
    batch_seconds: float = 0.02  # each batch runs about this long (at least min_reps runs)
    warmup_seconds: float = 0.01  # untimed runs first: caches, branch predictors, CPU clock ramp-up
    rel_tolerance: float = 0.02  # stable when the last two batch medians differ by at most this fraction
    time_cap_seconds: float = 0.2  # stop adding batches after this long, stable or not
    max_batch_reps: int = 100_000
    seed: int = 0


@dataclass(frozen=True)
class ProfileResult:
    costs: Mapping[str, Cost]  # call.key() -> cost, for every call asked about, sorted by key
    measured: int  # calls timed by this run (0 = everything came from the cache)


def measure(
    calls: Sequence[KernelCall],
    kernels: Bench,
    cache: CostCache,
    *,
    fingerprint: str,
    kernel_digest: str,
    progress: bool,
    policy: MeasurePolicy = MeasurePolicy(),
) -> ProfileResult:
    """The cost of every call: cached ones read, the rest timed now and stored (each as soon as it is timed)."""
    by_key = {call.key(): call for call in sorted(calls, key=KernelCall.key)}
    keys = {k: CostKey(fingerprint, kernel_digest, k) for k in sorted(by_key)}
    costs = {ck.call_key: cost for ck, cost in cache.get_many(keys.values()).items()}
    measured = 0
    if len(costs) < len(keys):
        lock = cache.measuring_lock()
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            _say(f"waiting for another tasobuild process that is profiling on this machine ({lock.lock_file})",
                 progress)
            lock.acquire()
        try:
            # Whoever held the lock may have measured some of ours meanwhile: read again, time only the rest.
            missing = [keys[k] for k in keys if k not in costs]
            costs.update({ck.call_key: cost for ck, cost in cache.get_many(missing).items()})
            todo = [by_key[k] for k in keys if k not in costs]
            for call, cost in zip(todo, _measure_all(todo, kernels, policy, progress)):
                cache.put_many([(keys[call.key()], cost)])  # stored at once: an interrupted run keeps its work
                costs[call.key()] = cost
                measured += 1
        finally:
            lock.release()
    return ProfileResult(MappingProxyType({k: costs[k] for k in keys}), measured)


def _say(message: str, progress: bool) -> None:
    if progress:
        from rich.console import Console

        Console(stderr=True).print(message, markup=False, highlight=False)
    else:
        log.info(message)


def _measure_all(calls: list[KernelCall], kernels: Bench, policy: MeasurePolicy, progress: bool) -> Iterator[Cost]:
    if not calls:
        return
    with counting("profiling", len(calls), progress) as step:
        for call in calls:
            step(call.function)
            yield measure_call(call, kernels, policy)


def make_buffers(call: KernelCall, seed: int = 0) -> dict[str, np.ndarray]:
    """One float32 array per role, of the call's exact byte size, filled with seeded uniform data in [-1, 1)."""
    rng = np.random.default_rng(seed)
    sizes = buffer_bytes(call)  # a split call: every part's workspace slice
    buffers = {}
    for role in call.args:
        count = max(1, -(-sizes[role] // 4))  # a zero-byte workspace still gets a valid pointer
        buffers[role] = rng.uniform(-1.0, 1.0, count).astype(np.float32)
        # int8 data over its whole range; int32 buffers (biases, multipliers and shifts) small and non-positive,
        # so a random shift is a valid right shift
        if call.arg_type(role) == "int8_t":
            buffers[role].view(np.int8)[:] = rng.integers(-128, 128, 4 * count, dtype=np.int8)
        elif call.arg_type(role) == "int32_t":
            buffers[role].view(np.int32)[:] = rng.integers(-31, 1, count, dtype=np.int32)
    return buffers


def measure_call(call: KernelCall, kernels: Bench, policy: MeasurePolicy = MeasurePolicy()) -> Cost:
    """Time one call (see the module docstring); always times at least `policy.min_reps` runs."""
    if isinstance(call, SequenceCall):
        return measure_sequence([(c, dict(names)) for c, names in call.sequence], kernels, policy)
    buffers = make_buffers(call, policy.seed)
    return _timed(lambda warmup, reps: kernels.bench(call, buffers, warmup, reps), policy)


def sequence_buffers(sequence: Sequence[Named], seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Per call, its roles' arrays: one array per buffer name, as large as the largest of its roles (the furthest
    end of its parts: `buffer_part`), filled with seeded uniform data in [-1, 1) (float calls only); a part is a
    view of its buffer."""
    need: dict[str, int] = {}
    for call, names in sequence:
        assert not call.arg_types or set(call.arg_types) == {"float"}, f"{call.function}: float buffers only"
        for role, size in buffer_bytes(call).items():
            base, offset = buffer_part(names[role])
            assert offset is None or offset % 4 == 0, f"{names[role]}: a float buffer's part starts on a float"
            need[base] = max(need.get(base, 0), (offset or 0) + size)
    rng = np.random.default_rng(seed)
    arrays = {name: rng.uniform(-1.0, 1.0, max(1, -(-need[name] // 4))).astype(np.float32) for name in sorted(need)}

    def view(call: KernelCall, name: str, role: str) -> np.ndarray:
        base, offset = buffer_part(name)
        if offset is None:
            return arrays[base]
        return arrays[base][offset // 4:offset // 4 + max(1, -(-buffer_bytes(call)[role] // 4))]

    return [{role: view(call, names[role], role) for role in call.args} for call, names in sequence]


def measure_sequence(sequence: Sequence[Named], kernels: Bench, policy: MeasurePolicy = MeasurePolicy()
                     ) -> Cost:
    """Time the calls made one after another on their named buffers (as a fused group runs them: each finds what
    the one before left in the caches), by the policy of a single call; the cost is of one pass over them all."""
    calls = [call for call, _ in sequence]
    buffers = sequence_buffers(sequence, policy.seed)
    return _timed(lambda warmup, reps: kernels.bench_sequence(calls, buffers, warmup, reps), policy)


def _timed(bench: Callable[[int, int], np.ndarray], policy: MeasurePolicy) -> Cost:
    first = float(np.median(bench(1, 1)))  # one warm-up and one timed run: the scale
    per_run = max(first, 1e-9)
    warmup = max(0, min(policy.max_batch_reps, math.ceil(policy.warmup_seconds / per_run)) - 2)
    batch = max(policy.min_reps, min(policy.max_batch_reps, math.ceil(policy.batch_seconds / per_run)))
    start = time.perf_counter()
    batches = [np.asarray(bench(warmup, batch), dtype=np.float64)]
    while time.perf_counter() - start < policy.time_cap_seconds:
        batches.append(np.asarray(bench(0, batch), dtype=np.float64))
        a, b = float(np.median(batches[-2])), float(np.median(batches[-1]))
        if abs(a - b) <= policy.rel_tolerance * max(a, b):
            break
    seconds = np.concatenate(batches)
    q25, median, q75 = np.percentile(seconds, [25, 50, 75])
    return Cost(float(median) * 1e3, float(q75 - q25) * 1e3, int(seconds.size), "measured")
