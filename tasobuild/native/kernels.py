"""`Kernels`: every kernel of one build, run or timed on NumPy buffers; `load` finds or makes the build."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import sysconfig
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from tasobuild.errors import UserError
from tasobuild.native.compile import bindings_dir, build_digest, build_extension
from tasobuild.native.headers import KernelDecl, StructDecl, kernel_api
from tasobuild.primitives import KernelCall
from tasobuild.primitives.parallel import buffer_bytes, part_call, part_offsets
from tasobuild.progress import activity
from tasobuild.resources import kernels_dir

DEFAULT_CFLAGS: tuple[str, ...] = ("-O3", "-march=native", "-ffp-contract=off", "-std=c99")
WRITTEN_ROLES = ("out", "ws")  # the roles a kernel writes; they must not overlap any other buffer (restrict)


# Trailing struct fields a call may leave out: 0, as the emitted call's designated initializer leaves them
# (tb_conv's and tb_pool's out_ps: a dense output), so adding them changed no existing call or its cost key.
OPTIONAL_FIELDS = frozenset({"out_ps"})


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
        omitted = tuple(n for n, _ in decl.fields[len(names):])
        if names != tuple(n for n, _ in decl.fields[:len(names)]) or not set(omitted) <= OPTIONAL_FIELDS:
            raise ValueError(f"{call.function}: params {names} do not match {call.struct} fields "
                             f"{tuple(n for n, _ in decl.fields)}")
        params = call.params + tuple((n, 0) for n in omitted)
        values: list[int | float] = []
        for (name, kind), (_, value) in zip(decl.fields, params):
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
        needed = buffer_bytes(call)  # a split call: every part's workspace slice
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
        """Make the call once; outputs are written into the given arrays. A call split over threads runs its parts
        one after another here, each on its buffers' part (bench runs them at once)."""
        arrays = self._arrays(call, buffers)
        if call.parts == 1:
            self.module.run(call.function, self.pack(call), arrays)
            return
        for k in range(call.parts):
            part = [a if a is None or not offset else a.reshape(-1)[offset:]
                    for a, offset in zip(arrays, part_offsets(call, k), strict=True)]
            view = part_call(call, k)  # the call itself on a view, or a split wrapper's (parallel.WRAPPED)
            self.module.run(view.function, self.pack(view), part)

    def bench(self, call: KernelCall, buffers: Mapping[str, np.ndarray], warmup: int = 3, reps: int = 10) -> np.ndarray:
        """Seconds of each of `reps` timed calls (after `warmup` untimed ones), measured in C. A call split over
        threads runs its parts at once on the thread pool the emitted program uses: the wall time of all parts."""
        if call.parts > 1:
            packed = b"".join(self.pack(part_call(call, k)) for k in range(call.parts))
            offsets = [part_offsets(call, k) for k in range(call.parts)]
            split: np.ndarray = self.module.bench_parallel(part_call(call, 0).function, packed, call.parts,
                                                           self._arrays(call, buffers), offsets, warmup, reps)
            return split
        seconds: np.ndarray = self.module.bench(call.function, self.pack(call), self._arrays(call, buffers), warmup,
                                                reps)
        return seconds

    def bench_sequence(self, calls: Sequence[KernelCall], buffers: Sequence[Mapping[str, np.ndarray]],
                       warmup: int = 3, reps: int = 10) -> np.ndarray:
        """Seconds of each of `reps` timed passes over the calls made one after another, each on its buffers (a
        fused group's calls as the program makes them: whatever one leaves in the caches, the next finds)."""
        if any(call.parts > 1 for call in calls):
            raise ValueError("bench_sequence: a call split over threads")
        arrays = [self._arrays(call, b) for call, b in zip(calls, buffers, strict=True)]
        seconds: np.ndarray = self.module.bench_sequence([c.function for c in calls], [self.pack(c) for c in calls],
                                                         arrays, warmup, reps)
        return seconds


_LOADED: dict[tuple[str, str], Kernels] = {}


def _import(module: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module, path)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot load the kernel bindings {path}: delete the folder and retry")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load(cc: str = "cc", cflags: Sequence[str] = DEFAULT_CFLAGS, cache_dir: Path | None = None,
         folder: Path | None = None, progress: bool = False) -> Kernels:
    """The kernels compiled with `cc` and `cflags`: from the cache when built before, else built now (and cached).
    `folder` holds the kernel sources (default: tasobuild's own; bench/kernel_ab.py loads an older copy beside them).
    `progress`: say on stderr what is happening while they compile (it takes tens of seconds)."""
    from filelock import FileLock

    folder = kernels_dir() if folder is None else folder
    flags = tuple(cflags)
    digest = build_digest(cc, flags, folder)
    root = (cache_dir if cache_dir is not None else bindings_dir()).resolve()
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
                with activity(f"compiling the kernel bindings with {cc} {' '.join(flags)} (once per compiler "
                              f"and flags)", progress):
                    build_extension(cc, flags, folder, module, tmp)
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
