"""docs/ARCHITECTURE.md's promise, kept for real: a new primitive family is two files — its kernel in kernels_pyx/ and
its rows in tasobuild/primitives/ — and nothing else changes. A copy of tasobuild gets a toy direct convolution that
way; DS-CNN, restricted to it, then builds (the kernel profiled through the bindings), compiles and matches ONNX
Runtime."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import assert_matches, run_binary, write_spec
from tests.zoo import ensure_model
from tests.zoo.reference import random_input, run_onnxruntime

ROOT = Path(__file__).resolve().parent.parent

TOY_KERNEL = r"""/* A toy family: direct convolution in CHW, declared by its definition alone (no header names it). */
#include "tb_kernels.h"
#include "tb_gemm.h" /* tb_act_value */

void tb_conv_toy_chw(const tb_conv *p, const float *restrict in, const float *restrict w,
                     const float *restrict bias, float *restrict out)
{
    const int cg = p->in_c / p->groups, mg = p->out_c / p->groups;
    for (int m = p->oc_begin; m < p->oc_end; ++m) {
        const int g = m / mg;
        for (int oh = p->oh_begin; oh < p->oh_end; ++oh)
            for (int ow = 0; ow < p->out_w; ++ow) {
                float s = 0.0f;
                for (int c = 0; c < cg; ++c)
                    for (int ki = 0; ki < p->k_h; ++ki)
                        for (int kj = 0; kj < p->k_w; ++kj) {
                            const int ih = oh * p->stride_h - p->pad_top + ki * p->dil_h;
                            const int iw = ow * p->stride_w - p->pad_left + kj * p->dil_w;
                            if (ih >= 0 && ih < p->in_h && iw >= 0 && iw < p->in_w)
                                s += in[((long)(g * cg + c) * p->in_h + ih) * p->in_w + iw]
                                     * w[(((long)m * cg + c) * p->k_h + ki) * p->k_w + kj];
                        }
                float *o = out + ((long)m * p->out_h + oh) * p->out_w + ow;
                *o = p->accumulate ? *o + s : tb_act_value(s + bias[m], p->act, p->act_a, p->act_b);
            }
    }
}
"""

TOY_ROWS = '''"""A toy family (tests/test_new_family.py): direct convolution in CHW, kernel in conv_toy.c."""

from tasobuild.primitives import Primitive
from tasobuild.primitives.conv_table import CONV_HEADERS, ConvRow, any_conv, conv_primitive, floats_plain, \\
    no_workspace, plain

PRIMITIVES: tuple[Primitive, ...] = (
    conv_primitive(ConvRow("conv_toy_chw", "toy", "CHW", "CHW", ("conv_toy.c",) + CONV_HEADERS, any_conv,
                           no_workspace, plain, floats_plain, uses_workspace=False)),
)
'''


@pytest.mark.slow
def test_a_family_in_two_files_builds_runs_and_matches(tmp_path: Path) -> None:
    copy = tmp_path / "tasobuild-copy"
    for folder in ("tasobuild", "kernels_pyx", "targets"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    (copy / "kernels_pyx" / "conv_toy.c").write_text(TOY_KERNEL)  # file 1
    (copy / "tasobuild" / "primitives" / "conv_toy.py").write_text(TOY_ROWS)  # file 2

    model = ensure_model("ds_cnn_torch")
    project = tmp_path / "project"
    project.mkdir()
    spec = write_spec(project, model, extra='primitives = ["conv_toy_chw"]\n')
    env = {**os.environ, "PYTHONPATH": str(copy), "TASOBUILD_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-P", "-m", "tasobuild", "build", "-c", str(spec), "--json"],
                          capture_output=True, text=True, env=env, cwd=project, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    convs = [n for n in report["nodes"] if n["op"] == "conv"]
    assert convs and all(n["primitive"] == "conv_toy_chw" for n in convs)
    assert "measured" in {s for n in convs for s in n["cost_source"]}  # timed through the bindings' dispatch
    source = (project / "out" / "src" / "net.c").read_text()
    assert "void tb_conv_toy_chw(const tb_conv *p, const float *restrict in" in source  # declared by the caller
    subprocess.run(["make", "-s", "-j2", "-C", str(project / "out")], check=True, capture_output=True, text=True)
    x = random_input(model, seed=0)
    ours, _ = run_binary(project / "out" / "net_main", x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))
