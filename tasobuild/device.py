"""Fitting the device: the budget a target's RAM gives when the spec sets none, the RAM and flash a program needs
against what the target has, and the board a microcontroller's project is linked for. Every refusal is one line
saying by how much and what to change."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasobuild.errors import UserError
from tasobuild.spec import Spec
from tasobuild.target import Target

if TYPE_CHECKING:
    from tasobuild.decide import NoArenaFits
    from tasobuild.emit.footprint import Footprint
    from tasobuild.emit.program import BareMetal, Program


def memory_budget(spec: Spec, target: Target) -> int:
    """constraints.memory; if the spec gives none, the target's RAM less what the program needs besides its arena
    (stack, static data). A target that states no RAM needs a budget in the spec."""
    from tasobuild.emit.footprint import reserved_ram_bytes

    if spec.constraints.memory is not None:
        return spec.constraints.memory
    if target.ram is None:
        raise UserError(f"{spec.where('constraints')}: constraints.memory is not set and target {target.name!r} "
                        f"states no RAM; add a budget, e.g. [constraints] memory = \"256 KiB\"")
    budget = target.ram - reserved_ram_bytes(target.stack or 0)
    if budget <= 0:
        raise UserError(f"{target.source}: ram: {target.ram} bytes leave no room for an arena after the stack")
    return budget


def budget_source(spec: Spec, target: Target) -> str:
    """Where the budget came from, for messages: the spec's line, the command line, or the target's RAM."""
    if spec.constraints.memory is not None:
        return spec.where("constraints.memory")
    return f"{target.source}: ram (no constraints.memory in {spec.spec_path})"


def ram_too_small(spec: Spec, target: Target, error: NoArenaFits) -> str:
    from tasobuild.units import format_size

    over = error.smallest_bytes - error.budget_bytes
    smallest = format_size(error.smallest_bytes)
    return (f"{budget_source(spec, target)}: the smallest arena found, {smallest}, is "
            f"{format_size(over)} more than target {target.name!r} leaves for it "
            f"({format_size(error.budget_bytes)} of its {format_size(target.ram or 0)} RAM, after stack and "
            f"static data); set optimizer.tiling = true, or pick a target with more RAM")


def bare_metal_of(target: Target) -> BareMetal | None:
    """A microcontroller target's board, flash, RAM and stack, as the emitter needs them; None for a hosted one."""
    from tasobuild.emit.program import BareMetal

    board = target.board
    if board is None:
        return None
    if target.ram is None or target.flash is None:
        raise UserError(f"{target.source}: a target with a [board] needs ram and flash (the linker script's sizes)")
    vector_table = board.flash_origin if board.vector_table is None else board.vector_table
    return BareMetal(board.machine, vector_table, board.flash_origin, target.flash, board.ram_origin, target.ram,
                     target.stack or 0, target.emulator_argv)


def checked_footprint(spec: Spec, target: Target, program: Program) -> Footprint | None:
    """The program's RAM and flash against the target's, for a target that states them (None otherwise): a plan
    that does not fit is refused, in one line saying by how much and what to change."""
    from tasobuild.emit.footprint import estimate
    from tasobuild.units import format_size

    if target.ram is None and target.flash is None:
        return None
    need = estimate(program, target.stack or 0)
    hosted = target.flash is None
    ram_need = ram_needed(need, target)
    if target.ram is not None and ram_need > target.ram:
        parts = (f"arena {format_size(need.arena_bytes)} + stack {format_size(need.stack_bytes)} + static data "
                 f"{format_size(need.static_bytes)}" + (f" + code and weights {format_size(need.flash_bytes)}"
                                                         if hosted else ""))
        raise UserError(f"{budget_source(spec, target)}: the plan needs {format_size(ram_need)} of RAM ({parts}), "
                        f"{format_size(ram_need - target.ram)} more than target {target.name!r} has "
                        f"({format_size(target.ram)}); set optimizer.tiling = true, lower constraints.memory, or "
                        f"pick a target with more RAM")
    if target.flash is not None and need.flash_bytes > target.flash:
        raise UserError(f"{target.source}: the program needs {format_size(need.flash_bytes)} of flash (code about "
                        f"{format_size(need.code_bytes)} + weights {format_size(need.weight_bytes)}), "
                        f"{format_size(need.flash_bytes - target.flash)} more than target {target.name!r} has "
                        f"({format_size(target.flash)}); pick a target with more flash or a smaller network")
    return need


def ram_needed(need: Footprint, target: Target) -> int:
    """The RAM a program of footprint `need` takes on `target`: a Linux board (no flash stated) loads code and weights
    into RAM too."""
    return need.ram_bytes + (need.flash_bytes if target.flash is None else 0)


def footprint_keys(need: Footprint, target: Target) -> dict[str, int]:
    """The [plan] keys that record a footprint (only for targets that state RAM or flash: the host's lock keeps
    its keys)."""
    keys = {"ram_bytes": need.ram_bytes, "flash_bytes": need.flash_bytes}
    if target.ram is not None:
        keys["target_ram_bytes"] = target.ram
    if target.flash is not None:
        keys["target_flash_bytes"] = target.flash
    return keys
