"""The Arm Cortex-A72 target (targets/cortex-a72.toml): AArch64 code from the real cross compiler, run under qemu-user.

* The shared SGEMM (kernels_pyx/gemm.c) with its NEON micro-kernel and with the plain C one (-DTB_GEMM_SCALAR), on
  jobs that cross every micro-tile and cache-block edge, against NumPy; the disassembly shows which path was built.
* `tasobuild build` for the A72, the emitted project made with its Makefile, the binary run under qemu and compared
  with ONNX Runtime.
* The on-device profiling flow: emit the harness, cross-compile it, run it (under qemu here, on the board for real),
  `costs import` its CSV, then build with costs = "profile" from those numbers alone.
Skipped when aarch64-linux-gnu-gcc or qemu-aarch64 is missing (.ci/run installs gcc-aarch64-linux-gnu,
libc6-dev-arm64-cross and qemu-user).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tasobuild.costs.cache import read_csv
from tasobuild.primitives.gemm import (
    GEMM_KC_WHOLE,
    GEMM_MC,
    GEMM_MR,
    GEMM_NC,
    GEMM_NR,
    gemm_workspace_floats,
    pack_a,
    pack_b,
)
from tasobuild.resources import kernels_dir
from tasobuild.target import Target, load_target
from tests.e2e import (
    WITH_TRADE_OFF,
    assert_matches,
    build_and_compile,
    run_binary,
    tasobuild,
    wrap_binary,
    write_target_spec,
)
from tests.zoo import ensure_model
from tests.zoo.reference import random_input, run_onnxruntime

TARGET = "cortex-a72"
SYSROOT = "/usr/aarch64-linux-gnu"
QEMU = ("qemu-aarch64", "-L", SYSROOT)

pytestmark = pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-gcc") is None or shutil.which("qemu-aarch64") is None,
    reason="needs aarch64-linux-gnu-gcc and qemu-aarch64 (apt-get install gcc-aarch64-linux-gnu "
           "libc6-dev-arm64-cross qemu-user)")


@pytest.fixture(scope="module")
def a72() -> Target:
    return load_target(TARGET, Path("."))


def emulate(*argv: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*QEMU, *argv], cwd=cwd, capture_output=True, text=True, check=True, timeout=timeout)


def test_target_is_listed_as_a_cross_target() -> None:
    listed = {t["name"]: t for t in json.loads(tasobuild("targets", "--json").stdout)}
    assert TARGET in listed
    target = load_target(TARGET, Path("."))
    assert (target.cc, target.profile, target.ram) == ("aarch64-linux-gnu-gcc", False, 4 * 1024 ** 3)
    assert "-ffp-contract=off" in target.cflags and "-mcpu=cortex-a72" in target.cflags


# ------------------------------------------------------------------------------------------------ the GEMM

# Reads each job file named on the command line, runs tb_gemm on it with exactly the workspace the job declares
# (plus a guard band that must stay untouched) and writes C back to the file named after it.
GEMM_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tb_gemm.h"

enum { M0, M1, N0, N1, K, LDA, LDB, LDC, A_PACKED, B_PACKED, ACCUMULATE, ACT, WS, N_A, N_B, N_C, N_BM, N_BN, N_INT };
#define GUARD 64
#define GUARD_VALUE 12345.0f

static float *read_floats(FILE *f, int n)
{
    float *p = malloc(sizeof(float) * (size_t)(n + 1));
    if (!p || fread(p, sizeof(float), (size_t)n, f) != (size_t)n) exit(2);
    return p;
}

int main(int argc, char **argv)
{
    int i;
    for (i = 1; i + 1 < argc; i += 2) {
        FILE *f = fopen(argv[i], "rb");
        int h[N_INT], j;
        float act[2], *a, *b, *c, *bm, *bn, *ws;
        tb_gemm_job g;
        if (!f || fread(h, sizeof(int), N_INT, f) != N_INT || fread(act, sizeof(float), 2, f) != 2) return 2;
        a = read_floats(f, h[N_A]); b = read_floats(f, h[N_B]); c = read_floats(f, h[N_C]);
        bm = read_floats(f, h[N_BM]); bn = read_floats(f, h[N_BN]);
        fclose(f);
        ws = malloc(sizeof(float) * (size_t)(h[WS] + GUARD));
        for (j = 0; j < h[WS] + GUARD; ++j) ws[j] = GUARD_VALUE;
        g.m0 = h[M0]; g.m1 = h[M1]; g.n0 = h[N0]; g.n1 = h[N1]; g.k = h[K];
        g.a = a; g.lda = h[LDA]; g.a_packed = h[A_PACKED];
        g.b = b; g.ldb = h[LDB]; g.b_packed = h[B_PACKED];
        g.c = c; g.ldc = h[LDC]; g.accumulate = h[ACCUMULATE];
        g.bias_m = h[N_BM] ? bm : 0; g.bias_n = h[N_BN] ? bn : 0;
        g.act = h[ACT]; g.act_a = act[0]; g.act_b = act[1];
        tb_gemm(&g, ws);
        for (j = h[WS]; j < h[WS] + GUARD; ++j)
            if (ws[j] != GUARD_VALUE) { fprintf(stderr, "%s: workspace overrun at %d\n", argv[i], j); return 3; }
        f = fopen(argv[i + 1], "wb");
        if (!f || fwrite(c, sizeof(float), (size_t)h[N_C], f) != (size_t)h[N_C]) return 2;
        fclose(f);
        free(a); free(b); free(c); free(bm); free(bn); free(ws);
    }
    return 0;
}
"""

