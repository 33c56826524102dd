"""The object `build --json` and `plan --json` print (DESIGN.md's contract), read off the lock's data; the version
every `--json` object carries and the object an error is in `--json` mode (docs/tasobuild-json.schema.json)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

# The schema version of every `--json` object (docs/tasobuild-json.schema.json): raised when a key is removed or
# changes meaning; a new key does not raise it.
JSON_VERSION = 1

# "taso.toml:12: ..." or "model.onnx: ...": an error message that starts with the file it is about (and its line).
_LEADING_FILE = re.compile(r"(?P<file>[^:\s][^:\n]*?)(?::(?P<line>\d+))?(?::\d+)?: ")
_FILE_SUFFIXES = (".toml", ".onnx", ".lock", ".csv", ".json")


def versioned(obj: Mapping[str, Any]) -> dict[str, Any]:
    """`obj` with the schema version."""
    return {"version": JSON_VERSION, **obj}


def error_object(message: str) -> dict[str, Any]:
    """What `--json` prints for a user or usage error: the one-line message, and the file (and line) it names first
    (a file that exists, or a spec, model, lock or CSV by its name), else None."""
    match = _LEADING_FILE.match(message)
    file = line = None
    if match and (os.path.lexists(match["file"]) or match["file"].endswith(_FILE_SUFFIXES)):
        file, line = match["file"], int(match["line"]) if match["line"] else None
    return versioned({"error": {"message": message, "file": file, "line": line}})


class Written(Protocol):
    """What replacing the tree did (incremental.tree.WriteResult)."""

    @property
    def written(self) -> tuple[str, ...]: ...

    @property
    def unchanged(self) -> tuple[str, ...]: ...

    @property
    def removed(self) -> tuple[str, ...]: ...


def report(lock: Mapping[str, Any], *, profiled: int, solver_seconds: float, out_dir: Path | None = None,
           files: Written | None = None, up_to_date: bool = False) -> dict[str, Any]:
    """The report of a build or plan whose lock data is `lock`."""
    plan_table = lock["plan"]
    out: dict[str, Any] = {
        "arena_bytes": plan_table["arena_bytes"],
        "budget_bytes": plan_table["budget_bytes"],
        "lower_bound_bytes": plan_table["lower_bound_bytes"],
        "predicted_ms": plan_table["predicted_ms"],
        "solver": {"status": plan_table["solver_status"], "seconds": solver_seconds,
                   "objective": plan_table["objective"]},
        # a lock written before exact placement has neither: None
        "placement": {"status": plan_table.get("placement"), "bound_bytes": plan_table.get("placement_bound_bytes")},
        "profiled": profiled,
        "nodes": [{**{k: v for k, v in n.items() if k != "cost_source"}, "cost_source": n["cost_source"].split("+"),
                   "tiling": None if n["tiling"] == "none" else n["tiling"]} for n in lock["node"]],
        "transforms": [dict(t) for t in lock["transform"]],
        "baselines": {name: {"predicted_ms": plan_table[f"{name}_predicted_ms"],
                             "arena_bytes": plan_table[f"{name}_arena_bytes"]} for name in ("greedy", "time_only")},
    }
    if "ram_bytes" in plan_table:  # a target that states its RAM or flash: what the program needs of them
        out["memory"] = {key: plan_table.get(key) for key in ("ram_bytes", "flash_bytes", "target_ram_bytes",
                                                               "target_flash_bytes")}
    if out_dir is not None:
        out["out_dir"] = str(out_dir)
        out["up_to_date"] = up_to_date
    if files is not None:
        out["files"] = {"written": list(files.written), "unchanged": list(files.unchanged),
                        "removed": list(files.removed)}
    return out

