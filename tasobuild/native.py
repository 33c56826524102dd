"""Run and time the C kernels from Python: the one copy of every kernel, compiled with the target's compiler and flags.

`load(cc, cflags)` builds (or finds in the cache) a Python extension holding every kernel, a C dispatch table and a C
timing loop, and returns `Kernels`, which runs or times a `KernelCall` on NumPy buffers. The principle: the code that
is profiled is the code that is shipped, compiled the same way.

Build, step by step (`_build`):
1. Parse the public kernel headers (tb_kernels.h and the headers it includes) for the parameter structs
   (`typedef struct { int a, b; float c; } tb_x;`) and the kernel prototypes
   (`void tb_f(const tb_x *p, const float *restrict a, ..., float *restrict out);`).
2. Generate tb_dispatch.c: per kernel a typed wrapper `call_tb_f(const void *params, float **bufs)` (no function
   pointer casts), a name -> wrapper table, and a clock_gettime(CLOCK_MONOTONIC) timing loop.
3. Cythonize _bindings.pyx under a module name unique to the build (two builds can live in one process).
4. Compile the kernels and the dispatch file with exactly `cc <cflags>`; compile the Cython glue with the same
   compiler (warning and language-standard flags dropped: it is generated code and never profiled); link.
The result lives in `<cache>/<digest>/`, the digest covering the kernel sources, `cc --version`, the flags and the
Python/NumPy/Cython ABI. A build happens in a temporary folder renamed into place under a file lock, so concurrent
processes never see or make a half-built cache entry.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Literal, Mapping, Sequence

import numpy as np

from tasobuild.errors import UserError
from tasobuild.primitives import KernelCall
from tasobuild.resources import kernels_dir

DEFAULT_CFLAGS: tuple[str, ...] = ("-O3", "-march=native", "-ffp-contract=off", "-std=c99")
MAX_BUFFERS = 16  # matches TB_DISPATCH_MAX_BUFFERS and the pointer arrays of _bindings.pyx
PUBLIC_HEADER = "tb_kernels.h"
BINDINGS_PYX = "_bindings.pyx"
WRITTEN_ROLES = ("out", "ws")  # the roles a kernel writes; they must not overlap any other buffer (restrict)

FieldType = Literal["int", "float"]


# ---------------------------------------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class StructDecl:
    """A parameter struct: fields in declaration order, each a 4-byte int or float."""

    name: str
    fields: tuple[tuple[str, FieldType], ...]

    @property
    def format(self) -> str:
        return "=" + "".join("i" if kind == "int" else "f" for _, kind in self.fields)


@dataclass(frozen=True)
class KernelDecl:
    """A kernel prototype: its parameter struct and its buffer parameters (name, const-ness) in C order."""

    name: str
    struct: str
    buffers: tuple[tuple[str, bool], ...]


_STRUCT_RE = re.compile(r"typedef\s+struct\s*\{([^{}]*)\}\s*(tb_\w+)\s*;")
_PROTO_RE = re.compile(r"^\s*void\s+(tb_\w+)\s*\(([^;{]*?)\)\s*;", re.MULTILINE)
_STRUCT_ARG_RE = re.compile(r"^const\s+(tb_\w+)\s*\*\s*\w+$")
_BUFFER_ARG_RE = re.compile(r"^(const\s+)?float\s*\*\s*restrict\s+(\w+)$")
_COMMENT_RE = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)
_DEFINITION_RE = re.compile(r"^void\s+(tb_\w+)\s*\([^;{]*\)\s*\{", re.MULTILINE)
_INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)


def public_headers(folder: Path) -> tuple[Path, ...]:
    """tb_kernels.h and the headers it includes: the kernel API (internal helper headers are not parsed)."""
    top = folder / PUBLIC_HEADER
    text = top.read_text()
    return (top,) + tuple(folder / name for name in _INCLUDE_RE.findall(text) if (folder / name).is_file())


def _parse_struct(body: str, name: str) -> StructDecl | None:
    fields: list[tuple[str, FieldType]] = []
    for decl in (" ".join(d.split()) for d in body.split(";")):
        if not decl:
            continue
        kind, _, names = decl.partition(" ")
        if kind not in ("int", "float") or "*" in names or "[" in names:
            return None  # not a plain parameter struct
        fields.extend((n.strip(), kind) for n in names.split(","))  # type: ignore[misc]
    return StructDecl(name, tuple(fields))


def defined_functions(sources: Sequence[Path]) -> frozenset[str]:
    """Names of the non-static `void tb_*(...) {` functions the C files define."""
    found: set[str] = set()
    for src in sources:
        found.update(_DEFINITION_RE.findall(_COMMENT_RE.sub(" ", src.read_text())))
    return frozenset(found)


def parse_headers(headers: Sequence[Path]) -> tuple[dict[str, StructDecl], dict[str, KernelDecl]]:
    """The parameter structs and kernel prototypes declared in `headers`."""
    structs: dict[str, StructDecl] = {}
    kernels: dict[str, KernelDecl] = {}
    for header in headers:
        text = _COMMENT_RE.sub(" ", header.read_text())
        for body, name in _STRUCT_RE.findall(text):
            decl = _parse_struct(body, name)
            if decl is not None:
                structs[name] = decl
        for name, arglist in _PROTO_RE.findall(text):
            args = [" ".join(a.split()) for a in arglist.split(",")]
            head = _STRUCT_ARG_RE.match(args[0])
            buffers = [_BUFFER_ARG_RE.match(a) for a in args[1:]]
            if head is None or not all(buffers):
                continue  # not of the kernel form
            kernels[name] = KernelDecl(name, head.group(1), tuple((m.group(2), bool(m.group(1))) for m in buffers if m))
    for k in kernels.values():
        if k.struct not in structs:
            raise ValueError(f"kernel {k.name}: parameter struct {k.struct} is not declared in the kernel headers")
        if len(k.buffers) > MAX_BUFFERS:
            raise ValueError(f"kernel {k.name}: {len(k.buffers)} buffers, the bindings take at most {MAX_BUFFERS}")
    return structs, kernels


def kernel_api(folder: Path) -> tuple[dict[str, StructDecl], dict[str, KernelDecl]]:
    """The structs and the kernels the bindings expose: declared in a public header and defined in a C file (a
    prototype whose definition is not written yet is left out rather than breaking every other kernel's build)."""
    structs, kernels = parse_headers(public_headers(folder))
    defined = defined_functions(sorted(folder.glob("*.c")))
    return structs, {name: k for name, k in kernels.items() if name in defined}


# ------------------------------------------------------------------------------------------------ code generation

_DISPATCH_H = f"""/* Generated by tasobuild/native.py: the kernel dispatch table seen by the Cython bindings. */
#ifndef TB_DISPATCH_H
#define TB_DISPATCH_H
#define TB_DISPATCH_MAX_BUFFERS {MAX_BUFFERS}
int tb_dispatch_count(void);
const char *tb_dispatch_name(int i);
const char *tb_dispatch_struct(int i);
int tb_dispatch_buffers(int i);
int tb_dispatch_params_size(int i);
/* Both return 0, or -1 when params_size is not sizeof the kernel's struct. */
int tb_dispatch_call(int i, const char *params, int params_size, float **bufs);
int tb_dispatch_bench(int i, const char *params, int params_size, float **bufs, int warmup, int reps,
                      double *seconds);
#endif
"""

_DISPATCH_TAIL = """
typedef struct {
    const char *name, *struct_name;
    int buffers, params_size;
    void (*call)(const void *params, float **bufs);
} tb_entry;

static const tb_entry tb_table[] = {
%s
};

int tb_dispatch_count(void) { return (int)(sizeof tb_table / sizeof tb_table[0]); }
const char *tb_dispatch_name(int i) { return tb_table[i].name; }
const char *tb_dispatch_struct(int i) { return tb_table[i].struct_name; }
int tb_dispatch_buffers(int i) { return tb_table[i].buffers; }
int tb_dispatch_params_size(int i) { return tb_table[i].params_size; }

/* The parameters are copied into aligned storage: the caller's bytes need not be aligned for the struct. */
typedef union { double align; char bytes[512]; } tb_params;

static int tb_copy_params(int i, const char *params, int params_size, tb_params *dst)
{
    if (params_size != tb_table[i].params_size || params_size > (int)sizeof dst->bytes) return -1;
    memcpy(dst->bytes, params, (size_t)params_size);
    return 0;
}

int tb_dispatch_call(int i, const char *params, int params_size, float **bufs)
{
    tb_params p;
    if (tb_copy_params(i, params, params_size, &p) != 0) return -1;
    tb_table[i].call(p.bytes, bufs);
    return 0;
}

static double tb_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int tb_dispatch_bench(int i, const char *params, int params_size, float **bufs, int warmup, int reps,
                      double *seconds)
{
    tb_params p;
    if (tb_copy_params(i, params, params_size, &p) != 0) return -1;
    for (int r = 0; r < warmup; ++r) tb_table[i].call(p.bytes, bufs);
    for (int r = 0; r < reps; ++r) {
        double t0 = tb_now();
        tb_table[i].call(p.bytes, bufs);
        seconds[r] = tb_now() - t0;
    }
    return 0;
}
"""


def dispatch_source(structs: Mapping[str, StructDecl], kernels: Mapping[str, KernelDecl]) -> str:
    """tb_dispatch.c: a typed wrapper per kernel, the name -> wrapper table, and the timing loop."""
    lines = [
        "/* Generated by tasobuild/native.py from the kernel headers. Do not edit. */",
        "#define _POSIX_C_SOURCE 199309L /* clock_gettime */",
        "#include <string.h>",
        "#include <time.h>",
        f'#include "{PUBLIC_HEADER}"',
        '#include "tb_dispatch.h"',
        "",
    ]
    for k in sorted(kernels.values(), key=lambda k: k.name):
        args = ", ".join([f"(const {k.struct} *)params"] + [f"bufs[{i}]" for i in range(len(k.buffers))])
        lines.append(f"static void call_{k.name}(const void *params, float **bufs) {{ {k.name}({args}); }}")
    rows = [f'    {{"{k.name}", "{k.struct}", {len(k.buffers)}, (int)sizeof({k.struct}), call_{k.name}}},'
            for k in sorted(kernels.values(), key=lambda k: k.name)]
    return "\n".join(lines) + "\n" + _DISPATCH_TAIL % "\n".join(rows)


# ------------------------------------------------------------------------------------------------------- building


def source_files(folder: Path) -> tuple[Path, ...]:
    """Every file the build depends on: kernel C sources, headers and the Cython bindings, sorted."""
    return tuple(sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".c", ".h", ".pyx")))


