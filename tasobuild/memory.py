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

Sharing (in-place execution, zero-copy concatenation) is not the planner's business: the plan merges the tensors
that share memory into one buffer whose lifetime is the union of theirs, so the bound, the greedy planner and the
exact placement see one block. What lives where inside such a buffer is a `Region`; `check_no_overlap` checks the
regions too: inside their buffer in bytes and steps, and two regions that share bytes at one step only where one
is written over the other at that step (in place: the kernel reads each element before writing it) or where
a gathered output meets its slices (the step that reads them as the whole).

Overlap pairs (`Overlap`): a row-band chain (tiling.rows) writes its output top to bottom while it reads its input
top to bottom, so at the one step where both live (the input's last, the output's first) the output may start
`lead` bytes below the input and run on over the input rows already read. A chain that may also run bottom to top
(`rise` > 0) allows the mirror: the output starting `rise` bytes or more above the input's start, written from its
end down over the input rows already read. Which one a placement took is `Overlap.upward` of its offsets, and the
chain runs that way. Every function here takes the pairs: `lower_bound` counts such a pair at their step as the
span it needs (`Overlap.span`, the smaller way), `plan_arena` and placement allow the output anywhere at or below
`input - lead` or at or above `input + rise` (`lowest_free`), and `check_no_overlap` allows exactly that. So a
chain of such groups can alternate down and up and stay within its peak, where one way only steps down and down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

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
class Overlap:
    """Buffer `output` may share bytes with buffer `input` at `step` (the input's last step and the output's first)
    if it starts at least `lead` bytes below it: its writes up to any point of the step stay below the input bytes
    still to be read; or, where `rise` > 0 (the group may run the other way), if it starts at least `rise` bytes
    above the input's start: its writes, from its end down, stay above the input bytes still to be read. `lead` and
    `rise` are multiples of the alignment; `rise` 0: only the first way."""

    input: str
    output: str
    step: int
    lead: int
    rise: int = 0

    def span(self, input_size: int, output_size: int) -> int:
        """The aligned bytes the two take at their step when they overlap as far as they may (their sum at most)."""
        down = max(input_size + self.lead, output_size)
        up = max(input_size, self.rise + output_size) if self.rise > 0 else down
        return min(input_size + output_size, down, up)

    def allows(self, input_offset: int, output_offset: int) -> bool:
        """Whether the output at `output_offset` may share bytes with the input at `input_offset` at their step."""
        return output_offset + self.lead <= input_offset or 0 < self.rise <= output_offset - input_offset

    def upward(self, input_offset: int, output_offset: int, input_size: int) -> bool:
        """Whether the group must run bottom to top for these offsets: the output starts within the input's bytes,
        `rise` or more above its start. An output clear of the input runs top to bottom, the way it was timed."""
        return 0 < self.rise <= output_offset - input_offset < input_size


REGION_KINDS = ("owner", "in_place", "slice")


@dataclass(frozen=True)
class Region:
    """A tensor that lives inside a (shared) buffer: `offset` bytes into `buffer`, `size` bytes, live from
    `first_step` through `last_step`. kind "owner": the version the buffer is named after; "in_place": written over
    `source` (another region of the buffer) at its first step; "slice": a part of the owner (a zero-copy gather's
    input, written by its producer), read as the whole owner from the owner's first step. A strided slice (an HWC
    gather's: `stride` > 0) is runs of `run` bytes every `stride` bytes, `size` from its first byte to its last."""

    name: str
    buffer: str
    offset: int
    size: int
    first_step: int
    last_step: int
    kind: str
    source: str = ""
    run: int = 0
    stride: int = 0

    def __post_init__(self) -> None:
        if self.kind not in REGION_KINDS or (self.kind == "in_place") != bool(self.source) or self.offset < 0:
            raise ValueError(f"region {self.name!r}: invalid kind {self.kind!r}, source or offset")


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


