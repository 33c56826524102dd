"""The module map of docs/ARCHITECTURE.md, enforced: no import cycles, and each layer imports only the layers below.

Every import counts, at module level or inside a function, under TYPE_CHECKING or not: a lazy import is still a
dependency, only a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tasobuild"

# Lowest first. A module may import its own layer and the layers before it, never a later one. A package is named
# by its prefix (tasobuild.solve covers tasobuild.solve.*); a module not listed fails the test, so the map stays
# complete.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("tasobuild.errors", "tasobuild.units", "tasobuild.digest", "tasobuild.resources", "tasobuild.toolchain",
     "tasobuild.text", "tasobuild.progress"),
    ("tasobuild.ir", "tasobuild.spec", "tasobuild.starter", "tasobuild.target", "tasobuild.memory",
     "tasobuild.report", "tasobuild.placement", "tasobuild.schedule"),
    ("tasobuild.importer", "tasobuild.primitives", "tasobuild.native", "tasobuild.solve"),
    ("tasobuild.costs", "tasobuild.emit"),
    ("tasobuild.candidates",),
    ("tasobuild.tiling",),
    ("tasobuild.decide", "tasobuild.lower", "tasobuild.device"),
    ("tasobuild.pipeline",),
    ("tasobuild.incremental", "tasobuild.visual"),
    ("tasobuild.execute", "tasobuild.verify", "tasobuild.layer_profile"),
    ("tasobuild.api",),
    ("tasobuild.cli", "tasobuild.__main__"),
)
TOP = ("tasobuild",)  # the package itself: __version__, and the API re-exported (imported on first use)
TOP_EXPORTS = {"tasobuild.api", "tasobuild.errors"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The tasobuild modules `path` imports (`from a.b import c` counts a.b.c when that is a module, else a.b)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tasobuild":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "tasobuild")
    return found


def graph() -> dict[str, set[str]]:
    """Who imports whom. `from tasobuild import __version__` is no edge: the package's own module has run by then,
    and its only imports are the lazy re-exports of TOP_EXPORTS (test_the_package_only_re_exports_the_api)."""
    mods = modules()
    return {name: imports(path, set(mods)) - {name, *TOP} for name, path in mods.items()}


def test_the_package_only_re_exports_the_api() -> None:
    assert imports(PACKAGE / "__init__.py", set(modules())) <= TOP_EXPORTS


def layer_of(module: str) -> int:
    if module in TOP:
        return -1
    for index, layer in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in layer):
            return index
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py (and docs/ARCHITECTURE.md)")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle_and_a_layer_breach() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert layer_of("tasobuild.solve.encode") < layer_of("tasobuild.pipeline")


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_every_module_imports_only_its_layer_and_those_below() -> None:
    breaches = [f"{module} (layer {layer_of(module)}) imports {dep} (layer {layer_of(dep)})"
                for module, deps in sorted(graph().items()) for dep in sorted(deps)
                if layer_of(dep) > layer_of(module) and module not in TOP]
    assert breaches == []


def test_pipeline_and_below_never_ask_which_kind_a_fused_group_is() -> None:
    """Tiling kinds live in tasobuild.tiling: nobody outside it names a concrete kind's module."""
    outside = [m for m, deps in graph().items() if not m.startswith("tasobuild.tiling")
               for d in deps if d.startswith("tasobuild.tiling.") and d.rsplit(".", 1)[1] in ("rows", "channels")]
    assert outside == []
