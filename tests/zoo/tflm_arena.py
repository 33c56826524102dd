"""TensorFlow Lite Micro's activation arena for a .tflite, computed as TFLM computes it, without TFLM or TensorFlow.

A port of what TFLM's MicroAllocator does before the first invocation (tflite-micro, micro_allocation_info.cc and
memory_planner/greedy_memory_planner.cc): every non-constant tensor of the main subgraph gets a lifetime in
"allocation scopes" (scope 0 is the start, op i runs in scope i + 1; the graph's inputs are created in scope 0, the
graph's outputs live to the last scope; a tensor lives from the op that writes it to the last op that reads it), its
size rounded up to the arena's 16-byte buffer alignment; then the greedy planner places the buffers largest first
(ties: the tensor added last first, as TFLM's sort array is filled from its tail) at the lowest offset where no
buffer live at the same time is in the way. The arena's head is the largest offset + size. TFLM's runtime
bookkeeping (its "tail": tensor structs, node structs, persistent kernel data) is not modelled; kernels' scratch
buffers are not either (TFLM's reference kernels for these networks request none).

The .tflite is read with a minimal FlatBuffers reader for the few fields of the TFLite schema needed here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

BUFFER_ALIGNMENT = 16  # MicroArenaBufferAlignment()

# TFLite schema TensorType -> bytes per element (the types these networks use)
_ELEMENT_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8}


class _Table:
    """One FlatBuffers table: its fields by index (vtable order), as scalars, vectors and sub-tables."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos
        vtable = pos - struct.unpack_from("<i", data, pos)[0]
        vtable_size = struct.unpack_from("<H", data, vtable)[0]
        self.offsets = [struct.unpack_from("<H", data, vtable + 4 + 2 * i)[0] for i in range((vtable_size - 4) // 2)]

    def _field(self, index: int) -> int | None:
        offset = self.offsets[index] if index < len(self.offsets) else 0
        return self.pos + offset if offset else None

    def scalar(self, index: int, fmt: str, default: int = 0) -> int:
        at = self._field(index)
        return default if at is None else int(struct.unpack_from("<" + fmt, self.data, at)[0])

    def _vector(self, index: int) -> tuple[int, int]:
        at = self._field(index)
        if at is None:
            return 0, 0
        start = at + struct.unpack_from("<I", self.data, at)[0]
        return start + 4, struct.unpack_from("<I", self.data, start)[0]

    def ints(self, index: int) -> list[int]:
        start, count = self._vector(index)
        return list(struct.unpack_from(f"<{count}i", self.data, start)) if count else []

    def tables(self, index: int) -> list[_Table]:
        start, count = self._vector(index)
        return [_Table(self.data, start + 4 * i + struct.unpack_from("<I", self.data, start + 4 * i)[0])
                for i in range(count)]

    def table(self, index: int) -> _Table | None:
        at = self._field(index)
        return None if at is None else _Table(self.data, at + struct.unpack_from("<I", self.data, at)[0])

    def byte_count(self, index: int) -> int:
        return self._vector(index)[1]


@dataclass(frozen=True)
class Buffer:
    """One planned tensor: its aligned size and lifetime in allocation scopes (inclusive)."""

    tensor: int
    size: int
    first: int
    last: int


def planned_buffers(tflite: bytes) -> list[Buffer]:
    """The main subgraph's tensors TFLM plans into the arena, in tensor order, with TFLM's lifetimes."""
    if tflite[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    model = _Table(tflite, struct.unpack_from("<I", tflite, 0)[0])
    (subgraph, *_) = model.tables(2)
    buffers = model.tables(4)
    tensors = subgraph.tables(0)
    first = [-1] * len(tensors)
    last = [-1] * len(tensors)
    for t in subgraph.ints(1) + subgraph.ints(2):  # graph inputs and outputs: created in scope 0
        first[t] = last[t] = 0
    operators = subgraph.tables(3)
    for i, op in enumerate(operators):
        scope = i + 1
        for t in op.ints(2):
            first[t] = last[t] = scope
        for t in op.ints(1):
            if t >= 0:
                last[t] = scope
        for t in op.ints(2):
            last[t] = scope
    for t in subgraph.ints(2):
        last[t] = len(operators)
    planned = []
    for index, tensor in enumerate(tensors):
        buffer = buffers[tensor.scalar(2, "I")]
        constant = buffer.byte_count(0) > 0 or buffer.scalar(1, "Q") > 0  # data inline or in the file's tail
        if constant or tensor.scalar(5, "B") or first[index] < 0:  # weights, variables, unused
            continue
        elements = 1
        for d in tensor.ints(0):
            elements *= d
        size = elements * _ELEMENT_BYTES[tensor.scalar(1, "b")]
        if size:
            planned.append(Buffer(index, -(-size // BUFFER_ALIGNMENT) * BUFFER_ALIGNMENT, first[index], last[index]))
    return planned


def greedy_offsets(buffers: list[Buffer]) -> list[int]:
    """TFLM's GreedyMemoryPlanner: the offset of each buffer (in the order given)."""
    order = list(reversed(range(len(buffers))))  # TFLM fills its sort array from the tail
    order.sort(key=lambda i: -buffers[i].size)  # stable, as its bubble sort
    offsets = [-1] * len(buffers)
    placed: list[int] = []  # buffer indices by offset (equal offsets: in placement order)
    for i in order:
        want = buffers[i]
        candidate = 0
        for j in placed:
            other = buffers[j]
            if other.first > want.last or want.first > other.last:
                continue  # not live at the same time
            if offsets[j] - candidate >= want.size:
                break  # the gap before this one fits
            candidate = max(candidate, offsets[j] + other.size)
        offsets[i] = candidate
        at = next((k for k, j in enumerate(placed) if offsets[j] > candidate), len(placed))
        placed.insert(at, i)
    return offsets


def tflm_arena_head(tflite: bytes | Path) -> int:
    """The bytes of TFLM's planned (head) arena for the .tflite: activations, input and output included."""
    data = tflite.read_bytes() if isinstance(tflite, Path) else tflite
    buffers = planned_buffers(data)
    offsets = greedy_offsets(buffers)
    return max((o + b.size for o, b in zip(offsets, buffers)), default=0)
