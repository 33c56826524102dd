"""The object `build --json` and `plan --json` print (DESIGN.md's contract), read off the lock's data."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol


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

