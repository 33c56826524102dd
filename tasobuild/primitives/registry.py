"""The primitive library: every primitive of every family module of this package, by name.

A family module is any module of tasobuild.primitives that exports PRIMITIVES: adding a family is adding its
module (docs/ARCHITECTURE.md), nothing to register here.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from tasobuild import primitives
from tasobuild.primitives import Primitive


@functools.cache
def family_modules() -> tuple[str, ...]:
    """The modules of tasobuild.primitives that export PRIMITIVES, by name."""
    names = sorted(info.name for info in pkgutil.iter_modules(primitives.__path__) if info.name != "registry")
    return tuple(name for name in names
                 if hasattr(importlib.import_module(f"tasobuild.primitives.{name}"), "PRIMITIVES"))


@functools.cache
def library() -> tuple[Primitive, ...]:
    """Every primitive tasobuild has, sorted by name."""
    prims = tuple(p for m in family_modules()
                  for p in importlib.import_module(f"tasobuild.primitives.{m}").PRIMITIVES)
    names = [p.name for p in prims]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"primitive names must be unique: {duplicates}"
    return tuple(sorted(prims, key=lambda p: p.name))
