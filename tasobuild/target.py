"""Targets (targets/*.toml): the compiler, its flags and whether kernels can be timed here;
and the fingerprint of the toolchain and CPU that profiled costs and the lockfile depend on."""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import platform
import shlex
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from tasobuild.errors import UserError
from tasobuild.resources import targets_dir
from tasobuild.spec import Size, Spec, is_target_path, printable, read_toml, validate_toml
from tasobuild.toolchain import CompilerProblem, version_text

MAX_THREADS = 64  # TB_MAX_THREADS of kernels_pyx/tb_threads.h: the emitted pool's size limit


class Board(BaseModel):
    """The emulated board a microcontroller target's program runs on (`qemu-system-arm -M <machine>`) and where its
    memories are: the linker script places the vector table, the code and weights ("flash") and the RAM there."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    machine: StrictStr = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    """QEMU's name for the board ("mps2-an386"; `qemu-system-arm -M help` lists them). Letters, digits, '.', '_'
    and '-' only: it is written into the linker script and the Makefile."""

    flash_origin: int = Field(strict=True, ge=0)
    """Address of the memory that plays the flash: code, constants and weights."""

    ram_origin: int = Field(strict=True, ge=0)
    """Address of the RAM: data, the arena, the stack."""

    vector_table: int | None = Field(None, strict=True, ge=0)
    """Where the core reads its vector table on reset, if not at flash_origin."""

    harness_ram: Size | None = Field(None, gt=0)
    """The board's own RAM at ram_origin, if larger than the device's: the emulated profiling harness may use it all
    (on the device a call's weights sit in flash; in the harness every buffer is in RAM)."""


class TargetFile(BaseModel):
    """The keys of a target TOML."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    name: StrictStr = Field(min_length=1)
    """The target's name (defaults to the file name without .toml)."""

    description: StrictStr = ""
    """One line for `tasobuild targets`."""

    cc: StrictStr = Field("cc", min_length=1)
    """The C compiler command; may include a wrapper ("zig cc")."""

    cflags: tuple[StrictStr, ...] = ()
    """Compiler flags, used both to profile the kernels and in the emitted project."""

    ldflags: tuple[StrictStr, ...] = ()
    """Linker flags for the emitted project's executable."""

    profile: bool = Field(strict=True)
    """true: kernels run on this machine and can be timed; false (cross target): costs come from the model."""

    ram: Size | None = Field(None, gt=0)
    """The device's RAM ("256 KiB"): a plan that does not fit is refused; with no memory budget, the budget."""

    flash: Size | None = Field(None, gt=0)
    """The device's flash ("2 MiB"), for code and weights: a program that does not fit is refused."""

    stack: Size | None = Field(None, gt=0)
    """RAM the program keeps for its stack (microcontrollers): counted with the arena against `ram`."""

    cores: Annotated[int, Field(strict=True, ge=1, le=MAX_THREADS)] | Literal["auto"] = 1
    """The cores a plan may run threads on (`[target] threads` in taso.toml); "auto": the ones this process may
    use here (the host). Microcontrollers have one: their plans are single-threaded."""

    clock_mhz: int | None = Field(None, strict=True, gt=0)
    """The core's clock, in MHz: a microcontroller's instruction counts on its emulated board become time at this
    clock (elsewhere it is for people reading `tasobuild targets`)."""

    board: Board | None = None
    """Microcontrollers: the emulated board the program is linked for and run on (bare metal, semihosting)."""

    emulator: tuple[StrictStr, ...] = ()
    """Linux targets: the command that runs the target's programs here ("qemu-aarch64", "-L", sysroot)."""

    cc_package: StrictStr | None = None
    """The Debian packages that install the compiler and its C library (for `tasobuild targets`)."""

    emulator_package: StrictStr | None = None
    """The Debian package that installs the emulator (for `tasobuild targets`)."""


class Target(TargetFile):
    """A loaded target and the file it came from."""

    source: Path
    """The target TOML this was read from (for messages; not part of the digest)."""

    @property
    def cc_argv(self) -> list[str]:
        """The compiler command as argv: "zig cc" -> ["zig", "cc"]."""
        return shlex.split(self.cc)

    def canonical(self) -> dict[str, Any]:
        """The settings a plan depends on, sorted: what the lockfile records (not the file's location
        or its description, so moving the file or rewording it does not invalidate a lock)."""
        unset = set() if self.emulator else {"emulator"}  # so a target without one keeps its digest
        # a microcontroller's emulated costs are its counts at clock_mhz: there the clock is not documentation
        documentation = _DOCUMENTATION_ONLY - ({"clock_mhz"} if self.board is not None else set())
        settings = self.model_dump(mode="json", exclude={"source", "description", *documentation, *unset})
        return {key: settings[key] for key in sorted(settings) if settings[key] is not None}

    @property
    def digest(self) -> str:
        """sha256 hex of canonical()."""
        return _sha256_json(self.canonical())

    @property
    def emulator_argv(self) -> tuple[str, ...]:
        """The command that runs the target's program here, before the program's path: a microcontroller's board
        under qemu-system-arm with semihosting (the program's files are the current folder's), or `emulator`."""
        if self.board is not None:
            return ("qemu-system-arm", "-M", self.board.machine, "-nographic", "-semihosting-config",
                    "enable=on,target=native", "-kernel")
        return self.emulator


    @property
    def core_count(self) -> int:
        """`cores`, "auto" resolved: the CPUs this process may run on (at most MAX_THREADS)."""
        if self.cores != "auto":
            return self.cores
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # no sched_getaffinity (macOS)
            cpus = os.cpu_count() or 1
        return max(1, min(cpus, MAX_THREADS))


# Keys that only help people (install hints), and `cores`, which only bounds `[target] threads`: not part of what a
# plan depends on (the thread count a plan was made for is in the lock's [plan]).
_DOCUMENTATION_ONLY = {"clock_mhz", "cc_package", "emulator_package", "cores"}


def builtin_target_names() -> tuple[str, ...]:
    """Names of the built-in targets, sorted."""
    return tuple(sorted(path.stem for path in targets_dir().glob("*.toml")))


def load_target(name_or_path: str, spec_dir: Path, where: str | None = None) -> Target:
    """A built-in target by name ("host"), or a target TOML by path relative to `spec_dir`.
    `where` prefixes a bad name in messages: pass spec.where("target.name") ("taso.toml:9")."""
    key = f"{where}: target.name" if where else "target.name"
    if is_target_path(name_or_path):
        path = Path(os.path.normpath(Path(spec_dir) / name_or_path))
        if not path.is_file():
            raise UserError(f"{key}: target file {name_or_path!r} not found (looked for {printable(path)}; "
                            f"paths are relative to the spec file)")
    else:
        path = targets_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            raise UserError(f"{key}: {_unknown_target_message(name_or_path)}")
    document = read_toml(path, missing_hint="the target file is missing")
    data = {"name": path.stem, **document.data}
    target_file = validate_toml(TargetFile, data, document)
    if target_file.board is not None and target_file.cores != 1:
        raise UserError(f"{document.where(('cores',))}: cores: a microcontroller target (with a [board]) runs "
                        f"its plans on one core; remove cores or set it to 1")
    return Target(**dict(target_file), source=path)


def resolved_threads(spec: Spec, target: Target) -> int:
    """The threads the plan runs on: `[target] threads` ("auto": the target's cores), checked against the target."""
    threads = spec.target.threads
    cores = target.core_count
    if threads == "auto":
        return cores
    if threads > cores:
        if target.board is not None:
            why = "is a microcontroller: its plans run on one thread; remove target.threads"
        else:
            why = f"has {cores} core{'s' if cores != 1 else ''} (its `cores`); use at most {cores}, or \"auto\""
        raise UserError(f"{spec.where('target.threads')}: target.threads = {threads}, but target {target.name!r} "
                        f"{why}")
    return threads


def _unknown_target_message(name: str) -> str:
    names = builtin_target_names()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    suggestion = f"did you mean {close[0]!r}? " if close else ""
    return (f"unknown target {name!r}; {suggestion}built-in targets: {', '.join(names)} "
            f"(or give a path to a target TOML)")


# ---------------------------------------------------------------------------------------------
# Fingerprint.


@dataclass(frozen=True)
class Fingerprint:
    """What a measured cost and an emitted binary depend on besides the code itself."""

    cpu: str | None
    """CPU model kernels are timed on; None for a cross target (they are never timed here)."""
    machine: str | None
    """This machine's architecture ("x86_64", "aarch64"); None for a cross target."""
    compiler: str
    """First line of `cc --version`."""
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...]
    digest: str
    """sha256 hex of the canonical JSON of the fields above."""

    def as_dict(self) -> dict[str, Any]:
        """Sorted plain values, for the lockfile and --json."""
        fields = asdict(self)
        fields["cflags"], fields["ldflags"] = list(self.cflags), list(self.ldflags)
        return {key: fields[key] for key in sorted(fields)}


