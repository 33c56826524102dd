"""Building the bindings extension (steps 3 and 4 of the build) and the digest that names a build in the cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tasobuild.digest import files_digest
from tasobuild.errors import UserError
from tasobuild.native.dispatch import DISPATCH_H, dispatch_source
from tasobuild.native.headers import kernel_api
from tasobuild.resources import cache_dir
from tasobuild.toolchain import CompilerProblem, version_text

BINDINGS_PYX = "_bindings.pyx"


def source_files(folder: Path) -> tuple[Path, ...]:
    """Every file the build depends on: kernel C sources, headers and the Cython bindings, sorted."""
    return tuple(sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".c", ".h", ".pyx")))


def _compiler_identity(cc: str) -> str:
    if shutil.which(cc) is None:
        raise UserError(f"compiler {cc!r} not found on PATH: install it or set the target's compiler")
    try:
        return version_text((cc,))
    except CompilerProblem as problem:
        raise UserError(f"compiler {cc!r} failed to report its version: {problem}") from None


def generated_sources(folder: Path) -> dict[str, str]:
    """The files build_extension generates next to the kernel sources: the dispatch table and its header."""
    structs, kernels = kernel_api(folder)
    return {"tb_dispatch.h": DISPATCH_H, "tb_dispatch.c": dispatch_source(structs, kernels)}


def build_digest(cc: str, cflags: Sequence[str], folder: Path) -> str:
    """Digest of everything that determines the built extension: toolchain, flags, the kernel sources and the
    generated dispatch code (a change to its generator alone must rebuild too)."""
    h = hashlib.sha256()
    for part in (cc, _compiler_identity(cc), "\0".join(cflags), sys.version, sysconfig.get_config_var("EXT_SUFFIX"),
                 np.__version__, _cython_version()):
        h.update(str(part).encode() + b"\0\1")
    sources = [(path.name, path.read_bytes()) for path in source_files(folder)]
    generated = [(name, text.encode()) for name, text in sorted(generated_sources(folder).items())]
    h.update(files_digest(sources + generated).encode())
    return h.hexdigest()


def _cython_version() -> str:
    import Cython

    return str(getattr(Cython, "__version__", "unknown"))


def _first_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower():
            return line
    return lines[0] if lines else "(no output)"


def _glue_flags(cflags: Sequence[str]) -> list[str]:
    """Flags for the generated Cython C: the target's minus optimisation level, warnings and language standard
    (generated code would trip them; it is never profiled: the timing loop is in tb_dispatch.c), at -O1."""
    dropped = ("-O", "-W", "-std=", "-pedantic", "-ansi")
    return [f for f in cflags if not f.startswith(dropped) or f.startswith("-Wl,")] + ["-O1"]


def _start(cmd: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen[str], what: str, cc: str, cflags: Sequence[str]) -> None:
    output, _ = proc.communicate()
    if proc.returncode != 0:
        raise UserError(f"{what} with {cc} {' '.join(cflags)} failed: {_first_error_line(output)}")


def build_extension(cc: str, cflags: Sequence[str], folder: Path, module: str, out: Path) -> None:
    """Build the extension `module` into the (empty) folder `out`."""
    for name, text in generated_sources(folder).items():
        (out / name).write_text(text)
    shutil.copyfile(folder / BINDINGS_PYX, out / f"{module}.pyx")
    cython = subprocess.run([sys.executable, "-m", "cython", "-3", f"{module}.pyx", "-o", f"{module}.c"],
                            cwd=out, capture_output=True, text=True)
    if cython.returncode != 0:
        raise UserError(f"cythonizing {BINDINGS_PYX} failed: {_first_error_line(cython.stderr + cython.stdout)}")
    includes = [f"-I{folder}", f"-I{out}"]
    py_includes = [f"-I{sysconfig.get_paths()['include']}", f"-I{np.get_include()}"]
    glue = _start([cc, *_glue_flags(cflags), "-fPIC", *includes, *py_includes,
                   "-DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION", "-c", f"{module}.c", "-o", f"{module}.o"], out)
    sources = sorted(folder.glob("*.c")) + [out / "tb_dispatch.c"]
    kernel_objs = [src.stem + ".o" for src in sources]
    running: list[tuple[subprocess.Popen[str], str]] = []
    try:
        # one compiler per core (the glue, started first, takes one)
        for src, obj in zip(sources, kernel_objs):
            if len(running) + 1 >= max(2, os.cpu_count() or 1):
                _finish(*running.pop(0), cc, cflags)
            running.append((_start([cc, *cflags, "-fPIC", *includes, "-c", str(src), "-o", obj], out),
                            f"compiling {src.name}"))
        while running:
            _finish(*running.pop(0), cc, cflags)
    finally:
        for proc, _ in running:
            proc.kill()
            proc.communicate()
        glue_output, _ = glue.communicate()
    if glue.returncode != 0:
        raise UserError(f"compiling the Cython bindings with {cc} failed: {_first_error_line(glue_output)}")
    link_extra = ["-undefined", "dynamic_lookup"] if sys.platform == "darwin" else []
    ext = sysconfig.get_config_var("EXT_SUFFIX")
    _finish(_start([cc, *cflags, "-shared", *link_extra, "-o", module + ext, f"{module}.o", *kernel_objs, "-lm",
                    "-pthread"], out),
            "linking the kernel bindings", cc, cflags)


def bindings_dir() -> Path:
    """Where compiled bindings are kept, one folder per build_digest."""
    return cache_dir() / "bindings"
