from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tasobuild.errors import UserError
from tasobuild.target import builtin_target_names, cpu_model_from_cpuinfo, host_fingerprint, load_target, targets_dir

CROSS_TARGET_WITH_HOST_CC = """\
name = "fake-mcu"
cc = "cc"
cflags = ["-O2"]
profile = false
ram = "128 KiB"
"""


def load_error(name: str, spec_dir: Path, where: str | None = None) -> str:
    with pytest.raises(UserError) as error:
        load_target(name, spec_dir, where)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_builtin_targets():
    assert targets_dir() == Path(__file__).resolve().parent.parent / "targets"
    names = builtin_target_names()
    assert {"cortex-m4", "host"} <= set(names)
    assert list(names) == sorted(names)


def test_host_target(tmp_path):
    host = load_target("host", tmp_path)
    assert host.name == "host"
    assert host.cc == "cc"
    assert host.cflags == ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno")
    assert "-ffast-math" not in host.cflags
    assert host.ldflags == ("-lm",)
    assert host.profile is True
    assert host.ram is None
    assert host.source == targets_dir() / "host.toml"


def test_cortex_m4_target(tmp_path):
    m4 = load_target("cortex-m4", tmp_path)
    assert m4.cc == "arm-none-eabi-gcc"
    assert m4.cflags[:5] == ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-O2")
    assert m4.profile is False
    assert m4.ram == 262_144


def test_target_by_path_relative_to_the_spec_dir(tmp_path):
    (tmp_path / "boards").mkdir()
    (tmp_path / "boards" / "fake-mcu.toml").write_text(CROSS_TARGET_WITH_HOST_CC.replace('name = "fake-mcu"\n', ""))
    target = load_target("boards/fake-mcu.toml", tmp_path)
    assert target.name == "fake-mcu"  # from the file name
    assert target.ram == 131_072
    assert target.source == tmp_path / "boards" / "fake-mcu.toml"
    assert target.canonical() == {"cc": "cc", "cflags": ["-O2"], "ldflags": [],
                                  "name": "fake-mcu", "profile": False, "ram": 131072}
    assert target.digest == hashlib.sha256(json.dumps(target.canonical(), sort_keys=True,
                                                      separators=(",", ":")).encode()).hexdigest()


def test_unknown_builtin_target(tmp_path):
    assert load_error("hots", tmp_path, "taso.toml:9") == (
        "taso.toml:9: target.name: unknown target 'hots'; did you mean 'host'? "
        f"built-in targets: {', '.join(builtin_target_names())} (or give a path to a target TOML)")


def test_missing_target_file(tmp_path):
    assert load_error("boards/x.toml", tmp_path) == (
        f"target.name: target file 'boards/x.toml' not found (looked for {tmp_path}/boards/x.toml; "
        "paths are relative to the spec file)")


