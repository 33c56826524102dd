"""Content digests: the one routine every cache key, lock input and up-to-date check is made of.

A digest of many files hashes, for each file in sorted order, its relative path and its bytes, each prefixed by its
length, so no two different trees can give the same byte stream.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files_under(root: Path, keep: Callable[[str], bool] = lambda _: True) -> list[tuple[str, Path]]:
    """(relative posix path, path) of every file under `root` whose relative path `keep` accepts, sorted."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if keep(rel):
                found.append((rel, path))
    return sorted(found)


def files_digest(files: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over (name, bytes) pairs in the order given, each part length-prefixed."""
    h = hashlib.sha256()
    for rel, data in files:
        name = rel.encode()
        h.update(len(name).to_bytes(8, "little") + name + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def tree_digest(root: Path, keep: Callable[[str], bool] = lambda _: True) -> str:
    """files_digest of every file under `root` that `keep` accepts, by relative path."""
    return files_digest((rel, path.read_bytes()) for rel, path in files_under(root, keep))
