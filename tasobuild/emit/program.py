"""What the emitter renders: a program over one arena (a fused group's bands may loop), decided in every detail.

Lowering (tasobuild.lower) builds it from the graph, the plan and the arena plan; the renderers turn it into text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasobuild.primitives import KernelCall


@dataclass(frozen=True)
class Step:
    """One layer (or layout transform) of the network: a provenance comment and the kernel calls that run it.
    A step with `repeat` > 1 runs its calls in a loop over `LOOP_VARIABLE` (0 .. repeat-1), which its pointer
    expressions may use (the bands of a fused group)."""

    comment: str
    calls: tuple[tuple[KernelCall, tuple[tuple[str, str], ...]], ...]  # (call, role -> C pointer expression)
    repeat: int = 1


LOOP_VARIABLE = "band"


@dataclass(frozen=True)
class WeightArray:
    symbol: str  # C identifier
    array: np.ndarray  # float32, read-only
    comment: str


@dataclass(frozen=True)
class BareMetal:
    """A microcontroller's program: linked for an emulated board, run under qemu-system-arm with semihosting."""

    machine: str  # qemu-system-arm -M
    vector_table: int  # where the core reads its vector table on reset
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int
    stack_bytes: int
    run: tuple[str, ...]  # the command that runs the program, before its path


@dataclass(frozen=True)
class Toolchain:
    cc: str
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...]
    bare_metal: BareMetal | None = None  # None: a hosted program (`<name>_main IN.bin OUT.bin`)


@dataclass(frozen=True)
class Boundary:
    """A graph input or output in the arena."""

    offset: int  # bytes
    count: int  # float32 elements
    desc: str  # the ONNX name and shape (data from the model: comments only, through text.comment_text)


@dataclass(frozen=True)
class Program:
    name: str  # C identifier prefix of the API
    banner: tuple[str, ...]  # header comment lines: source model, target, plan summary
    arena_bytes: int
    arena_map: tuple[tuple[int, int, str], ...]  # (offset, bytes, what) sorted by offset
    inputs: tuple[Boundary, ...]  # the graph's inputs and outputs, in the ONNX file's order
    outputs: tuple[Boundary, ...]
    steps: tuple[Step, ...]
    weights: tuple[WeightArray, ...]
    kernel_sources: tuple[str, ...]  # files under the kernels folder the plan's calls need (headers included)
    toolchain: Toolchain

    @property
    def input_count(self) -> int:
        """Input 0's elements (`<NAME>_INPUT_COUNT`)."""
        return self.inputs[0].count

    @property
    def output_count(self) -> int:
        """Output 0's elements (`<NAME>_OUTPUT_COUNT`)."""
        return self.outputs[0].count

    @property
    def input_total(self) -> int:
        """Every input's elements, one after another (what `<name>_infer` reads)."""
        return sum(b.count for b in self.inputs)

    @property
    def output_total(self) -> int:
        return sum(b.count for b in self.outputs)

    @property
    def weight_bytes(self) -> int:
        return sum(w.array.nbytes for w in self.weights)
