"""A stage's result cached on disk by the digest of its inputs, so a rebuild skips stages whose inputs are unchanged.

Entries are pickles under `<cache>/stages/<stage>/<digest>.pickle`, written atomically. The digest always includes
the source of tasobuild itself, so a new version never reads an old version's result. An unreadable entry is
recomputed and replaced, never trusted.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import pickle
from pathlib import Path
from typing import Callable, TypeVar

from tasobuild.emit.tree import write_atomic

T = TypeVar("T")
log = logging.getLogger("tasobuild")


@functools.cache
def code_digest() -> str:
    """Digest of tasobuild's own Python sources."""
    package = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def cached(stage: str, key: str, compute: Callable[[], T]) -> T:
    from tasobuild.costs.cache import default_cache_dir

    digest = hashlib.sha256(f"{code_digest()}\0{key}".encode()).hexdigest()
    path = default_cache_dir() / "stages" / stage / f"{digest}.pickle"
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except FileNotFoundError:
        pass
    except Exception as error:  # a torn or foreign file: recompute rather than trust it
        log.warning("stage cache %s is unreadable (%s); recomputing", path, error)
    value = compute()
    try:
        write_atomic(path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except OSError as error:
        log.warning("cannot write the stage cache %s (%s)", path, error)
    return value