def host_fingerprint(target: Target) -> Fingerprint:
    """The fingerprint of `target` on this machine. Runs the compiler once per process."""
    try:
        compiler = version_text(tuple(target.cc_argv)).strip().splitlines()[0].strip()
    except CompilerProblem as problem:
        raise UserError(f"{target.source}: target {target.name!r}: compiler {target.cc!r} {problem}; "
                        f"install it or set cc in the target file") from None
    cpu = _cpu_model() if target.profile else None
    machine = (platform.machine() or "unknown") if target.profile else None
    fields = {"cpu": cpu, "machine": machine, "compiler": compiler,
              "cflags": list(target.cflags), "ldflags": list(target.ldflags)}
    return Fingerprint(cpu=cpu, machine=machine, compiler=compiler, cflags=target.cflags,
                       ldflags=target.ldflags, digest=_sha256_json(fields))


@functools.cache
def _cpu_model() -> str:
    if platform.system() == "Linux":
        try:
            model = cpu_model_from_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
        except OSError:
            model = None
        if model:
            return model
    if platform.system() == "Darwin":
        result = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_model_from_cpuinfo(text: str) -> str | None:
    """The CPU model named in /proc/cpuinfo text: x86 "model name"; Arm "model name" or "Hardware",
    plus implementer and part (Arm's model names are often generic, e.g. "ARMv7 Processor rev 4")."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon and value.strip():
            fields.setdefault(key.strip(), value.strip())  # first core's values
    name = fields.get("model name") or fields.get("Hardware") or fields.get("uarch")
    if "CPU part" in fields:
        part = f"implementer {fields.get('CPU implementer', '?')} part {fields['CPU part']}"
        name = f"{name} ({part})" if name else part
    return name


def _sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


__all__ = ["Board", "Fingerprint", "Target", "TargetFile", "builtin_target_names", "cpu_model_from_cpuinfo",
           "host_fingerprint", "load_target", "resolved_threads", "targets_dir"]
