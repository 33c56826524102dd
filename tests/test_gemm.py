"""The shared SGEMM (kernels_pyx/gemm.c): its Python mirror (panel packing, block sizes, workspace formula) agrees with
the C header, and every micro-kernel path (AVX-512, AVX2+FMA, GCC vector extensions, plain C) gives reference results
on shapes that cross every cache-block and micro-tile edge, exercised through the GEMM convolutions."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tasobuild import native
from tasobuild.primitives import gemm
from tasobuild.primitives.gemm import gemm_workspace_floats, pack_a, pack_b
from tasobuild.primitives.transforms import from_layout, to_layout
from tasobuild.resources import kernels_dir
from tests.guard import run_guarded
from tests.test_aarch64 import GEMM_DRIVER, GEMM_JOBS, GemmJob, gemm_data, gemm_reference, job_file
from tests.test_aarch64 import RELU as GEMM_RELU
from tests.test_conv_primitives import CLIP6, RELU, SIGMOID, Case, applicable, assert_close, conv_graph, reference


def test_block_sizes_match_the_c_header() -> None:
    text = (kernels_dir() / "tb_gemm.h").read_text()
    defined = {name: int(value) for name, value in re.findall(r"#define TB_GEMM_(\w+) (\d+)", text)}
    assert defined == {"MR": gemm.GEMM_MR, "NR": gemm.GEMM_NR, "KC": gemm.GEMM_KC, "KC_WHOLE": gemm.GEMM_KC_WHOLE,
                       "MC": gemm.GEMM_MC, "NC": gemm.GEMM_NC}
    assert gemm.GEMM_MC % gemm.GEMM_MR == 0 and gemm.GEMM_NC % gemm.GEMM_NR == 0  # blocks hold whole panels


def test_pack_a_panels() -> None:
    """7 x 2 A: panel 0 holds rows 0-5 interleaved by k, panel 1 row 6 and five zero rows."""
    a = np.arange(14, dtype=np.float32).reshape(7, 2)  # a[i][k] = 2i + k
    assert pack_a(a).tolist() == [0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11,
                                  12, 0, 0, 0, 0, 0, 13, 0, 0, 0, 0, 0]


def test_pack_b_panels() -> None:
    """2 x 17 B: panel 0 holds columns 0-15 row by row, panel 1 column 16 and fifteen zero columns."""
    b = np.arange(34, dtype=np.float32).reshape(2, 17)  # b[k][j] = 17k + j
    packed = pack_b(b).reshape(2, 2, 16)  # panel, k, column
    assert packed[0].tolist() == [list(range(16)), list(range(17, 33))]
    assert packed[1].tolist() == [[16] + [0] * 15, [33] + [0] * 15]


def test_workspace_formula_pinned() -> None:
    assert gemm_workspace_floats(10, 20, 30, a_packed=True, b_packed=True) == 0
    assert gemm_workspace_floats(10, 20, 30, a_packed=False, b_packed=True) == 12 * 30  # rows up to MR
    assert gemm_workspace_floats(10, 20, 30, a_packed=True, b_packed=False) == 30 * 32  # columns up to NR
    assert gemm_workspace_floats(500, 5000, 1000, a_packed=False, b_packed=False) == 96 * 384 + 384 * 4080
    # a depth up to KC_WHOLE (512) is one block: SqueezeNet's 512 -> 1000 classifier packs 96 x 512 of A
    assert gemm_workspace_floats(169, 1000, 512, a_packed=False, b_packed=True) == 96 * 512
    assert gemm_workspace_floats(169, 1000, 513, a_packed=False, b_packed=True) == 96 * 384


def test_depth_blocks() -> None:
    """tb_gemm_kc: the whole depth up to 512, else blocks of 384 (the last what is left)."""
    assert [gemm.depth_block(k) for k in (1, 384, 385, 512, 513, 4608)] == [1, 384, 385, 512, 384, 384]


# Flags selecting each micro-kernel on an x86-64 host (the default flags pick AVX-512 or AVX2 from -march=native).
VARIANTS = {
    "native": native.DEFAULT_CFLAGS,
    "avx2_fma": ("-O3", "-march=native", "-mno-avx512f", "-ffp-contract=off", "-std=c99"),
    "vector_extensions": ("-O3", "-mno-avx2", "-ffp-contract=off", "-std=c99"),
    "plain_c": ("-O3", "-ffp-contract=off", "-std=c99", "-DTB_GEMM_SCALAR"),
}

GEMM_CASES = (
    Case(48, 7, 9, 100, (3, 3), pads=(1, 1, 1, 1), act=RELU),  # K = 432: one block, M = 100 > MC, 63 pixels
    Case(64, 7, 9, 100, (3, 3), pads=(1, 1, 1, 1), act=RELU),  # K = 576 > KC_WHOLE: two depth blocks
    Case(400, 3, 5, 20, (1, 1), act=CLIP6),  # K = 400 in one block in the 1x1 kernels
    Case(600, 3, 5, 20, (1, 1), act=CLIP6),  # K = 600: two blocks in the 1x1 kernels
    Case(5, 65, 65, 7, (1, 1), act=SIGMOID),  # 4225 pixels > NC (CHW) and > MC (HWC)
)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_micro_kernel_variants(variant: str) -> None:
    kernels = native.load("cc", VARIANTS[variant], Path(tempfile.gettempdir()) / "tasobuild-test-bindings")
    for case in GEMM_CASES:
        node, graph, x = conv_graph(case, seed=3)
        ref = reference(case, graph, x)
        for prim in applicable(node, graph):
            if prim.family not in ("im2col", "im2row", "1x1"):
                continue
            (call,) = prim.call(node, graph)
            buffers = {"in0": to_layout(x, prim.layout_in)}
            buffers.update({f"w{k}": w for k, w in enumerate(prim.weights(node, graph))})
            out = run_guarded(kernels, call, buffers)["out"]
            assert_close(from_layout(out, graph.shape("y"), prim.layout_out).astype(np.float64), ref)


# Jobs whose blocks hold whole 12 x 32 tiles (two A panels x two B panels, AVX-512) next to 6-row and 16-column
# remainders, clipped on every side; K crosses KC so the second depth block adds to C.
WIDE_JOBS = (
    GemmJob("wide_packed_here", 41, 75, gemm.GEMM_KC_WHOLE + 9, act=GEMM_RELU, bias_m=True, bias_n=True, pad=2),
    GemmJob("wide_prepacked", 41, 75, gemm.GEMM_KC_WHOLE + 9, rows=(2, 39), cols=(3, 70), a_packed=True, b_packed=True,
            act=GEMM_RELU, bias_n=True),
    GemmJob("wide_over_mc", gemm.GEMM_MC + 30, 64, 33, b_packed=True, bias_m=True),
    # one B panel (a squeeze 1x1's 16 output channels): 12 x 16 tiles, 9 A panels = 2 + 2 + 2 + 2 + 1
    GemmJob("narrow_one_panel", 50, 16, 40, b_packed=True, act=GEMM_RELU, bias_n=True),
)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def host_gemm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/test_aarch64.py's GEMM driver built for this machine with one micro-kernel path's flags."""
    work = tmp_path_factory.mktemp(f"gemm_{request.param}")
    (work / "driver.c").write_text(GEMM_DRIVER)
    flags = [*VARIANTS[request.param], "-Wall", "-Wextra", "-Werror", "-I", str(kernels_dir())]
    done = subprocess.run(["cc", *flags, "driver.c", str(kernels_dir() / "gemm.c"), "-lm", "-o", "gemm"], cwd=work,
                          capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr, done.stderr
    return work / "gemm"


def run_jobs(program: Path, jobs: list[tuple[GemmJob, int]]) -> list[np.ndarray]:
    """C after each (job, data seed), run by the driver on this machine."""
    work, argv = program.parent, []
    for index, (job, seed) in enumerate(jobs):
        (work / f"{index}.job").write_bytes(job_file(job, gemm_data(job, seed)))
        argv += [f"{index}.job", f"{index}.out"]
    subprocess.run([str(program), *argv], cwd=work, check=True, timeout=120)
    return [np.fromfile(work / f"{index}.out", "<f4").reshape(job.m, job.n + job.pad)
            for index, (job, _) in enumerate(jobs)]


def test_gemm_jobs_on_this_machine(host_gemm: Path) -> None:
    """Every job of the Arm test and the wide-tile ones against float64, on this machine's paths; C outside the
    job's block keeps its bits and the workspace stays within what the job declares (the driver's guard band)."""
    jobs = [*GEMM_JOBS, *WIDE_JOBS]
    for seed, (job, got) in enumerate(zip(jobs, run_jobs(host_gemm, [(job, s) for s, job in enumerate(jobs)]))):
        data = gemm_data(job, seed)
        expected, bound = gemm_reference(job, data)
        error = np.abs(got.astype(np.float64) - expected)
        assert np.all(error <= bound), job.name
        assert np.array_equal(got[bound == 0], data.c[bound == 0]), job.name


@pytest.mark.parametrize("job", [WIDE_JOBS[0], WIDE_JOBS[1], WIDE_JOBS[3]], ids=lambda job: job.name)
def test_gemm_views_reproduce_the_whole_call_bit_for_bit(host_gemm: Path, job: GemmJob) -> None:
    """A row view (the threads' and the tiled plans' split) lays its tiles on another grid (a packed-here A starts
    its panels at m0); each element must still get the same bits as in the whole call."""
    (m0, m1), (n0, n1) = job.m0m1, job.n0n1
    cuts = [m0, m0 + 7, m0 + 20, m1]  # not multiples of 6 or 12
    views = [GemmJob(job.name, job.m, job.n, job.k, rows=(lo, hi), cols=(n0, n1), a_packed=job.a_packed,
                     b_packed=job.b_packed, act=job.act, bias_m=job.bias_m, bias_n=job.bias_n, pad=job.pad)
             for lo, hi in zip(cuts, cuts[1:])]
    whole, *parts = run_jobs(host_gemm, [(job, 7)] + [(view, 7) for view in views])
    for (lo, hi), part in zip(zip(cuts, cuts[1:]), parts):
        assert np.array_equal(part[lo:hi], whole[lo:hi]), (lo, hi)