def _compiler_identity(cc: str) -> str:
    path = shutil.which(cc)
    if path is None:
        raise UserError(f"compiler {cc!r} not found on PATH: install it or set the target's compiler")
    done = subprocess.run([path, "--version"], capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"compiler {cc!r} failed to report its version: {_first_error_line(done.stderr)}")
    return done.stdout


def build_digest(cc: str, cflags: Sequence[str], folder: Path) -> str:
    """Digest of everything that determines the built extension."""
    h = hashlib.sha256()
    for part in (cc, _compiler_identity(cc), "\0".join(cflags), sys.version, sysconfig.get_config_var("EXT_SUFFIX"),
                 np.__version__, _cython_version()):
        h.update(str(part).encode() + b"\0\1")
    for path in source_files(folder):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0\1")
    return h.hexdigest()


def _cython_version() -> str:
    import Cython

    return Cython.__version__


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


def _build(cc: str, cflags: Sequence[str], folder: Path, module: str, out: Path) -> None:
    """Build the extension `module` into the (empty) folder `out`."""
    structs, kernels = kernel_api(folder)
    (out / "tb_dispatch.h").write_text(_DISPATCH_H)
    (out / "tb_dispatch.c").write_text(dispatch_source(structs, kernels))
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
    _finish(_start([cc, *cflags, "-shared", *link_extra, "-o", module + ext, f"{module}.o", *kernel_objs, "-lm"], out),
            "linking the kernel bindings", cc, cflags)


