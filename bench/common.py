"""Shared by the benchmark scripts: run the real CLI on a network, and record results in BENCHMARKS.md.

Each script prints a table and replaces its own section of BENCHMARKS.md (between `<!-- bench:NAME -->` markers),
together with the command that reproduces it. Machines are noisy: scripts report medians and ratios measured side
by side in one run.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e import write_spec  # noqa: E402
from tests.zoo import ensure_model  # noqa: E402


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, {cc}"


def user_env(env: dict | None = None) -> dict:
    """The environment a user's shell would give: Python caching bytecode as it does by default (and as a pip
    install does, compiling it at install time). Some sandboxes set PYTHONDONTWRITEBYTECODE, which makes every run
    compile tasobuild from source, about 0.2 s that no user pays."""
    env = dict(os.environ if env is None else env)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def tasobuild(*args: str, env: dict | None = None, root: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the CLI of the tasobuild source tree at `root` (default: this one)."""
    proc = subprocess.run([sys.executable, "-m", "tasobuild", *args], capture_output=True, text=True,
                          cwd=root, env=user_env(env))
    if proc.returncode != 0:
        raise SystemExit(f"tasobuild {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def build_project(model: str, workdir: Path, memory: str = "4 GiB", extra: str = "", name: str = "net",
                  args: tuple[str, ...] = (), root: Path = ROOT) -> tuple[dict, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    spec = write_spec(workdir, ensure_model(model), name=name, memory=memory, extra=extra)
    report = json.loads(tasobuild("build", "-c", str(spec), "--json", *args, root=root).stdout)
    return report, spec


def make(out_dir: Path, *targets: str) -> float:
    start = time.perf_counter()
    subprocess.run(["make", "-s", "-j2", "-C", str(out_dir), *targets], check=True, capture_output=True)
    return time.perf_counter() - start


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median(xs) -> float:
    return statistics.median(xs)


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def record(name: str, title: str, command: str, body: str) -> None:
    """Replace this benchmark's section of BENCHMARKS.md and print it."""
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nEvery figure below is written by a script in " \
        "bench/; each section names the command that reproduces it.\n"
    section = (f"<!-- bench:{name} -->\n## {title}\n\nReproduce: `{command}`  \nMachine: {machine()}\n\n"
               f"{body.strip()}\n<!-- /bench:{name} -->")
    pattern = re.compile(rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)
    print(section)


def extract_kernels(commit: str, work: Path) -> Path:
    """`commit`'s kernels_pyx/ extracted under `work` (an A/B benchmark's baseline); its path."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "kernels_pyx"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
    return work / "kernels_pyx"


def record_or_print(no_record: bool, name: str, title: str, body: str) -> None:
    """An A/B benchmark's table: printed only (no_record), or written as BENCHMARKS.md's section `name` with the
    command line that ran it."""
    if no_record:
        print(body)
    else:
        record(name, title, " ".join(["python", *sys.argv]), body)

