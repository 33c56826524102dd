"""Write an emitted project tree and its lock as one transaction, touching only what tasobuild wrote.

Terms. The *tree* is the output folder (build.out). *Ours* are the files the previous lock's [files] lists: the only
files tasobuild ever replaces or deletes. The *journal* is the new lock, written beside the old one as
`.<lock>.tasobuild-new`. A *temp* is `.<name>.tasobuild-tmp` in the folder of the file it will become.

Checks (`plan_tree`), before anything is written; a failure is one line and leaves every byte as it was:
  C1 the tree is a folder or absent; every folder on the way to a file to write is a real folder (not a symlink,
     not a file), and the file itself is a regular file or absent: tasobuild never writes through a symlink.
  C2 a file to write that is not ours is absent or already holds the new bytes: a user's file is never replaced.
  C3 with no previous lock, the tree is absent, holds only folders, or already holds every new file byte for byte
     (the lock was lost): a folder tasobuild did not fill is never adopted.

Steps (`commit`):
  1. Write the journal (the new lock), atomically. From here on the next build can finish or undo this one.
  2. Write each changed file to its temp (creating its folders), flushed, with the old file's permissions.
     Interrupted or failed up to here: delete the temps and the journal; the tree and the lock are the old pair.
  3. Rename each temp over its file: one atomic rename each; unchanged files are never touched, so they keep
     their inode and mtime and `make` rebuilds only what changed.
  4. Delete the files of the previous lock that the new one does not list (regular files only, never through a
     symlink), and the folders that leaves empty.
  5. Rename the journal over the lock (or delete it if the lock's bytes are the same). The new pair is in place.
  Steps 3-5 are only renames and deletions; Ctrl-C waits until they are done.
Everything else in the tree (the user's files, objects and binaries `make` built, empty folders, symlinks, the
folders' permissions) is left as it is.

Recovery (`recover`), at the start of every build under the build locks: a journal whose files are each in place
or complete in their temp is finished (steps 3-5, roll forward); any other journal is undone (its temps and the
journal deleted; step 3 had not begun, so the tree is the old one). Temps exist only while a journal does.

Every change to the filesystem goes through the five helpers below (`_mkdir`, `_write`, `_rename`, `_unlink`,
`_rmdir`); TASOBUILD_FAULT_AT=N makes the Nth of them in a process exit at once (os._exit(99)), N:SIGINT sends
it a Ctrl-C there, and N:ENOSPC (any errno name) makes it and every later one fail with that errno: the
fault-injection tests (tests/hostile/test_filesystem.py) step through every one.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from tasobuild.digest import sha256_bytes
from tasobuild.errors import UserError

TEMP_SUFFIX = ".tasobuild-tmp"
JOURNAL_SUFFIX = ".tasobuild-new"


@dataclass(frozen=True)
class WriteResult:
    written: tuple[str, ...]
    unchanged: tuple[str, ...]
    removed: tuple[str, ...]


class InterruptedAfterCommit(KeyboardInterrupt):
    """Ctrl-C arrived while the new tree was being renamed into place: the rename finished first."""


# --- the fault hook and the five mutating helpers -------------------------------------------------------------------


def _fault_plan(text: str | None) -> tuple[int, str] | None:
    """"N" (exit), "N:SIGINT" (Ctrl-C at the Nth) or "N:ENOSPC" (any errno name, from the Nth on)."""
    if not text:
        return None
    count, _, action = text.partition(":")
    return int(count), action or "exit"


_FAULT = _fault_plan(os.environ.get("TASOBUILD_FAULT_AT"))  # read once: unset, the hook is one comparison
_mutations = 0


def _mutation(path: Path) -> None:
    global _mutations
    if _FAULT is None:
        return
    _mutations += 1
    at, action = _FAULT
    if action == "exit" and _mutations == at:
        os._exit(99)
    if action == "SIGINT" and _mutations == at:
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered at this exact step
    elif action not in ("exit", "SIGINT") and _mutations >= at:
        code = getattr(errno, action)
        raise OSError(code, os.strerror(code), str(path))


def _mkdir(path: Path) -> None:
    _mutation(path)
    os.mkdir(path)


def _write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Create or truncate `path` (never through a symlink) with `data`, flushed to disk."""
    _mutation(path)
    if os.path.islink(path):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if mode is not None:
            os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def _rename(source: Path, target: Path) -> None:
    _mutation(target)
    os.replace(source, target)


def _unlink(path: Path) -> None:
    _mutation(path)
    os.unlink(path)


