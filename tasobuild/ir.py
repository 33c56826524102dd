"""The intermediate representation: one node type, tensors with static 3-D logical shapes.

Every activation tensor of a batch-1 network is viewed as a logical (C, H, W) shape: ONNX [1,C,H,W] -> (C,H,W),
[1,K] -> (K,1,1), [1,A,B] -> (A,B,1). Its *layout* (CHW, HWC, HCW) is how those three axes are ordered in memory,
and is chosen later by the solver; the IR itself is layout-free. ONNX's own row-major order of a tensor is CHW.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Layout = Literal["CHW", "HWC", "HCW"]
LAYOUTS: tuple[Layout, ...] = ("CHW", "HWC", "HCW")
FLOAT_BYTES = 4

DType = Literal["float32", "int8", "int32", "uint8"]
# Bytes per element of each data type: every buffer size (arena, workspace, weights) comes from this table.
DTYPE_BYTES: dict[str, int] = {"float32": 4, "int8": 1, "int32": 4, "uint8": 1}
# The integer types a constant keeps (everything else is stored as float32).
INTEGER_DTYPES = ("int8", "int32", "uint8")


@dataclass(frozen=True, order=True)
class Shape:
    """Logical (C, H, W) extent of an activation tensor."""

    c: int
    h: int
    w: int

    @property
    def count(self) -> int:
        return self.c * self.h * self.w

    @property
    def bytes(self) -> int:
        return self.count * FLOAT_BYTES

    def __str__(self) -> str:
        return f"{self.c}x{self.h}x{self.w}"


@dataclass(frozen=True)
class Activation:
    """An element-wise activation fused into the op that produces a tensor."""

    kind: Literal["none", "relu", "clip", "leaky_relu", "sigmoid"] = "none"
    a: float = 0.0  # clip: min; leaky_relu: alpha
    b: float = 0.0  # clip: max

    def __str__(self) -> str:
        return {"none": "", "relu": "relu", "sigmoid": "sigmoid"}.get(
            self.kind, f"{self.kind}({self.a:g}, {self.b:g})" if self.kind == "clip" else f"{self.kind}({self.a:g})"
        )


NO_ACTIVATION = Activation()


@dataclass(frozen=True, order=True)
class Quant:
    """How an int8 activation tensor encodes reals: real = scale * (q - zero_point) (one scale per tensor)."""

    scale: float
    zero_point: int

    def __str__(self) -> str:
        return f"scale {self.scale:.9g} zero point {self.zero_point}"


@dataclass(frozen=True)
class Constant:
    """A read-only weight array with its content digest (arrays are not hashable; the digest stands for them)."""

    name: str
    array: np.ndarray = field(compare=False, repr=False)
    digest: str = ""

    @staticmethod
    def of(name: str, array: np.ndarray) -> Constant:
        """A float32 constant, or an int8/int32/uint8 one (quantised weights and biases) kept in its own type."""
        integer = np.asarray(array).dtype.name in INTEGER_DTYPES
        frozen = np.ascontiguousarray(array, dtype=None if integer else np.float32)
        frozen.setflags(write=False)
        tag = f"{frozen.dtype.name}:".encode() if integer else b""  # float digests stay as they were
        digest = hashlib.sha256(tag + str(frozen.shape).encode() + frozen.tobytes()).hexdigest()
        return Constant(name, frozen, digest)


@dataclass(frozen=True)
class Node:
    """One operation. `op` is one of OPS; attributes are a sorted tuple of (key, value) with hashable values."""

    name: str  # the ONNX node it came from (provenance)
    op: str
    inputs: tuple[str, ...]  # activation tensors
    output: str
    weights: tuple[str, ...] = ()  # constant names, in the order the op defines (e.g. conv: weight, bias)
    attrs: tuple[tuple[str, Any], ...] = ()
    act: Activation = NO_ACTIVATION
    fused: tuple[str, ...] = ()  # names of the ONNX nodes folded into this one, for provenance comments

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    def with_(self, **changes: Any) -> Node:
        fields = {**self.__dict__, **changes}
        if "attrs" in changes and isinstance(changes["attrs"], Mapping):
            fields["attrs"] = tuple(sorted(changes["attrs"].items()))
        return Node(**fields)


# The ops of the IR and what their attributes mean.
OPS: dict[str, str] = {
    "conv": "kernel=(kh,kw) stride=(sh,sw) pads=(top,left,bottom,right) dilation=(dh,dw) groups; "
            "weights W[M,C/g,kh,kw], b[M]",
    "fc": "weights W[N,K] (y = W x + b), b[N]; input (K,1,1)",
    "maxpool": "kernel stride pads=(top,left,bottom,right)",
    "avgpool": "kernel stride pads count_include_pad",
    "gap": "global average pool to (C,1,1)",
    "add": "two inputs of one shape",
    "scale": "per-channel affine y = x*s[c] + t[c]; weights s[C], t[C]",
    "act": "a standalone activation (see Node.act)",
    "concat": "along channels",
    "reshape": "row-major reinterpretation (flatten, reshape, squeeze)",
    "transpose": "perm=(p0,p1,p2) of the logical axes (C,H,W)",
    "softmax": "over all elements of a (K,1,1) vector",
    "lrn": "size alpha beta bias, across channels",
    # int8 ops (quantised networks): activations int8 with their tensor's Quant (Graph.quant), int32 accumulation,
    # TensorFlow Lite's requantisation; act_min/act_max (ints) are the output clamp a fused activation became.
    "qconv": "as conv; weights W int8 [M,C/g,kh,kw] (zero point 0), b int32 [M], s float32 [M] (weight scales); "
             "act_min act_max",
    "qfc": "as fc; weights W int8 [N,K], b int32 [N], s float32 [N]; act_min act_max",
    "qadd": "two int8 inputs of one shape, each with its own Quant; act_min act_max",
    "qavgpool": "as avgpool on int8",
    "qmaxpool": "as maxpool on int8 (input and output share their Quant)",
    "qgap": "global average pool on int8",
    "quantize": "float32 -> int8 with the output's Quant (round half away from zero, saturate)",
    "dequantize": "int8 -> float32 with the input's Quant",
}


def attrs(**kw: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(kw.items()))


@dataclass(frozen=True)
class Port:
    """A graph input or output: its tensor, and its ONNX name and shape (for comments and the caller's files)."""

    tensor: str
    onnx_name: str
    onnx_shape: tuple[int, ...]


@dataclass(frozen=True)
class Graph:
    """A batch-1 network: nodes in a topological order, every tensor's logical shape, the constants. It has one or
    more inputs and outputs: the first of each in `input`/`output` (and their ONNX names and shapes), the others, in
    the ONNX file's order, in `more_inputs`/`more_outputs`."""

    nodes: tuple[Node, ...]
    shapes: tuple[tuple[str, Shape], ...]  # sorted by tensor name
    constants: tuple[Constant, ...]  # sorted by name
    input: str
    output: str
    onnx_input_shape: tuple[int, ...]
    onnx_output_shape: tuple[int, ...]
    input_name: str = ""  # the ONNX graph input's name (for the emitted header's comment)
    output_name: str = ""
    dtypes: tuple[tuple[str, str], ...] = ()  # sorted; tensors not listed are float32
    quant: tuple[tuple[str, Quant], ...] = ()  # sorted; the Quant of every int8 tensor

    def dtype(self, tensor: str) -> str:
        return dict(self.dtypes).get(tensor, "float32")

    def tensor_bytes(self, tensor: str) -> int:
        """Bytes of the tensor in its data type."""
        return self.shape(tensor).count * DTYPE_BYTES[self.dtype(tensor)]

    def quant_of(self, tensor: str) -> Quant:
        return dict(self.quant)[tensor]

    more_inputs: tuple[Port, ...] = ()
    more_outputs: tuple[Port, ...] = ()

    @property
    def input_ports(self) -> tuple[Port, ...]:
        """Every graph input, in the ONNX file's order."""
        return (Port(self.input, self.input_name or self.input, self.onnx_input_shape), *self.more_inputs)

    @property
    def output_ports(self) -> tuple[Port, ...]:
        """Every graph output, in the ONNX file's order."""
        return (Port(self.output, self.output_name or self.output, self.onnx_output_shape), *self.more_outputs)

    @property
    def input_tensors(self) -> tuple[str, ...]:
        return tuple(p.tensor for p in self.input_ports)

    @property
    def output_tensors(self) -> tuple[str, ...]:
        return tuple(p.tensor for p in self.output_ports)

    def shape(self, tensor: str) -> Shape:
        return self._shape_map()[tensor]

    def const(self, name: str) -> np.ndarray:
        return self._const_map()[name].array

    def producers(self) -> dict[str, Node]:
        return {n.output: n for n in self.nodes}

    def consumers(self, tensor: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if tensor in n.inputs)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def _shape_map(self) -> dict[str, Shape]:
        cache = self.__dict__.get("_shapes_cache")
        if cache is None:
            cache = dict(self.shapes)
            object.__setattr__(self, "_shapes_cache", cache)
        return cache

    def _const_map(self) -> dict[str, Constant]:
        cache = self.__dict__.get("_consts_cache")
        if cache is None:
            cache = {c.name: c for c in self.constants}
            object.__setattr__(self, "_consts_cache", cache)
        return cache

    @property
    def digest(self) -> str:
        """Content digest of the whole graph: structure, shapes and weights."""
        h = hashlib.sha256()
        fields = (self.nodes, self.shapes, self.input, self.output, self.onnx_input_shape, self.onnx_output_shape,
                  *((self.more_inputs, self.more_outputs) if self.more_inputs or self.more_outputs else ()))
        h.update(repr(fields).encode())
        if self.dtypes or self.quant:  # float graphs keep the digest they always had
            h.update(repr((self.dtypes, self.quant)).encode())
        for c in self.constants:
            h.update(c.name.encode() + c.digest.encode())
        return h.hexdigest()
