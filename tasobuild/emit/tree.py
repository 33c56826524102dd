"""Write a project tree so that nothing is lost: only files whose bytes change are touched, each one atomically.

A file is written to a temporary sibling, flushed to disk, then renamed over the old one, so an interrupted build
leaves every file either old or new, never torn. Unchanged files keep their mtimes, so `make` rebuilds only what
the change touched. Files a previous build wrote that this one no longer produces are removed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping


@dataclass(frozen=True)
class WriteResult:
    written: tuple[str, ...]
    unchanged: tuple[str, ...]
    removed: tuple[str, ...]


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tasobuild-tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def write_tree(root: Path, files: Mapping[str, bytes], previous: Iterable[str] = ()) -> WriteResult:
    written, unchanged = [], []
    for rel in sorted(files):
        path = root / rel
        if same_bytes(path, files[rel]):
            unchanged.append(rel)
        else:
            write_atomic(path, files[rel])
            written.append(rel)
    removed = []
    for rel in sorted(set(previous) - set(files)):
        path = root / rel
        if path.is_file():
            path.unlink()
            removed.append(rel)
    return WriteResult(tuple(written), tuple(unchanged), tuple(removed))