def _rmdir(path: Path) -> None:
    _mutation(path)
    os.rmdir(path)


def write_atomic(path: Path, data: bytes) -> None:
    """Write a single file: to a temporary sibling, flushed, then renamed over the old one."""
    _make_folders(path.parent)
    tmp = temp_of(path)
    _write(tmp, data)
    _rename(tmp, path)


def temp_of(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_SUFFIX}")


def journal_of(lock_path: Path) -> Path:
    """The next lock, written before the tree changes and renamed over the lock after (step 1 and 5)."""
    return lock_path.with_name(f".{lock_path.name}{JOURNAL_SUFFIX}")


# --- what is on disk -------------------------------------------------------------------------------------------------


def _lstat_mode(path: Path) -> int | None:
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # a file where a folder is expected, further up
        return None


def _regular_bytes(path: Path) -> bytes | None:
    """The bytes of `path` if it is a regular file (not a symlink), else None."""
    mode = _lstat_mode(path)
    if mode is None or not stat.S_ISREG(mode):
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _has_digest(path: Path, digest: str) -> bool:
    data = _regular_bytes(path)
    return data is not None and sha256_bytes(data) == digest


def _blocked_folder(root: Path, rel: str) -> Path | None:
    """The first path on the way from `root` to `rel`'s folder that is not a real folder (a symlink or a file)."""
    path = root
    for part in Path(rel).parts[:-1]:
        path = path / part
        mode = _lstat_mode(path)
        if mode is None:
            return None
        if not stat.S_ISDIR(mode):
            return path
    return None


def _what(mode: int) -> str:
    return "a symlink" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode) else "not a regular file"


def _is_empty_folder(root: Path) -> bool:
    with os.scandir(root) as entries:
        return next(entries, None) is None


def _holds_anything(root: Path) -> bool:
    """Anything but folders under `root` (a file, a symlink): folders alone hold nothing a build could lose, and an
    undone first build may leave the ones it made."""
    for folder, folders, names in os.walk(root):
        if names or any(os.path.islink(os.path.join(folder, name)) for name in folders):
            return True
    return False


# --- the checks ------------------------------------------------------------------------------------------------------


def plan_tree(root: Path, files: Mapping[str, bytes], previous: Mapping[str, str] | None, lock_path: Path
              ) -> WriteResult:
    """What `commit` will write, keep and delete; raises UserError (one line, nothing written) if C1-C3 fail.
    `previous` is the previous lock's [files], None if there is no lock."""
    ours = previous or {}
    if os.path.lexists(root) and not root.is_dir():
        raise UserError(f"{root}: the output folder (build.out) is {_describe(root)}; move it away or set build.out "
                        f"to a folder; nothing was written")
    written, unchanged, foreign = [], [], []
    for rel in sorted(files):
        blocked = _blocked_folder(root, rel)
        if blocked is not None:
            raise UserError(f"{blocked}: tasobuild writes a folder here but it is {_describe(blocked)}; "
                            f"move it away and rebuild; nothing was written")
        target = root / rel
        mode = _lstat_mode(target)
        if mode is not None and not stat.S_ISREG(mode):
            raise UserError(f"{target}: tasobuild writes a file here but it is {_what(mode)}; move it away and "
                            f"rebuild; nothing was written")
        data = _regular_bytes(target) if mode is not None else None
        if data == files[rel]:
            unchanged.append(rel)
            continue
        if mode is not None and rel not in ours:
            foreign.append(target)
        written.append(rel)
    if previous is None and written and root.is_dir() and _holds_anything(root):
        raise UserError(f"{root}: the output folder is not empty and no {lock_path.name} says tasobuild wrote it; "
                        f"empty it, or set build.out to a new folder; nothing was written")
    if foreign:
        raise UserError(f"{foreign[0]}: exists and tasobuild did not write it (it is not in {lock_path.name}); "
                        f"move it away and rebuild; nothing was written")
    removed = [rel for rel in sorted(set(ours) - set(files)) if _removable(root, rel)]
    return WriteResult(tuple(written), tuple(unchanged), tuple(removed))


def _describe(path: Path) -> str:
    mode = _lstat_mode(path)
    if mode is not None and stat.S_ISLNK(mode):
        return "a symlink to a missing folder" if not path.exists() else "a symlink"
    return "a file" if mode is not None else "missing"


def _removable(root: Path, rel: str) -> bool:
    """A file of ours that is still a regular file reached through real folders (never a symlink's target)."""
    if _blocked_folder(root, rel) is not None:
        return False
    mode = _lstat_mode(root / rel)
    return mode is not None and stat.S_ISREG(mode)


