"""Read an ONNX file into plain, typed values: nodes with decoded attributes, initializers as arrays, the inputs
(their dynamic dimensions pinned by the spec's `input_shapes`) and the outputs.

Everything a later stage needs from the protobuf is extracted here, so no other stage touches `onnx` protos
(except the shape-inference cross-check, which hands the proto back to onnx).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from tasobuild.errors import UserError

# The ai.onnx opsets whose operators the rules (fold, shapes, convert) follow. 7 is ONNX Runtime's oldest too (older
# BatchNormalization and friends have other attributes); raising the newest means checking each operator of
# CONVERT_RULES and FOLD_RULES in onnx's changelog for the opsets in between.
OLDEST_OPSET, NEWEST_OPSET = 7, 21


@dataclass(frozen=True)
class OnnxNode:
    index: int  # position in the ONNX node list
    name: str  # the ONNX name, or "<OpType>_<index>" when empty; unique
    op: str
    inputs: tuple[str, ...]  # "" marks an omitted optional input
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)


@dataclass(frozen=True)
class OnnxModel:
    file: str  # the file's name as shown in messages (no directories: deterministic)
    proto: onnx.ModelProto = field(repr=False)
    opset: int
    nodes: tuple[OnnxNode, ...]
    initializers: Mapping[str, np.ndarray] = field(repr=False)
    inputs: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (name, static shape), in the file's order
    # (name, declared shape: None where a dimension, or the shape, is not static), in the file's order
    outputs: tuple[tuple[str, tuple[int | None, ...] | None], ...] = ()
    input_dtype: str = "float32"  # the first input's: float32, or int8 (a quantised model's own int8 input)
    output_dtype: str = "float32"  # the first output's


def read_model(path: Path, input_shapes: Mapping[str, Sequence[int]] | None = None,
               shapes_from: str = "input_shapes") -> OnnxModel:
    """The model in `path`; `input_shapes` (ONNX input name -> full shape) pins the inputs' dynamic dimensions, as
    `shapes_from` ("taso.toml:7", "command line") says, for messages."""
    file = Path(path).name
    proto = _load(Path(path), file)
    graph = proto.graph
    opset = _opset(proto, file)
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if not inputs:
        raise UserError(f"{file}: the graph has no input; nothing to compute from")
    pins = dict(input_shapes or {})
    names = [i.name for i in inputs]
    for name in sorted(set(pins) - set(names)):
        raise UserError(f"{shapes_from}: input_shapes: {name!r} names no input of {file}"
                        f"{_did_you_mean(name, names)}")
    shapes = tuple((i.name, _input_shape(i, file, pins.get(i.name), shapes_from)) for i in inputs)
    if pins:  # onnx's own shape inference (fold.cross_check) must see the pinned shapes too
        for value, (_, shape) in zip(inputs, shapes):
            for dim, size in zip(value.type.tensor_type.shape.dim, shape):
                dim.dim_value = size
    return OnnxModel(
        file=file, proto=proto, opset=opset, nodes=_nodes(graph),
        initializers=MappingProxyType(initializers),
        inputs=shapes, outputs=tuple((o.name, _declared_dims(o)) for o in graph.output),
        input_dtype=_io_dtype(inputs, graph.output, file, "input"),
        output_dtype=_io_dtype(graph.output, inputs, file, "output"),
    )


def _did_you_mean(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    inputs = ", ".join(repr(n) for n in names)
    return f" (did you mean {close[0]!r}? its inputs: {inputs})" if close else f" (its inputs: {inputs})"


# The element types a graph's input and output may have.
IO_TYPES: dict[int, str] = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT8: "int8"}


def _io_dtype(values: Sequence[onnx.ValueInfoProto], others: Sequence[onnx.ValueInfoProto], file: str,
              what: str) -> str:
    """The element type of the one input (or output): float32 or int8. A model with several inputs or outputs takes
    and returns float32 only (its API's int8 and float helpers are for one input and one output)."""
    several = len(values) > 1 or len(others) > 1
    for value in values:
        if several and _dtype(value, file, what) != "float32":
            raise UserError(f"{file}: {what} '{value.name}' is int8 in a model with several inputs or outputs, which "
                            "take and return float32 only; quantise and dequantise inside the graph (QuantizeLinear, "
                            "DequantizeLinear)")
    return _dtype(values[0], file, what)


def _dtype(value: onnx.ValueInfoProto, file: str, what: str) -> str:
    t = value.type.tensor_type.elem_type
    if t not in IO_TYPES:
        raise UserError(f"{file}: {what} '{value.name}' has element type {onnx.TensorProto.DataType.Name(t)}; "
                        "only float32 and int8 are supported")
    return IO_TYPES[t]


def _opset(proto: onnx.ModelProto, file: str) -> int:
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise UserError(f"{file}: imports no ai.onnx opset; export with an opset from {OLDEST_OPSET} to "
                        f"{NEWEST_OPSET}")
    if not OLDEST_OPSET <= opset <= NEWEST_OPSET:
        age = "too old" if opset < OLDEST_OPSET else "newer than tasobuild knows"
        raise UserError(f"{file}: opset {opset} is {age}; supported: {OLDEST_OPSET} to {NEWEST_OPSET} "
                        f"(re-export, or convert with onnx.version_converter)")
    return int(opset)


def _load(path: Path, file: str) -> onnx.ModelProto:
    if path.is_dir():
        raise UserError(f"{file}: is a directory ({path}), not an ONNX file; check the [network] onnx path")
    if not path.is_file():
        raise UserError(f"{file}: no such file ({path}); check the [network] onnx path")
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError, truncated file, not ONNX at all
        raise UserError(f"{file}: not a readable ONNX model, truncated or corrupt "
                        f"({type(e).__name__}: {_one_line(e)}); re-export it") from None
    if not proto.graph.node and not proto.graph.input:
        # protobuf happily parses many non-ONNX byte strings into an empty message
        raise UserError(f"{file}: not an ONNX model (no graph); export the network with torch.onnx or tf2onnx")
    _opset(proto, file)  # before the checker, whose complaint about an unknown opset names no fix
    try:
        onnx.checker.check_model(str(path))  # from the file: C++ reads it, no 2 GB protobuf limit, no re-serialising
    except Exception as e:
        raise UserError(f"{file}: invalid ONNX model ({_one_line(e)})") from None
    return proto


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _nodes(graph: onnx.GraphProto) -> tuple[OnnxNode, ...]:
    nodes: list[OnnxNode] = []
    seen: set[str] = set()
    for i, n in enumerate(graph.node):
        name = n.name or f"{n.op_type}_{i}"
        if name in seen:  # duplicate ONNX names happen; provenance still needs a unique one
            name = f"{name}_{i}"
        seen.add(name)
        attrs = {a.name: _attr_value(a) for a in n.attribute}
        nodes.append(OnnxNode(i, name, n.op_type, tuple(n.input), tuple(n.output), MappingProxyType(attrs)))
    return tuple(nodes)


def _attr_value(a: onnx.AttributeProto) -> Any:
    value = onnx.helper.get_attribute_value(a)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list):
        return tuple(v.decode() if isinstance(v, bytes) else v for v in value)
    return value


