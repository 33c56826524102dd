"""Process replay: build the same networks with two revisions of tasobuild and prove the outputs byte-identical.

    python bench/replay.py OLD [NEW] [--networks NAME ...] [--configs NAME ...] [--costs-from-old] [--keep DIR]

OLD and NEW are git revisions of this repository; NEW defaults to the working tree as it is (uncommitted changes
included). Each revision is extracted with `git archive` into a temporary folder (the working tree is used in place)
and its own tasobuild runs as a subprocess, `PYTHONPATH=<rev> python -P -m tasobuild build -c <spec> --json`, so
nothing here depends on tasobuild's Python API: only its command line and the files it writes.

Per network and configuration, one project folder per side (`<work>/{old,new}/<network>/<config>/taso.toml`, the
C tree in `out/`, the lock `taso.lock`); both sides get the same spec bytes and the same relative model path. The
`out/` trees and the locks are then compared byte for byte. Exit status: 0 if everything is identical, 1 if
anything unexpected differs (or a build fails on one side only), 2 on a usage error.

Configurations (costs from the performance model unless named "profile"; solver time limit 600 s everywhere so
that a plan never depends on how fast the machine was):
  memory        objective = "memory", generous budget: the smallest untiled arena S (and the fastest plan's arena
                F, from the time-only baseline), which the budgets below are derived from (as OLD reports them)
  latency       objective = "latency", budget halfway between S and F (the budgeted solver)
  tiled-memory  objective = "memory", tiling = true: the smallest tiled arena T
  tiled         objective = "latency", tiling = true, budget halfway between T and S (below what untiled plans
                need, so tiled groups appear), or the latency budget if tiling saves nothing
  profile       as latency with costs = "profile" (small networks only); see "Costs" below
Groups: "model" = memory latency tiled-memory tiled; "all" = every configuration. A configuration whose budget
comes from another one runs that one too (on both sides, compared like the rest).

Networks: every ONNX file in tests/fixtures/models/ (by stem), `ds_cnn` (models/ds_cnn.onnx), `inverted_residual`
(an expand -> depthwise -> project block generated here with fixed seeds: the network whose smallest plan uses
channel slices, the zoo's use row bands) and the big zoo networks resnet18 googlenet mobilenetv2 squeezenet11
vgg16, exported with torch by `python -m tests.zoo.build NAME --out ZOO` into $TASOBUILD_ZOO_DIR (default
tests/.zoo/), reusing an existing export. Default: all but vgg16 (slow). Groups: "small", "big", "all".

Costs: each side has its own TASOBUILD_CACHE_DIR folders (under the work folder), so NEW never reuses a stage
result of OLD (the stage cache is keyed by tasobuild's own source: with OLD = NEW it would otherwise skip NEW's
solves and hide a non-deterministic one). Two per side: the model-cost configurations use one that never holds a
measurement (a "model" build still uses any cost measured in its cache, so sharing one with the profiled builds
would make their plans, and the budgets derived from them, depend on timing noise); the profile configuration
uses the other. Before each NEW build, every row of OLD's cost cache (costs.sqlite) of that kind is copied into
NEW's, so NEW sees exactly the costs OLD measured and measures nothing. The cache keys a cost by (target fingerprint,
kernel-source digest, call): if the kernel sources differ, NEW's builds would miss OLD's rows and measure anew;
--costs-from-old also copies OLD's rows to NEW's kernel digest (taken from a NEW lock). Whenever the two locks'
`[inputs] kernels` differ, differences in `out/src/kernels/*`, in that lock line and in the lock's [files] digests
of those files are expected and reported apart, as "kernel sources".

Examples:
    python bench/replay.py HEAD HEAD                          # determinism: everything must be identical
    python bench/replay.py main                               # this working tree against main
    python bench/replay.py main --networks ds_cnn --configs model --keep /tmp/replay
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FIXTURE_DIR = REPO / "tests" / "fixtures" / "models"
BUNDLED = ("ds_cnn", REPO / "models" / "ds_cnn.onnx")
SYNTHETIC = "inverted_residual"
BIG = ("resnet18", "googlenet", "mobilenetv2", "squeezenet11", "vgg16")
BIG_DEFAULT = tuple(name for name in BIG if name != "vgg16")

sys.path.insert(0, str(REPO))
from tests.e2e import inverted_residual_model  # noqa: E402  (the same block as tests/test_tiling.py)

CONFIGS = ("memory", "latency", "tiled-memory", "tiled", "profile")
MODEL_CONFIGS = ("memory", "latency", "tiled-memory", "tiled")
NEEDS = {"latency": ("memory",), "tiled": ("memory", "tiled-memory"), "profile": ("memory",)}
GENEROUS = 4 << 30  # bytes: a budget no network here comes near
TIME_LIMIT = "600 s"
KERNEL_TREE = "src/kernels/"
DIFF_LINES = 8  # per differing file
DIFF_FILES = 4  # per project


# ---------------------------------------------------------------------------------------------------------------
# Revisions, networks, specs.


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class Side:
    """One revision: where its source is, its own cache folders (by cost source), and its project folders."""

    label: str  # "old" | "new"
    rev: str  # as given, or "working tree"
    commit: str
    src: Path
    caches: Path  # cache-<label>-<costs>/ in here
    projects: Path

    def cache(self, costs: str) -> Path:
        """TASOBUILD_CACHE_DIR of the builds with `costs` (model costs: one that never holds a measurement)."""
        return self.caches / f"cache-{self.label}-{'model' if costs == 'model' else 'measured'}"

    def env(self, costs: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
        return {**env, "PYTHONPATH": str(self.src), "TASOBUILD_CACHE_DIR": str(self.cache(costs)),
                "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


def materialise(rev: str | None, label: str, work: Path) -> Side:
    """The revision's source tree (`git archive` of the commit; the repository itself for the working tree)."""
    projects = work / label
    projects.mkdir(parents=True)
    if rev is None:
        dirty = " + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
        return Side(label, "working tree", git("rev-parse", "HEAD")[:12] + dirty, REPO, work, projects)
    try:
        commit = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"replay: {rev!r} is not a revision of {REPO}") from None
    src = work / f"src-{label}"
    src.mkdir()
    archive = subprocess.Popen(["git", "-C", str(REPO), "archive", "--format=tar", commit], stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", str(src)], stdin=archive.stdout, capture_output=True)
    if archive.wait() != 0 or untar.returncode != 0:
        raise SystemExit(f"replay: cannot extract {rev}: {untar.stderr.decode(errors='replace').strip()}")
    return Side(label, rev, commit[:12], src, work, projects)


def check_import(side: Side) -> None:
    """The subprocess must import the revision's tasobuild, not the installed one."""
    probe = subprocess.run([sys.executable, "-P", "-c", "import tasobuild; print(tasobuild.__file__)"],
                           env=side.env("model"), cwd=side.projects, capture_output=True, text=True)
    where = Path(probe.stdout.strip() or "?").resolve()
    if probe.returncode != 0 or not where.is_relative_to(side.src.resolve()):
        raise SystemExit(f"replay: {side.label} imports tasobuild from {where}, not {side.src}: {probe.stderr.strip()}")


def small_networks() -> list[str]:
    return sorted(p.stem for p in FIXTURE_DIR.glob("*.onnx")) + [BUNDLED[0], SYNTHETIC]


def network_names(requested: Sequence[str]) -> list[str]:
    groups = {"small": small_networks(), "big": list(BIG), "all": small_networks() + list(BIG),
              "default": small_networks() + list(BIG_DEFAULT)}
    known = small_networks() + list(BIG)
    names: list[str] = []
    for name in requested or ["default"]:
        for item in groups.get(name, [name]):
            if item not in known:
                raise SystemExit(f"replay: unknown network {item!r}; known: {', '.join(known)} (or small, big, all)")
            if item not in names:
                names.append(item)
    return names


def config_names(requested: Sequence[str]) -> list[str]:
    groups = {"model": list(MODEL_CONFIGS), "all": list(CONFIGS)}
    chosen: set[str] = set()
    for name in requested or ["all"]:
        for item in groups.get(name, [name]):
            if item not in CONFIGS:
                raise SystemExit(f"replay: unknown config {item!r}; known: {', '.join(CONFIGS)} (or model, all)")
            chosen |= {item, *NEEDS.get(item, ())}
    return [name for name in CONFIGS if name in chosen]


def zoo_dir() -> Path:
    return Path(os.environ.get("TASOBUILD_ZOO_DIR") or REPO / "tests" / ".zoo")


def model_file(name: str, models: Path) -> Path:
    """`models/NAME.onnx` in the work folder: a link to the committed file or the zoo export (made if missing)."""
    link = models / f"{name}.onnx"
    if name == SYNTHETIC:
        inverted_residual_model(link)
        return link
    if name == BUNDLED[0]:
        source = BUNDLED[1]
    elif name in BIG:
        source = zoo_dir() / f"{name}.onnx"
        if not source.is_file():
            print(f"replay: exporting {name} into {zoo_dir()}", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "tests.zoo.build", name, "--out", str(zoo_dir())], cwd=REPO,
                           check=True, stdout=subprocess.DEVNULL)
    else:
        source = FIXTURE_DIR / f"{name}.onnx"
    link.symlink_to(source.resolve())
    return link


