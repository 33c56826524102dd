"""Knowing, cheaply, that nothing changed: the inputs the lock records, and the state of the last build.

The lock records digests of every input. Hashing a 550 MB ONNX file or every emitted file on each no-op build
would be slow, so the last build's *state* — each file's size and mtime next to its digest — is kept in the user
cache directory (it is machine-local; the lock and the tree stay free of it). A file whose size and mtime match its
stamp is taken to have its recorded digest, the way make and cargo trust mtimes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from tasobuild import __version__
from tasobuild.emit.tree import write_atomic

# Inputs that decide what is emitted; the rest only say where costs were measured.
FROZEN_INPUTS = ("kernels", "onnx", "spec", "target", "tasobuild")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stamp(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def state_path(out_dir: Path) -> Path:
    from tasobuild.costs.cache import default_cache_dir

    key = hashlib.sha256(str(out_dir.resolve()).encode()).hexdigest()[:24]
    return default_cache_dir() / "builds" / f"{key}.json"


def read_state(out_dir: Path) -> dict[str, Any]:
    try:
        state = json.loads(state_path(out_dir).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) and state.get("version") == __version__ else {}


def write_state(out_dir: Path, onnx: Path, onnx_sha: str, files: Mapping[str, str], lock: Path) -> None:
    from tasobuild.stagecache import code_digest

    state = {
        "version": __version__,
        "code": code_digest(),  # a development checkout changes code without changing the version
        "onnx": {"path": str(onnx.resolve()), "stamp": stamp(onnx), "sha256": onnx_sha},
        "files": {rel: {"stamp": stamp(out_dir / rel), "sha256": digest} for rel, digest in sorted(files.items())},
        "lock": {"stamp": stamp(lock), "sha256": sha256_file(lock)},
    }
    write_atomic(state_path(out_dir), json.dumps(state, sort_keys=True).encode())


def onnx_digest(onnx: Path, state: Mapping[str, Any]) -> str:
    known = state.get("onnx", {})
    if known.get("path") == str(onnx.resolve()) and known.get("stamp") == stamp(onnx):
        return known["sha256"]
    return sha256_file(onnx)


def lock_inputs(spec, target, onnx_sha: str) -> dict[str, str]:
    """The lock's [inputs]: digests of everything the build read, and where the costs were measured."""
    from tasobuild.costs.cache import kernel_digest
    from tasobuild.target import host_fingerprint

    fingerprint = host_fingerprint(target)
    return {
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
    from tasobuild.stagecache import code_digest

    files = lock.get("files", {})
    recorded = state.get("files", {})
    if state.get("code") != code_digest():
        return False
    if set(files) != set(recorded) or state.get("lock", {}).get("stamp") != stamp(lock_path):
        return False
    return all(recorded[rel]["sha256"] == digest and recorded[rel]["stamp"] == stamp(out_dir / rel)
               for rel, digest in files.items())


def changed_inputs(lock: Mapping[str, Any], inputs: Mapping[str, str], keys=None) -> list[str]:
    old = lock.get("inputs", {})
    return [k for k in sorted(keys or inputs) if old.get(k) != inputs.get(k)]

