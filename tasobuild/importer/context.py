"""What a per-node rule (shape, fold or lowering) sees: the node, the static shapes and constant values so far."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasobuild.errors import UserError
from tasobuild.importer.reader import OnnxNode

FLOAT_LOWEST = float(np.finfo(np.float32).min)
FLOAT_MAX = float(np.finfo(np.float32).max)
# The emitted kernels count a tensor's elements in `int` and its byte offsets in `long`: both 32 bits on 32-bit
# targets, so a tensor may hold at most this many bytes.
MAX_TENSOR_BYTES = 2**31 - 1
FLOAT_BYTES = 4


def too_big(what: str, shape: tuple[int, ...]) -> str | None:
    """Why a float32 tensor of `shape` cannot be emitted, or None: `what` names it ("output 'y'")."""
    count = math.prod(shape)
    if count * FLOAT_BYTES <= MAX_TENSOR_BYTES:
        return None
    return (f"{what} has {count} elements ({count * FLOAT_BYTES} bytes, shape {list(shape)}); the emitted code "
            f"indexes tensors with 32-bit int and long, so at most {MAX_TENSOR_BYTES // FLOAT_BYTES} elements")


@dataclass(frozen=True)
class NodeContext:
    file: str
    opset: int
    node: OnnxNode
    shapes: Mapping[str, tuple[int, ...]]  # every tensor known so far (constants included)
    consts: Mapping[str, np.ndarray]  # every constant tensor known so far

    def error(self, message: str) -> UserError:
        return UserError(f"{self.file}: node '{self.node.name}' ({self.node.op}): {message}")

    def unsupported(self, supported: Collection[str]) -> UserError:
        return self.error(f"unsupported operator; supported: {', '.join(sorted(supported))}")

    def attr(self, key: str, default: Any = None) -> Any:
        return self.node.attrs.get(key, default)

    def has(self, i: int) -> bool:
        return i < len(self.node.inputs) and self.node.inputs[i] != ""

    def shape(self, i: int = 0) -> tuple[int, ...]:
        return self.shapes[self.node.inputs[i]]

    def is_const(self, i: int) -> bool:
        return self.has(i) and self.node.inputs[i] in self.consts

    def const(self, i: int, what: str = "inputs") -> np.ndarray:
        """A constant input; a computed one means the model needs run-time data the IR cannot express."""
        if not self.has(i):
            raise self.error(f"missing {what} (input {i})")
        if self.node.inputs[i] not in self.consts:
            raise self.error(f"{self.node.op} with dynamic {what} is not supported")
        return self.consts[self.node.inputs[i]]

    def ints(self, i: int, attr: str, what: str) -> tuple[int, ...] | None:
        """An int list given as an attribute (older opsets) or a constant input (newer ones); None if absent."""
        if attr in self.node.attrs:
            return tuple(int(v) for v in self.node.attrs[attr])
        if self.has(i):
            return tuple(int(v) for v in np.asarray(self.const(i, what)).reshape(-1))
        return None

    def check_output(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """`shape`, the live node's output shape, when the emitted code can hold it; else the error."""
        what = f"output '{self.node.outputs[0]}'"
        if any(d <= 0 for d in shape):
            raise self.error(f"{what} has shape {list(shape)}: a zero or negative dimension; check the input size "
                             "against the kernel, strides, pads and reshapes")
        tensors = [(what, shape)] + [(f"input '{t}'", self.shapes[t]) for t in self.node.inputs if t]  # weights too
        for reason in (too_big(name, tensor_shape) for name, tensor_shape in tensors):
            if reason:
                raise self.error(reason)
        return shape

    def live_inputs(self) -> tuple[str, ...]:
        return tuple(t for t in self.node.inputs if t and t not in self.consts)
