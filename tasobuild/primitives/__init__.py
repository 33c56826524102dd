"""The primitive library: every way tasobuild can run an IR node, as data.

A Primitive says which node it can run (`applies`), in which layouts it reads and writes, how much workspace it
needs (an exact formula in bytes), how it transforms the node's weights at build time, and the C call that runs it
(`call`). The emitter renders that call into the generated project; the profiler times exactly the same call through
the Cython bindings. Each family module of this package exports its PRIMITIVES; `registry.library()` is all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tasobuild.ir import Activation, Graph, Layout, Node

ParamValue = int | float
Params = tuple[tuple[str, ParamValue], ...]  # a parameter struct, field by field in declaration order

# The fused activation's code in every parameter struct's `act` field: the TB_ACT_* enum of tb_kernels.h (the only
# C definition; tests/test_ops_primitives.py checks the two agree).
ACT_CODES: dict[str, int] = {"none": 0, "relu": 1, "clip": 2, "leaky_relu": 3, "sigmoid": 4}

# Buffer roles: "in<k>" is the node's k-th activation input, "w<k>" the k-th array its weight transform returns,
# "out" its output, "ws" its workspace. A kernel takes them after its parameter struct in the order of `args`.


@dataclass(frozen=True)
class KernelCall:
    """One C call: `function(&(const struct){params...}, <buffers in `args` order>)`."""

    function: str  # e.g. "tb_conv_direct_chw"
    struct: str  # e.g. "tb_conv"
    params: Params  # every struct field, in declaration order
    args: tuple[str, ...]  # buffer roles in C argument order, e.g. ("in0", "w0", "w1", "out", "ws")
    buffer_bytes: tuple[tuple[str, int], ...]  # role -> exact bytes the call reads or writes there
    arg_types: tuple[str, ...] = ()  # C element type of each of `args` (int8_t, int32_t, float); empty: all float
    parts: int = 1  # > 1: the call runs as this many row views at once, one per thread (primitives.parallel)
    _key: str = field(init=False, repr=False, compare=False)  # key(), made once: a build asks for it ~10^4 times

    def __post_init__(self) -> None:
        key = self.function + "(" + ",".join(f"{k}={v}" for k, v in self.params) + ")"
        object.__setattr__(self, "_key", key if self.parts == 1 else f"{key}@{self.parts}")

    def key(self) -> str:
        """What determines the call's cost: the function, every parameter (buffers follow from them) and, for a call
        split over threads, "@<parts>" (so an N-thread cost never mixes with the 1-thread one)."""
        return self._key

    def arg_type(self, role: str) -> str:
        return self.arg_types[self.args.index(role)] if self.arg_types else "float"


@dataclass(frozen=True)
class Primitive:
    name: str  # unique, e.g. "conv_im2col_gemm_chw"
    op: str  # the IR op it runs ("conv", "maxpool", ...)
    family: str  # e.g. "direct", "im2col", "winograd"
    layout_in: Layout
    layout_out: Layout
    sources: tuple[str, ...]  # kernel C files it needs, relative to the kernels folder
    applies: Callable[[Node, Graph], bool]
    workspace: Callable[[Node, Graph], int]  # bytes
    weights: Callable[[Node, Graph], tuple[np.ndarray, ...]]  # build-time weight transform -> w0, w1, ...
    call: Callable[[Node, Graph], tuple[KernelCall, ...]]  # usually one; concat makes one per input; views none
    aliases_input: bool = False  # a view: the output is the input's memory, no call is made
    # In place: the output is written over input `in_place` (-1: never). Only for kernels that read each element
    # before writing it, in one layout, and only where that input is dead after the node (primitives.sharing).
    in_place: int = -1
    gathers: bool = False  # zero-copy concat: the producers write the inputs into the output; no call is made
    # Writes its output as a channel slice of an HWC zero-copy concat's output (its call's out_ps: the concat's
    # channels); only where that concat gathers (primitives.sharing).
    strided_out: bool = False


def no_workspace(node: Node, graph: Graph) -> int:
    return 0


def no_weights(node: Node, graph: Graph) -> tuple[np.ndarray, ...]:
    return ()


def activation_fields(act: Activation) -> Params:
    """The (act, act_a, act_b) struct fields of a fused activation."""
    return (("act", ACT_CODES[act.kind]), ("act_a", float(act.a)), ("act_b", float(act.b)))