def test_target_file_errors_name_file_line_and_key(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(CROSS_TARGET_WITH_HOST_CC.replace("cflags", "cflag"))
    assert load_error("t.toml", tmp_path) == f"{path}:3: unknown key 'cflag'; did you mean 'cflags'?"
    path.write_text(CROSS_TARGET_WITH_HOST_CC.replace("profile = false\n", ""))
    assert load_error("t.toml", tmp_path) == f"{path}: missing required key 'profile'"
    path.write_text(CROSS_TARGET_WITH_HOST_CC.replace('"128 KiB"', '"lots"'))
    assert load_error("t.toml", tmp_path) == (
        f"""{path}:5: ram: 'lots' is not a size (e.g. "64 KiB", "1.5 MB"; units: B, KB, KiB, MB, MiB, GB, GiB)""")


def test_a_board_name_cannot_carry_text_into_the_linker_script(tmp_path):
    """The board's name is written into the linker script's comment and the Makefile: only a QEMU machine name's
    characters are accepted."""
    path = tmp_path / "t.toml"
    board = '\n[board]\nmachine = "x */ INCLUDE evil /*"\nflash_origin = 0\nram_origin = 0x20000000\n'
    path.write_text(CROSS_TARGET_WITH_HOST_CC + board)
    assert load_error("t.toml", tmp_path).startswith(f"{path}:8: board.machine: string should match pattern")
    path.write_text(CROSS_TARGET_WITH_HOST_CC + board.replace("x */ INCLUDE evil /*", "mps2-an386"))
    assert load_target("t.toml", tmp_path).board.machine == "mps2-an386"  # type: ignore[union-attr]


def test_host_fingerprint_is_stable_and_describes_this_machine(tmp_path):
    host = load_target("host", tmp_path)
    first, second = host_fingerprint(host), host_fingerprint(load_target("host", tmp_path))
    assert first == second
    assert first.digest == second.digest
    version = subprocess.run(["cc", "--version"], capture_output=True, text=True, check=True,
                             env={"LC_ALL": "C", "PATH": "/usr/bin:/bin:/usr/local/bin"}).stdout
    assert first.compiler == version.splitlines()[0].strip()
    assert first.machine == platform.machine()
    assert first.cflags == host.cflags
    if Path("/proc/cpuinfo").exists():
        assert first.cpu == cpu_model_from_cpuinfo(Path("/proc/cpuinfo").read_text())
    fields = {key: value for key, value in first.as_dict().items() if key != "digest"}
    expected = hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert first.digest == expected


def test_fingerprint_changes_with_flags_and_a_cross_target_has_no_host_cpu(tmp_path):
    host = host_fingerprint(load_target("host", tmp_path))
    (tmp_path / "fake-mcu.toml").write_text(CROSS_TARGET_WITH_HOST_CC)
    cross = host_fingerprint(load_target("fake-mcu.toml", tmp_path))
    assert (cross.cpu, cross.machine) == (None, None)
    assert cross.compiler == host.compiler
    assert cross.digest != host.digest


def test_missing_compiler_names_it_and_the_target_file(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(CROSS_TARGET_WITH_HOST_CC.replace('cc = "cc"', 'cc = "no-such-cc-4711"'))
    with pytest.raises(UserError) as error:
        host_fingerprint(load_target("t.toml", tmp_path))
    assert str(error.value) == (f"{path}: target 'fake-mcu': compiler 'no-such-cc-4711' was not found; "
                                "install it or set cc in the target file")


def test_host_flags_compile_and_run_float_code(tmp_path):
    host = load_target("host", tmp_path)
    source = tmp_path / "t.c"
    source.write_text('#include <math.h>\n#include <stdio.h>\n'
                      'int main(void) { volatile float x = 2.0f; printf("%.9g\\n", sqrtf(x) * 3.0f + 1.0f); }\n')
    subprocess.run([*host.cc_argv, *host.cflags, str(source), "-o", str(tmp_path / "t"), *host.ldflags], check=True)
    output = subprocess.run([str(tmp_path / "t")], capture_output=True, text=True, check=True).stdout
    # float32, each operation rounded on its own (no FMA contraction), exactly as numpy computes it
    expected = np.sqrt(np.float32(2)) * np.float32(3) + np.float32(1)
    assert np.float32(output) == expected
    assert output == "5.2426405\n"


@pytest.mark.parametrize("cpuinfo, expected", [
    ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz\n"
     "processor\t: 1\nmodel name\t: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz\n",
     "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz"),
    ("processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: 0xd0c\n",
     "implementer 0x41 part 0xd0c"),
    ("processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nCPU implementer\t: 0x41\nCPU part\t: 0xd03\n"
     "Hardware\t: BCM2835\n",
     "ARMv7 Processor rev 4 (v7l) (implementer 0x41 part 0xd03)"),
    ("processor\t: 0\nHardware\t: Qualcomm MSM8996\n", "Qualcomm MSM8996"),
    ("", None),
])
def test_cpu_model_from_cpuinfo(cpuinfo, expected):
    assert cpu_model_from_cpuinfo(cpuinfo) == expected
