"""A standalone C program (a check or a counting bench) built for an Arm target with the target's own compiler and
flags, and run under its emulator: qemu-user for the Linux boards; for the microcontrollers, the emulated board,
linked with the emitted projects' startup code, semihosting calls and the board's linker script (as the emulated
cost harness is), the program's text on QEMU's stderr and its exit status QEMU's."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tasobuild.costs.emulated import board_of, linker_script
from tasobuild.emit.render_bare_metal import render_semihosting, render_startup
from tasobuild.resources import kernels_dir
from tasobuild.target import Target, load_target

REPO = Path(__file__).resolve().parent.parent
# Defined when the program runs bare metal: it writes through semihosting.h rather than stdio.
BARE_METAL_DEFINE = "-DTB_CHECK_BARE_METAL"


@dataclass(frozen=True)
class ArmBuild:
    """A target's compiler and flags, some flags replaced (another core of the same architecture), and options for
    its emulator (after the emulator's name: `-cpu max` for a newer core under qemu-user, -icount on a board)."""

    target: Target
    replaced: Mapping[str, str] = field(default_factory=dict)
    emulator_options: tuple[str, ...] = ()

    @property
    def cflags(self) -> tuple[str, ...]:
        return tuple(self.replaced.get(f, f) for f in self.target.cflags)

    @property
    def bare_metal(self) -> bool:
        return self.target.board is not None


def arm_build(target_name: str, replaced: Mapping[str, str] | None = None,
              emulator_options: Sequence[str] = ()) -> ArmBuild:
    return ArmBuild(load_target(target_name, REPO), dict(replaced or {}), tuple(emulator_options))


def compile_program(build: ArmBuild, sources: Sequence[Path], work: Path, flags: Sequence[str] = (),
                    assembly: bool = False) -> Path:
    """The program (or with `assembly`, the first source's assembly) in `work`, compiled with the kernels folder
    on the include path; raises with the compiler's output on any error."""
    t = build.target
    argv = [*t.cc_argv, *build.cflags, *flags, *([BARE_METAL_DEFINE] if build.bare_metal else []),
            "-I", str(kernels_dir()), "-I", "."]
    if build.bare_metal:
        board = board_of(t)
        assert board is not None, f"{t.name}: a board with a clock, flash and RAM"
        (work / "startup.c").write_text(render_startup())
        (work / "semihosting.h").write_text(render_semihosting())
        (work / "program.ld").write_text(linker_script(board))
    if assembly:
        out = work / (sources[0].stem + ".s")
        argv += ["-S", "-o", str(out), str(sources[0])]
    elif build.bare_metal:
        out = work / "program.elf"
        argv += ["-nostartfiles", "-T", "program.ld", "-o", str(out), *map(str, sources),
                 "startup.c", *t.ldflags]
    else:
        out = work / "program"
        argv += ["-o", str(out), *map(str, sources), *t.ldflags]
    done = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or done.stderr.strip():
        raise AssertionError(f"{' '.join(argv)}: exit {done.returncode}\n{done.stderr[-4000:]}")
    return out


def run_program(build: ArmBuild, program: Path, work: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """The program run in `work` under the target's emulator: its text on stdout (qemu-user) or stderr (the board's
    semihosting console), its exit status."""
    emulator, *options = build.target.emulator_argv
    return subprocess.run([emulator, *build.emulator_options, *options, str(program)], cwd=work, capture_output=True,
                          text=True, timeout=timeout)
