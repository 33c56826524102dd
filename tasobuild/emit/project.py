"""The whole emitted project as a map of relative path -> bytes (pure: nothing is written here)."""

from __future__ import annotations

from pathlib import Path

from tasobuild.emit import render_bare_metal, render_build, render_c
from tasobuild.emit.program import Program
from tasobuild.native.headers import COMPANION_HEADERS, OPTIONAL_HEADERS, own_prototypes
from tasobuild.primitives.parallel import THREAD_SOURCES


def project_files(p: Program, kernels_dir: Path) -> dict[str, bytes]:
    files = {
        f"include/{p.name}.h": render_c.render_header(p),
        f"src/{p.name}.c": render_c.render_network(p, own_prototypes(kernels_dir, called(p))),
        f"src/{p.name}_weights.h": render_c.render_weights_header(p),
        f"main/{p.name}_main.c": render_build.render_main(p),
        "Makefile": render_build.render_makefile(p),
        "CMakeLists.txt": render_build.render_cmake(p),
    }
    if p.toolchain.bare_metal is not None:  # a microcontroller: its runner, startup and linker script instead
        files |= {"Makefile": render_bare_metal.render_makefile(p), "CMakeLists.txt": render_bare_metal.render_cmake(p),
                  **render_bare_metal.bare_metal_files(p)}
    if render_c.uses_blob(p):
        files[f"src/{p.name}_weights.S"] = render_c.render_weights_asm(p)
    else:
        files[f"src/{p.name}_weights.c"] = render_c.render_weights_c(p)
    encoded = {path: text.encode() for path, text in files.items()}
    if render_c.uses_blob(p):
        encoded[f"src/{p.name}_weights.bin"] = render_c.render_weights_blob(p)
    # Every kernel header (they include each other) but the optional ones the plan does not use (the int8 API, the
    # thread pool's), and only the .c files this plan calls.
    optional = set(OPTIONAL_HEADERS) | set(THREAD_SOURCES)
    kernel_files = {f.name for f in kernels_dir.glob("*.h") if f.name not in optional} | set(p.kernel_sources)
    kernel_files |= {c for h in kernel_files for c in COMPANION_HEADERS.get(h, ()) if (kernels_dir / c).is_file()}
    for name in sorted(kernel_files):
        encoded[f"src/kernels/{name}"] = (kernels_dir / name).read_bytes()
    return encoded


def called(p: Program) -> set[str]:
    """The kernel functions the program calls."""
    return {call.function for step in p.steps for call, _ in step.calls}
