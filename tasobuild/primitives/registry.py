"""The primitive library: every primitive of every family module of this package, by name."""

from __future__ import annotations

import functools
import importlib

from tasobuild.primitives import Primitive

# The modules of tasobuild.primitives that each export PRIMITIVES: one per family of primitives.
FAMILY_MODULES = ("conv", "conv_direct_blocked", "conv_kn2row", "conv_mec", "conv_variants", "conv_winograd", "ops")


@functools.cache
def library() -> tuple[Primitive, ...]:
    """Every primitive tasobuild has, sorted by name."""
    prims = tuple(p for m in FAMILY_MODULES
                  for p in importlib.import_module(f"tasobuild.primitives.{m}").PRIMITIVES)
    names = [p.name for p in prims]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"primitive names must be unique: {duplicates}"
    return tuple(sorted(prims, key=lambda p: p.name))