def _input_shape(value: onnx.ValueInfoProto, file: str, pin: Sequence[int] | None, shapes_from: str
                 ) -> tuple[int, ...]:
    """The input's static shape: as declared, its dynamic dimensions taken from `pin` (the whole shape)."""
    t = value.type.tensor_type
    _dtype(value, file, "input")
    if not t.HasField("shape"):
        if pin is None:
            raise UserError(f"{file}: input '{value.name}' has no shape; export with a fixed input shape, or pin it: "
                            f"{_pin_hint(value.name, None)}")
        declared: list[int | None] = [None] * len(pin)
    else:
        declared = []
        for k, d in enumerate(t.shape.dim):
            if d.HasField("dim_value") and d.dim_value <= 0:
                raise UserError(f"{file}: input '{value.name}' dim {k} is {d.dim_value}: a zero or negative "
                                "dimension; every dimension must be at least 1")
            declared.append(d.dim_value if d.HasField("dim_value") else None)
    if pin is not None:
        dims = _pinned(value.name, declared, pin, file, shapes_from)
    else:
        for k, d in enumerate(t.shape.dim):
            if not d.HasField("dim_value"):
                what = f"'{d.dim_param}'" if d.HasField("dim_param") else "unknown"
                raise UserError(f"{file}: input '{value.name}' dim {k} is {what} (dynamic); pin it: "
                                f"{_pin_hint(value.name, declared)}")
        dims = [d for d in declared if d is not None]
    if not dims or dims[0] != 1:
        raise UserError(f"{file}: input '{value.name}' has shape {dims}; dim 0 (batch) must be 1")
    return tuple(dims)


def _pinned(name: str, declared: Sequence[int | None], pin: Sequence[int], file: str, shapes_from: str
            ) -> list[int]:
    where = f"{shapes_from}: input_shapes: {name!r}"
    if len(pin) != len(declared):
        raise UserError(f"{where} is pinned to {list(pin)}, {len(pin)} dimensions, but input '{name}' of {file} has "
                        f"{len(declared)}: {_shown(declared)}")
    for k, (have, want) in enumerate(zip(declared, pin)):
        if want < 1:
            raise UserError(f"{where} dim {k} is pinned to {want}; every dimension must be at least 1")
        if have is not None and have != want:
            raise UserError(f"{where} dim {k} is pinned to {want}, but {file} fixes it at {have}: "
                            f"{_shown(declared)}; pin only its dynamic dimensions to other values")
    return list(pin)


def _shown(dims: Sequence[int | None]) -> str:
    return "x".join("?" if d is None else str(d) for d in dims)


def _pin_hint(name: str, declared: Sequence[int | None] | None) -> str:
    shape = _shown([1, *declared[1:]] if declared else []) or "1xCxHxW"
    return (f"--input-shape '{name}={shape}' or, in taso.toml, [network] input_shapes = {{ {json.dumps(name)} = "
            f"[{shape.replace('x', ', ')}] }}, each ? a number (batch 1)")


def _declared_dims(value: onnx.ValueInfoProto) -> tuple[int | None, ...] | None:
    t = value.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim)
