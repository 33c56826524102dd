"""What the emitter renders: a program over one arena (a fused group's bands may loop), decided in every detail.

Lowering (tasobuild.lower) builds it from the graph, the plan and the arena plan; the renderers turn it into text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasobuild.primitives import KernelCall


@dataclass(frozen=True)
class Layer:
    """What per-layer timing (`make profile`, `<name>_main_profile --profile N`) times as one: a node, a layout
    transform or a fused group, and which of the plan's nodes and transforms it runs (to set its time against
    their predicted ones)."""

    label: str  # shown to people (a node's name comes from the model: escaped wherever it is written)
    nodes: tuple[int, ...] = ()  # indices of the network's nodes it runs, in schedule order
    transforms: tuple[int, ...] = ()  # indices into the plan's layout transforms


@dataclass(frozen=True)
class Step:
    """One layer (or layout transform) of the network: a provenance comment and the kernel calls that run it.
    A step with `repeat` > 1 runs its calls in a loop over `LOOP_VARIABLE` (0 .. repeat-1), which its pointer
    expressions may use (the bands of a fused group)."""

    comment: str
    calls: tuple[tuple[KernelCall, tuple[tuple[str, str], ...]], ...]  # (call, role -> C pointer expression)
    repeat: int = 1
    layer: Layer | None = None  # consecutive steps of one layer are timed together; None: not timed (no calls)


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
    # (scale, zero point) of an int8 input / output (the API then takes / returns int8); None: float32
    input_quant: tuple[float, int] | None = None
    output_quant: tuple[float, int] | None = None

    @property
    def int8_io(self) -> bool:
        return self.input_quant is not None or self.output_quant is not None

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


@dataclass(frozen=True)
class TimedLayer:
    """A layer as per-layer timing sees it: its steps, by index in `Program.steps`."""

    layer: Layer
    steps: tuple[int, ...]


def timed_layers(p: Program) -> tuple[TimedLayer, ...]:
    """The layers the profiling build times, in order: runs of consecutive steps of one layer that call a kernel
    (a fused group's deferred members run no call of their own: their time is in the group's)."""
    runs: list[TimedLayer] = []
    for index, step in enumerate(p.steps):
        if step.layer is None or not step.calls:
            continue
        if runs and runs[-1].layer == step.layer:
            runs[-1] = TimedLayer(step.layer, runs[-1].steps + (index,))
        else:
            runs.append(TimedLayer(step.layer, (index,)))
    return tuple(runs)