NONE, RELU, CLIP, LEAKY, SIGMOID = range(5)  # TB_ACT_*


@dataclass(frozen=True)
class GemmJob:
    """C[m0:m1, n0:n1] of an m x n = (m x k) . (k x n) product, with the job's options; pads widen the leading
    dimensions past the matrix width (strided rows)."""

    name: str
    m: int
    n: int
    k: int
    rows: tuple[int, int] | None = None  # [m0, m1): None = all
    cols: tuple[int, int] | None = None
    a_packed: bool = False
    b_packed: bool = False
    accumulate: bool = False
    bias_m: bool = False
    bias_n: bool = False
    act: int = NONE
    act_ab: tuple[float, float] = (0.0, 0.0)
    pad: int = 0

    @property
    def m0m1(self) -> tuple[int, int]:
        return self.rows or (0, self.m)

    @property
    def n0n1(self) -> tuple[int, int]:
        return self.cols or (0, self.n)


GEMM_JOBS = (
    GemmJob("whole_tiles", 2 * GEMM_MR, 2 * GEMM_NR, 8),  # every tile full: the micro-kernel writes C directly
    GemmJob("ragged_strided", 13, 37, 7, act=RELU, bias_n=True, pad=3),  # edge tiles in both directions
    GemmJob("k_over_kc", 7, 18, GEMM_KC_WHOLE + 16, act=CLIP, act_ab=(-0.5, 0.5), bias_m=True),  # two depth blocks
    GemmJob("m_over_mc", GEMM_MC + 4, 20, 9, act=LEAKY, act_ab=(0.1, 0.0), bias_m=True, bias_n=True),
    GemmJob("n_over_nc", 7, GEMM_NC + 20, 5, act=SIGMOID, bias_n=True),
    GemmJob("accumulate", 13, 37, GEMM_KC_WHOLE + 16, accumulate=True, pad=1),  # C += over two depth blocks
    GemmJob("packed_subrange", 20, 50, 11, rows=(3, 17), cols=(5, 41), a_packed=True, b_packed=True, act=RELU,
            bias_m=True),  # pre-packed panels read from mid-panel rows and columns; C outside untouched
    GemmJob("packed_b_deep", 9, 40, GEMM_KC_WHOLE + 6, b_packed=True, bias_n=True),
    GemmJob("packed_accumulate", 14, 33, GEMM_KC_WHOLE + 2, rows=(1, 13), cols=(15, 33), a_packed=True, b_packed=True,
            accumulate=True),
    GemmJob("empty_sum", 5, 19, 0, act=CLIP, act_ab=(0.0, 0.25), bias_m=True, bias_n=True),  # C = act(bias)
)