@dataclass(frozen=True)
class Config:
    name: str
    objective: str
    tiling: bool
    costs: str


CONFIG = {
    "memory": Config("memory", "memory", False, "model"),
    "latency": Config("latency", "latency", False, "model"),
    "tiled-memory": Config("tiled-memory", "memory", True, "model"),
    "tiled": Config("tiled", "latency", True, "model"),
    "profile": Config("profile", "latency", False, "profile"),
}


def budget(config: str, arenas: dict[str, int]) -> int | None:
    """The config's budget in bytes from OLD's arenas (S smallest untiled, F fastest, T smallest tiled); None if
    an arena it needs is unknown (its build failed)."""
    if config in ("memory", "tiled-memory"):
        return GENEROUS
    if "S" not in arenas or "F" not in arenas:
        return None
    middle = arenas["S"] + (arenas["F"] - arenas["S"]) // 2
    if config != "tiled":
        return middle
    if "T" not in arenas:
        return None
    return arenas["T"] + (arenas["S"] - arenas["T"]) // 2 if arenas["T"] < arenas["S"] else middle


def spec_text(network: str, config: Config, memory: int) -> str:
    return (f'[project]\nname = "{network}"\n\n[network]\nonnx = "../../../models/{network}.onnx"\n\n'
            f'[target]\nname = "host"\n\n[constraints]\nmemory = {memory}\nobjective = "{config.objective}"\n\n'
            f'[optimizer]\ncosts = "{config.costs}"\ntiling = {str(config.tiling).lower()}\n'
            f'time_limit = "{TIME_LIMIT}"\n\n[build]\nout = "out"\n')


