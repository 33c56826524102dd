"""Knowing, cheaply, that nothing changed: the inputs the lock records and the state of the last build.

The lock records digests of every input. Hashing a 550 MB ONNX file or every emitted file on each no-op build
would be slow, so the last build's *state* — each file's size and mtime next to its digest — is kept in the user
cache directory (it is machine-local; the lock and the tree stay free of it). A file whose size and mtime match its
stamp is taken to have its recorded digest, the way make and cargo trust mtimes (the stamp also holds the inode
and ctime, so a same-size replacement with its mtime set back is not trusted). tasobuild.incremental.noop goes one
step further and answers "up to date" before the stages' libraries are imported.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasobuild import __version__
from tasobuild.digest import sha256_bytes, sha256_file
from tasobuild.incremental.tree import write_atomic
from tasobuild.resources import cache_dir

if TYPE_CHECKING:
    from tasobuild.spec import Spec
    from tasobuild.target import Target

# Inputs that decide what is emitted; the rest only say where costs were measured.
FROZEN_INPUTS = ("kernels", "onnx", "spec", "target", "tasobuild")

log = logging.getLogger("tasobuild")


def stamp(path: Path) -> list[int] | None:
    """Size and mtime, as make trusts, plus the inode and ctime: a file replaced by another of the same size with
    its mtime set back (cp -p, rsync -t, a checkout) has a new inode or ctime, which no user can set."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def keyed_path(kind: str, path: Path, suffix: str) -> Path:
    key = hashlib.sha256(str(path).encode()).hexdigest()[:24]
    return cache_dir() / kind / f"{key}{suffix}"


def state_path(out_dir: Path) -> Path:
    return keyed_path("builds", out_dir.resolve(), ".json")


def busy_lock_path(lock_path: Path) -> Path:
    """The file lock that serialises builds of one project: in the user cache, so the project stays clean."""
    path = keyed_path("locks", lock_path.resolve(), ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, value: Any) -> None:
    """Write a record of the cache folder. It is only a cache: one that cannot be written (a full disk) only costs
    the next build the full check, so it is a warning, never a failed build (a folder in its place, which no
    tasobuild makes, is removed first)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        write_atomic(path, json.dumps(value, sort_keys=True).encode())
    except OSError as error:
        log.warning("cannot write %s (%s); the next build takes the full up-to-date check", path, error.strerror)
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)  # a stale record would only fall through, but a missing one is clearer


def read_json(path: Path) -> dict[str, Any]:
    """A record of the cache folder, or {} if there is none, it is another version's, or it is unreadable (then with
    a warning: it is recomputed and replaced by the build)."""
    try:
        value = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:  # a folder, binary garbage, truncated JSON
        log.warning("ignoring %s (%s); it is rebuilt", path, error)
        return {}
    if not isinstance(value, dict):
        log.warning("ignoring %s (not a JSON object); it is rebuilt", path)
        return {}
    return value if value.get("version") == __version__ else {}


STAMP_FIELDS = 4  # stamp(): size, mtime, inode, ctime


def is_stamp(value: Any) -> bool:
    return value is None or (type(value) is list and len(value) == STAMP_FIELDS and all(type(v) is int for v in value))


def _state_shape_ok(state: Mapping[str, Any]) -> bool:
    """Every field of the build state the build reads has the type write_state gives it."""
    onnx, files, lock = state.get("onnx"), state.get("files"), state.get("lock")
    return (type(state.get("code")) is str
            and isinstance(onnx, dict) and type(onnx.get("path")) is str and is_stamp(onnx.get("stamp"))
            and type(onnx.get("sha256")) is str
            and isinstance(files, dict) and all(isinstance(f, dict) and is_stamp(f.get("stamp"))
                                                and type(f.get("sha256")) is str for f in files.values())
            and isinstance(lock, dict) and is_stamp(lock.get("stamp")) and type(lock.get("sha256")) is str
            and isinstance(lock.get("data", {}), dict))


def read_state(out_dir: Path) -> dict[str, Any]:
    """The last build's state, or {} (the build then checks everything and writes a new one)."""
    path = state_path(out_dir)
    state = read_json(path)
    if state and not _state_shape_ok(state):
        log.warning("ignoring %s (a field has the wrong type); it is rebuilt", path)
        return {}
    return state


def write_state(out_dir: Path, onnx: Path, onnx_sha: str, onnx_stamp: list[int] | None, files: Mapping[str, str],
                lock: Path, lock_text: str, lock_data: Mapping[str, Any]) -> dict[str, Any]:
    """Record the last build's stamps. `onnx_stamp` was taken before the ONNX file was hashed (see onnx_digest);
    `lock_data` is the lock as parsed, kept under the digest of the text written so the next build need not parse
    it (a changed lock file has another digest and is parsed)."""
    from tasobuild.incremental.stagecache import code_digest

    state = {
        "version": __version__,
        "code": code_digest(),  # a development checkout changes code without changing the version
        "onnx": {"path": str(onnx.resolve()), "stamp": onnx_stamp, "sha256": onnx_sha},
        "files": {rel: {"stamp": stamp(out_dir / rel), "sha256": digest} for rel, digest in sorted(files.items())},
        "lock": {"stamp": stamp(lock), "sha256": sha256_bytes(lock_text.encode()), "data": lock_data},
    }
    write_json(state_path(out_dir), state)
    return state


def onnx_digest(onnx: Path, state: Mapping[str, Any]) -> tuple[str, list[int] | None]:
    """The ONNX file's sha256 and its stamp. The stamp is taken first: if the file changes while it is hashed,
    the stamp recorded is the older one, so the next build hashes again rather than trusting a wrong digest."""
    current = stamp(onnx)
    known = state.get("onnx", {})
    if known.get("path") == str(onnx.resolve()) and known.get("stamp") == current:
        return known["sha256"], current
    return sha256_file(onnx), current


def lock_inputs(spec: Spec, target: Target, onnx_sha: str) -> dict[str, str]:
    """The lock's [inputs]: digests of everything the build read, and where the costs were measured."""
    from tasobuild.costs.cache import kernel_digest
    from tasobuild.target import host_fingerprint, resolved_threads

    fingerprint = host_fingerprint(target)
    # threads = "auto": the count it resolved to here, so a machine with other cores plans afresh
    auto = {"threads": str(resolved_threads(spec, target))} if spec.target.threads == "auto" else {}
    return {
        **auto,
        "costs_from": fingerprint.digest,
        "kernels": kernel_digest(),
        "onnx": onnx_sha,
        "spec": spec.digest,
        "target": target.digest,
        "tasobuild": __version__,
        "toolchain": fingerprint.compiler,
    }


def outputs_intact(out_dir: Path, lock: Mapping[str, Any], lock_path: Path, state: Mapping[str, Any]) -> bool:
    """Every file the lock lists is there with the stamp it had when the last build wrote it, and so is the lock."""
    from tasobuild.incremental.stagecache import code_digest

    files = lock.get("files", {})
    recorded = state.get("files", {})
    if state.get("code") != code_digest():
        return False
    if set(files) != set(recorded) or state.get("lock", {}).get("stamp") != stamp(lock_path):
        return False
    return all(recorded[rel]["sha256"] == digest and recorded[rel]["stamp"] == stamp(out_dir / rel)
               for rel, digest in files.items())


def changed_inputs(lock: Mapping[str, Any], inputs: Mapping[str, str], keys: Sequence[str] | None = None) -> list[str]:
    old = lock.get("inputs", {})
    return [k for k in sorted(keys or inputs) if old.get(k) != inputs.get(k)]
