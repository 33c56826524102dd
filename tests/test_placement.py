"""Exact arena placement (tasobuild.placement): hand-worked cases where greedy leaves a gap, the proven bound, the
search cut short, and every placement checked by the one overlap checker (memory.check_no_overlap)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasobuild.memory import ArenaPlan, Buffer, Overlap, OverlapError, check_no_overlap, lower_bound, plan_arena
from tasobuild.placement import place

# Four buffers, alignment 1 (sizes in bytes, lifetimes inclusive):
#   A 4 bytes, step 3;  B 3 bytes, steps 1-3;  C 3 bytes, step 1;  D 2 bytes, steps 1-2.
# Live sums: step 1 B+C+D = 8, step 2 B+D = 5, step 3 A+B = 7: the bound is 8.
# Greedy (largest first; ties by first step, then name): A -> 0; B lives with A -> 4; C lives with B [4,7) only
# -> 0; D lives with C [0,3) and B [4,7): the gap 3-4 is 1 byte short -> 7. Arena 9, a byte over the bound.
# Optimal: D between C and B (C 0-3, D 3-5, B 5-8) and A below B at step 3 (A 0-4): 8 bytes, the bound.
GAP = [Buffer("A", 4, 3, 3), Buffer("B", 3, 1, 3), Buffer("C", 3, 1, 1), Buffer("D", 2, 1, 2)]


def test_greedy_leaves_a_byte_the_exact_placement_closes() -> None:
    greedy = plan_arena(GAP, alignment=1)
    assert greedy.offset_map() == {"A": 0, "B": 4, "C": 0, "D": 7} and greedy.arena_bytes == 9
    exact = place(GAP, alignment=1)
    # Eight placements reach 8 bytes (mirror images, A one byte higher); this is the one the search gives: Z3's
    # model with every buffer lowered as far as it goes.
    assert exact.offset_map() == {"A": 0, "B": 5, "C": 0, "D": 3}
    assert exact.arena_bytes == exact.bound_bytes == lower_bound(GAP, alignment=1) == 8
    assert exact.status == "optimal"
    check_no_overlap(GAP, exact)


# Six buffers, alignment 64: greedy is 2 x 64 bytes over the bound, the exact placement reaches it.
#   A 3 units steps 1-4, B 5 units step 1, C 3 units steps 0-2, D 5 units steps 3-5, E 4 units steps 2-3,
#   F 2 units steps 2-5 (a unit is 64 bytes).
# Live sums: step 0: C 3; step 1: A+B+C 11; step 2: A+C+E+F 12; step 3: A+D+E+F 14; step 4: A+D+F 10; step 5: D+F 7.
# Greedy (B, D, E, then C before A: same size, earlier first step, then F): B 0, D 0, E lives with D -> 5, C lives
# with B [0,5) and E [5,9) -> 9, A lives with B, D, E, C -> 12, F lives with C, A, D, E -> 15: 17 units.
# Optimal: F 0-2 and E 2-6 low, A 6-9 on top of E, D 9-14 above A; C 9-12 and B 0-5 before them: 14 units.
SIX = [Buffer("A", 3 * 64, 1, 4), Buffer("B", 5 * 64, 1, 1), Buffer("C", 3 * 64, 0, 2), Buffer("D", 5 * 64, 3, 5),
       Buffer("E", 4 * 64, 2, 3), Buffer("F", 2 * 64, 2, 5)]


def test_six_buffers_greedy_three_units_over_exact_at_the_bound() -> None:
    greedy = plan_arena(SIX)
    assert {k: v // 64 for k, v in greedy.offset_map().items()} == {"A": 12, "B": 0, "C": 9, "D": 0, "E": 5, "F": 15}
    assert greedy.arena_bytes == 17 * 64
    by_hand = {"A": 6, "B": 0, "C": 9, "D": 9, "E": 2, "F": 0}  # the optimum of the comment above
    check_no_overlap(SIX, ArenaPlan(tuple((k, v * 64) for k, v in sorted(by_hand.items())), 14 * 64, 64))
    exact = place(SIX)
    assert exact.arena_bytes == lower_bound(SIX) == 14 * 64 and exact.status == "optimal"
    check_no_overlap(SIX, exact)


def test_greedy_at_the_bound_is_kept_without_a_solve() -> None:
    chain = [Buffer("in", 100, 0, 1), Buffer("mid", 300, 1, 2), Buffer("out", 50, 2, 3)]
    greedy = plan_arena(chain)
    exact = place(chain)
    assert exact.offsets == greedy.offsets and exact.arena_bytes == lower_bound(chain) == 448
    assert exact.status == "optimal" and exact.bound_bytes == 448


def test_search_cut_short_keeps_greedy_and_reports_the_bound() -> None:
    # a budget of one Z3 operation per check: nothing is decided, greedy stands, unproven
    cut = place(GAP, alignment=1, check_rlimit=1)
    assert cut.status == "feasible" and cut.arena_bytes == 9 and cut.bound_bytes == 8
    assert cut.offsets == plan_arena(GAP, alignment=1).offsets
    assert place(GAP, alignment=1, time_limit_s=0.0).status == "feasible"


def test_same_buffers_same_offsets_whatever_their_order() -> None:
    assert place(SIX).offsets == place(list(reversed(SIX))).offsets


def test_zero_size_buffers_sit_at_zero() -> None:
    bufs = [*GAP, Buffer("empty", 0, 0, 3)]
    exact = place(bufs, alignment=1)
    assert exact.offset_map()["empty"] == 0 and exact.arena_bytes == 8
    check_no_overlap(bufs, exact)


# Ten buffers, alignment 1, whose live sums never pass 5 bytes, yet no placement fits in 5:
#   B 2 step 0; A 3 steps 0-1; D 1 steps 1-2; C 1 steps 1-5; F 1 step 2; E 2 steps 2-5; G 2 step 3;
#   H 1 and I 1 steps 4-6; J 3 step 6.
# In 5 bytes: A shares step 0 with B, so A is at an edge, and C and D take the other two bytes at step 1: C is at
# 0 or 4; mirror it to 0, so D is at 1 and A at 2-5. At step 3, G and E fill bytes 1-5: E at 1-3 would meet D at
# step 2, so E is at 3-5 and G at 1-3. At steps 4-5, H and I get the free bytes 1 and 2; at step 6, J (3 bytes)
# finds no 3 free bytes beside them. So 6 is the best, and the search proves it (the bound: 6, not 5).
TIGHT = [Buffer("B", 2, 0, 0), Buffer("A", 3, 0, 1), Buffer("D", 1, 1, 2), Buffer("F", 1, 2, 2),
         Buffer("G", 2, 3, 3), Buffer("C", 1, 1, 5), Buffer("E", 2, 2, 5), Buffer("H", 1, 4, 6),
         Buffer("I", 1, 4, 6), Buffer("J", 3, 6, 6)]


def test_bound_out_of_reach_the_search_proves_the_best() -> None:
    assert lower_bound(TIGHT, alignment=1) == 5
    exact = place(TIGHT, alignment=1)
    assert exact.arena_bytes == exact.bound_bytes == 6 and exact.status == "optimal"
    check_no_overlap(TIGHT, exact)


@pytest.mark.slow  # a build, a compile and a run of MobileNetV1: 30-90 s on a busy 2-core machine
def test_mobilenet_v1_arena_at_the_bound_and_matches_onnxruntime(tmp_path: Path) -> None:
    """Greedy leaves MobileNetV1-0.25's untiled smallest plan 36,864 bytes above its live-set bound (258,048 vs
    221,184, bench/memory.py); the emitted arena is the bound, and the program still computes what ONNX Runtime
    does."""
    from tests.e2e import assert_matches, build_and_compile, run_binary, write_target_spec
    from tests.zoo import ensure_model
    from tests.zoo.reference import random_input, run_onnxruntime

    model = ensure_model("mobilenet_v1_vww_tf")
    spec = write_target_spec(tmp_path, model, "host", costs="model", memory="1 MiB")
    spec.write_text(spec.read_text().replace('memory = "1 MiB"', 'memory = "1 MiB"\nobjective = "memory"', 1))
    built = build_and_compile(spec)
    assert built.report["arena_bytes"] == built.report["lower_bound_bytes"] == 221_184
    assert built.report["placement"] == {"status": "optimal", "bound_bytes": 221_184}
    assert built.report["baselines"]["greedy"]["arena_bytes"] >= built.report["arena_bytes"]
    x = random_input(model, seed=0)
    ours, _ = run_binary(built.binary, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))


# ---- a row-band chain's output over its input (memory.Overlap) ----

def _chained_pairs() -> tuple[list[Buffer], list[Overlap]]:
    """x (1024 B) -> chain -> y (512 B) -> chain -> z (256 B); each output may start 64 bytes below its input."""
    buffers = [Buffer("x", 1024, 0, 1), Buffer("y", 512, 1, 2), Buffer("z", 256, 2, 3)]
    return buffers, [Overlap("x", "y", 1, 64), Overlap("y", "z", 2, 64)]


def test_an_output_below_its_input_by_the_lead_is_no_overlap() -> None:
    buffers, overlaps = _chained_pairs()
    # step 1: x and y span 1024 + 64 bytes, not 1536; step 2: y and z span 512 + 64
    assert lower_bound(buffers, 64, overlaps) == 1088 and lower_bound(buffers, 64) == 1536
    check_no_overlap(buffers, ArenaPlan((("x", 64), ("y", 0), ("z", 512)), 1088, 64), overlaps=overlaps)
    with pytest.raises(OverlapError, match="'x'.*'y'|'y'.*'x'"):  # y one cache line short of the lead
        check_no_overlap(buffers, ArenaPlan((("x", 64), ("y", 64), ("z", 576)), 1088, 64), overlaps=overlaps)
    with pytest.raises(OverlapError, match="overlap"):  # the pair is not allowed to overlap without the lead
        check_no_overlap(buffers, ArenaPlan((("x", 64), ("y", 0), ("z", 512)), 1088, 64))


def test_the_greedy_planner_leaves_the_lead_below_a_lone_pairs_input() -> None:
    buffers = [Buffer("x", 1024, 0, 1), Buffer("y", 512, 1, 2), Buffer("w", 256, 2, 2)]
    overlaps = [Overlap("x", "y", 1, 128)]
    arena = plan_arena(buffers, 64, overlaps)
    assert arena.offset_map() == {"x": 128, "y": 0, "w": 512} and arena.arena_bytes == 1152 == \
        lower_bound(buffers, 64, overlaps)
    check_no_overlap(buffers, arena, overlaps=overlaps)


def test_chained_overlaps_the_greedy_planner_misses_the_exact_placement_finds() -> None:
    buffers, overlaps = _chained_pairs()
    assert plan_arena(buffers, 64, overlaps).arena_bytes == 1600  # y above x: x took the room y needed
    arena = place(buffers, 64, overlaps=overlaps)
    assert arena.arena_bytes == 1088 and arena.status == "optimal"  # y at 0 below x at 64, z beside y
    check_no_overlap(buffers, arena, overlaps=overlaps)


def test_two_chained_groups_place_at_their_peak_only_with_one_run_bottom_to_top() -> None:
    """x (1024 B) -> group -> y (1024 B) -> group -> z (1024 B), each output 128 B below its input or, bottom to
    top, 128 B or more above its start. The peak: 1024 + 128 at either step. Both down: z 128 below y, y 128 below
    x, 1024 + 256. With x at 128, y at 0 (down) and z at 128 (up, over the dead x) the arena is the peak."""
    buffers = [Buffer("x", 1024, 0, 1), Buffer("y", 1024, 1, 2), Buffer("z", 1024, 2, 3)]
    one_way = [Overlap("x", "y", 1, 128), Overlap("y", "z", 2, 128)]
    both = [Overlap("x", "y", 1, 128, 128), Overlap("y", "z", 2, 128, 128)]
    assert lower_bound(buffers, 64, one_way) == lower_bound(buffers, 64, both) == 1152
    assert place(buffers, 64, overlaps=one_way).arena_bytes == 1280  # down and down: the offsets step down twice
    hand = ArenaPlan((("x", 128), ("y", 0), ("z", 128)), 1152, 64)
    check_no_overlap(buffers, hand, overlaps=both)
    assert both[1].upward(0, 128, 1024) and not both[0].upward(128, 0, 1024)  # the second runs bottom to top
    assert not both[1].upward(0, 1024, 1024)  # an output clear of its input runs top to bottom, as it was timed
    with pytest.raises(OverlapError, match="'y'.*'z'|'z'.*'y'"):  # one cache line short of the rise
        check_no_overlap(buffers, ArenaPlan((("x", 128), ("y", 0), ("z", 64)), 1152, 64), overlaps=both)
    with pytest.raises(OverlapError, match="overlap"):  # one way only: z may not start above y
        check_no_overlap(buffers, hand, overlaps=one_way)
    for arena in (plan_arena(buffers, 64, both), place(buffers, 64, overlaps=both)):  # greedy and exact reach it
        check_no_overlap(buffers, arena, overlaps=both)
        assert arena.arena_bytes == 1152