@dataclass(frozen=True)
class GemmData:
    a: np.ndarray  # m x k
    b: np.ndarray  # k x n
    c: np.ndarray  # m x ldc, C before the call
    bias_m: np.ndarray
    bias_n: np.ndarray


def gemm_data(job: GemmJob, seed: int) -> GemmData:
    rng = np.random.default_rng(seed)
    values = lambda *shape: rng.uniform(-1, 1, shape).astype(np.float32)  # noqa: E731
    return GemmData(values(job.m, job.k), values(job.k, job.n), values(job.m, job.n + job.pad), values(job.m),
                    values(job.n))


def job_file(job: GemmJob, data: GemmData) -> bytes:
    lda, ldb, ldc = job.k + job.pad, job.n + job.pad, job.n + job.pad
    a = pack_a(data.a) if job.a_packed else np.pad(data.a, ((0, 0), (0, job.pad))).reshape(-1)
    b = pack_b(data.b) if job.b_packed else np.pad(data.b, ((0, 0), (0, job.pad))).reshape(-1)
    (m0, m1), (n0, n1) = job.m0m1, job.n0n1
    ws = gemm_workspace_floats(m1 - m0, n1 - n0, job.k, job.a_packed, job.b_packed)
    bias_m = data.bias_m if job.bias_m else data.bias_m[:0]
    bias_n = data.bias_n if job.bias_n else data.bias_n[:0]
    header = [m0, m1, n0, n1, job.k, lda, ldb, ldc, job.a_packed, job.b_packed, job.accumulate, job.act, ws,
              a.size, b.size, data.c.size, bias_m.size, bias_n.size]
    arrays = (np.array(job.act_ab), a, b, data.c, bias_m, bias_n)
    return np.array(header, "<i4").tobytes() + b"".join(np.asarray(x, "<f4").tobytes() for x in arrays)


def gemm_reference(job: GemmJob, data: GemmData) -> tuple[np.ndarray, np.ndarray]:
    """(C after the call, per-element error bound), in float64."""
    (m0, m1), (n0, n1) = job.m0m1, job.n0n1
    a, b, c = data.a.astype(np.float64), data.b.astype(np.float64), data.c.astype(np.float64)
    product, magnitude = a @ b, np.abs(a) @ np.abs(b)
    bias = (data.bias_m[:, None] if job.bias_m else 0.0) + (data.bias_n[None, :] if job.bias_n else 0.0)
    if job.accumulate:
        block = c[:, :job.n] + product
    else:
        block, magnitude = act_reference(product + bias, job.act, *job.act_ab), magnitude + np.abs(bias)
    expected, bound = c.copy(), np.zeros_like(c)
    expected[m0:m1, n0:n1] = block[m0:m1, n0:n1]
    bound[m0:m1, n0:n1] = 1e-5 * (1.0 + magnitude[m0:m1, n0:n1] + np.abs(c[m0:m1, n0:n1]))
    return expected, bound


def act_reference(x: np.ndarray, act: int, a: float, b: float) -> np.ndarray:
    if act == RELU:
        return np.maximum(x, 0.0)
    if act == CLIP:
        return np.clip(x, a, b)
    if act == LEAKY:
        return np.where(x < 0, a * x, x)
    if act == SIGMOID:
        return 1.0 / (1.0 + np.exp(-x))
    return x


