"""The kernel API, read from the public headers: parameter structs and kernel prototypes (steps 1 of the build).

tb_kernels.h and the headers it includes declare `typedef struct { int a, b; float c; } tb_x;` parameter structs and
`void tb_f(const tb_x *p, const float *restrict a, ..., float *restrict out);` kernels; a prototype counts only once a
C file defines it, written out or through tb_conv_layout.h's TB_CONV_LAYOUT_KERNEL(tb_f, body, in, out) macro. A
kernel a C file defines without a prototype in the headers (a new primitive family's own file) is declared by its
definition: whoever calls it (the bindings' dispatch, the emitted program, the device harness) writes its
`prototype` itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PUBLIC_HEADER = "tb_kernels.h"
# Kernel API headers tb_kernels.h does not include, so that only the projects that use them carry them: the int8
# kernels and their inner products (tb_q8_dot.h; Arm's in tb_q8_dot_arm.h, which defines nothing for other compilers).
# The bindings' dispatch and the emitted program include the API after tb_kernels.h.
OPTIONAL_API_HEADERS = ("tb_q8.h",)
# Headers a project carries only when its kernel sources list them: the optional API and its helpers.
OPTIONAL_HEADERS = OPTIONAL_API_HEADERS + ("tb_q8_dot.h", "tb_q8_dot_arm.h")
# The element types a kernel's buffers may have: float32 activations and weights; int8 activations and weights and
# int32 biases and requantisation parameters of the int8 kernels.
BUFFER_TYPES = ("float", "int8_t", "int32_t")
MAX_BUFFERS = 16  # buffers per kernel: matches TB_DISPATCH_MAX_BUFFERS and the pointer arrays of _bindings.pyx

FieldType = Literal["int", "float"]


@dataclass(frozen=True)
class StructDecl:
    """A parameter struct: fields in declaration order, each a 4-byte int or float."""

    name: str
    fields: tuple[tuple[str, FieldType], ...]

    @property
    def format(self) -> str:
        return "=" + "".join("i" if kind == "int" else "f" for _, kind in self.fields)


@dataclass(frozen=True)
class KernelDecl:
    """A kernel prototype: its parameter struct and its buffer parameters (name, const-ness) in C order, with
    their element types (`types`, one of BUFFER_TYPES each; empty: all float)."""

    name: str
    struct: str
    buffers: tuple[tuple[str, bool], ...]
    in_header: bool = True  # False: declared only by its definition in its family's C file
    types: tuple[str, ...] = ()

    def buffer_type(self, k: int) -> str:
        return self.types[k] if self.types else "float"

    @property
    def prototype(self) -> str:
        args = [f"const {self.struct} *p"] + [f"{'const ' if const else ''}{self.buffer_type(k)} *restrict {name}"
                                               for k, (name, const) in enumerate(self.buffers)]
        return f"void {self.name}({', '.join(args)});"


_STRUCT_RE = re.compile(r"typedef\s+struct\s*\{([^{}]*)\}\s*(tb_\w+)\s*;")
_PROTO_RE = re.compile(r"^\s*void\s+(tb_\w+)\s*\(([^;{]*?)\)\s*;", re.MULTILINE)
_STRUCT_ARG_RE = re.compile(r"^const\s+(tb_\w+)\s*\*\s*\w+$")
_BUFFER_ARG_RE = re.compile(r"^(const\s+)?(float|int8_t|int32_t)\s*\*\s*restrict\s+(\w+)$")
_COMMENT_RE = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)
_DEFINITION_RE = re.compile(r"^void\s+(tb_\w+)\s*\(([^;{]*)\)\s*\{", re.MULTILINE)
# The parameters every TB_CONV_LAYOUT_KERNEL entry point has (tb_conv_layout.h).
_LAYOUT_KERNEL_ARGS = ("const tb_conv *p, const float *restrict in, const float *restrict w, "
                       "const float *restrict bias, float *restrict out, float *restrict ws")
_MACRO_DEFINITION_RE = re.compile(r"^TB_CONV_LAYOUT_KERNEL\(\s*(tb_\w+)\s*,", re.MULTILINE)
_INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)


def public_headers(folder: Path) -> tuple[Path, ...]:
    """tb_kernels.h and the headers it includes: the kernel API (internal helper headers are not parsed)."""
    top = folder / PUBLIC_HEADER
    text = top.read_text()
    included = tuple(folder / name for name in _INCLUDE_RE.findall(text) if (folder / name).is_file())
    return (top,) + included + tuple(folder / name for name in OPTIONAL_API_HEADERS if (folder / name).is_file())


def _parse_struct(body: str, name: str) -> StructDecl | None:
    fields: list[tuple[str, FieldType]] = []
    for decl in (" ".join(d.split()) for d in body.split(";")):
        if not decl:
            continue
        kind, _, names = decl.partition(" ")
        if kind not in ("int", "float") or "*" in names or "[" in names:
            return None  # not a plain parameter struct
        fields.extend((n.strip(), kind) for n in names.split(","))  # type: ignore[misc]
    return StructDecl(name, tuple(fields))


def defined_kernels(sources: Sequence[Path]) -> dict[str, str]:
    """The non-static `void tb_*(...) {` functions the C files define, and the kernels they define with
    TB_CONV_LAYOUT_KERNEL: name -> parameter list as written."""
    found: dict[str, str] = {}
    for src in sources:
        text = _COMMENT_RE.sub(" ", src.read_text())
        found.update(_DEFINITION_RE.findall(text))
        found.update((name, _LAYOUT_KERNEL_ARGS) for name in _MACRO_DEFINITION_RE.findall(text))
    return found


def _kernel_decl(name: str, arglist: str, in_header: bool) -> KernelDecl | None:
    """The kernel `name(arglist)`, or None if it is not of the kernel form (a struct, then float buffers)."""
    args = [" ".join(a.split()) for a in arglist.split(",")]
    head = _STRUCT_ARG_RE.match(args[0])
    buffers = [_BUFFER_ARG_RE.match(a) for a in args[1:]]
    if head is None or not all(buffers):
        return None
    found = [m for m in buffers if m]
    types = tuple(m.group(2) for m in found)
    return KernelDecl(name, head.group(1), tuple((m.group(3), bool(m.group(1))) for m in found), in_header,
                      types if any(t != "float" for t in types) else ())


def _checked(kernels: dict[str, KernelDecl], structs: dict[str, StructDecl]) -> dict[str, KernelDecl]:
    for k in kernels.values():
        if k.struct not in structs:
            raise ValueError(f"kernel {k.name}: parameter struct {k.struct} is not declared in the kernel headers")
        if len(k.buffers) > MAX_BUFFERS:
            raise ValueError(f"kernel {k.name}: {len(k.buffers)} buffers, the bindings take at most {MAX_BUFFERS}")
    return kernels


def parse_headers(headers: Sequence[Path]) -> tuple[dict[str, StructDecl], dict[str, KernelDecl]]:
    """The parameter structs and kernel prototypes declared in `headers`."""
    structs: dict[str, StructDecl] = {}
    kernels: dict[str, KernelDecl] = {}
    for header in headers:
        text = _COMMENT_RE.sub(" ", header.read_text())
        for body, name in _STRUCT_RE.findall(text):
            decl = _parse_struct(body, name)
            if decl is not None:
                structs[name] = decl
        for name, arglist in _PROTO_RE.findall(text):
            kernel = _kernel_decl(name, arglist, in_header=True)
            if kernel is not None:
                kernels[name] = kernel
    return structs, _checked(kernels, structs)


def kernel_api(folder: Path) -> tuple[dict[str, StructDecl], dict[str, KernelDecl]]:
    """The structs and the kernels the bindings expose: declared in a public header and defined in a C file (a
    prototype whose definition is not written yet is left out rather than breaking every other kernel's build)."""
    structs, declared = parse_headers(public_headers(folder))
    defined = defined_kernels(sorted(folder.glob("*.c")))
    kernels = {name: k for name, k in declared.items() if name in defined}
    for name, arglist in sorted(defined.items()):  # a family's own kernels, declared by their definitions
        kernel = None if name in declared else _kernel_decl(name, arglist, in_header=False)
        if kernel is not None:
            kernels[name] = kernel
    return structs, _checked(kernels, structs)


def own_prototypes(folder: Path, functions: Iterable[str]) -> tuple[str, ...]:
    """The prototypes a caller of `functions` writes itself: those of the kernels no header declares."""
    _, kernels = kernel_api(folder)
    return tuple(kernels[f].prototype for f in sorted(set(functions)) if f in kernels and not kernels[f].in_header)