def lower_bound(buffers: Iterable[Buffer], alignment: int = ARENA_ALIGN, overlaps: Sequence[Overlap] = ()) -> int:
    """The largest sum of aligned sizes of buffers live at the same step (0 for no buffers), an overlap pair
    counted at its step as its span."""
    todo = list(buffers)
    delta: dict[int, int] = {}  # sweep: +size where a lifetime starts, -size after it ends
    sizes = {b.name: align_up(b.size, alignment) for b in todo}
    for o in overlaps:
        saved = sizes[o.input] + sizes[o.output] - o.span(sizes[o.input], sizes[o.output])
        delta[o.step] = delta.get(o.step, 0) - saved
        delta[o.step + 1] = delta.get(o.step + 1, 0) + saved
    for b in todo:
        size = align_up(b.size, alignment)
        delta[b.first_step] = delta.get(b.first_step, 0) + size
        delta[b.last_step + 1] = delta.get(b.last_step + 1, 0) - size
    live = peak = 0
    for step in sorted(delta):
        live += delta[step]
        peak = max(peak, live)
    return peak


def plan_arena(buffers: Iterable[Buffer], alignment: int = ARENA_ALIGN, overlaps: Sequence[Overlap] = ()
               ) -> ArenaPlan:
    """Place every buffer at the lowest aligned offset free for its whole lifetime (algorithm: module docstring);
    the input of an overlap pair goes `lead` bytes up when its output, smaller than it, is placed after it, so that
    the output can take the room below it. Where a pair may also run upward (`Overlap.rise`), the placement without
    that room is tried too (its output then goes up, where the next chain's can come down): the smaller wins, ties
    the first."""
    todo = list(buffers)
    _check_unique_names(todo)
    order = sorted(todo, key=lambda b: (-align_up(b.size, alignment), b.first_step, b.name))
    sizes = {b.name: align_up(b.size, alignment) for b in todo}
    room = {o.input: o.lead for o in overlaps if o.lead < sizes[o.output] <= sizes[o.input]}
    best = _greedy(order, sizes, overlaps, room, alignment)
    if any(o.rise > 0 for o in overlaps):
        roomless = _greedy(order, sizes, overlaps, {}, alignment)
        if roomless.arena_bytes < best.arena_bytes:
            best = roomless
    return best


def _greedy(order: Sequence[Buffer], sizes: Mapping[str, int], overlaps: Sequence[Overlap],
            room: Mapping[str, int], alignment: int) -> ArenaPlan:
    placed: list[tuple[Buffer, int, int]] = []  # (buffer, offset, aligned size)
    for buf in order:
        size = sizes[buf.name]
        placed.append((buf, lowest_free(buf, size, placed, overlaps, room.get(buf.name, 0)), size))
    arena = max((off + sz for _, off, sz in placed), default=0)
    offsets = tuple(sorted((b.name, off) for b, off, _ in placed))
    return ArenaPlan(offsets=offsets, arena_bytes=arena, alignment=alignment)


def lowest_free(buf: Buffer, size: int, placed: Sequence[tuple[Buffer, int, int]], overlaps: Sequence[Overlap] = (),
                start: int = 0) -> int:
    """The lowest offset from `start` where `buf` (of `size`) shares no bytes with the placed buffers (buffer,
    offset, size) that live with it, but as an overlap pair allows. Sizes, offsets and leads in one unit."""
    if size <= 0:
        return 0
    rivals = []
    for other, off, sz in placed:
        if sz <= 0 or not other.lives_with(buf):
            continue
        rivals.append(_forbidden(buf.name, size, other.name, off, sz, overlaps))
    offset = start
    for low, end in sorted(rivals):  # the buffer may not start in (low - size, end)
        if offset + size <= low:
            break
        offset = max(offset, end)
    return offset


def _forbidden(name: str, size: int, other: str, off: int, sz: int, overlaps: Sequence[Overlap]) -> tuple[int, int]:
    """(low, end): a buffer of `size` may not start in (low - size, end) next to `other` at `off` (of `sz`)."""
    for o in overlaps:
        if (o.output, o.input) == (name, other):  # at or below input - lead, or at or above input + rise
            return off + max(size - o.lead, 0), off + (min(o.rise, sz) if o.rise > 0 else sz)
        if (o.input, o.output) == (name, other):  # the output at or below us - lead: we start from its + lead
            return off + (max(size - o.rise, 0) if o.rise > 0 else 0), off + min(o.lead, sz)  # or up: end at its - rise
    return off, off + sz


def with_regions(arena_plan: ArenaPlan, regions: Iterable[Region]) -> ArenaPlan:
    """The arena plan with an offset for every region it does not name yet (slices, in-place outputs), so that a
    region's name is looked up as a buffer's is."""
    offsets = arena_plan.offset_map()
    extra = [(r.name, offsets[r.buffer] + r.offset) for r in regions if r.name not in offsets]
    if not extra:
        return arena_plan
    return replace(arena_plan, offsets=tuple(sorted((*arena_plan.offsets, *extra))))