def test_gemm_reference_pinned() -> None:
    """The reference itself, on a 2 x 2 x 2 case worked by hand: [[1,2],[3,4]] . [[1,0],[1,-1]] = [[3,-2],[7,-4]],
    + bias_m (1, -10), relu."""
    job = GemmJob("hand", 2, 2, 2, act=RELU, bias_m=True)
    data = GemmData(np.array([[1, 2], [3, 4]], np.float32), np.array([[1, 0], [1, -1]], np.float32),
                    np.zeros((2, 2), np.float32), np.array([1, -10], np.float32), np.zeros(2, np.float32))
    expected, _ = gemm_reference(job, data)
    assert expected.tolist() == [[4, 0], [0, 0]]


LANE_FMLA = re.compile(r"\bfmla\s+v\d+\.4s, v\d+\.4s, v\d+\.s\[[0-3]\]")


@dataclass(frozen=True)
class GemmProgram:
    executable: Path
    lane_fmlas: int  # fmla v.4s, v.4s, v.s[i] in gemm.o: the NEON micro-kernel's signature


@pytest.fixture(scope="module", params=["neon", "scalar"])
def gemm_program(request: pytest.FixtureRequest, a72: Target, tmp_path_factory: pytest.TempPathFactory) -> GemmProgram:
    work = tmp_path_factory.mktemp(f"gemm_{request.param}")
    (work / "driver.c").write_text(GEMM_DRIVER)
    flags = [*a72.cflags, "-Wall", "-Wextra", "-Werror", "-I", str(kernels_dir())]
    flags += ["-DTB_GEMM_SCALAR"] if request.param == "scalar" else []
    gemm_c = str(kernels_dir() / "gemm.c")
    for argv in ([*flags, "-c", gemm_c, "-o", "gemm.o"], [*flags, "driver.c", "gemm.o", *a72.ldflags, "-o", "gemm"]):
        done = subprocess.run([*a72.cc_argv, *argv], cwd=work, capture_output=True, text=True)
        assert done.returncode == 0 and not done.stderr, done.stderr
    disassembly = subprocess.run(["aarch64-linux-gnu-objdump", "-d", "gemm.o"], cwd=work, capture_output=True,
                                 text=True, check=True).stdout
    return GemmProgram(work / "gemm", len(LANE_FMLA.findall(disassembly)))


def test_gemm_path_is_the_one_compiled(gemm_program: GemmProgram, request: pytest.FixtureRequest) -> None:
    """The NEON build holds the 24 lane-indexed FMAs of the 6x16 tile (once per inlined copy); the scalar build
    none, so the other test really runs each path."""
    if request.node.callspec.params["gemm_program"] == "neon":
        assert gemm_program.lane_fmlas >= 24 and gemm_program.lane_fmlas % 24 == 0, gemm_program.lane_fmlas
    else:
        assert gemm_program.lane_fmlas == 0


def test_gemm_matches_numpy(gemm_program: GemmProgram) -> None:
    work = gemm_program.executable.parent
    datas = [gemm_data(job, seed) for seed, job in enumerate(GEMM_JOBS)]
    argv = []
    for job, data in zip(GEMM_JOBS, datas):
        (work / f"{job.name}.job").write_bytes(job_file(job, data))
        argv += [f"{job.name}.job", f"{job.name}.out"]
    emulate(str(gemm_program.executable), *argv, cwd=work)
    for job, data in zip(GEMM_JOBS, datas):
        got = np.fromfile(work / f"{job.name}.out", "<f4").reshape(data.c.shape).astype(np.float64)
        expected, bound = gemm_reference(job, data)
        error = np.abs(got - expected)
        worst = np.unravel_index(np.argmax(error - bound), error.shape)
        assert np.all(error <= bound), f"{job.name}: C{worst} = {got[worst]}, expected {expected[worst]}"
        outside = bound == 0  # not in the job's block: must keep the bits it had
        assert np.array_equal(got[outside], data.c.astype(np.float64)[outside]), job.name


# ------------------------------------------------------------------------------------------------ the emitted project

# Families whose kernels run through tb_gemm (tests/test_gemm.py's), so a plan with one of them runs the NEON code.
GEMM_FAMILIES = {"1x1", "im2col", "im2row"}


