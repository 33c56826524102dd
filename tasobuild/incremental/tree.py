"""Replace an emitted project tree as one transaction, touching only the files whose bytes change.

Step by step (`replace_tree`):
1. Stage the new tree in a sibling folder: every file of the current tree that stays the same (or that tasobuild
   does not generate: objects, binaries, the user's own files) is hard-linked in, so it keeps its inode and mtime
   and `make` sees it unchanged; every changed or new file is written and flushed to disk.
2. Swap the staged folder and the current one in one atomic rename (Linux renameat2 RENAME_EXCHANGE; elsewhere
   two renames), then delete the old tree.
An interrupted build (Ctrl-C, kill -9) leaves either the old tree or the new one, never a mix: until the swap the
current tree is untouched, and a leftover staging folder is removed by the next build. When no file changes,
nothing is touched at all.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WriteResult:
    written: tuple[str, ...]
    unchanged: tuple[str, ...]
    removed: tuple[str, ...]


def write_atomic(path: Path, data: bytes) -> None:
    """Write a single file: to a temporary sibling, flushed, then renamed over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tasobuild-tmp")
    _write_durable(tmp, data)
    os.replace(tmp, path)


def _write_durable(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def staging_dir(root: Path) -> Path:
    return root.with_name(f".{root.name}.tasobuild-new")


def diff_tree(root: Path, files: Mapping[str, bytes], previous: Iterable[str]) -> WriteResult:
    """What replace_tree would do, without doing it."""
    changed = tuple(rel for rel in sorted(files) if not same_bytes(root / rel, files[rel]))
    unchanged = tuple(rel for rel in sorted(files) if rel not in set(changed))
    removed = tuple(rel for rel in sorted(set(previous) - set(files)) if (root / rel).is_file())
    return WriteResult(changed, unchanged, removed)


def replace_tree(root: Path, files: Mapping[str, bytes], previous: Iterable[str] = ()) -> WriteResult:
    """Make `root` hold `files` (path -> bytes); remove files a previous build generated that are gone now."""
    result = diff_tree(root, files, previous)
    stage = staging_dir(root)
    if stage.exists():
        shutil.rmtree(stage)  # left over from an interrupted build
    if not result.written and not result.removed:
        return result
    drop = set(result.written) | set(result.removed)
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_file() and not path.is_symlink() and rel not in drop:
                (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                os.link(path, stage / rel)
    for rel in result.written:
        _write_durable(stage / rel, files[rel])
    stage.mkdir(parents=True, exist_ok=True)
    if root.is_dir():
        _exchange(stage, root)
        shutil.rmtree(stage)  # now the old tree
    else:
        root.parent.mkdir(parents=True, exist_ok=True)
        os.rename(stage, root)
    return result


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> None:
    """Atomically swap two folders (Linux); elsewhere fall back to two renames (a short window without `b`)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
    aside = b.with_name(f".{b.name}.tasobuild-old")
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)
