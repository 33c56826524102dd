"""The Cython bindings: header parsing, the generated dispatch, the on-disk cache (also under concurrency), the
checks on every call, timing, and compiler errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasobuild import native
from tasobuild.errors import UserError
from tasobuild.ir import Shape
from tasobuild.primitives import KernelCall
from tasobuild.primitives.transforms import transform_call
from tasobuild.resources import kernels_dir
from tests.guard import guarded_kernels

REPO = Path(__file__).resolve().parent.parent
CHEAP_FLAGS = ("-O1", "-std=c99")  # a second, different build (O1 compiles faster)


def act_call(n: int, act: int = 1, a: float = 0.0, b: float = 0.0) -> KernelCall:
    return KernelCall("tb_act", "tb_flat", (("n", n), ("act", act), ("act_a", a), ("act_b", b)), ("in0", "out"),
                      (("in0", 4 * n), ("out", 4 * n)))


def test_parse_headers(tmp_path: Path) -> None:
    header = tmp_path / "h.h"
    header.write_text("""
        typedef struct { int a, b; /* note */ float c; } tb_s;
        typedef struct { const float *ptr; int n; } tb_internal;   /* not a parameter struct */
        void tb_k(const tb_s *p, const float *restrict x,
                  float *restrict out);
        void tb_helper(const tb_s *p, int n);                     /* not of the kernel form */
        static void tb_hidden(const tb_s *p, float *restrict out);
    """)
    structs, kernels = native.parse_headers([header])
    assert structs == {"tb_s": native.StructDecl("tb_s", (("a", "int"), ("b", "int"), ("c", "float")))}
    assert structs["tb_s"].format == "=iif"
    assert kernels == {"tb_k": native.KernelDecl("tb_k", "tb_s", (("x", True), ("out", False)))}
    source = native.dispatch_source(structs, kernels)
    assert "static void call_tb_k(const void *params, float **bufs) { tb_k((const tb_s *)params, bufs[0], bufs[1]); }" \
        in source
    assert '{"tb_k", "tb_s", 2, (int)sizeof(tb_s), call_tb_k},' in source


def test_every_struct_size_matches_its_python_packing() -> None:
    k = guarded_kernels()
    for name, (struct, nbufs, size) in sorted(k.module.kernels().items()):
        assert size == 4 * len(k.structs[struct].fields), name
        assert nbufs == len(k.kernels[name].buffers)
    assert "tb_fc_gemv" in k.functions() and "tb_layout_chw_to_hwc" in k.functions()


def test_run_and_pinned_result() -> None:
    x = np.array([-2, -0.5, 0, 0.5, 7, 9], np.float32)
    out = np.zeros(6, np.float32)
    guarded_kernels().run(act_call(6, act=2, a=-1.0, b=6.0), {"in0": x, "out": out})  # clip to [-1, 6]
    assert out.tolist() == [-1, -0.5, 0, 0.5, 6, 6]


def test_bench_returns_seconds_per_rep() -> None:
    call = transform_call(Shape(64, 32, 32), "CHW", "HWC")
    x = np.ones(64 * 32 * 32, np.float32)
    seconds = guarded_kernels().bench(call, {"in0": x, "out": np.empty_like(x)}, warmup=2, reps=7)
    assert seconds.shape == (7,) and seconds.dtype == np.float64
    assert np.all(seconds > 0) and np.all(seconds < 1.0)


@pytest.mark.parametrize("buffers,message", [
    ({"in0": np.zeros(4, np.float32), "out": np.zeros(3, np.float32)}, "needs 16"),
    ({"in0": np.zeros(4, np.float64), "out": np.zeros(4, np.float32)}, "float32"),
    ({"in0": np.zeros(8, np.float32)[::2], "out": np.zeros(4, np.float32)}, "C-contiguous"),
    ({"out": np.zeros(4, np.float32)}, "no buffer for role 'in0'"),
])
def test_run_checks_buffers(buffers, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        guarded_kernels().run(act_call(4), buffers)


def test_run_rejects_overlapping_output() -> None:
    x = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        guarded_kernels().run(act_call(4), {"in0": x[:4], "out": x[2:6]})


def test_run_checks_params_against_the_struct() -> None:
    k = guarded_kernels()
    good = act_call(4)
    bufs = {"in0": np.zeros(4, np.float32), "out": np.zeros(4, np.float32)}
    with pytest.raises(ValueError, match="do not match"):
        k.run(KernelCall("tb_act", "tb_flat", good.params[:3], good.args, good.buffer_bytes), bufs)
    with pytest.raises(ValueError, match="is an int"):
        k.run(KernelCall("tb_act", "tb_flat", (("n", 4.0),) + good.params[1:], good.args, good.buffer_bytes), bufs)
    with pytest.raises(ValueError, match="no kernel tb_nope"):
        k.run(KernelCall("tb_nope", "tb_flat", good.params, good.args, good.buffer_bytes), bufs)
    pool = (("c", 2), ("in_h", 2), ("in_w", 2), ("out_h", 1), ("out_w", 1), ("k_h", 2), ("k_w", 2), ("stride_h", 2),
            ("stride_w", 2), ("pad_top", 0), ("pad_left", 0), ("pad_bottom", 0), ("pad_right", 0),
            ("count_include_pad", 0))
    dense = KernelCall("tb_maxpool_hwc", "tb_pool", pool, ("in0", "out"), (("in0", 32), ("out", 8)))
    assert k.pack(dense) == k.pack(KernelCall("tb_maxpool_hwc", "tb_pool", pool + (("out_ps", 0),), dense.args,
                                              dense.buffer_bytes))  # out_ps may be left out: 0, dense
    with pytest.raises(ValueError, match="do not match"):  # no other field may
        k.pack(KernelCall("tb_maxpool_hwc", "tb_pool", pool[:-1], dense.args, dense.buffer_bytes))
    assert k.pack(good) == np.array([4, 1], np.int32).tobytes() + np.zeros(2, np.float32).tobytes()


LOAD_SCRIPT = """
import json, sys
from pathlib import Path
from tasobuild import native
k = native.load("cc", {flags!r}, Path(sys.argv[1]))
print(json.dumps({{"compiled": k.compiled, "path": str(k.path)}}))
"""


def _load_in_subprocess(cache: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", LOAD_SCRIPT.format(flags=CHEAP_FLAGS), str(cache)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_cache_concurrent_builds_and_hits(tmp_path: Path) -> None:
    cache = tmp_path / "bindings"
    procs = [_load_in_subprocess(cache) for _ in range(2)]  # two processes race for the same empty cache entry
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert sorted(r["compiled"] for r in results) == [False, True]  # exactly one built it
    assert results[0]["path"] == results[1]["path"]
    entries = sorted(p.name for p in cache.iterdir() if p.is_dir())
    assert len(entries) == 1  # no temporary build folder left behind
    build = json.loads((cache / entries[0] / "build.json").read_text())
    assert build["cflags"] == list(CHEAP_FLAGS)
    mtime = Path(results[0]["path"]).stat().st_mtime_ns

    again = native.load("cc", CHEAP_FLAGS, cache)  # a third load, in this process: a cache hit
    assert not again.compiled and str(again.path) == results[0]["path"]
    assert Path(again.path).stat().st_mtime_ns == mtime
    out = np.zeros(3, np.float32)
    again.run(act_call(3), {"in0": np.array([-1, 0, 2], np.float32), "out": out})
    assert out.tolist() == [0, 0, 2]
    assert again.digest != guarded_kernels().digest  # other flags: another build


def test_digest_covers_sources_compiler_and_flags() -> None:
    folder = kernels_dir()
    base = native.build_digest("cc", native.DEFAULT_CFLAGS, folder)
    assert base == native.build_digest("cc", native.DEFAULT_CFLAGS, folder)
    assert base != native.build_digest("cc", CHEAP_FLAGS, folder)
    assert base != native.build_digest("gcc", native.DEFAULT_CFLAGS, folder)


def test_digest_covers_the_generated_dispatch_code(monkeypatch) -> None:
    """The dispatch table is generated from the headers by Python: changing the generator alone rebuilds."""
    from tasobuild.native import compile as compile_module

    folder = kernels_dir()
    base = native.build_digest("cc", native.DEFAULT_CFLAGS, folder)
    generated = compile_module.generated_sources(folder)
    monkeypatch.setattr(compile_module, "generated_sources",
                        lambda f: {**generated, "tb_dispatch.c": generated["tb_dispatch.c"] + "/* changed */\n"})
    assert native.build_digest("cc", native.DEFAULT_CFLAGS, folder) != base


def test_compiler_errors_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"cc -O2 -include no_such_header\.h failed: .*error.*no_such_header"):
        native.load("cc", ("-O2", "-include", "no_such_header.h"), tmp_path)
    assert not any(p.is_dir() for p in tmp_path.iterdir())  # nothing half-built left in the cache
    with pytest.raises(UserError, match="compiler 'no-such-cc' not found"):
        native.load("no-such-cc", ("-O2",), tmp_path)


def test_the_bindings_live_in_the_cache_folder(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TASOBUILD_CACHE_DIR", str(tmp_path))
    assert native.bindings_dir() == tmp_path / "bindings"
