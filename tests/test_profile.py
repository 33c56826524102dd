"""The profiler on the real compiled kernels: hits are not re-measured, two processes never measure a call twice."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from tasobuild import native
from tasobuild.costs import Cost, CostCache, CostKey, MeasurePolicy, kernel_digest, make_buffers, measure, measure_call
from tasobuild.ir import Shape
from tasobuild.primitives import KernelCall
from tasobuild.primitives.transforms import transform_call

FP = "test-host"
FAST = MeasurePolicy(batch_seconds=0.004, warmup_seconds=0.002, time_cap_seconds=0.03)


def add_call(n: int) -> KernelCall:
    return KernelCall(
        function="tb_add",
        struct="tb_flat",
        params=(("n", n), ("act", 1), ("act_a", 0.0), ("act_b", 0.0)),
        args=("in0", "in1", "out"),
        buffer_bytes=(("in0", 4 * n), ("in1", 4 * n), ("out", 4 * n)),
    )


CALLS = (
    transform_call(Shape(32, 16, 16), "CHW", "HWC"),
    transform_call(Shape(16, 8, 24), "HWC", "HCW"),
    add_call(4096),
    add_call(1000),
)


@pytest.fixture(scope="module")
def bindings_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bindings")


@pytest.fixture(scope="module")
def kernels(bindings_dir: Path) -> native.Kernels:
    return native.load("cc", native.DEFAULT_CFLAGS, cache_dir=bindings_dir)


def test_buffers_have_exact_sizes_and_seeded_data() -> None:
    call = KernelCall("tb_x", "tb_flat", (("n", 3),), ("in0", "out", "ws"), (("in0", 12), ("out", 8), ("ws", 0)))
    a, b = make_buffers(call, seed=0), make_buffers(call, seed=0)
    assert list(a) == ["in0", "out", "ws"]
    assert [a[r].size for r in a] == [3, 2, 1]  # an empty workspace still gets a valid pointer
    assert all(a[r].dtype == np.float32 and np.array_equal(a[r], b[r]) for r in a)
    assert not np.array_equal(a["in0"], make_buffers(call, seed=1)["in0"])
    assert float(np.abs(a["in0"]).max()) < 1.0


def test_real_measurement_is_positive_and_tight(kernels: native.Kernels) -> None:
    for call in (transform_call(Shape(32, 32, 32), "CHW", "HWC"), add_call(16384)):
        cost = measure_call(call, kernels, FAST)
        assert cost.source == "measured"
        assert cost.median_ms > 0.0
        assert 0.0 <= cost.spread_ms <= cost.median_ms
        assert cost.reps >= FAST.min_reps


def test_minimum_reps_even_for_a_slow_call(kernels: native.Kernels) -> None:
    # A zero time budget still takes the minimum number of timed runs.
    policy = MeasurePolicy(min_reps=7, batch_seconds=0.0, warmup_seconds=0.0, time_cap_seconds=0.0)
    assert measure_call(add_call(1 << 16), kernels, policy).reps == 7


def test_second_measure_hits_the_cache(kernels: native.Kernels, tmp_path: Path,
                                       capfd: pytest.CaptureFixture[str]) -> None:
    digest = kernel_digest()
    calls = list(CALLS) + [CALLS[2], CALLS[0]]  # duplicates are measured once
    with CostCache(tmp_path) as cache:
        first = measure(calls, kernels, cache, fingerprint=FP, kernel_digest=digest, progress=True, policy=FAST)
        assert first.measured == 4
        assert list(first.costs) == sorted(c.key() for c in CALLS)
        assert all(c.source == "measured" and c.median_ms > 0 for c in first.costs.values())
        again = measure(calls, kernels, cache, fingerprint=FP, kernel_digest=digest, progress=True, policy=FAST)
        assert again.measured == 0
        assert dict(again.costs) == dict(first.costs)  # exactly what was stored
        # Another target or edited kernels are other keys: measured anew.
        other = measure(CALLS[:1], kernels, cache, fingerprint="other", kernel_digest=digest, progress=False,
                        policy=FAST)
        assert other.measured == 1
        assert len(cache.rows()) == 5
    assert capfd.readouterr().out == ""  # progress goes to stderr only


def test_only_misses_are_measured(kernels: native.Kernels, tmp_path: Path) -> None:
    digest = kernel_digest()
    known = Cost(1.25, 0.5, 9, "imported")
    with CostCache(tmp_path) as cache:
        cache.put_many([(CostKey(FP, digest, CALLS[1].key()), known)])
        result = measure(CALLS[:2], kernels, cache, fingerprint=FP, kernel_digest=digest, progress=False, policy=FAST)
        assert result.measured == 1
        assert result.costs[CALLS[1].key()] == known
        assert result.costs[CALLS[0].key()].source == "measured"
        assert measure([], kernels, cache, fingerprint=FP, kernel_digest=digest, progress=False).measured == 0


def _profile_in_another_process(cache_dir: str, bindings_dir: str, digest: str, barrier, results) -> None:  # type: ignore[no-untyped-def]
    kernels = native.load("cc", native.DEFAULT_CFLAGS, cache_dir=Path(bindings_dir))
    with CostCache(cache_dir) as cache:
        barrier.wait()  # both start with every call missing
        result = measure(CALLS, kernels, cache, fingerprint=FP, kernel_digest=digest, progress=False,
                         policy=FAST)
        results.put((result.measured, sorted(result.costs.items())))


def test_two_processes_measure_each_call_once(kernels: native.Kernels, bindings_dir: Path, tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")  # independent interpreters, as two concurrent builds would be
    # One digest for both (the kernels folder may be edited while the test runs; an install never changes).
    barrier, results = ctx.Barrier(2), ctx.Queue()
    args = (str(tmp_path), str(bindings_dir), kernel_digest(), barrier, results)
    workers = [ctx.Process(target=_profile_in_another_process, args=args)
               for _ in range(2)]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    assert sorted(m for m, _ in outcomes) == [0, 4]  # one measured everything, the other waited and read it
    assert outcomes[0][1] == outcomes[1][1]  # both return the same costs
    with CostCache(tmp_path) as cache:
        rows = cache.rows()
    assert [(k.call_key, c) for k, c in rows] == outcomes[0][1]
    assert all(c.source == "measured" for _, c in rows)
