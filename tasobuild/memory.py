"""Arena memory planner: one arena, a fixed offset for every buffer (like TFLite Micro's GreedyMemoryPlanner).

A buffer is a block of bytes that must exist from `first_step` through `last_step` (inclusive). Two buffers may share
bytes only if their lifetimes do not intersect. The planner knows nothing of tensors or layouts: the solver's Plan
turns into buffers with `Plan.buffers()`.

The algorithm (`plan_arena`), step by step:

1. Round every size up to a multiple of `alignment` (so every offset is aligned too).
2. Sort the buffers by aligned size, largest first; ties by `first_step`, then by `name`. The order is total, so the
   plan is deterministic.
3. Take the buffers in that order. For each one, collect the already placed buffers whose lifetimes intersect its
   own, sorted by offset. Start with candidate offset 0 and walk them: if the buffer fits in the gap before the next
   one (`candidate + size <= next.offset`) stop, else move the candidate past it (`max(candidate, next.end)`).
   The buffer goes at the final candidate: the lowest offset where it overlaps nothing live at the same time.
4. The arena is the highest end offset over all buffers.

Large buffers are placed first because they are the hardest to fit; small ones then fill the gaps between them.

`lower_bound` is what no placement can beat: the largest total (aligned) size live at any one step.
`check_no_overlap` verifies a placement independently of how it was made; the build runs it before writing anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Bytes: every arena buffer, workspace slice and weight array starts at a multiple of this, a cache line (and the
# widest SIMD vector, AVX-512). The one definition: the solver counts sizes in it, the emitted project aligns its
# arena and weights to it (<NAME>_ARENA_ALIGN in the generated header).
ARENA_ALIGN = 64


@dataclass(frozen=True)
class Buffer:
    name: str
    size: int  # bytes, before alignment
    first_step: int  # live from this step ...
    last_step: int  # ... through this one, inclusive

    def __post_init__(self) -> None:
        if self.size < 0 or self.first_step < 0 or self.last_step < self.first_step:
            raise ValueError(f"buffer {self.name!r}: invalid size {self.size} or lifetime "
                             f"[{self.first_step}, {self.last_step}]")

    def lives_with(self, other: Buffer) -> bool:
        """True when the two lifetimes share at least one step."""
        return self.first_step <= other.last_step and other.first_step <= self.last_step


@dataclass(frozen=True)
class ArenaPlan:
    offsets: tuple[tuple[str, int], ...]  # (buffer name, byte offset), sorted by name
    arena_bytes: int
    alignment: int
    # Set by placement.place: "optimal" (no placement of these buffers has a smaller arena) | "feasible" (the best
    # found in time) | "greedy" (plan_arena's, unproven); the proven lower bound on the arena; the seconds it took.
    status: str = "greedy"
    bound_bytes: int = 0
    seconds: float = field(default=0.0, compare=False)

    def offset(self, name: str) -> int:
        return self.offset_map()[name]

    def offset_map(self) -> Mapping[str, int]:
        return dict(self.offsets)


class OverlapError(ValueError):
    """Two buffers live at the same step share bytes (or a placement is otherwise invalid): a planner bug."""


def align_up(size: int, alignment: int) -> int:
    if alignment < 1:
        raise ValueError(f"alignment must be >= 1, got {alignment}")
    return -(-size // alignment) * alignment


def lower_bound(buffers: Iterable[Buffer], alignment: int = ARENA_ALIGN) -> int:
    """The largest sum of aligned sizes of buffers live at the same step (0 for no buffers)."""
    delta: dict[int, int] = {}  # sweep: +size where a lifetime starts, -size after it ends
    for b in buffers:
        size = align_up(b.size, alignment)
        delta[b.first_step] = delta.get(b.first_step, 0) + size
        delta[b.last_step + 1] = delta.get(b.last_step + 1, 0) - size
    live = peak = 0
    for step in sorted(delta):
        live += delta[step]
        peak = max(peak, live)
    return peak


def plan_arena(buffers: Iterable[Buffer], alignment: int = ARENA_ALIGN) -> ArenaPlan:
    """Place every buffer at the lowest aligned offset free for its whole lifetime (algorithm: module docstring)."""
    todo = list(buffers)
    _check_unique_names(todo)
    order = sorted(todo, key=lambda b: (-align_up(b.size, alignment), b.first_step, b.name))
    placed: list[tuple[Buffer, int, int]] = []  # (buffer, offset, aligned size)
    for buf in order:
        size = align_up(buf.size, alignment)
        offset = 0
        if size > 0:
            rivals = sorted((off, off + sz) for other, off, sz in placed if sz > 0 and other.lives_with(buf))
            for start, end in rivals:
                if offset + size <= start:
                    break
                offset = max(offset, end)
        placed.append((buf, offset, size))
    arena = max((off + sz for _, off, sz in placed), default=0)
    offsets = tuple(sorted((b.name, off) for b, off, _ in placed))
    return ArenaPlan(offsets=offsets, arena_bytes=arena, alignment=alignment)


def check_no_overlap(buffers: Iterable[Buffer], arena_plan: ArenaPlan) -> None:
    """Raise OverlapError naming two buffers that are live at the same step and share bytes, or a buffer that is
    unplaced, misaligned or outside the arena. Independent of how the plan was made."""
    todo = list(buffers)
    _check_unique_names(todo)
    offsets = arena_plan.offset_map()
    spans: list[tuple[int, int, Buffer]] = []  # (offset, end, buffer) for non-empty buffers
    for b in todo:
        if b.name not in offsets:
            raise OverlapError(f"buffer {b.name!r} has no offset in the arena plan")
        off, size = offsets[b.name], align_up(b.size, arena_plan.alignment)
        if off < 0 or off % arena_plan.alignment or off + size > arena_plan.arena_bytes:
            raise OverlapError(f"buffer {b.name!r} at offset {off} (+{size} bytes) is misaligned or outside the "
                               f"{arena_plan.arena_bytes}-byte arena")
        if size > 0:
            spans.append((off, off + size, b))
    spans.sort(key=lambda s: (s[0], s[1], s[2].name))
    for i, (off, end, buf) in enumerate(spans):
        for other_off, _other_end, other in spans[i + 1:]:
            if other_off >= end:
                break  # sorted by offset: nothing further can share bytes with `buf`
            if buf.lives_with(other):
                raise OverlapError(
                    f"buffers {buf.name!r} (steps {buf.first_step}-{buf.last_step}, bytes {off}-{end}) and "
                    f"{other.name!r} (steps {other.first_step}-{other.last_step}, bytes from {other_off}) "
                    f"overlap in time and space")


def _check_unique_names(buffers: list[Buffer]) -> None:
    seen: set[str] = set()
    for b in buffers:
        if b.name in seen:
            raise ValueError(f"two buffers are named {b.name!r}")
        seen.add(b.name)