# ---------------------------------------------------------------------------------------------------------------
# Building, and the cost caches.


@dataclass
class Build:
    ok: bool
    seconds: float
    report: dict[str, Any]
    error: str  # the last line of stderr when the build failed


def run_build(side: Side, project: Path, costs: str) -> Build:
    command = [sys.executable, "-P", "-m", "tasobuild", "build", "-c", str(project / "taso.toml"), "--json"]
    start = time.perf_counter()
    done = subprocess.run(command, env=side.env(costs), cwd=project, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    (project / "build.json").write_text(done.stdout)
    (project / "build.stderr").write_text(done.stderr)
    report: dict[str, Any] = {}
    if done.returncode == 0:
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError:
            pass
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return Build(done.returncode == 0, seconds, report, lines[-1] if lines else f"exit {done.returncode}")


def lock_value(lock: Path, key: str) -> str | None:
    """`key = "..."` of the lock's [inputs] table, read as text (the lock's layout may change between revisions)."""
    if not lock.is_file():
        return None
    match = re.search(rf'^{re.escape(key)} = "([^"]*)"$', lock.read_text(errors="replace"), re.MULTILINE)
    return match[1] if match else None


def copy_costs(old: Side, new: Side, costs: str, remap: tuple[str, str] | None) -> int:
    """Copy every row of OLD's cost cache into NEW's (and, with `remap` = (old digest, new digest), OLD's rows of
    its kernel sources again under NEW's); returns the rows copied. Same database layout on both sides assumed."""
    source, target = old.cache(costs) / "costs.sqlite", new.cache(costs) / "costs.sqlite"
    if not source.is_file():
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file():  # NEW has no cache yet: start from a copy of OLD's (schema included)
        with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
    columns = "fingerprint, kernel_digest, call_key, median_ms, spread_ms, reps, source"
    with closing(sqlite3.connect(target, timeout=60, isolation_level=None)) as db:
        db.execute("ATTACH DATABASE ? AS old", (str(source),))
        db.execute("BEGIN IMMEDIATE")
        db.execute(f"INSERT OR REPLACE INTO main.costs ({columns}) SELECT {columns} FROM old.costs")
        if remap is not None and remap[0] != remap[1]:
            renamed = columns.replace("kernel_digest", "?")
            db.execute(f"INSERT OR REPLACE INTO main.costs ({columns}) SELECT {renamed} FROM old.costs"
                       " WHERE kernel_digest = ?", (remap[1], remap[0]))
        db.execute("COMMIT")
        count: int = db.execute("SELECT count(*) FROM old.costs").fetchone()[0]
        db.execute("DETACH DATABASE old")
    return count


# ---------------------------------------------------------------------------------------------------------------
# Comparing.


def files_under(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()}


def first_diff_lines(name: str, old: Path | None, new: Path | None) -> list[str]:
    if old is None or new is None:
        return [f"only in {'new' if old is None else 'old'}: {name}"]
    a, b = old.read_bytes(), new.read_bytes()
    try:
        a_lines, b_lines = a.decode().splitlines(), b.decode().splitlines()
    except UnicodeDecodeError:
        where = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        return [f"binary {name} differs: {len(a)} vs {len(b)} bytes, first at byte {where}"]
    diff = list(difflib.unified_diff(a_lines, b_lines, f"old/{name}", f"new/{name}", n=0, lineterm=""))
    return diff[:DIFF_LINES] + ([f"... ({len(diff) - DIFF_LINES} more diff lines)"] if len(diff) > DIFF_LINES else [])


def without_kernel_lines(lock_text: str) -> str:
    """The lock without what kernel-source changes explain: `kernels = ...` and [files] digests of kernel files."""
    return "\n".join(line for line in lock_text.splitlines()
                     if not line.startswith("kernels = ") and not line.startswith(f'"{KERNEL_TREE}'))


@dataclass
class Outcome:
    network: str
    config: str
    budget: int | None
    old: Build | None = None
    new: Build | None = None
    files: int = 0
    differing: list[str] = field(default_factory=list)  # unexpected
    kernel_files: list[str] = field(default_factory=list)  # expected: kernel sources changed
    lock: str = "-"  # identical | kernel sources | differs | missing
    details: list[str] = field(default_factory=list)
    tiling: str = ""
    status: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.differing) or self.lock in ("differs", "missing") or self.verdict == "FAILS ON ONE SIDE"

    @property
    def verdict(self) -> str:
        if self.old is None or self.new is None:
            return "skipped"
        if not self.old.ok or not self.new.ok:
            if not self.old.ok and not self.new.ok and self.old.error == self.new.error:
                return "both fail"
            return "FAILS ON ONE SIDE"
        return "identical" if not self.differing else f"{len(self.differing)} files differ"


