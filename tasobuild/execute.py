"""The emitted project, built if needed and compiled with its own Makefile, and its program run here: natively on
the host, under qemu-user for a Linux board (`emulator` in the target file), or on the emulated board for a
microcontroller (`make run`: in.bin and out.bin in the project folder, through semihosting).

What `verify` and per-layer profiling share; every failure is a one-line user error naming the project or tool.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasobuild.errors import UserError
from tasobuild.spec import Spec
from tasobuild.target import Target
from tasobuild.text import terminal_text

RUN_TIMEOUT_S = 1800  # a big network under qemu-system-arm takes minutes; a hung program is not waited on forever


@dataclass(frozen=True)
class Project:
    """A built project: its spec and target, and where its files and its lock are."""

    spec: Spec
    target: Target
    lock_path: Path

    @property
    def out_dir(self) -> Path:
        return self.spec.out_dir

    @property
    def name(self) -> str:
        return self.spec.project.name

    @property
    def emulated(self) -> bool:
        """Whether the program runs under an emulator here (its times are the emulator's, not the device's)."""
        return bool(self.target.emulator_argv)


def built(config: Path, overrides: Mapping[str, str] | None = None, progress: bool = False,
          build_first: bool = True) -> Project:
    """The project of the spec at `config`, built first if anything changed, exactly as `tasobuild build` builds it
    (the fast no-op answer, else the build transaction). `build_first` False: the tree as it is, even edited."""
    from tasobuild.incremental.noop import fast_up_to_date
    from tasobuild.incremental.transaction import Options, build, lock_path_of
    from tasobuild.pipeline import load_settings

    overrides = dict(overrides or {})
    if build_first and fast_up_to_date(config, overrides, False) is None:
        build(Options(config, overrides, progress=progress))
    spec, target = load_settings(config, overrides)
    lock_path = lock_path_of(spec)
    if not build_first and not (lock_path.is_file() and (spec.out_dir / "Makefile").is_file()):
        raise UserError(f"{spec.out_dir}: no built project there (or no {lock_path.name}); run `tasobuild build` "
                        f"first, or leave out --no-build")
    return Project(spec, target, lock_path)


def _tool(argv0: str, what: str, package: str | None, target: Target) -> None:
    if shutil.which(argv0) is None:
        install = f"apt-get install {package}" if package else "install it"
        raise UserError(f"{target.source}: target {target.name!r}: {what} {argv0!r} not found; {install}")


def compile_project(project: Project, goal: str = "all") -> None:
    """`make <goal>` in the project folder, with the Makefile's own compiler and flags."""
    _tool("make", "make", "make", project.target)
    _tool(project.target.cc_argv[0], "compiler", project.target.cc_package, project.target)
    done = _run(["make", "-s", "-j2", "-C", str(project.out_dir), goal], f"`make {goal}` in {project.out_dir}")
    if done.returncode != 0:
        raise UserError(f"{project.out_dir}: `make {goal}` failed (exit {done.returncode}): "
                        f"{_first_error(done.stderr)}")


def run_program(project: Project, x: np.ndarray | Sequence[np.ndarray], options: Sequence[str] = (),
                binary: str | None = None, outputs: int = 1) -> tuple[np.ndarray, str]:
    """The program's output (float32, flat, ONNX layout; with several outputs, one after another) for input `x` (an
    array per input, or the one input), and what it printed on stdout. `binary`: the hosted program to run (default
    `<name>_main`); `options` follow the files (one per input, then one per output, as the runner takes them)."""
    xs = [x] if isinstance(x, np.ndarray) else list(x)
    xs = [np.ascontiguousarray(a, dtype="<f4") for a in xs]
    if project.target.board is not None:
        if options:
            raise UserError(f"{project.target.source}: target {project.target.name!r} is a microcontroller: its "
                            f"program takes no options (it runs once, under `make run`)")
        return _run_on_board(project, np.concatenate([a.reshape(-1) for a in xs]))
    argv_prefix = list(project.target.emulator_argv)
    if argv_prefix:
        _tool(argv_prefix[0], "emulator", project.target.emulator_package, project.target)
    program = project.out_dir / (binary or f"{project.name}_main")
    with tempfile.TemporaryDirectory(prefix="tasobuild-run-") as scratch:
        ins = [Path(scratch) / f"in{k}.bin" for k in range(len(xs))]
        outs = [Path(scratch) / f"out{k}.bin" for k in range(outputs)]
        for a, path in zip(xs, ins):
            a.tofile(path)
        done = _run([*argv_prefix, str(program), *map(str, ins), *map(str, outs), *options], str(program))
        if done.returncode != 0:
            raise UserError(f"{program}: exited {done.returncode}: {_first_error(done.stderr)}")
        return np.concatenate([np.fromfile(out, dtype="<f4") for out in outs]), done.stdout


def _run_on_board(project: Project, x: np.ndarray) -> tuple[np.ndarray, str]:
    """What a user of a microcontroller project does: in.bin in the project folder, `make run`, out.bin back."""
    _tool(project.target.emulator_argv[0], "emulator", project.target.emulator_package, project.target)
    inp, out = project.out_dir / "in.bin", project.out_dir / "out.bin"
    out.unlink(missing_ok=True)
    x.tofile(inp)
    done = _run(["make", "-s", "-C", str(project.out_dir), "run"], f"`make run` in {project.out_dir}")
    if done.returncode != 0 or not out.is_file():
        raise UserError(f"{project.out_dir}: `make run` failed (exit {done.returncode}): "
                        f"{_first_error(done.stdout + done.stderr)}")
    return np.fromfile(out, dtype="<f4"), done.stdout


def _run(argv: list[str], what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserError(f"{what}: still running after {RUN_TIMEOUT_S} s; stopped it") from None
    except OSError as error:
        raise UserError(f"{what}: cannot run {argv[0]!r} ({error.strerror})") from None


def _first_error(text: str) -> str:
    """The line of a tool's output that says what went wrong: the first naming an error, else the last."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "no message"
    chosen = next((line for line in lines if "error" in line.lower()), lines[-1])
    return terminal_text(chosen)  # a compiler quotes the source, and a model's names are in it


def scratch_input(shape: Sequence[int], seed: int) -> np.ndarray:
    """The seeded random input: standard-normal float32 of `shape` from `np.random.default_rng(seed)`."""
    return np.random.default_rng(seed).standard_normal(tuple(shape)).astype(np.float32)
