"""The whole path a user takes: taso.toml -> `tasobuild build` -> make -> run, checked against ONNX Runtime."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e import assert_matches, build_and_compile, run_binary, write_spec
from tests.zoo import ensure_model
from tests.zoo.reference import random_input, run_onnxruntime

FIXTURES = sorted(p.stem for p in (Path(__file__).parent / "fixtures" / "models").glob("*.onnx"))
BIG = ["alexnet", "googlenet", "mobilenetv2", "resnet18", "resnet50", "squeezenet11", "vgg16"]

# What the library part may call: libm and the compiler's own helpers; never malloc or stdio.
ALLOWED_UNDEFINED = {"expf", "sqrtf", "powf", "logf", "memcpy", "memset", "memmove", "exp", "sqrt", "pow",
                     "tanhf", "fabsf", "_GLOBAL_OFFSET_TABLE_"}


def _symbols(archive: Path, which: str) -> set[str]:
    lines = subprocess.run(["nm", which, str(archive)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in lines.splitlines() if line.strip() and not line.endswith(":")}


# Big networks are planned from a subset of the library so the suite stays fast (profiling every primitive on
# VGG-16's layers takes minutes); the small networks use all of it. Every conv can run as im2col.
BIG_NETWORK_PRIMITIVES = ["conv_1x1_gemm_chw", "conv_1x1_gemm_hwc", "conv_depthwise_direct_chw",
                          "conv_depthwise_direct_hwc", "conv_im2col_gemm_chw", "conv_im2row_scan_hwc",
                          "conv_kn2col_acc_hwc", "conv_mec_chw", "conv_winograd_f2x2_3x3_chw",
                          "conv_winograd_f4x4_3x3_hwc"]


def check_network(model: Path, tmp_path: Path, memory: str = "2 GiB", extra: str = "") -> dict:
    spec = write_spec(tmp_path, model, memory=memory, extra=extra)
    built = build_and_compile(spec)
    x = random_input(model, seed=0)
    ours, _ = run_binary(built.binary, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))
    return built.report


@pytest.mark.parametrize("name", FIXTURES)
def test_small_network_matches_onnxruntime(name: str, tmp_path: Path) -> None:
    report = check_network(ensure_model(name), tmp_path)
    assert report["arena_bytes"] <= report["budget_bytes"]
    assert report["arena_bytes"] >= report["lower_bound_bytes"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", BIG)
def test_big_network_matches_onnxruntime(name: str, tmp_path: Path) -> None:
    check_network(ensure_model(name), tmp_path, extra=f"primitives = {BIG_NETWORK_PRIMITIVES!r}\n".replace("'", '"'))


def test_library_uses_no_heap_and_no_stdio(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, ensure_model("ds_cnn_torch"))
    built = build_and_compile(spec)
    subprocess.run(["make", "-s", "-C", str(built.out_dir), "libnet.a"], check=True)
    undefined = _symbols(built.out_dir / "libnet.a", "-u") - _symbols(built.out_dir / "libnet.a", "--defined-only")
    assert undefined <= ALLOWED_UNDEFINED, sorted(undefined - ALLOWED_UNDEFINED)


GUARD_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "net.h"
#define CANARY 4096
int main(void)
{
    static unsigned char raw[NET_ARENA_BYTES + 2 * CANARY + NET_ARENA_ALIGN];
    unsigned char *base =
        (unsigned char *)(((unsigned long)raw + NET_ARENA_ALIGN - 1) & ~(unsigned long)(NET_ARENA_ALIGN - 1));
    unsigned char *arena = base + CANARY;
    float in[NET_INPUT_COUNT], out[NET_OUTPUT_COUNT];
    size_t i, touched_top = 0;
    memset(base, 0xA5, NET_ARENA_BYTES + 2 * CANARY);
    for (i = 0; i < NET_INPUT_COUNT; ++i) in[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    if (net_infer(in, out, arena)) return 3;
    for (i = 0; i < CANARY; ++i)
        if (base[i] != 0xA5 || arena[NET_ARENA_BYTES + i] != 0xA5) { printf("canary %zu broken\n", i); return 1; }
    for (i = 0; i < NET_ARENA_BYTES; ++i) if (arena[i] != 0xA5) touched_top = i + 1;
    printf("%zu\n", touched_top);
    return 0;
}
"""


def test_arena_is_exactly_what_the_code_touches(tmp_path: Path) -> None:
    """Canaries around the arena stay intact, and the last byte written is within one alignment of the end."""
    spec = write_spec(tmp_path, ensure_model("ds_cnn_torch"), memory="256 KiB")
    built = build_and_compile(spec)
    (tmp_path / "guard.c").write_text(GUARD_MAIN)
    subprocess.run(["make", "-s", "-C", str(built.out_dir), "libnet.a"], check=True)
    subprocess.run(["cc", "-O1", "-I", str(built.out_dir / "include"), str(tmp_path / "guard.c"),
                    str(built.out_dir / "libnet.a"), "-lm", "-o", str(tmp_path / "guard")], check=True)
    proc = subprocess.run([str(tmp_path / "guard")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    touched_top = int(proc.stdout)
    arena = built.report["arena_bytes"]
    assert arena - 64 < touched_top <= arena