# --- the steps -------------------------------------------------------------------------------------------------------


def commit(root: Path, files: Mapping[str, bytes], change: WriteResult, lock_path: Path, lock_text: str) -> None:
    """Steps 1-5. An OSError is re-raised as a UserError saying which pair is on disk."""
    journal = journal_of(lock_path)
    created: list[Path] = []
    try:
        write_atomic(journal, lock_text.encode())  # step 1
        for rel in change.written:  # step 2
            target = root / rel
            created += _make_folders(target.parent)
            _write(temp_of(target), files[rel], _permissions(target))
    except BaseException as error:
        undone = _undo(root, change.written, journal, created)
        if isinstance(error, OSError):
            kept = ("nothing was changed" if undone else
                    f"the tree and {lock_path.name} are the previous build's (the next build removes the leftovers)")
            raise UserError(f"{error.filename or root}: cannot write ({error.strerror}); {kept}; "
                            f"fix the cause and rebuild") from None
        raise
    with _interrupts_deferred():
        try:
            _finish(root, change.written, change.removed, journal, lock_path)
        except OSError as error:
            raise UserError(f"{error.filename or root}: cannot write ({error.strerror}); {root} is partly updated "
                            f"and {journal.name} records the rest: fix the cause and run `tasobuild build` to "
                            f"finish") from None


def _permissions(target: Path) -> int | None:
    """The mode of the file being replaced, so a user's chmod survives a rebuild; None for a new file."""
    mode = _lstat_mode(target)
    return stat.S_IMODE(mode) if mode is not None and stat.S_ISREG(mode) else None


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; return those created, outermost first."""
    missing = []
    path = folder
    while path != path.parent and _lstat_mode(path) is None:
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        _mkdir(path)
    return list(reversed(missing))


def _undo(root: Path, written: Iterable[str], journal: Path, created: list[Path]) -> bool:
    """Delete what steps 1-2 wrote; True if all of it is gone."""
    try:
        for rel in written:
            temp = temp_of(root / rel)
            if os.path.lexists(temp):
                _unlink(temp)
        for folder in reversed(created):
            _rmdir(folder)
        for path in (journal, temp_of(journal)):
            if os.path.lexists(path):
                _unlink(path)
    except OSError:
        return False
    return True


def _finish(root: Path, written: Iterable[str], removed: Iterable[str], journal: Path, lock_path: Path) -> None:
    """Steps 3-5."""
    for rel in written:
        _rename(temp_of(root / rel), root / rel)
    for rel in removed:
        if _removable(root, rel):
            _unlink(root / rel)
            _remove_empty_folders((root / rel).parent, root)
    if _regular_bytes(lock_path) == _regular_bytes(journal):
        _unlink(journal)  # the lock's bytes are the same: it keeps its mtime
    else:
        _rename(journal, lock_path)


def _remove_empty_folders(folder: Path, root: Path) -> None:
    while folder != root and root in folder.parents and _is_empty_folder(folder):
        _rmdir(folder)
        folder = folder.parent


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Ctrl-C (SIGINT) during steps 3-5 is held until they finish, then raised as InterruptedAfterCommit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise InterruptedAfterCommit("the new outputs and lock were already in place")


# --- recovery --------------------------------------------------------------------------------------------------------


def recover(root: Path, lock_path: Path, journal_files: Mapping[str, str] | None,
            previous_files: Mapping[str, str]) -> str:
    """Finish or undo an interrupted commit. `journal_files` is the journal's [files] (None if the journal is not a
    lock: it is deleted); `previous_files` the current lock's. Returns what was done: "", "finished" or "undone"."""
    journal = journal_of(lock_path)
    if os.path.lexists(temp_of(journal)):
        _unlink(temp_of(journal))  # a journal never completely written: step 2 had not begun
    if not os.path.lexists(journal):
        return ""
    if journal_files is None:
        _unlink(journal)
        return "undone"
    pending = [rel for rel, digest in sorted(journal_files.items()) if not _has_digest(root / rel, digest)]
    if all(_has_digest(temp_of(root / rel), journal_files[rel]) for rel in pending):
        with _interrupts_deferred():
            _finish(root, pending, sorted(set(previous_files) - set(journal_files)), journal, lock_path)
        return "finished"
    for rel in pending:
        if os.path.lexists(temp_of(root / rel)) and _blocked_folder(root, rel) is None:
            _unlink(temp_of(root / rel))
    _unlink(journal)
    return "undone"