@pytest.fixture(scope="module")
def families() -> dict[str, str]:
    return {p["name"]: p["family"] for p in json.loads(tasobuild("primitives", "--json").stdout)}


# MobileNetV1 with every primitive (its 1x1 layers take the NEON blocked direct conv, or GEMM-based ones, as the
# shipped model predicts them); DS-CNN without the blocked direct convs, so that its plan runs the NEON GEMM.
@pytest.mark.parametrize("model_name, extra", [("ds_cnn_torch", WITH_TRADE_OFF), ("mobilenet_v1_vww_tf", "")],
                         ids=["ds_cnn_torch", "mobilenet_v1_vww_tf"])
def test_emitted_project_runs_under_qemu(model_name: str, extra: str, a72: Target, families: dict[str, str],
                                         tmp_path: Path) -> None:
    model = ensure_model(model_name)
    spec = write_target_spec(tmp_path, model, TARGET, costs="model", extra=extra)
    built = build_and_compile(spec)  # the emitted Makefile builds with the target's compiler
    assert f"\nCC = {a72.cc}\n" in (built.out_dir / "Makefile").read_text()
    assert built.report["profiled"] == 0
    neon_nodes = [n["name"] for n in built.report["nodes"]
                  if families.get(n["primitive"]) in GEMM_FAMILIES or n["primitive"].startswith("conv_direct_blocked_")]
    assert neon_nodes, [n["primitive"] for n in built.report["nodes"]]
    disassembly = subprocess.run(["aarch64-linux-gnu-objdump", "-d", str(built.binary)], capture_output=True,
                                 text=True, check=True).stdout
    assert len(LANE_FMLA.findall(disassembly)) >= 24  # the NEON micro-kernels (fmla by lane) are in the binary
    x = random_input(model, seed=0)
    ours, _ = run_binary(wrap_binary(built.binary, QEMU), x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))


# ------------------------------------------------------------------------------------------------ on-device profiling


def test_profiling_harness_round_trip(a72: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a user with a board does: emit the harness, build it with its Makefile (the target's cross compiler),
    run it on the board (here: qemu), import the CSV, and plan from those costs with nothing measured locally."""
    monkeypatch.setenv("TASOBUILD_CACHE_DIR", str(tmp_path / "cache"))
    spec = write_target_spec(tmp_path, ensure_model("ds_cnn_torch"), TARGET, costs="profile")
    harness = tmp_path / "harness"
    emitted = json.loads(tasobuild("profile", "-c", str(spec), "--emit-harness", str(harness), "--json").stdout)
    assert f"\nCC = {a72.cc}\n" in (harness / "Makefile").read_text()
    # The Makefile's own flags, plus a short timing window: the point is the flow, not qemu's timings.
    cflags = " ".join([*a72.cflags, "-Ikernels", "-Wall", "-Wextra", "-Werror", "-DTB_HARNESS_SECONDS=0.0005"])
    make = subprocess.run(["make", "-s", "-C", str(harness), f"CFLAGS={cflags}"], capture_output=True, text=True)
    assert make.returncode == 0, make.stderr
    csv_path = tmp_path / "a72.csv"
    csv_path.write_text(emulate(str(harness / "harness"), timeout=300).stdout)
    rows = read_csv(csv_path)
    assert len(rows) == emitted["calls"] > 0 and all(cost.median_ms > 0 for _, cost in rows)

    imported = json.loads(tasobuild("costs", "import", str(csv_path), "-c", str(spec), "--json").stdout)
    assert imported["imported"] == len(rows)
    report = json.loads(tasobuild("build", "-c", str(spec), "--json").stdout)
    assert report["profiled"] == 0
    lock = tomllib.loads((tmp_path / "taso.lock").read_text())
    imported_ms = {key: cost.median_ms for key, cost in rows}
    assert lock["cost"] and {c["source"] for c in lock["cost"]} == {"imported"}
    for cost in lock["cost"]:
        assert cost["median_ms"] == pytest.approx(imported_ms[cost["call"]]), cost["call"]
