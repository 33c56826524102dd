"""Run and time the C kernels from Python: the one copy of every kernel, compiled with the target's compiler and flags.

`load(cc, cflags)` builds (or finds in the cache) a Python extension holding every kernel, a C dispatch table and a C
timing loop, and returns `Kernels`, which runs or times a `KernelCall` on NumPy buffers. The principle: the code that
is profiled is the code that is shipped, compiled the same way.

Build, step by step (headers.py, dispatch.py, compile.py; `kernels.load` caches the result):
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

from tasobuild.native.compile import bindings_dir, build_digest, source_files
from tasobuild.native.dispatch import dispatch_source
from tasobuild.native.headers import KernelDecl, StructDecl, kernel_api, parse_headers, public_headers
from tasobuild.native.kernels import DEFAULT_CFLAGS, WRITTEN_ROLES, Kernels, load

__all__ = ["DEFAULT_CFLAGS", "WRITTEN_ROLES", "KernelDecl", "Kernels", "StructDecl", "build_digest",
           "bindings_dir", "dispatch_source", "kernel_api", "load", "parse_headers", "public_headers",
           "source_files"]
