"""RAM and flash per network per microcontroller target: as `tasobuild build --json` estimates them, and as
`arm-none-eabi-size -A` measures the linked .elf. Prints BENCHMARKS.md's "Embedded targets" table.

    python bench/embedded_memory.py [--networks ds_cnn_tf resnet8_tf mobilenet_v1_vww_tf]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e import tasobuild  # noqa: E402
from tests.test_embedded import MCUS, TINY, make, measured, write_spec  # noqa: E402


def row(network: str, target: str, work: Path) -> str:
    spec = write_spec(work, network, target)
    built = tasobuild("build", "-c", str(spec), "--json", check=False)
    tiling = ""
    if built.returncode != 0:  # does not fit untiled: what the message says to do
        spec = write_spec(work, network, target, extra="tiling = true\n")
        built, tiling = tasobuild("build", "-c", str(spec), "--json"), " (tiled)"
    memory = json.loads(built.stdout)["memory"]
    make(work / "out")
    size = measured(work / "out" / "net_main.elf")
    kib = lambda n: f"{n / 1024:.1f}"  # noqa: E731
    return (f"| {network}{tiling} | {target} | {kib(memory['ram_bytes'])} | {kib(size.ram_bytes)} | "
            f"{kib(memory['target_ram_bytes'])} | {kib(memory['flash_bytes'])} | {kib(size.flash_bytes)} | "
            f"{kib(memory['target_flash_bytes'])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=list(TINY))
    args = parser.parse_args()
    print("| network | target | RAM estimated (KiB) | RAM in the .elf | device RAM | flash estimated | flash in the "
          ".elf | device flash |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for network in args.networks:
        for target in MCUS:
            with tempfile.TemporaryDirectory() as work:
                print(row(network, target, Path(work)), flush=True)
    subprocess.run(["arm-none-eabi-gcc", "--version"], check=True, stdout=sys.stderr)


if __name__ == "__main__":
    main()
