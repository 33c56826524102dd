"""The port of TensorFlow Lite Micro's arena planner (tests/zoo/tflm_arena.py): hand-placed cases, and the int8
arenas the issue quotes for the MLPerf Tiny networks, reproduced from the committed .tflite fixtures."""

from __future__ import annotations

import pytest

from tests.zoo.int8 import INT8_DIR, TFLITE_INT8
from tests.zoo.tflm_arena import Buffer, greedy_offsets, planned_buffers, tflm_arena_head

# Issue 17: TFLM's int8 activation arenas (head: input and output included, no runtime bookkeeping).
ISSUE_HEAD_BYTES = {"ds_cnn": 16_000, "resnet8": 49_152, "mobilenet_v1_vww": 73_728, "mobilenet_v2_035": 138_240}


def test_largest_first_ties_last_added_first() -> None:
    """B (64) goes first at 0; the three 32-byte buffers follow in reverse order of addition: D (live 0..3) after B
    at 64, C (2..3) after D at 96, and A (0..1) after D at 96 too, since C is not live when A is."""
    buffers = [Buffer(0, 32, 0, 1), Buffer(1, 64, 1, 2), Buffer(2, 32, 2, 3), Buffer(3, 32, 0, 3)]
    assert greedy_offsets(buffers) == [96, 0, 96, 64]


def test_a_gap_between_live_buffers_is_reused() -> None:
    """P (120, live 0..1) at 0, Q (100, 1..2) after it at 120; R (50, 2..3) is not live with P, so it takes P's
    place below Q."""
    buffers = [Buffer(0, 120, 0, 1), Buffer(1, 100, 1, 2), Buffer(2, 50, 2, 3)]
    assert greedy_offsets(buffers) == [0, 120, 0]


def test_lifetimes_and_alignment_of_a_chain() -> None:
    """DS-CNN is a chain of 12 ops: the input lives in scopes 0..1, op i's output in i+1..i+2, the graph output
    (op 12's) to the end; the 49x10 int8 input (490 bytes) is rounded up to 496."""
    buffers = planned_buffers((INT8_DIR / "ds_cnn.tflite").read_bytes())
    assert [(b.first, b.last) for b in sorted(buffers, key=lambda b: b.first)] == \
        [(0, 1)] + [(i, i + 1) for i in range(1, 12)] + [(12, 12)]
    sizes = sorted(b.size for b in buffers)
    assert sizes[0] == 16 and 496 in sizes and sizes[-1] == 25 * 5 * 64  # the 12 logits (16), input, first conv


@pytest.mark.parametrize("name", TFLITE_INT8)
def test_reproduces_the_issues_tflm_arena(name: str) -> None:
    assert tflm_arena_head(INT8_DIR / f"{name}.tflite") == ISSUE_HEAD_BYTES[name]


def test_refuses_what_is_not_a_tflite_file() -> None:
    with pytest.raises(ValueError, match="TFL3"):
        planned_buffers(b"\x00" * 16)
