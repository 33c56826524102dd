"""A stage's result cached on disk by the digest of its inputs, so a rebuild skips stages whose inputs are unchanged.

Entries are pickles under `<cache>/stages/<stage>/<digest>.pickle`, written atomically, sealed with their digest,
stage and key (MAGIC below). The digest always includes
the source of tasobuild itself, so a new version never reads an old version's result. An unreadable entry is
recomputed and replaced, never trusted. Stages cached: "import" (the graph, by the ONNX digest), "baselines" (the
time-only and greedy plans, by the problem's digest), "fastest" (the fastest plan under one memory cap, by the
problem's digest and the cap: solve.budgeted), "weights" (a layer's transformed weights, by the ONNX digest,
node and primitive), "candidates" (every node's candidates, by the nodes, shapes and allow-list). With -v, a
stage's first reuse in a process is logged ("stage baselines: reused").

Each stage's folder is kept under STAGE_BYTES, least recently used entries first out (a reuse refreshes an entry's
mtime): entries of older tasobuild versions and of networks no longer built age out instead of piling up.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tasobuild.digest import tree_digest
from tasobuild.incremental.tree import write_atomic
from tasobuild.resources import cache_dir

T = TypeVar("T")
log = logging.getLogger("tasobuild")

_REUSE_LOGGED: set[str] = set()  # the weights stage is read once per layer: one line says it

STAGE_BYTES = 1 << 30  # per stage; VGG-16's transformed weights are about 0.55 GiB


@functools.cache
def code_digest() -> str:
    """Digest of tasobuild's own Python sources."""
    package = Path(__file__).resolve().parent.parent
    return tree_digest(package, lambda rel: rel.endswith(".py"))


def entry_path(stage: str, key: str) -> Path:
    digest = hashlib.sha256(f"{code_digest()}\0{key}".encode()).hexdigest()
    return cache_dir() / "stages" / stage / f"{digest}.pickle"


def cached(stage: str, key: str, compute: Callable[[], T], keep: Callable[[T], bool] = lambda _: True) -> T:
    """The stage's result for `key`: from the cache, else computed and stored (if `keep` says it may be reused —
    e.g. not a solver answer cut short by its time limit, which the next build might improve on)."""
    path = entry_path(stage, key)
    try:
        value: T = _unsealed(path.read_bytes(), stage, key)
        os.utime(path)  # recently used: the last to be evicted
        if stage not in _REUSE_LOGGED:
            _REUSE_LOGGED.add(stage)
            log.info("stage %s: reused (stage cache)", stage)
        return value
    except FileNotFoundError:
        pass
    except Exception as error:  # a torn or foreign file: recompute rather than trust it
        log.warning("stage cache %s is unreadable (%s); recomputing", path, error)
    value = compute()
    if keep(value):
        store(path, value, stage, key)
    return value


# An entry is MAGIC, the length of the rest (8 bytes, little-endian), then the pickle of (stage, key, value): an
# empty, truncated or garbage file fails the header and is never unpickled, and an entry copied to another's name
# fails the key check. No digest of the body: hashing VGG-16's 0.55 GiB of weights would cost seconds per rebuild,
# and the failures seen in practice (a killed write, a full disk, a stray file) are all caught without one.
# (A pickle is code: the cache folder must be the user's own, as it is by default.)
MAGIC = b"tasobuild-stage-1\n"
_LENGTH = 8


class StaleEntry(Exception):
    """A stage-cache file that is not the entry its name says (the message says why)."""


def _sealed(stage: str, key: str, value: object) -> bytes:
    body = pickle.dumps((stage, key, value), protocol=pickle.HIGHEST_PROTOCOL)
    return MAGIC + len(body).to_bytes(_LENGTH, "little") + body


def _unsealed(data: bytes, stage: str, key: str) -> Any:
    head = len(MAGIC) + _LENGTH
    if not data.startswith(MAGIC) or len(data) < head:
        raise StaleEntry("not a stage-cache entry of this tasobuild")
    if int.from_bytes(data[len(MAGIC):head], "little") != len(data) - head:
        raise StaleEntry("truncated")
    entry = pickle.loads(memoryview(data)[head:])  # no copy of a large body
    if not (isinstance(entry, tuple) and len(entry) == 3 and entry[:2] == (stage, key)):
        raise StaleEntry("it holds another entry")
    return entry[2]


def store(path: Path, value: object, stage: str, key: str) -> None:
    try:
        if path.is_dir() and not path.is_symlink():  # a folder where the entry belongs: not ours, in our folder
            shutil.rmtree(path)
        write_atomic(path, _sealed(stage, key, value))
        evict(path.parent, STAGE_BYTES)
    except OSError as error:
        log.warning("cannot write the stage cache %s (%s)", path, error)


def evict(folder: Path, max_bytes: int) -> None:
    """Delete the least recently used entries of `folder` until the rest fit in `max_bytes`. Another build may
    delete the same files at the same time: a file already gone is simply skipped."""
    entries = []
    for path in folder.glob("*.pickle"):
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        entries.append((info.st_mtime_ns, path.name, info.st_size, path))
    total = sum(size for _, _, size, _ in entries)
    for _, _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
