"""Hostile corpus: taso.lock, the cost cache (costs.sqlite), a cost CSV, the stage cache, the build state and the
no-op record, each of the wrong shape: wrong types inside, a folder where a file belongs, another schema version,
truncated, empty, binary garbage.

Every case runs the real CLI on one real project (the DS-CNN fixture, costs from the performance model) with a
cache folder of its own, and ends in one of two ways (docs/trust/lock-and-caches.md has the table):
* "refused": exit 1 and ONE line on stderr naming the file (and the key) and what to do; the tree and the lock keep
  every byte. The lock is the user's, checked in: tasobuild never repairs it silently.
* "recovers": a warning naming the file, the value recomputed, exit 0 — and the next build works with no warning
  (never stuck). Everything under the cache folder is tasobuild's own: it is rebuilt, not trusted.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import write_target_spec
from tests.zoo import fixture_path

MODEL = "ds_cnn_torch"


@dataclass(frozen=True)
class Project:
    spec: Path
    cache: Path

    @property
    def lock(self) -> Path:
        return self.spec.parent / "taso.lock"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tasobuild", *args, "-c", str(self.spec)], capture_output=True,
                              text=True, env={**os.environ, "TASOBUILD_CACHE_DIR": str(self.cache)})

    def snapshot(self) -> dict[str, bytes]:
        root = self.spec.parent
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    def state_files(self, noop: bool) -> list[Path]:
        return sorted(p for p in (self.cache / "builds").glob("*.json") if p.name.endswith(".noop.json") == noop)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("hostile-lock")
    shutil.copyfile(fixture_path(MODEL), root / "model.onnx")
    project = Project(write_target_spec(root, root / "model.onnx", "host", costs="model"), root / "cache")
    assert project.run("build").returncode == 0
    yield project


@pytest.fixture
def project(built: Project) -> Iterator[Project]:
    """The built project, restored after each case (the lock's bytes) and healed (one more build)."""
    lock = built.lock.read_bytes()
    yield built
    if built.lock.is_dir():
        shutil.rmtree(built.lock)
    built.lock.write_bytes(lock)
    assert built.run("build").returncode == 0


# --- taso.lock: refused, naming the file and the key -------------------------------------------------------------


def replace_line(text: str, prefix: str, new: str, occurrence: int = 0) -> str:
    lines = text.split("\n")
    hits = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    lines[hits[occurrence]] = new
    return "\n".join(lines)


def edit_lock(edit: Callable[[str], str]) -> Callable[[Path], None]:
    def mutate(lock: Path) -> None:
        lock.write_text(edit(lock.read_text()))
    return mutate


def make_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside").write_text("x")


LOCK_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty": (lambda p: p.write_bytes(b""), "no schema version"),
    "binary garbage": (lambda p: p.write_bytes(bytes(range(256)) * 4), "not UTF-8"),
    "truncated mid-value": (lambda p: p.write_bytes(p.read_bytes()[: p.read_bytes().index(b"median_ms") + 4]),
                            "not a valid lock file"),
    "a folder": (make_folder, "is a folder"),
    "newer schema version": (edit_lock(lambda t: t.replace("version = 1", "version = 2", 1)), "upgrade tasobuild"),
    "older schema version": (edit_lock(lambda t: t.replace("version = 1", "version = 0", 1)),
                             "schema version 0 is not one"),
    "version is a string": (edit_lock(lambda t: t.replace("version = 1", 'version = "1"', 1)), "no schema version"),
    "numpy repr (the old auto bug)": (edit_lock(lambda t: replace_line(t, "median_ms = ",
                                                                       "median_ms = np.float64(0.5)")),
                                      "not a valid lock file"),
    "cost median is a string": (edit_lock(lambda t: replace_line(t, "median_ms = ", 'median_ms = "fast"')),
                                "cost[0].median_ms must be a number"),
    "cost median is negative": (edit_lock(lambda t: replace_line(t, "median_ms = ", "median_ms = -1.0")),
                                "cost[0] is not a cost"),
    "cost median is nan": (edit_lock(lambda t: replace_line(t, "median_ms = ", "median_ms = nan")),
                           "cost[0].median_ms must be a number"),
    "cost source unknown": (edit_lock(lambda t: replace_line(t, 'source = "', 'source = "guessed"')),
                            "cost[0] is not a cost"),
    "cost call missing": (edit_lock(lambda t: replace_line(t, "call = ", "")), "cost[0].call is missing"),
    "node workspace is a float": (edit_lock(lambda t: replace_line(t, "workspace_bytes = ", "workspace_bytes = 1.5")),
                                  "node[0].workspace_bytes must be an integer"),
    "node name is a number": (edit_lock(lambda t: replace_line(t, "name = ", "name = 7")),
                              "node[0].name must be a string"),
    "plan arena is a string": (edit_lock(lambda t: replace_line(t, "arena_bytes = ", 'arena_bytes = "big"')),
                               "plan.arena_bytes must be an integer"),
    "plan order unknown": (edit_lock(lambda t: t.replace("[plan]\n", '[plan]\norder = "evil\\n; x"\n', 1)),
                           "plan.order must be one of tensors, file, fastest, plan"),
    "plan objective missing": (edit_lock(lambda t: replace_line(t, "objective = ", "")), "plan.objective is missing"),
    "inputs digest is a number": (edit_lock(lambda t: replace_line(t, "spec = ", "spec = 5")),
                                  "inputs.spec must be a string"),
    "files is an array": (edit_lock(lambda t: t.replace("\n[files]\n", "\n[wrong]\n")
                                    .replace("version = 1", "version = 1\nfiles = [1, 2]", 1)),
                          "files must be a table"),
    "node is a number": (edit_lock(lambda t: t.replace("version = 1", "version = 1\nnode = 3", 1)
                                   .replace("[[node]]", "[[wrong]]")),
                         "node must be an array of tables"),
}


