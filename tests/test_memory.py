"""The arena planner: hand-worked offsets (like TFLite Micro's planner tests), the lower bound, overlap checks."""

from __future__ import annotations

import random

import pytest

from tasobuild.memory import (
    ArenaPlan,
    Buffer,
    OverlapError,
    align_up,
    check_no_overlap,
    lower_bound,
    plan_arena,
)


def offsets(plan: ArenaPlan) -> dict[str, int]:
    return dict(plan.offset_map())


FOUR = [Buffer("A", 100, 0, 1), Buffer("B", 200, 1, 2), Buffer("C", 50, 2, 3), Buffer("D", 100, 3, 4)]


def test_four_buffers_unaligned() -> None:
    # order: B(200), A(100, first 0), D(100, first 3), C(50).
    # B -> 0. A lives with B (step 1) -> after B: 200. D lives with neither B nor A -> 0.
    # C lives with B [0,200) and D [0,100): no gap below 200 -> 200.
    plan = plan_arena(FOUR, alignment=1)
    assert offsets(plan) == {"A": 200, "B": 0, "C": 200, "D": 0}
    assert plan.arena_bytes == 300
    assert lower_bound(FOUR, alignment=1) == 300  # step 1: A + B
    check_no_overlap(FOUR, plan)


def test_four_buffers_aligned_64() -> None:
    # aligned sizes A 128, B 256, C 64, D 128; same order and reasoning.
    plan = plan_arena(FOUR)
    assert offsets(plan) == {"A": 256, "B": 0, "C": 256, "D": 0}
    assert plan.arena_bytes == 384
    assert lower_bound(FOUR) == 384
    check_no_overlap(FOUR, plan)


def test_small_buffer_fills_gap_and_ties_break_by_first_step_then_name() -> None:
    bufs = [Buffer("big2", 200, 0, 3), Buffer("big1", 200, 0, 1), Buffer("mid", 100, 2, 3),
            Buffer("small", 100, 1, 2), Buffer("late", 100, 4, 4)]
    # order: big1, big2 (same size and first step: by name), late(first 4)? no: mid (first 2), small (1) ->
    # by first_step: small(1), mid(2), late(4).
    # big1 -> 0; big2 lives with big1 -> 200; small lives with big1 and big2 -> 400;
    # mid lives with big2 [200,400) and small [400,500) -> 0 (fits below 200); late lives with nobody -> 0.
    plan = plan_arena(bufs, alignment=1)
    assert offsets(plan) == {"big1": 0, "big2": 200, "late": 0, "mid": 0, "small": 400}
    assert plan.arena_bytes == 500 == lower_bound(bufs, alignment=1)


def test_gap_between_two_placed_buffers_is_used() -> None:
    bufs = [Buffer("lo", 300, 0, 2), Buffer("hole", 200, 0, 0), Buffer("hi", 300, 0, 2), Buffer("fill", 150, 1, 2)]
    # order: hi? no - sizes equal 300: lo/hi by first_step (0, 0) then name: hi, lo. hi -> 0, lo -> 300,
    # hole (200) lives with both -> 600; fill (150) lives with hi, lo, not hole -> 600 as well (reuses hole's space)
    plan = plan_arena(bufs, alignment=1)
    assert offsets(plan) == {"fill": 600, "hi": 0, "hole": 600, "lo": 300}
    assert plan.arena_bytes == 800


def test_zero_size_and_empty() -> None:
    assert plan_arena([]).arena_bytes == 0
    assert lower_bound([]) == 0
    bufs = [Buffer("z", 0, 0, 5), Buffer("a", 10, 0, 5)]
    plan = plan_arena(bufs)
    assert offsets(plan) == {"a": 0, "z": 0} and plan.arena_bytes == 64
    check_no_overlap(bufs, plan)


def test_check_no_overlap_names_both_buffers() -> None:
    bufs = [Buffer("x", 64, 0, 2), Buffer("y", 64, 2, 3), Buffer("w", 64, 4, 4)]
    bad = ArenaPlan(offsets=(("w", 0), ("x", 0), ("y", 0)), arena_bytes=64, alignment=64)
    with pytest.raises(OverlapError, match=r"'x'.*'y'|'y'.*'x'"):
        check_no_overlap(bufs, bad)
    disjoint_in_time = [Buffer("x", 64, 0, 1), Buffer("y", 64, 2, 3)]
    check_no_overlap(disjoint_in_time, ArenaPlan((("x", 0), ("y", 0)), 64, 64))


def test_check_no_overlap_rejects_missing_misaligned_and_outside() -> None:
    bufs = [Buffer("x", 64, 0, 0)]
    with pytest.raises(OverlapError, match="no offset"):
        check_no_overlap(bufs, ArenaPlan((), 64, 64))
    with pytest.raises(OverlapError, match="misaligned"):
        check_no_overlap(bufs, ArenaPlan((("x", 32),), 128, 64))
    with pytest.raises(OverlapError, match="outside"):
        check_no_overlap(bufs, ArenaPlan((("x", 64),), 64, 64))


def test_invalid_buffers_rejected() -> None:
    with pytest.raises(ValueError):
        Buffer("x", 1, 3, 2)
    with pytest.raises(ValueError, match="two buffers"):
        plan_arena([Buffer("x", 1, 0, 0), Buffer("x", 2, 1, 1)])


def test_align_up() -> None:
    assert [align_up(s, 64) for s in (0, 1, 64, 65)] == [0, 64, 64, 128]


@pytest.mark.parametrize("seed", range(20))
def test_random_plans_never_overlap_and_respect_lower_bound(seed: int) -> None:
    rng = random.Random(seed)
    bufs = []
    for i in range(rng.randint(1, 40)):
        first = rng.randint(0, 20)
        bufs.append(Buffer(f"b{i}", rng.choice([0, 1, 63, 64, 100, 1000, 4096]) * rng.randint(1, 5),
                           first, first + rng.randint(0, 6)))
    alignment = rng.choice([1, 16, 64])
    plan = plan_arena(bufs, alignment)
    check_no_overlap(bufs, plan)
    assert plan.arena_bytes >= lower_bound(bufs, alignment)
    assert all(off % alignment == 0 for _, off in plan.offsets)
    assert plan_arena(list(reversed(bufs)), alignment) == plan  # input order does not matter
