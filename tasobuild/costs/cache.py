"""The persistent cost cache: what every kernel call measured on every target, shared by all builds on this machine.

One SQLite database, `$TASOBUILD_CACHE_DIR/costs.sqlite` (else the platform's user cache directory), in WAL mode so
several builds read it at once. A row is keyed by (target fingerprint, kernel-source digest, `KernelCall.key()`):
the call fixes the work, the fingerprint the machine/compiler/flags, the digest the C that ran.

A database this version cannot trust (not SQLite, failing `PRAGMA integrity_check`, another schema version or
layout) is never read: it is moved aside to `costs.sqlite.corrupt-<n>` with one warning line and a fresh one is built.

Sources: "measured" (timed here), "imported" (a CSV from a device), "emulated" (counted on the target's emulated board,
costs/emulated.py); "predicted" costs are never stored.

CSV exchange format (`export_csv` / `import_csv`), for costs measured elsewhere, e.g. by a harness on a device:

    function,params,median_ms,spread_ms,reps
    tb_add,"n=1024,act=0,act_a=0.0,act_b=0.0",0.00125,4.1e-05,200

* one row per call, sorted by (function, params); UTF-8, `\\n` line ends, RFC 4180 quoting (params contains commas);
* `function(params)` is exactly `KernelCall.key()`: `params` is the text between its parentheses, byte for byte
  (a device harness generated from an exported file echoes it as a string literal rather than reformatting numbers);
* median_ms, spread_ms (interquartile range) in milliseconds, any float syntax Python's `float()` reads; reps >= 1.
The file carries no fingerprint: the importer says which target the numbers belong to.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import logging
import math
import numbers
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal, NamedTuple

import filelock

from tasobuild.digest import tree_digest
from tasobuild.errors import UserError
from tasobuild.resources import cache_dir, kernels_dir

log = logging.getLogger("tasobuild.costs")

SCHEMA_VERSION = 1
DB_NAME = "costs.sqlite"
CSV_HEADER = ("function", "params", "median_ms", "spread_ms", "reps")
SOURCES = ("measured", "imported", "emulated", "predicted")
# predictions are recomputed, never cached as if they were timings
STORED_SOURCES = ("measured", "imported", "emulated")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_BUSY_TIMEOUT_S = 60.0
_CHUNK = 500  # keys per SELECT: below every SQLite build's limit on bound parameters

_SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE costs (
        fingerprint TEXT NOT NULL,
        kernel_digest TEXT NOT NULL,
        call_key TEXT NOT NULL,
        median_ms REAL NOT NULL,
        spread_ms REAL NOT NULL,
        reps INTEGER NOT NULL,
        source TEXT NOT NULL,
        PRIMARY KEY (fingerprint, kernel_digest, call_key)
    ) WITHOUT ROWID""",
)
_TABLES = {
    "schema_version": ("version",),
    "costs": ("fingerprint", "kernel_digest", "call_key", "median_ms", "spread_ms", "reps", "source"),
}