def compare(outcome: Outcome, old_project: Path, new_project: Path) -> None:
    old_lock, new_lock = old_project / "taso.lock", new_project / "taso.lock"
    kernels_changed = lock_value(old_lock, "kernels") != lock_value(new_lock, "kernels")
    old_files, new_files = files_under(old_project / "out"), files_under(new_project / "out")
    outcome.files = len(old_files.keys() | new_files.keys())
    shown = 0
    for name in sorted(old_files.keys() | new_files.keys()):
        a, b = old_files.get(name), new_files.get(name)
        if a is not None and b is not None and a.read_bytes() == b.read_bytes():
            continue
        if kernels_changed and name.startswith(KERNEL_TREE):
            outcome.kernel_files.append(name)
            continue
        outcome.differing.append(name)
        if shown < DIFF_FILES:
            outcome.details += first_diff_lines(f"out/{name}", a, b)
            shown += 1
    if not old_lock.is_file() or not new_lock.is_file():
        outcome.lock = "missing"
        return
    old_text, new_text = old_lock.read_text(errors="replace"), new_lock.read_text(errors="replace")
    if old_text == new_text:
        outcome.lock = "identical"
    elif kernels_changed and without_kernel_lines(old_text) == without_kernel_lines(new_text):
        outcome.lock = "kernel sources"
    else:
        outcome.lock = "differs"
        outcome.details += first_diff_lines("taso.lock", old_lock, new_lock)


