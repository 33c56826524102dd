"""The fast no-op check: "up to date" answered before the stages' libraries (pydantic, NumPy, ONNX, Z3) load.

After every build whose tree matches its lock, a *no-op record* keeps, per spec file, the raw sources of that
verdict: the exact command line, the bytes (sha256) of taso.toml, the target file and taso.lock, the ONNX stamp, the
output stamps, tasobuild's code, every file of the kernels folder, the compiler's `--version` and the CPU. The next
build with the same command line checks those sources and, if every one is unchanged, the full check
(incremental.state, incremental.transaction) would reach the same verdict: it prints the recorded report. Anything
else — a changed byte, a touched output, a pending lock journal, a build in progress, a flag — falls through to the
full check, which then refreshes the record.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasobuild import __version__
from tasobuild.digest import sha256_bytes, sha256_file, tree_digest
from tasobuild.incremental.stagecache import code_digest
from tasobuild.incremental.state import busy_lock_path, is_stamp, keyed_path, read_json, stamp, write_json
from tasobuild.incremental.tree import journal_of
from tasobuild.resources import kernels_dir, targets_dir

if TYPE_CHECKING:
    from tasobuild.target import Target

log = logging.getLogger("tasobuild")

# /proc/cpuinfo keys target.cpu_model_from_cpuinfo reads (every core's lines are kept: a superset, so never blind).
_CPU_KEYS = ("CPU implementer", "CPU part", "Hardware", "model name", "uarch")


def machine() -> str:
    """platform.machine(), without importing platform where os.uname has it."""
    if hasattr(os, "uname"):
        return os.uname().machine
    import platform

    return platform.machine()


def compiler_identity(argv: list[str]) -> str | None:
    """All of `<cc> --version` (the fingerprint keeps its first line), or None if it cannot be run."""
    from tasobuild.toolchain import CompilerProblem, version_text

    try:
        return version_text(tuple(argv))
    except CompilerProblem:
        return None


def cpu_facts() -> list[str] | None:
    """The /proc/cpuinfo lines the fingerprint's CPU model comes from; None where there are none to compare."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    lines = sorted({" ".join(line.split()) for line in text.splitlines() if line.split(":", 1)[0].strip() in _CPU_KEYS})
    return lines or None


@dataclass(frozen=True)
class Invocation:
    """What the command line asked: the fast check only ever answers the very same question."""

    config: str  # the spec's absolute path
    overrides: tuple[tuple[str, str], ...]
    locked: bool

    @classmethod
    def of(cls, config: Path, overrides: Mapping[str, str], locked: bool) -> Invocation:
        return cls(os.path.abspath(config), tuple(sorted(overrides.items())), locked)

    def as_json(self) -> dict[str, Any]:
        return {"config": self.config, "overrides": [list(item) for item in self.overrides], "locked": self.locked}


@dataclass(frozen=True)
class Sources:
    """The raw sources of a build's inputs, captured *before* the build reads them (so an edit made while it runs
    makes the next fast check fall through, never hides)."""

    config_sha: str | None
    code: str
    kernels: list[str]  # [folder, tree digest]
    targets_dir: str

    @classmethod
    def capture(cls, config: Path) -> Sources:
        try:
            config_sha = sha256_bytes(Path(config).read_bytes())
        except OSError:
            config_sha = None
        kernels = kernels_dir()
        return cls(config_sha, code_digest(), [str(kernels), tree_digest(kernels)], str(targets_dir()))


@dataclass(frozen=True)
class Host:
    """The target file's bytes and what the fingerprint reads from this machine, captured before lock_inputs."""

    target: list[str]  # [path, sha256]
    compiler: list[Any]  # [argv, identity]
    cpu: list[Any] | None  # [machine, cpuinfo lines] for a target profiled here; None for a cross target

    @classmethod
    def capture(cls, target: Target) -> Host:
        cpu = [machine(), cpu_facts()] if target.profile else None
        return cls([str(target.source), sha256_file(target.source)],
                   [list(target.cc_argv), compiler_identity(list(target.cc_argv))], cpu)

    @property
    def checkable(self) -> bool:
        return self.compiler[1] is not None and (self.cpu is None or self.cpu[1] is not None)


def noop_record_path(config: Path) -> Path:
    return keyed_path("builds", Path(os.path.abspath(config)), ".noop.json")