@dataclass(frozen=True)
class Cost:
    """The time of one kernel call on one target: median and interquartile range over `reps` timed runs.
    A "predicted" cost (the performance model's) has reps 0 and the model's error band as its spread."""

    median_ms: float
    spread_ms: float
    reps: int
    source: Literal["measured", "imported", "emulated", "predicted"]

    def __post_init__(self) -> None:
        # Plain floats only: a NumPy scalar (the model's arithmetic yields np.float64) would leak into taso.lock as
        # "np.float64(...)", which is not TOML. Anything that is not a real number (a string from a hand-edited
        # cache row or lock) is refused here, as a ValueError the readers turn into a warning or a one-line error.
        for name in ("median_ms", "spread_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not (math.isfinite(self.median_ms) and self.median_ms >= 0.0):
            raise ValueError(f"median_ms must be finite and >= 0, got {self.median_ms!r}")
        if not (math.isfinite(self.spread_ms) and self.spread_ms >= 0.0):
            raise ValueError(f"spread_ms must be finite and >= 0, got {self.spread_ms!r}")
        min_reps = 0 if self.source == "predicted" else 1
        if isinstance(self.reps, bool) or not isinstance(self.reps, int) or self.reps < min_reps:
            raise ValueError(f"reps must be an int >= {min_reps}, got {self.reps!r}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")


class CostKey(NamedTuple):
    fingerprint: str  # the target: machine, compiler, flags
    kernel_digest: str  # the kernel sources (see kernel_digest())
    call_key: str  # KernelCall.key()


# Files in the kernels folder that are not kernel source: build products and editor/VCS noise.
_NOT_SOURCE_SUFFIXES = (".so", ".o", ".a", ".pyd", ".dll", ".dylib", ".pyc")


@functools.cache
def kernel_digest() -> str:
    """The digest of every kernel source file (digest.tree_digest; once per process)."""
    return tree_digest(kernels_dir(), _is_source)


_current_kernel_digest = kernel_digest  # for methods whose parameter of that name shadows it


def _is_source(rel: str) -> bool:
    parts = PurePosixPath(rel)
    return not any(part.startswith(".") or part == "__pycache__" for part in parts.parts) \
        and parts.suffix not in _NOT_SOURCE_SUFFIXES


class _Untrusted(Exception):
    """The database file cannot be used as it is; the message says why (one line)."""


class CostCache:
    """The machine's cost cache. Open one per process (SQLite connections do not cross fork/spawn)."""

    def __init__(self, directory: Path | str | None = None, *, on_warning: Callable[[str], None] | None = None):
        self.directory = Path(directory) if directory is not None else cache_dir()
        self.path = self.directory / DB_NAME
        self._warn = on_warning or log.warning
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Opening (validate, maybe move aside, rebuild) is serialised so two processes never both move the file.
            with filelock.FileLock(str(self.path) + ".open.lock"):
                self._db = self._open_trusted()
        except (OSError, sqlite3.OperationalError) as e:  # permissions, full disk, locked: not the file's fault
            raise UserError(f"cost cache {self.path} cannot be used ({e}): fix it or set TASOBUILD_CACHE_DIR") from None

    # -- opening -------------------------------------------------------------------------------------------------

    def _open_trusted(self) -> sqlite3.Connection:
        try:
            return self._open_checked()
        except _Untrusted as why:
            aside = self._move_aside()
            self._warn(f"cost cache {self.path} {why}; moved it to {aside.name} and started an empty cache")
            return self._open_checked()

    def _open_checked(self) -> sqlite3.Connection:
        if self.path.is_dir() or (self.path.exists() and not self.path.is_file()):
            raise _Untrusted("is not a file")
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as f:
                if f.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
                    raise _Untrusted("is not an SQLite database")
        db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            self._check_or_create(db)
            db.execute("PRAGMA journal_mode = WAL")
        except _Untrusted:
            db.close()
            raise
        except sqlite3.OperationalError:  # cannot open, read-only, busy: an environment problem, the file may be fine
            db.close()
            raise
        except sqlite3.DatabaseError as e:  # "file is not a database", "database disk image is malformed", ...
            db.close()
            raise _Untrusted(f"is corrupt ({e})") from None
        return db

    @staticmethod
    def _check_or_create(db: sqlite3.Connection) -> None:
        problems = [row[0] for row in db.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise _Untrusted(f"fails its integrity check ({problems[0]})")
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            db.execute("BEGIN IMMEDIATE")
            if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:  # nobody created it meanwhile
                for statement in _SCHEMA:
                    db.execute(statement)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            db.execute("COMMIT")
            tables = set(_TABLES)
        if tables != set(_TABLES):
            raise _Untrusted(f"has foreign tables {sorted(tables)} (expected {sorted(_TABLES)})")
        for table, columns in _TABLES.items():
            found = tuple(row[1] for row in db.execute(f"PRAGMA table_info({table})"))
            if found != columns:
                raise _Untrusted(f"has table {table} with columns {list(found)} (expected {list(columns)})")
        versions = [v for (v,) in db.execute("SELECT version FROM schema_version")]
        if versions != [SCHEMA_VERSION]:
            raise _Untrusted(f"has schema version {versions} (this tasobuild reads version {SCHEMA_VERSION})")

    def _move_aside(self) -> Path:
        n = 1
        while any(Path(f"{self.path}.corrupt-{n}{s}").exists() for s in ("", "-wal", "-shm")):
            n += 1
        aside = Path(f"{self.path}.corrupt-{n}")
        # The -wal/-shm files belong to the old database: replaying them into the new one would corrupt it.
        for suffix in ("", "-wal", "-shm", "-journal"):
            old = Path(str(self.path) + suffix)
            if old.exists():
                os.replace(old, str(aside) + suffix)
        return aside

    # -- reading and writing -------------------------------------------------------------------------------------

    def get_many(self, keys: Iterable[CostKey]) -> dict[CostKey, Cost]:
        """The cached cost of each key that has one (absent keys are missing from the result)."""
        by_target: dict[tuple[str, str], list[str]] = {}
        for key in keys:
            by_target.setdefault((key.fingerprint, key.kernel_digest), []).append(key.call_key)
        found: dict[CostKey, Cost] = {}
        untrusted: list[tuple[str, str, str]] = []
        for (fingerprint, digest), call_keys in sorted(by_target.items()):
            unique = sorted(set(call_keys))
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start : start + _CHUNK]
                rows = self._db.execute(
                    "SELECT call_key, median_ms, spread_ms, reps, source FROM costs"
                    f" WHERE fingerprint = ? AND kernel_digest = ? AND call_key IN ({','.join('?' * len(chunk))})",
                    (fingerprint, digest, *chunk),
                )
                for call_key, median, spread, reps, source in rows:
                    cost = self._trusted_cost(call_key, median, spread, reps, source)
                    if cost is None:
                        untrusted.append((fingerprint, digest, call_key))
                    else:
                        found[CostKey(fingerprint, digest, call_key)] = cost
        if untrusted:  # forgotten, so the warning is said once and the call is measured or predicted afresh
            with self._transaction():
                self._db.executemany("DELETE FROM costs WHERE fingerprint = ? AND kernel_digest = ? AND call_key = ?",
                                     untrusted)
        return found

    def _trusted_cost(self, call_key: object, median: object, spread: object, reps: object,
                      source: object) -> Cost | None:
        """A row's Cost, or None (with a warning) if the row holds what no tasobuild writes: SQLite keeps any type
        in any column, so a hand-edited or foreign row is treated as a miss, measured again and overwritten."""
        try:
            if source not in STORED_SOURCES or type(call_key) is not str:
                raise ValueError(f"source must be one of {STORED_SOURCES}, got {source!r}")
            return Cost(median, spread, reps, source)  # type: ignore[arg-type]
        except ValueError as error:
            self._warn(f"cost cache {self.path}: ignoring the row of {call_key!r} ({error}); it is costed afresh")
            return None

    def put_many(self, rows: Iterable[tuple[CostKey, Cost]]) -> None:
        """Store (or replace) every row, all in one transaction."""
        values = [(*key, c.median_ms, c.spread_ms, c.reps, c.source) for key, c in rows]
        if any(v[-1] not in STORED_SOURCES for v in values):
            raise ValueError(f"only {STORED_SOURCES} costs are stored in the cache")
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO costs VALUES (?, ?, ?, ?, ?, ?, ?)", values)

    def rows(self) -> list[tuple[CostKey, Cost]]:
        """Every row, sorted by key."""
        cursor = self._db.execute("SELECT * FROM costs ORDER BY fingerprint, kernel_digest, call_key")
        rows = [(CostKey(f, d, k), self._trusted_cost(k, m, s, r, src)) for f, d, k, m, s, r, src in cursor]
        return [(key, cost) for key, cost in rows if cost is not None]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlock with another writer
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def measuring_lock(self) -> filelock.FileLock:
        """Held while measuring: one profiler per machine at a time, so no call is measured twice and no two
        benchmarks disturb each other's timings. Released by the OS if its holder dies."""
        return filelock.FileLock(str(self.path) + ".measure.lock")

    # -- CSV exchange --------------------------------------------------------------------------------------------

    def export_csv(self, path: Path | str, *, fingerprint: str, kernel_digest: str) -> int:
        """Write the rows of one (target, kernel sources) to `path` in the module's CSV format; returns the count."""
        cursor = self._db.execute(
            "SELECT call_key, median_ms, spread_ms, reps, source FROM costs"
            " WHERE fingerprint = ? AND kernel_digest = ?",
            (fingerprint, kernel_digest),
        )
        trusted = [(k, c) for k, m, s, r, src in cursor
                   if (c := self._trusted_cost(k, m, s, r, src)) is not None and _is_call_key(k)]
        records = sorted((*split_call_key(k), repr(c.median_ms), repr(c.spread_ms), str(c.reps)) for k, c in trusted)
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(CSV_HEADER)
            writer.writerows(records)
        return len(records)

    def import_csv(self, path: Path | str, fingerprint: str, kernel_digest: str | None = None) -> int:
        """Store every row of a CSV file as "imported" costs of `fingerprint` (and the given kernel sources, by
        default the current ones); returns the count. A malformed file raises UserError naming file and line."""
        digest = kernel_digest if kernel_digest is not None else _current_kernel_digest()
        rows = [(CostKey(fingerprint, digest, k), c) for k, c in read_csv(Path(path))]
        self.put_many(rows)
        return len(rows)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CostCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_call_key(call_key: str) -> bool:
    try:
        split_call_key(call_key)
    except ValueError:
        return False
    return True


def split_call_key(call_key: str) -> tuple[str, str]:
    """`KernelCall.key()` -> (function, params): "tb_add(n=4,act=0)" -> ("tb_add", "n=4,act=0")."""
    function, paren, rest = call_key.partition("(")
    if not paren or not rest.endswith(")"):
        raise ValueError(f"not a KernelCall key: {call_key!r}")
    return function, rest[:-1]


def read_csv(path: Path) -> list[tuple[str, Cost]]:
    """Parse a cost CSV file into (call_key, Cost) pairs; errors name the file and line."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            lines = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: cannot read cost CSV ({e})") from None
    if not lines or tuple(cell.strip() for cell in lines[0]) != CSV_HEADER:
        raise UserError(f"{path}:1: cost CSV must start with the header line {','.join(CSV_HEADER)}")
    parsed: dict[str, tuple[int, Cost]] = {}
    for number, cells in enumerate(lines[1:], start=2):
        if not cells:
            continue
        if len(cells) != len(CSV_HEADER):
            raise UserError(f"{path}:{number}: expected {len(CSV_HEADER)} fields ({','.join(CSV_HEADER)}), "
                            f"got {len(cells)}")
        function, params, median, spread, reps = (cell.strip() for cell in cells)
        if not function.isidentifier():
            raise UserError(f"{path}:{number}: function {function!r} is not a C identifier")
        try:
            cost = Cost(float(median), float(spread), int(reps), "imported")
        except ValueError as e:
            raise UserError(f"{path}:{number}: bad numbers ({e}); need median_ms >= 0, spread_ms >= 0, "
                            f"reps >= 1") from None
        key = f"{function}({params})"
        if key in parsed:
            raise UserError(f"{path}:{number}: {key} repeats line {parsed[key][0]}; keep one row per call")
        parsed[key] = (number, cost)
    return [(key, cost) for key, (_, cost) in sorted(parsed.items())]