def tiled_groups(lock: Path) -> str:
    """The fused groups in a lock's `tiling` column, counted by kind: "rows 17, channels 2"."""
    if not lock.is_file():
        return ""
    groups = set(re.findall(r'^tiling = "([^"]+)"$', lock.read_text(errors="replace"), re.MULTILINE)) - {"none"}
    kinds: dict[str, int] = {}
    for group in sorted(groups):
        kind = next((token.split("=")[0] for token in group.split() if "=" in token), group)
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))


# ---------------------------------------------------------------------------------------------------------------
# The run.


@dataclass
class Replay:
    old: Side
    new: Side
    models: Path
    costs_from_old: bool
    outcomes: list[Outcome] = field(default_factory=list)
    new_kernels: str | None = None

    def new_kernel_digest(self, network: str) -> str | None:
        """NEW's kernel digest, from a NEW lock built so far, else from a probe build (model costs)."""
        if self.new_kernels is None:
            for lock in sorted(self.new.projects.rglob("taso.lock")):
                self.new_kernels = lock_value(lock, "kernels")
                if self.new_kernels:
                    break
        if self.new_kernels is None:
            probe = self.new.projects / "_probe"
            probe.mkdir(parents=True, exist_ok=True)
            (probe / "taso.toml").write_text(spec_text(network, CONFIG["memory"], GENEROUS).replace("../../../", "../"))
            run_build(self.new, probe, "model")
            self.new_kernels = lock_value(probe / "taso.lock", "kernels")
            shutil.rmtree(probe)
        return self.new_kernels

    def run_network(self, network: str, configs: Sequence[str], progress: Callable[[Outcome], None]) -> None:
        model_file(network, self.models)
        arenas: dict[str, int] = {}
        for name in configs:
            if name == "profile" and network not in small_networks():
                continue
            config = CONFIG[name]
            outcome = Outcome(network, name, budget(name, arenas))
            self.outcomes.append(outcome)
            if outcome.budget is None:
                progress(outcome)
                continue
            projects = [side.projects / network / name for side in (self.old, self.new)]
            for project in projects:
                project.mkdir(parents=True)
                (project / "taso.toml").write_text(spec_text(network, config, outcome.budget))
            outcome.old = run_build(self.old, projects[0], config.costs)
            remap = None
            if self.costs_from_old and config.costs != "model":
                old_kernels = lock_value(projects[0] / "taso.lock", "kernels")
                new_kernels = self.new_kernel_digest(network)
                remap = (old_kernels, new_kernels) if old_kernels and new_kernels else None
            copy_costs(self.old, self.new, config.costs, remap)
            outcome.new = run_build(self.new, projects[1], config.costs)
            if outcome.old.ok:
                report = outcome.old.report
                outcome.status = str(report.get("solver", {}).get("status", "?"))
                if name == "memory":
                    arenas["S"] = int(report["arena_bytes"])
                    time_only = report.get("baselines", {}).get("time_only", {})
                    arenas["F"] = max(arenas["S"], int(time_only.get("arena_bytes", arenas["S"])))
                elif name == "tiled-memory":
                    arenas["T"] = int(report["arena_bytes"])
            if outcome.old.ok and outcome.new.ok:
                compare(outcome, projects[0], projects[1])
                measured = outcome.new.report.get("profiled", 0)
                if measured:  # OLD's costs did not cover NEW's calls: the difference, if any, may come from it
                    outcome.details.append(f"note: NEW measured {measured} calls OLD's cost cache did not have")
            outcome.tiling = tiled_groups(projects[0] / "taso.lock")
            progress(outcome)


