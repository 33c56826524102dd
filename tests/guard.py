"""Run kernel calls with every buffer between canary regions: a kernel that writes outside its output or declared
workspace, or writes to an input or weight, fails the test.

    from tests.guard import run_guarded, guarded_kernels
    outputs = run_guarded(guarded_kernels(), call, {"in0": x, "w0": w})   # -> {"out": ..., "ws": ...}

For every kernel test (conv included): each role gets exactly `call.buffer_bytes[role]` bytes between two 64-float
canary regions; "out" and "ws" start as NaN canaries (a kernel reading workspace or output it never wrote tends to
produce NaN). A multi-call op (concat) passes its tuple of calls; they share buffers. `guarded_kernels()` is the
default-flag build, cached in $TMPDIR/tasobuild-test-bindings across test runs.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tasobuild import native
from tasobuild.primitives import KernelCall

CANARY_FLOATS = 64
CANARY_BITS = np.uint32(0x7FC0FFEE)  # a quiet NaN: also shows up if a kernel reads memory it never wrote
WRITTEN = ("out", "ws")


@functools.cache
def guarded_kernels() -> native.Kernels:
    """The kernels with the default flags, cached across test runs in the temp folder (rebuilt when sources change)."""
    return native.load("cc", native.DEFAULT_CFLAGS, Path(tempfile.gettempdir()) / "tasobuild-test-bindings")


def _guarded(data: np.ndarray | None, floats: int) -> np.ndarray:
    """A canary-filled block with room for `floats` floats in the middle, holding `data` (if any)."""
    block = np.empty(2 * CANARY_FLOATS + floats, dtype=np.float32)
    block.view(np.uint32)[:] = CANARY_BITS
    if data is not None:
        if np.asarray(data).dtype in (np.int8, np.int32):  # the int8 kernels' buffers: their bytes as they are
            raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
            assert raw.size <= 4 * floats, f"{raw.size} bytes given for a {4 * floats}-byte buffer"
            block.view(np.uint8)[4 * CANARY_FLOATS : 4 * CANARY_FLOATS + raw.size] = raw
            return block
        flat = np.ascontiguousarray(data, dtype=np.float32).reshape(-1)
        assert flat.size <= floats, f"{flat.size} floats given for a {floats}-float buffer"
        block[CANARY_FLOATS : CANARY_FLOATS + flat.size] = flat
    return block


def _inner(block: np.ndarray) -> np.ndarray:
    return block[CANARY_FLOATS : block.size - CANARY_FLOATS]


def run_guarded(kernels: native.Kernels, calls: KernelCall | Sequence[KernelCall],
                buffers: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run one call (or several sharing buffers, e.g. concat) on canary-guarded copies of `buffers`.

    Roles not given are allocated, the written ones ("out", "ws") pre-filled with NaN canaries. Asserts that no
    canary changed and no input or weight changed; returns copies of the written roles (flat float32; an int8
    kernel's are viewed with `.view(np.int8)`)."""
    calls = (calls,) if isinstance(calls, KernelCall) else tuple(calls)
    sizes: dict[str, int] = {}
    for call in calls:
        for role, nbytes in call.buffer_bytes:
            whole = all(t == "float" for t in call.arg_types) or not call.arg_types
            assert nbytes % 4 == 0 or not whole, f"{call.function}: {role} has {nbytes} bytes, not whole floats"
            sizes[role] = max(sizes.get(role, 0), -(-nbytes // 4))  # int8 buffers: rounded up to whole floats
    blocks = {role: _guarded(buffers.get(role), floats) for role, floats in sorted(sizes.items())}
    before = {role: block.copy() for role, block in blocks.items()}
    for call in calls:
        kernels.run(call, {role: _inner(blocks[role]) for role in call.args})
    for role, block in blocks.items():
        bits, old = block.view(np.uint32), before[role].view(np.uint32)
        if not (np.array_equal(bits[:CANARY_FLOATS], old[:CANARY_FLOATS])
                and np.array_equal(bits[-CANARY_FLOATS:], old[-CANARY_FLOATS:])):
            raise AssertionError(f"{calls[0].function}: wrote outside buffer {role!r} (canary overwritten)")
        if role not in WRITTEN and not np.array_equal(bits, old):
            raise AssertionError(f"{calls[0].function}: wrote into read-only buffer {role!r}")
    return {role: _inner(block).copy() for role, block in blocks.items() if role in WRITTEN}
