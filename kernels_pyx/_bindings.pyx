# cython: language_level=3, boundscheck=False, wraparound=False
"""Python bindings of the kernels: run or time any kernel by name through the generated C dispatch table.

Built at run time by tasobuild/native.py (which copies this file to a module name unique to the build, generates
tb_dispatch.h/.c from the kernel headers, and checks every buffer and parameter struct before calling here).
"""

cimport numpy as cnp
import numpy as np

cnp.import_array()

cdef extern from "tb_dispatch.h":
    int TB_DISPATCH_MAX_BUFFERS
    int tb_dispatch_count()
    const char *tb_dispatch_name(int i)
    const char *tb_dispatch_struct(int i)
    int tb_dispatch_buffers(int i)
    int tb_dispatch_params_size(int i)
    int tb_dispatch_call(int i, const char *params, int params_size, float **bufs) nogil
    int tb_dispatch_bench(int i, const char *params, int params_size, float **bufs, int warmup, int reps,
                          double *seconds) nogil
    int tb_dispatch_bench_parallel(int i, const char *params, int params_size, int parts, float **bufs,
                                   const long *offsets, int warmup, int reps, double *seconds) nogil
    int tb_dispatch_bench_sequence(int n, const int *index, const char *params, const int *params_at,
                                   const int *params_size, float **bufs, int warmup, int reps,
                                   double *seconds) nogil


def kernels():
    """{function name: (struct name, number of buffers, sizeof(struct))} for every kernel in the table."""
    return {tb_dispatch_name(i).decode(): (tb_dispatch_struct(i).decode(), tb_dispatch_buffers(i),
                                           tb_dispatch_params_size(i))
            for i in range(tb_dispatch_count())}


_INDEX = {tb_dispatch_name(i).decode(): i for i in range(tb_dispatch_count())}


cdef int _pointers(str name, list arrays, float **bufs) except -1:
    cdef int i = _INDEX[name]
    cdef cnp.ndarray a
    if len(arrays) != tb_dispatch_buffers(i) or len(arrays) > TB_DISPATCH_MAX_BUFFERS:
        raise ValueError(f"{name} takes {tb_dispatch_buffers(i)} buffers, got {len(arrays)}")
    for k, obj in enumerate(arrays):
        if obj is None:
            bufs[k] = NULL
            continue
        a = obj
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise ValueError(f"{name}: buffer {k} must be C-contiguous float32")
        bufs[k] = <float *>cnp.PyArray_DATA(a)
    return i


def run(str name, bytes params, list arrays):
    """Call kernel `name` once with the packed parameter struct and its buffers (float32 arrays or None)."""
    cdef float *bufs[16]
    cdef int i = _pointers(name, arrays, bufs)
    cdef const char *p = params
    cdef int n = len(params), status
    with nogil:
        status = tb_dispatch_call(i, p, n, bufs)
    if status != 0:
        raise ValueError(f"{name}: parameter struct is {tb_dispatch_params_size(i)} bytes, got {n}")


def bench(str name, bytes params, list arrays, int warmup, int reps):
    """Run `warmup` untimed calls, then `reps` timed ones: returns each timed call's seconds (float64 array)."""
    cdef float *bufs[16]
    cdef int i = _pointers(name, arrays, bufs)
    cdef const char *p = params
    cdef int n = len(params), status
    if reps < 1 or warmup < 0:
        raise ValueError(f"bench {name}: need reps >= 1 and warmup >= 0, got {reps}, {warmup}")
    seconds = np.zeros(reps, dtype=np.float64)
    cdef double[::1] out = seconds
    with nogil:
        status = tb_dispatch_bench(i, p, n, bufs, warmup, reps, &out[0])
    if status != 0:
        raise ValueError(f"{name}: parameter struct is {tb_dispatch_params_size(i)} bytes, got {n}")
    return seconds


def bench_parallel(str name, bytes params, int parts, list arrays, offsets, int warmup, int reps):
    """bench() of a call split over `parts` threads: `params` holds the parts' structs one after another, part k's
    buffer b starts offsets[k][b] floats further (an int array, parts x buffers); each time is one parallel step,
    all parts."""
    cdef float *bufs[16]
    cdef int i = _pointers(name, arrays, bufs)
    cdef const char *p = params
    cdef int n = len(params) // max(parts, 1), status
    table = np.ascontiguousarray(offsets, dtype=np.dtype("l")).reshape(-1)
    cdef long[::1] offs = table
    if reps < 1 or warmup < 0 or parts < 1 or n * parts != len(params) or table.size != parts * len(arrays):
        raise ValueError(f"bench_parallel {name}: bad reps, warmup, parts, parameter bytes or offsets")
    for k, obj in enumerate(arrays):  # every part's buffer inside its array
        if obj is not None and any(table[j * len(arrays) + k] < 0 or (table[j * len(arrays) + k] > 0
                                   and table[j * len(arrays) + k] >= obj.size) for j in range(parts)):
            raise ValueError(f"bench_parallel {name}: buffer {k}'s offsets leave its array")
    seconds = np.zeros(reps, dtype=np.float64)
    cdef double[::1] out = seconds
    with nogil:
        status = tb_dispatch_bench_parallel(i, p, n, parts, bufs, &offs[0], warmup, reps, &out[0])
    if status == -1:
        raise ValueError(f"{name}: parameter struct is {tb_dispatch_params_size(i)} bytes, got {n}")
    if status != 0:
        raise ValueError(f"{name}: cannot run {parts} threads here")
    return seconds


def bench_sequence(list names, list params, list arrays, int warmup, int reps):
    """bench() of calls made one after another (names[k] with params[k] and arrays[k]), as a fused group runs
    them: each time is one pass over them all."""
    cdef int n = len(names), k, status
    if reps < 1 or warmup < 0 or n < 1 or len(params) != n or len(arrays) != n:
        raise ValueError("bench_sequence: bad reps, warmup, or names, params and arrays of different lengths")
    index = np.zeros(n, dtype=np.intc)
    at = np.zeros(n, dtype=np.intc)
    sizes = np.zeros(n, dtype=np.intc)
    cdef int[::1] idx = index, p_at = at, p_size = sizes
    pointers = np.zeros(n * TB_DISPATCH_MAX_BUFFERS, dtype=np.uintp)
    cdef size_t[::1] ptrs = pointers
    cdef float *bufs[16]
    joined = b"".join(params)
    offset = 0
    for k in range(n):
        idx[k] = _pointers(names[k], arrays[k], bufs)
        for b in range(len(arrays[k])):
            ptrs[k * TB_DISPATCH_MAX_BUFFERS + b] = <size_t>bufs[b]
        p_at[k] = offset
        p_size[k] = len(params[k])
        offset += len(params[k])
    cdef const char *p = joined
    seconds = np.zeros(reps, dtype=np.float64)
    cdef double[::1] out = seconds
    with nogil:
        status = tb_dispatch_bench_sequence(n, &idx[0], p, &p_at[0], &p_size[0], <float **>&ptrs[0], warmup,
                                            reps, &out[0])
    if status == -1:
        raise ValueError("bench_sequence: a parameter struct of the wrong size")
    if status != 0:
        raise MemoryError("bench_sequence: no memory for the parameters")
    return seconds