def write_noop_record(invocation: Invocation, sources: Sources, host: Host, lock_path: Path, lock_sha: str,
                      onnx: Mapping[str, Any], out_dir: Path, files: Mapping[str, Any],
                      report: Mapping[str, Any]) -> None:
    """After a build whose tree matches its lock: what the next identical command may answer without the stages.
    `onnx` and `files` are the state's entries (stamps the full check has just trusted or written)."""
    path = noop_record_path(Path(invocation.config))
    if sources.config_sha is None or not host.checkable:
        path.unlink(missing_ok=True)  # nothing to compare cheaply: every build takes the full check
        return
    record = {
        "version": __version__,
        "invocation": invocation.as_json(),
        "config_sha": sources.config_sha,
        "code": sources.code,
        "kernels": sources.kernels,
        "targets_dir": sources.targets_dir,
        "target": host.target,
        "compiler": host.compiler,
        "cpu": host.cpu,
        "lock": [str(lock_path), lock_sha],
        "onnx": [onnx["path"], onnx["stamp"]],
        "out_dir": str(out_dir),
        "files": {rel: entry["stamp"] for rel, entry in sorted(files.items())},
        "report": json.loads(json.dumps(report)),  # exactly what --json prints
    }
    write_json(path, record)


@dataclass(frozen=True)
class UpToDate:
    report: dict[str, Any]
    lock_path: Path


def fast_up_to_date(config: Path, overrides: Mapping[str, str], locked: bool) -> UpToDate | None:
    """The recorded report if every source of the last verdict is unchanged, else None (take the full check).
    Holds the project's build lock while it looks, so it never reads a tree a build is replacing."""
    path = noop_record_path(config)
    record = read_json(path)
    if not record:
        log.info("fast no-op check: no record of a previous build; full check")
        return None
    if not _record_shape_ok(record):
        log.warning("ignoring %s (a field has the wrong type); it is rebuilt", path)
        return None
    if record.get("invocation") != Invocation.of(config, overrides, locked).as_json():
        log.info("fast no-op check: the command line differs from the last build's; full check")
        return None
    lock_path = Path(record["lock"][0])
    try:
        import fcntl
    except ImportError:  # no flock: leave it to the full check and its portable lock
        return None
    fd = os.open(busy_lock_path(lock_path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log.info("fast no-op check: another build of this project is running; full check")
            return None
        reason = _first_change(record, config, lock_path)
    finally:
        os.close(fd)  # releases the flock
    if reason:
        log.info("fast no-op check: %s; full check", reason)
        return None
    log.info("fast no-op check: nothing changed")
    return UpToDate(record["report"], lock_path)


def _pair(value: Any, first: type, second: Any) -> bool:
    return type(value) is list and len(value) == 2 and type(value[0]) is first and second(value[1])


def _record_shape_ok(record: Mapping[str, Any]) -> bool:
    """Every field of the no-op record the fast check reads has the type write_noop_record gives it."""
    def text(v: Any) -> bool:
        return type(v) is str

    def maybe_lines(v: Any) -> bool:
        return v is None or (type(v) is list and all(type(x) is str for x in v))

    files = record.get("files")
    compiler: Any = record.get("compiler")
    cpu = record.get("cpu")
    return (isinstance(record.get("invocation"), dict) and all(text(record.get(k)) for k in
                                                               ("config_sha", "code", "targets_dir", "out_dir"))
            and _pair(record.get("kernels"), str, text) and _pair(record.get("target"), str, text)
            and _pair(record.get("lock"), str, text) and _pair(record.get("onnx"), str, is_stamp)
            and isinstance(files, dict) and all(is_stamp(v) for v in files.values())
            and _pair(compiler, list, text) and all(text(a) for a in compiler[0])
            and (cpu is None or _pair(cpu, str, maybe_lines))
            and isinstance(record.get("report"), dict))


def _file_sha(path: Path | str) -> str | None:
    try:
        return sha256_bytes(Path(path).read_bytes())
    except OSError:
        return None


def _first_change(record: Mapping[str, Any], config: Path, lock_path: Path) -> str | None:
    """What changed since the record, cheapest checks first; None if nothing did."""
    if journal_of(lock_path).exists():
        return "a lock journal is pending (an interrupted build)"
    if _file_sha(config) != record["config_sha"]:
        return f"{config} changed"
    if _file_sha(record["target"][0]) != record["target"][1]:
        return f"the target file {record['target'][0]} changed"
    if _file_sha(lock_path) != record["lock"][1]:
        return f"{lock_path} changed"
    if stamp(Path(record["onnx"][0])) != record["onnx"][1]:
        return f"the ONNX file {record['onnx'][0]} changed"
    out_dir = Path(record["out_dir"])
    for rel, recorded in record["files"].items():
        if stamp(out_dir / rel) != recorded:
            return f"output {rel} was touched or removed"
    if code_digest() != record["code"]:
        return "tasobuild's code changed"
    kernels = kernels_dir()
    if [str(kernels), tree_digest(kernels)] != record["kernels"] or str(targets_dir()) != record["targets_dir"]:
        return "the kernel sources changed"
    if record["cpu"] is not None and [machine(), cpu_facts()] != record["cpu"]:
        return "the CPU changed"
    argv, identity = record["compiler"]
    if compiler_identity(argv) != identity:
        return f"the compiler {' '.join(argv)} changed"
    return None