def default_cache_dir() -> Path:
    env = os.environ.get("TASOBUILD_CACHE_DIR")
    if env:
        return Path(env) / "bindings"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("tasobuild")) / "bindings"


# ------------------------------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Kernels:
    """Every kernel, compiled with one compiler and flag set, callable on NumPy float32 buffers."""

    cc: str
    cflags: tuple[str, ...]
    digest: str
    path: Path  # the extension module file
    compiled: bool  # True when this load compiled it, False when it came from the cache
    build_seconds: float  # how long the compile took (0.0 for a cache hit)
    structs: Mapping[str, StructDecl] = field(repr=False)
    kernels: Mapping[str, KernelDecl] = field(repr=False)
    module: ModuleType = field(repr=False, compare=False)

    def functions(self) -> tuple[str, ...]:
        return tuple(sorted(self.kernels))

    def struct_size(self, struct_name: str) -> int:
        """sizeof(struct) as the compiler laid it out."""
        for sname, _, size in self.module.kernels().values():
            if sname == struct_name:
                return int(size)
        raise KeyError(f"no kernel takes struct {struct_name}")

    def pack(self, call: KernelCall) -> bytes:
        """The call's parameter struct as bytes, checked field by field against the C declaration."""
        decl = self.structs.get(call.struct)
        if decl is None:
            raise ValueError(f"{call.function}: unknown parameter struct {call.struct}")
        names = tuple(k for k, _ in call.params)
        if names != tuple(n for n, _ in decl.fields):
            raise ValueError(f"{call.function}: params {names} do not match {call.struct} fields "
                             f"{tuple(n for n, _ in decl.fields)}")
        values: list[int | float] = []
        for (name, kind), (_, value) in zip(decl.fields, call.params):
            if kind == "int":
                if isinstance(value, float) or not isinstance(value, (int, np.integer)):
                    raise ValueError(f"{call.function}: {call.struct}.{name} is an int, got {value!r}")
                values.append(int(value))
            else:
                values.append(float(value))
        packed = struct.pack(decl.format, *values)
        size = self.struct_size(call.struct)
        if len(packed) != size:
            raise AssertionError(f"{call.struct}: packed {len(packed)} bytes but sizeof is {size}")
        return packed

    def _arrays(self, call: KernelCall, buffers: Mapping[str, np.ndarray]) -> list[np.ndarray | None]:
        kernel = self.kernels.get(call.function)
        if kernel is None:
            raise ValueError(f"no kernel {call.function} in the bindings (is its prototype in a kernel header?)")
        if kernel.struct != call.struct:
            raise ValueError(f"{call.function} takes {kernel.struct}, the call gives {call.struct}")
        if len(call.args) != len(kernel.buffers):
            raise ValueError(f"{call.function} takes {len(kernel.buffers)} buffers, the call names {call.args}")
        needed = dict(call.buffer_bytes)
        arrays: list[np.ndarray | None] = []
        for role in call.args:
            array = buffers.get(role)
            if array is None:
                if needed.get(role, 0) != 0:
                    raise ValueError(f"{call.function}: no buffer for role {role!r}")
                arrays.append(None)
                continue
            if array.dtype != np.float32 or not array.flags.c_contiguous:
                raise ValueError(f"{call.function}: buffer {role!r} must be C-contiguous float32")
            if array.nbytes < needed.get(role, 0):
                raise ValueError(f"{call.function}: buffer {role!r} has {array.nbytes} bytes, needs {needed[role]}")
            if role in WRITTEN_ROLES and not array.flags.writeable:
                raise ValueError(f"{call.function}: buffer {role!r} is read-only")
            arrays.append(array)
        for role, array in zip(call.args, arrays):
            if role in WRITTEN_ROLES and array is not None:
                for other, other_array in zip(call.args, arrays):
                    if other != role and other_array is not None and np.may_share_memory(array, other_array):
                        raise ValueError(f"{call.function}: buffer {role!r} overlaps {other!r} (restrict)")
        return arrays

    def run(self, call: KernelCall, buffers: Mapping[str, np.ndarray]) -> None:
        """Make the call once; outputs are written into the given arrays."""
        self.module.run(call.function, self.pack(call), self._arrays(call, buffers))

    def bench(self, call: KernelCall, buffers: Mapping[str, np.ndarray], warmup: int = 3, reps: int = 10) -> np.ndarray:
        """Seconds of each of `reps` timed calls (after `warmup` untimed ones), measured in C."""
        return self.module.bench(call.function, self.pack(call), self._arrays(call, buffers), warmup, reps)