@pytest.mark.parametrize("case", sorted(LOCK_CASES))
def test_a_bad_lock_is_refused_naming_the_file_and_the_key(project: Project, case: str) -> None:
    mutate, expected = LOCK_CASES[case]
    mutate(project.lock)
    before = project.snapshot() if not project.lock.is_dir() else None
    # every case through `build`, and through one of the other commands that read the lock, in turn
    other = (("build", "--locked"), ("build", "--frozen"), ("update",))[sorted(LOCK_CASES).index(case) % 3]
    for command in (("build",), other):
        proc = project.run(*command)
        assert proc.returncode == 1, (command, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert str(project.lock) in proc.stderr and expected in proc.stderr, proc.stderr
    if before is not None:
        assert project.snapshot() == before, "a refused build leaves every byte as it was"


# --- a cost CSV (`costs import`): refused, naming the file and the line -------------------------------------------

CSV_CASES: dict[str, tuple[bytes | None, str]] = {
    "a folder": (None, "cannot read cost CSV"),
    "binary garbage": (bytes(range(256)), "cannot read cost CSV"),
    "no header": (b"tb_add,n=1,0.1,0.0,1\n", ":1: cost CSV must start with the header"),
    "nan median": (b"function,params,median_ms,spread_ms,reps\ntb_add,n=1,nan,0.0,1\n", ":2: bad numbers"),
    "reps is a float": (b"function,params,median_ms,spread_ms,reps\ntb_add,n=1,0.1,0.0,1.5\n", ":2: bad numbers"),
    "a repeated call": (b"function,params,median_ms,spread_ms,reps\ntb_add,n=1,0.1,0,1\ntb_add,n=1,0.2,0,1\n",
                        ":3: tb_add(n=1) repeats line 2"),
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_a_bad_cost_csv_is_refused_naming_the_file(project: Project, case: str, tmp_path: Path) -> None:
    content, expected = CSV_CASES[case]
    csv = tmp_path / "costs.csv"
    if content is None:
        csv.mkdir()
    else:
        csv.write_bytes(content)
    proc = project.run("costs", "import", str(csv))
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert str(csv) in proc.stderr and expected in proc.stderr, proc.stderr


# --- the cache folder: a warning, recomputed, and the next build works --------------------------------------------


def garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xff garbage \x13\x37" * 40)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def foreign_schema(db_path: Path) -> None:
    db_path.unlink()
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (99)")


def wrong_types_in_a_row(db_path: Path, project: Project) -> None:
    """A row for a call the build needs, on this machine, whose median is text: SQLite keeps any type anywhere."""
    from tasobuild.incremental.lock import read_lock

    lock = read_lock(project.lock)
    assert lock is not None
    row = (lock["inputs"]["costs_from"], lock["inputs"]["kernels"], lock["cost"][0]["call"], "fast", 0.0, 1,
           "measured")
    with sqlite3.connect(db_path) as db:
        db.execute("INSERT OR REPLACE INTO costs VALUES (?, ?, ?, ?, ?, ?, ?)", row)


def cost_db(project: Project) -> Path:
    path = project.cache / "costs.sqlite"
    if not path.exists():  # costs = "model" opens the cache (to use any measured costs) without writing rows
        assert project.run("update").returncode == 0
    return path


def stage_entries(project: Project) -> list[Path]:
    entries = sorted((project.cache / "stages").rglob("*.pickle"))
    assert entries, "the build filled the stage cache"
    return entries


def each_entry(mutate: Callable[[Path], None]) -> Callable[[Project], None]:
    def run(project: Project) -> None:
        for entry in stage_entries(project):
            mutate(entry)
    return run


def swapped_entries(project: Project) -> None:
    """Two entries of different stages, each under the other's name."""
    import_entry = sorted((project.cache / "stages" / "import").glob("*.pickle"))[0]
    other = sorted((project.cache / "stages" / "candidates").glob("*.pickle"))[0]
    a, b = import_entry.read_bytes(), other.read_bytes()
    import_entry.write_bytes(b)
    other.write_bytes(a)


def old_format(entry: Path) -> None:
    """What an older tasobuild wrote: a bare pickle."""
    import pickle

    entry.write_bytes(pickle.dumps({"not": "a graph"}))


def state_json(noop: bool, mutate: Callable[[Path], None]) -> Callable[[Project], None]:
    def run(project: Project) -> None:
        files = project.state_files(noop)
        assert files, "the build wrote its state"
        for path in files:
            mutate(path)
        if not noop:  # the no-op record answers first: without it, the build reads the state
            for path in project.state_files(True):
                path.unlink()
    return run


def wrong_types_json(path: Path) -> None:
    from tasobuild import __version__

    path.write_text(json.dumps({"version": __version__, "code": 1, "onnx": [], "files": {"a": 3}, "lock": "x",
                                "invocation": 2, "report": []}))


CACHE_CASES: dict[str, tuple[Callable[[Project], None], str, str]] = {
    # name: (mutate, command, what the warning says)
    "costs.sqlite binary garbage": (lambda p: garbage(cost_db(p)), "update", "is not an SQLite database"),
    "costs.sqlite truncated": (lambda p: truncate(cost_db(p)), "update", "costs.sqlite"),
    "costs.sqlite a folder": (lambda p: make_folder(cost_db(p)), "update", "is not a file"),
    "costs.sqlite another schema version": (lambda p: foreign_schema(cost_db(p)), "update", "moved it to"),
    "costs.sqlite a row of the wrong types": (lambda p: wrong_types_in_a_row(cost_db(p), p), "update",
                                              "ignoring the row"),
    "stage entries binary garbage": (each_entry(garbage), "update", "stage cache"),
    "stage entries truncated": (each_entry(truncate), "update", "truncated"),
    "stage entries empty": (each_entry(empty), "update", "not a stage-cache entry"),
    "stage entries folders": (each_entry(make_folder), "update", "stage cache"),
    "stage entries of another version": (each_entry(old_format), "update", "not a stage-cache entry"),
    "stage entries swapped": (swapped_entries, "update", "another entry"),
    "build state binary garbage": (state_json(False, garbage), "build", "ignoring"),
    "build state truncated": (state_json(False, truncate), "build", "ignoring"),
    "build state wrong types": (state_json(False, wrong_types_json), "build", "wrong type"),
    "build state a folder": (state_json(False, make_folder), "build", "ignoring"),
    "no-op record binary garbage": (state_json(True, garbage), "build", "ignoring"),
    "no-op record wrong types": (state_json(True, wrong_types_json), "build", "wrong type"),
    "no-op record a folder": (state_json(True, make_folder), "build", "ignoring"),
    "no-op record empty": (state_json(True, empty), "build", "ignoring"),
}


@pytest.mark.parametrize("case", sorted(CACHE_CASES))
def test_a_bad_cache_file_is_recomputed_with_a_warning(project: Project, case: str) -> None:
    mutate, command, warning = CACHE_CASES[case]
    mutate(project)
    lock = project.lock.read_bytes()
    proc = project.run(command, "--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert warning in proc.stderr, proc.stderr
    assert project.lock.read_bytes() == lock, "the same costs and the same plan: the lock keeps its bytes"
    again = project.run(command, "--json")
    assert again.returncode == 0 and again.stderr == "", again.stderr
