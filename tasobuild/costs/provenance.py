"""Which machine a cost describes, in the words the plan table, `--json` and the lock use.

The cost cache's sources are "measured" (timed here), "imported" (a CSV from the device), "emulated" (instructions
counted on the target's emulated board, costs/emulated.py) and "predicted" (the performance model). On the host
that is all there is to say. On a cross target (profile = false) a prediction of the shipped model is the host's
time, not the target's: it says so, "predicted (host model)", so host times are never presented as the device's; a
built-in target tasobuild ships its own model for (the shipped model calibrated to its emulated counts) says
"predicted (target model)". Emulated costs say how they were made, "emulated (qemu icount)"; imported costs come
from the device and keep their word."""

from __future__ import annotations

from typing import Literal

Source = Literal["measured", "imported", "emulated", "predicted"]
HOST_MODEL = "predicted (host model)"
TARGET_MODEL = "predicted (target model)"
EMULATED = "emulated (qemu icount)"
_SOURCES: dict[str, Source] = {"measured": "measured", "imported": "imported", "emulated": "emulated",
                               "predicted": "predicted"}


def describe(source: str, cross_target: bool, target_model: bool = False) -> str:
    """The label of a cost of `source` in a plan for a cross target or for this machine; `target_model`: the
    target's predictions come from its own model."""
    if source == "emulated":
        return EMULATED
    if cross_target and source == "predicted":
        return TARGET_MODEL if target_model else HOST_MODEL
    return source


def source_of(label: str) -> Source:
    """The cost cache's source a label was made from: "predicted (host model)" -> "predicted"."""
    source = _SOURCES.get(label.split(" (", 1)[0])
    if source is not None:
        return source
    raise ValueError(f"{label!r} is not a cost source (measured, imported, emulated, predicted)")