_LOADED: dict[tuple[str, str], Kernels] = {}


def _import(module: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module, path)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot load the kernel bindings {path}: delete the folder and retry")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load(cc: str = "cc", cflags: Sequence[str] = DEFAULT_CFLAGS, cache_dir: Path | None = None) -> Kernels:
    """The kernels compiled with `cc` and `cflags`: from the cache when built before, else built now (and cached)."""
    from filelock import FileLock

    folder = kernels_dir()
    flags = tuple(cflags)
    digest = build_digest(cc, flags, folder)
    root = (cache_dir if cache_dir is not None else default_cache_dir()).resolve()
    key = (digest, str(root))
    if key in _LOADED:
        return _LOADED[key]
    module = f"tb_bindings_{digest[:16]}"
    final = root / digest
    binary = final / (module + sysconfig.get_config_var("EXT_SUFFIX"))
    root.mkdir(parents=True, exist_ok=True)
    compiled, seconds = False, 0.0
    with FileLock(str(root / f"{digest}.lock")):
        if not binary.is_file():
            if final.exists():  # a broken entry (e.g. deleted files): rebuild it
                shutil.rmtree(final)
            tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
            try:
                start = time.perf_counter()
                _build(cc, flags, folder, module, tmp)
                seconds = time.perf_counter() - start
                (tmp / "build.json").write_text(json.dumps(
                    {"cc": cc, "cflags": list(flags), "seconds": round(seconds, 3)}, indent=1, sort_keys=True))
                os.rename(tmp, final)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            compiled = True
    structs, kernels = kernel_api(folder)
    kernels_obj = Kernels(cc, flags, digest, binary, compiled, seconds, structs, kernels, _import(module, binary))
    _LOADED[key] = kernels_obj
    return kernels_obj