def table(rows: list[list[str]]) -> Iterator[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        yield "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        if n == 0:
            yield "  ".join("-" * width for width in widths)


def describe(outcome: Outcome) -> str:
    seconds = [b.seconds for b in (outcome.old, outcome.new) if b is not None]
    timing = " / ".join(f"{s:.1f} s" for s in seconds)
    return f"{outcome.network} {outcome.config}: {outcome.verdict}, lock {outcome.lock} ({timing})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/replay.py", description=__doc__.splitlines()[0],
                                     epilog="See the module docstring for the configurations and networks.")
    parser.add_argument("old", metavar="OLD", help="git revision to replay against")
    parser.add_argument("new", metavar="NEW", nargs="?", help="git revision (default: the working tree as it is)")
    parser.add_argument("--networks", nargs="+", default=[], metavar="NAME",
                        help="networks or groups (small, big, all; default: all but vgg16)")
    parser.add_argument("--configs", nargs="+", default=[], metavar="NAME",
                        help=f"configurations ({', '.join(CONFIGS)}) or groups (model, all; default: all)")
    parser.add_argument("--costs-from-old", action="store_true",
                        help="give NEW the costs OLD used even if the kernel sources (their digest) differ")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="build in DIR (new or empty) and keep it")
    args = parser.parse_args(argv)
    networks, configs = network_names(args.networks), config_names(args.configs)

    if args.keep is not None:
        if args.keep.exists() and any(args.keep.iterdir()):
            parser.error(f"--keep {args.keep}: not empty")
        work = args.keep.resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="tasobuild-replay-"))
    start = time.perf_counter()
    try:
        old, new = materialise(args.old, "old", work), materialise(args.new, "new", work)
        for side in (old, new):
            check_import(side)
        print(f"replay: old = {old.rev} ({old.commit}), new = {new.rev} ({new.commit}); work folder {work}",
              file=sys.stderr)
        models = work / "models"
        models.mkdir()
        replay = Replay(old, new, models, args.costs_from_old)
        for network in networks:
            replay.run_network(network, configs, lambda o: print(f"replay: {describe(o)}", file=sys.stderr))
        return report(replay, time.perf_counter() - start)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def report(replay: Replay, seconds: float) -> int:
    outcomes = replay.outcomes
    rows = [["network", "config", "budget B", "files", "tree", "lock", "solver", "tiled groups", "old s", "new s"]]
    for o in outcomes:
        tree = o.verdict + (f" (+{len(o.kernel_files)} kernel sources)" if o.kernel_files else "")
        rows.append([o.network, o.config, str(o.budget) if o.budget is not None else "-", str(o.files), tree,
                     o.lock, o.status, o.tiling or "-", f"{o.old.seconds:.1f}" if o.old else "-",
                     f"{o.new.seconds:.1f}" if o.new else "-"])
    print(f"old = {replay.old.rev} ({replay.old.commit}), new = {replay.new.rev} ({replay.new.commit})\n")
    print("\n".join(table(rows)))
    for o in outcomes:
        problems = list(o.details)
        for build in (o.old, o.new):
            if build is not None and not build.ok:
                label = "old" if build is o.old else "new"
                problems.append(f"{label} build failed: {build.error}")
        if o.old is not None and o.budget is None:
            problems.append("skipped: its budget needs a build that failed")
        if problems:
            print(f"\n{o.network} {o.config}:")
            print("\n".join(f"  {line}" for line in problems))
    kernel_pairs = [o for o in outcomes if o.kernel_files or o.lock == "kernel sources"]
    if kernel_pairs:
        print(f"\nkernel sources differ between OLD and NEW: expected differences in {len(kernel_pairs)} projects "
              f"(src/kernels/ files, the lock's inputs.kernels and their [files] digests)")
    builds = [b for o in outcomes for b in (o.old, o.new) if b is not None]
    old_s = sum(o.old.seconds for o in outcomes if o.old)
    new_s = sum(o.new.seconds for o in outcomes if o.new)
    failed = [o for o in outcomes if o.failed]
    compared = [o for o in outcomes if o.old and o.new and o.old.ok and o.new.ok]
    print(f"\n{len(compared)} project pairs compared ({sum(o.files for o in compared)} files), {len(builds)} builds "
          f"(old {old_s:.0f} s, new {new_s:.0f} s); wall time {seconds:.0f} s")
    if failed:
        print(f"DIFFERENCES in {len(failed)} of {len(outcomes)} projects: "
              + ", ".join(f"{o.network}/{o.config}" for o in failed))
        return 1
    print("no unexpected differences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
