"""Several inputs and outputs, and input shapes pinned from the spec or the command line (issue 18).

A real two-input, two-output network (tests/zoo/multi_io.py) is built, compiled and run with one file per input
and output, and every output is compared with ONNX Runtime's; its dynamic twin only builds with its shapes pinned.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import tasobuild
from tests.e2e import assert_matches, write_spec
from tests.e2e import tasobuild as tasobuild_cli
from tests.zoo.multi_io import INPUTS, reference, two_in_two_out


def run_main(binary: Path, feeds: list[np.ndarray], outputs: int, workdir: Path, *extra: str
             ) -> subprocess.CompletedProcess:
    names = [workdir / f"in{k}.bin" for k in range(len(feeds))]
    for name, x in zip(names, feeds):
        x.astype("<f4").tofile(name)
    outs = [workdir / f"out{k}.bin" for k in range(outputs)]
    return subprocess.run([str(binary), *map(str, names), *map(str, outs), *extra], capture_output=True, text=True)


def feeds_of(h: int, w: int, seed: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, 3, h, w)).astype(np.float32), rng.standard_normal((1, 4, h, w)).astype(np.float32)]


def build_compile_run(spec: Path, model: Path, h: int, w: int, *build_args: str) -> dict:
    report = json.loads(tasobuild_cli("build", "-c", str(spec), "--json", *build_args).stdout)
    out = spec.parent / "out"
    subprocess.run(["make", "-s", "-j2", "-C", str(out)], check=True, capture_output=True, text=True)
    feeds = feeds_of(h, w)
    proc = run_main(out / "net_main", feeds, 2, spec.parent)
    assert proc.returncode == 0, proc.stderr
    expected = reference(model, dict(zip(INPUTS, feeds)))
    for k, want in enumerate(expected):
        assert_matches(np.fromfile(spec.parent / f"out{k}.bin", dtype="<f4"), want)
    return report


def test_two_inputs_two_outputs_build_compile_run_and_match_onnxruntime(tmp_path: Path) -> None:
    model = two_in_two_out(tmp_path / "m.onnx")
    spec = write_spec(tmp_path, model, memory="64 KiB")
    build_compile_run(spec, model, 8, 8)
    header = (tmp_path / "out" / "include" / "net.h").read_text()
    for line in ("#define NET_INPUTS  2", "#define NET_OUTPUTS 2", "#define NET_INPUT_COUNT   192",
                 "#define NET_INPUT1_COUNT  256", "#define NET_OUTPUT_COUNT  384", "#define NET_OUTPUT1_COUNT 5",
                 "float *net_input1(void *arena);", "const float *net_output1(void *arena);"):
        assert line in header, line
    # the model's names only in comments: "side:0" never reaches C code
    code = re.sub(r"/\*.*?\*/", "", (tmp_path / "out" / "src" / "net.c").read_text(), flags=re.S)
    assert "side" not in code and "side:0 [1, 4, 8, 8]" in header
    usage = subprocess.run([str(tmp_path / "out" / "net_main"), "a.bin", "b.bin"], capture_output=True, text=True)
    assert usage.returncode == 2 and "IN0.bin IN1.bin OUT0.bin OUT1.bin [--bench N]" in usage.stderr
    short = np.zeros(10, dtype="<f4")
    proc = run_main(tmp_path / "out" / "net_main", [feeds_of(8, 8)[0], short], 2, tmp_path)
    assert proc.returncode == 1 and "in1.bin must hold exactly 256 float32 values" in proc.stderr
    frozen = json.loads(tasobuild_cli("build", "-c", str(spec), "--frozen", "--json").stdout)
    assert frozen["files"]["written"] == [] and frozen["profiled"] == 0
    check = json.loads(tasobuild_cli("check", "-c", str(spec), "--json").stdout)
    assert check["inputs"] == [{"name": "image", "shape": [1, 3, 8, 8]}, {"name": "side:0", "shape": [1, 4, 8, 8]}]
    assert check["outputs"] == [{"name": "features", "shape": [1, 6, 8, 8]}, {"name": "score", "shape": [1, 5]}]


def test_verify_feeds_every_input_and_compares_every_output(tmp_path: Path) -> None:
    """`tasobuild verify` on a two-input, two-output model: a seeded input per input, or one file each (--input in
    the model's order), every output compared with ONNX Runtime's; a wrong number of files is one line."""
    model = two_in_two_out(tmp_path / "m.onnx")
    spec = write_spec(tmp_path, model, memory="64 KiB")
    seeded = json.loads(tasobuild_cli("verify", "-c", str(spec), "--json").stdout)
    assert seeded["passed"] and seeded["errors"]["count"] == 384 + 5
    files = [tmp_path / "image.bin", tmp_path / "side.bin"]
    for x, path in zip(feeds_of(8, 8, seed=11), files):
        x.astype("<f4").tofile(path)
    given = json.loads(tasobuild_cli("verify", "-c", str(spec), "--input", str(files[0]), "--input", str(files[1]),
                                     "--json").stdout)
    assert given["passed"] and given["input"] == f"{files[0]}, {files[1]}"
    one = tasobuild_cli("verify", "-c", str(spec), "--input", str(files[0]), check=False)
    assert one.returncode == 1 and "the model has 2 input(s) ('image', 'side:0'); give --input once per input" in \
        one.stderr and len(one.stderr.strip().splitlines()) == 1


def test_infer_reads_every_input_and_writes_every_output_one_after_another(tmp_path: Path) -> None:
    """The library alone, from a C program of the user's: <name>_infer's `in` and `out` are the inputs and outputs
    concatenated in order."""
    model = two_in_two_out(tmp_path / "m.onnx", height=4, width=5)
    spec = write_spec(tmp_path, model, memory="64 KiB")
    tasobuild_cli("build", "-c", str(spec))
    out = tmp_path / "out"
    subprocess.run(["make", "-s", "-C", str(out), "libnet.a"], check=True, capture_output=True, text=True)
    (tmp_path / "user.c").write_text("""\
#include <stdio.h>
#include "net.h"
static unsigned char arena[NET_ARENA_BYTES] __attribute__((aligned(NET_ARENA_ALIGN)));
static float in[NET_INPUT_COUNT + NET_INPUT1_COUNT], out[NET_OUTPUT_COUNT + NET_OUTPUT1_COUNT];
int main(void)
{
    size_t read = fread(in, sizeof(float), NET_INPUT_COUNT + NET_INPUT1_COUNT, stdin);
    if (NET_INPUTS != 2 || NET_OUTPUTS != 2 || read != NET_INPUT_COUNT + NET_INPUT1_COUNT) return 3;
    if (net_infer(in, out, arena) != 0) return 1;
    fwrite(out, sizeof(float), NET_OUTPUT_COUNT + NET_OUTPUT1_COUNT, stdout);
    return 0;
}
""")
    subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", "-I", str(out / "include"), str(tmp_path / "user.c"),
                    str(out / "libnet.a"), "-lm", "-o", str(tmp_path / "user")], check=True, capture_output=True)
    feeds = feeds_of(4, 5)
    proc = subprocess.run([str(tmp_path / "user")], input=b"".join(x.astype("<f4").tobytes() for x in feeds),
                          capture_output=True, check=True)
    expected = reference(model, dict(zip(INPUTS, feeds)))
    ours = np.frombuffer(proc.stdout, dtype="<f4")
    assert_matches(ours, np.concatenate([e.ravel() for e in expected]))


def test_a_dynamic_model_needs_its_shapes_pinned_and_says_how(tmp_path: Path) -> None:
    model = two_in_two_out(tmp_path / "d.onnx", dynamic=True)
    spec = write_spec(tmp_path, model, memory="64 KiB")
    proc = tasobuild_cli("build", "-c", str(spec), check=False)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("tasobuild: error: d.onnx: input 'image' dim 0 is 'N' (dynamic); pin it: "
                                  "--input-shape 'image=1x3x?x?' or, in taso.toml, [network] input_shapes = ")
    half = tasobuild_cli("check", "-c", str(spec), "--input-shape", "image=1x3x8x8", check=False)
    assert "input 'side:0' dim 0 is 'N' (dynamic)" in half.stderr
    for args, message in (
            (("--input-shape", "imag=1x3x8x8"),
             "command line: input_shapes: 'imag' names no input of d.onnx (did you mean 'image'? its inputs: "
             "'image', 'side:0')"),
            (("--input-shape", "image=1x5x8x8"),
             "command line: input_shapes: 'image' dim 1 is pinned to 5, but d.onnx fixes it at 3: ?x3x?x?"),
            (("--input-shape", "image=1x3x8"),
             "command line: input_shapes: 'image' is pinned to [1, 3, 8], 3 dimensions, but input 'image' of "
             "d.onnx has 4"),
            (("--input-shape", "image=1x3xeightx8"), "--input-shape 'image=1x3xeightx8': write NAME=SHAPE")):
        proc = tasobuild_cli("plan", "-c", str(spec), *args, check=False)
        assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert message in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "taso.lock").exists()


def test_pins_from_the_spec_and_the_command_line_build_and_run_and_are_in_the_lock(tmp_path: Path) -> None:
    model = two_in_two_out(tmp_path / "d.onnx", dynamic=True)
    spec = write_spec(tmp_path, model, memory="64 KiB")
    spec.write_text(spec.read_text().replace('onnx = "d.onnx"\n', 'onnx = "d.onnx"\n'
                                             'input_shapes = { image = [1, 3, 6, 7], "side:0" = [1, 4, 6, 7] }\n'))
    build_compile_run(spec, model, 6, 7)
    lock = (tmp_path / "taso.lock").read_text()
    spec_digest = re.search(r'^spec = "([0-9a-f]+)"', lock, re.M)
    assert spec_digest is not None
    # the command line overrides one input's pin; the other stays as the file says
    build_compile_run(spec, model, 6, 9, "--input-shape", "image=1x3x6x9", "--input-shape", "side:0=1x4x6x9")
    again = re.search(r'^spec = "([0-9a-f]+)"', (tmp_path / "taso.lock").read_text(), re.M)
    assert again is not None and again[1] != spec_digest[1]
    header = (tmp_path / "out" / "include" / "net.h").read_text()
    assert "#define NET_INPUT_COUNT   162" in header  # 3 * 6 * 9
    planned = tasobuild.plan(spec, input_shapes={"image": [1, 3, 4, 4], "side:0": (1, 4, 4, 4)})
    # the API's pins reach the plan: other shapes, other calls, another predicted time (neither the fastest plan's
    # arena nor its own bound need shrink with the inputs: they follow the primitives the costs pick)
    as_filed = json.loads(tasobuild_cli("plan", "-c", str(spec), "--json").stdout)
    assert planned.predicted_ms != as_filed["predicted_ms"]
    front = tasobuild_cli("pareto", "-c", str(spec), "--points", "2", "--input-shape", "image=1x3x4x4",
                          "--input-shape", "side:0=1x4x4x4", "--json")
    assert json.loads(front.stdout)["points"]


@pytest.mark.parametrize("pins", ['{ image = [1, 3, 0, 8] }', '{ image = "1x3x8x8" }', '[1, 3, 8, 8]'])
def test_a_malformed_input_shapes_table_names_the_line(tmp_path: Path, pins: str) -> None:
    model = two_in_two_out(tmp_path / "d.onnx", dynamic=True)
    spec = write_spec(tmp_path, model, memory="64 KiB")
    spec.write_text(spec.read_text().replace('onnx = "d.onnx"\n', f'onnx = "d.onnx"\ninput_shapes = {pins}\n'))
    proc = tasobuild_cli("check", "-c", str(spec), check=False)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert f"{spec}:6" in proc.stderr and "input_shapes" in proc.stderr, proc.stderr


def test_init_pins_a_dynamic_model_into_the_starter_spec(tmp_path: Path) -> None:
    two_in_two_out(tmp_path / "d.onnx", dynamic=True)
    refused = tasobuild_cli("init", "d.onnx", cwd=tmp_path, check=False)
    assert refused.returncode == 1 and "pin it: --input-shape 'image=1x3x?x?'" in refused.stderr
    assert not (tmp_path / "taso.toml").exists()
    tasobuild_cli("init", "d.onnx", "--input-shape", "image=1x3x5x5", "--input-shape", "side:0=1x4x5x5", cwd=tmp_path)
    assert 'input_shapes = { "image" = [1, 3, 5, 5], "side:0" = [1, 4, 5, 5] }' in (tmp_path / "taso.toml").read_text()
    check = json.loads(tasobuild_cli("check", "--json", cwd=tmp_path).stdout)
    assert check["inputs"][1] == {"name": "side:0", "shape": [1, 4, 5, 5]}
