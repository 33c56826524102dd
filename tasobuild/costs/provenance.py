"""Which machine a cost describes, in the words the plan table, `--json` and the lock use.

The cost cache's sources are "measured" (timed here), "imported" (a CSV from the device) and "predicted" (the
performance model, fitted to this machine's timings). On the host that is all there is to say. On a cross target
(profile = false) a prediction is the host's time, not the target's: it says so, "predicted (host model)", so host
times are never presented as the device's. Imported costs come from the device and keep their word."""

from __future__ import annotations

from typing import Literal

HOST_MODEL = "predicted (host model)"
_SOURCES: dict[str, Literal["measured", "imported", "predicted"]] = {
    "measured": "measured", "imported": "imported", "predicted": "predicted"}


def describe(source: str, cross_target: bool) -> str:
    """The label of a cost of `source` in a plan for a cross target or for this machine."""
    return HOST_MODEL if cross_target and source == "predicted" else source


def source_of(label: str) -> Literal["measured", "imported", "predicted"]:
    """The cost cache's source a label was made from: "predicted (host model)" -> "predicted"."""
    source = _SOURCES.get(label.split(" (", 1)[0])
    if source is not None:
        return source
    raise ValueError(f"{label!r} is not a cost source (measured, imported, predicted)")