def check_no_overlap(buffers: Iterable[Buffer], arena_plan: ArenaPlan, regions: Iterable[Region] = (),
                     overlaps: Sequence[Overlap] = ()) -> None:
    """Raise OverlapError naming two buffers that are live at the same step and share bytes (an overlap pair: but
    for the output at or below input - lead at their one step), or a buffer that is unplaced, misaligned or outside
    the arena; then the same for the regions inside shared buffers (module docstring). Independent of how the plan
    was made."""
    todo = list(buffers)
    _check_buffers(todo, arena_plan, overlaps)
    _check_regions({b.name: b for b in todo}, arena_plan, list(regions))


def _check_regions(buffers: Mapping[str, Buffer], arena_plan: ArenaPlan, regions: list[Region]) -> None:
    offsets = arena_plan.offset_map()
    by_name = {r.name: r for r in regions}
    for r in regions:
        buf = buffers.get(r.buffer)
        if buf is None or r.offset + r.size > buf.size or not buf.first_step <= r.first_step <= r.last_step \
                <= buf.last_step or (r.offset % arena_plan.alignment) or (r.kind == "owner") != (r.name == r.buffer):
            raise OverlapError(f"region {r.name!r} (bytes +{r.offset}-{r.offset + r.size}, steps "
                               f"{r.first_step}-{r.last_step}) is misaligned or not inside its buffer {r.buffer!r}")
        if r.name in offsets and offsets[r.name] != offsets[r.buffer] + r.offset:
            raise OverlapError(f"region {r.name!r} is at {offsets[r.name]}, not {r.offset} bytes into {r.buffer!r}")
        if r.kind == "in_place" and (r.source not in by_name or by_name[r.source].buffer != r.buffer):
            raise OverlapError(f"region {r.name!r} is written over {r.source!r}, which is not in {r.buffer!r}")
    spans = sorted(regions, key=lambda r: (r.buffer, r.offset, r.name))
    for i, a in enumerate(spans):
        for b in spans[i + 1:]:
            if b.buffer != a.buffer or b.offset >= a.offset + a.size:
                break
            if not (a.first_step <= b.last_step and b.first_step <= a.last_step) or _handover(a, b) \
                    or _handover(b, a) or _interleaved(a, b):
                continue
            raise OverlapError(f"regions {a.name!r} (steps {a.first_step}-{a.last_step}) and {b.name!r} (steps "
                               f"{b.first_step}-{b.last_step}) share bytes of {a.buffer!r} at the same step")


def _interleaved(a: Region, b: Region) -> bool:
    """Two strided regions with the same stride whose runs are disjoint within it (b starts at or after a)."""
    return a.stride == b.stride > 0 and a.offset + a.run <= b.offset and b.offset + b.run <= a.offset + a.stride


def _handover(old: Region, new: Region) -> bool:
    """`new` takes `old`'s bytes at the one step where `old` is last read: written over it in place, or an owner
    born from its slice."""
    meets = old.last_step == new.first_step
    return meets and ((new.kind == "in_place" and new.source == old.name)
                      or (new.kind == "owner" and old.kind == "slice"))


def _check_buffers(todo: list[Buffer], arena_plan: ArenaPlan, overlaps: Sequence[Overlap]) -> None:
    _check_unique_names(todo)
    offsets = arena_plan.offset_map()
    by_name = {b.name: b for b in todo}
    pairs: dict[frozenset[str], Overlap] = {}
    for o in overlaps:
        first, last = by_name[o.output], by_name[o.input]
        if last.last_step != o.step or first.first_step != o.step or o.lead < 0 or o.lead % arena_plan.alignment \
                or o.rise < 0 or o.rise % arena_plan.alignment:
            raise OverlapError(f"overlap of {o.output!r} over {o.input!r} is not at the one step they share")
        pairs[frozenset((o.input, o.output))] = o
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
            pair = pairs.get(frozenset((buf.name, other.name)))
            if pair is not None and pair.allows(offsets[pair.input], offsets[pair.output]):
                continue  # the output starts far enough below the input, or above it (run bottom to top)
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
