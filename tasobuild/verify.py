"""`tasobuild verify`: the emitted program against ONNX Runtime on one input.

Builds if needed (as `build` does), compiles the project with its own Makefile, runs `<name>_main` on the given input
(raw little-endian float32 of the model's input shape) or on a seeded random one (here, under qemu-user, or on the
emulated board), runs the model in ONNX Runtime on the same input, and compares: element i passes when
|ours - reference| <= atol + rtol * |reference| (NaN only where the reference has NaN). ONNX Runtime is the `verify`
extra (`pip install 'tasobuild[verify]'`): builds do not need it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tasobuild.errors import UserError
from tasobuild.text import terminal_text

if TYPE_CHECKING:  # numpy and the pipeline are imported when verify runs, not when the command line is parsed
    import numpy as np

    from tasobuild.execute import Project
    from tasobuild.ir import Graph

# float32 with a different summation order (blocked GEMM, Winograd, NEON) against ONNX Runtime's MLAS: the tests'
# tolerance. A wrong weight or a wrong layout is off by far more.
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4


@dataclass(frozen=True)
class Errors:
    """How far one output is from the reference, element by element."""

    count: int  # elements compared
    max_abs_error: float
    max_rel_error: float  # |ours - reference| / |reference| over the elements where |reference| >= atol
    worst_index: int  # the element furthest past its tolerance (if none is past it, the nearest to it)
    mismatches: int  # elements past atol + rtol * |reference|


@dataclass(frozen=True)
class Verification:
    """The emitted program's output against ONNX Runtime's on one input."""

    out_dir: Path
    target: str
    emulator: tuple[str, ...]  # what ran the program here (empty: natively)
    input: str  # the input file, or "seed N" for the random one
    atol: float
    rtol: float
    errors: Errors

    @property
    def passed(self) -> bool:
        return self.errors.mismatches == 0


def verify(config: Path, overrides: Mapping[str, str] | None = None, *,
           input_path: Path | Sequence[Path] | None = None, seed: int = 0, atol: float | None = None,
           rtol: float = DEFAULT_RTOL, build_first: bool = True, progress: bool = False) -> Verification:
    """Build if needed (`build_first` False: the tree as it is), run the program on the input (a file per model
    input, in the model's order) and ONNX Runtime on the same, compare (every output, one after another). `atol`
    None: DEFAULT_ATOL for a float network, one output quantisation step for a quantised one (ONNX Runtime rounds
    otherwise than TFLite's arithmetic, which the int8 kernels follow: a unit apart is agreement)."""
    from tasobuild.execute import built, compile_project, run_program, scratch_input

    for name, value in (("--atol", atol if atol is not None else DEFAULT_ATOL), ("--rtol", rtol)):
        if not (math.isfinite(value) and value >= 0):
            raise UserError(f"{name}: must be a finite number >= 0, got {value!r}")
    if seed < 0:
        raise UserError(f"--seed: must be a whole number >= 0, got {seed}")
    _require_onnxruntime()  # before building: say now what is missing
    project = built(config, overrides, progress, build_first)
    graph = _graph(project)
    ports = graph.input_ports
    paths = [] if input_path is None else [input_path] if isinstance(input_path, Path) else list(input_path)
    if paths and len(paths) != len(ports):
        names = ", ".join(repr(terminal_text(p.onnx_name)) for p in ports)
        raise UserError(f"--input: the model has {len(ports)} input(s) ({names}); give --input once per input, in "
                        f"that order ({len(paths)} given)")
    # input k of the random one from seed + k: a one-input model's is the seed's, as before
    xs = [scratch_input(p.onnx_shape, seed + k) for k, p in enumerate(ports)] if not paths else \
        [read_input(path, tuple(p.onnx_shape), p.onnx_name) for path, p in zip(paths, ports)]
    reference = _onnxruntime_outputs(project.spec.onnx_path, graph, xs)
    atol = _output_step(graph) if atol is None else atol
    compile_project(project)
    ours, _ = run_program(project, xs, outputs=len(graph.output_ports))
    if ours.size != reference.size:
        raise UserError(f"{project.out_dir}: the program wrote {ours.size} values, ONNX Runtime's output has "
                        f"{reference.size}; rebuild (`tasobuild build`) and try again")
    return Verification(project.out_dir, project.target.name, tuple(project.target.emulator_argv),
                        f"seed {seed}" if not paths else ", ".join(map(str, paths)), atol, rtol,
                        compare(ours, reference, atol, rtol))


def compare(ours: np.ndarray, reference: np.ndarray, atol: float, rtol: float) -> Errors:
    """`ours` against `reference` (same size, any shape): the errors and how many elements are past
    atol + rtol * |reference|. NaN matches NaN, an infinity the same infinity; anything else non-finite is a
    mismatch."""
    import numpy as np

    ours64 = np.asarray(ours, dtype=np.float64).reshape(-1)
    ref64 = np.asarray(reference, dtype=np.float64).reshape(-1)
    with np.errstate(invalid="ignore"):
        error = np.abs(ours64 - ref64)
        both_nan = np.isnan(ours64) & np.isnan(ref64)
        same_inf = np.isinf(ours64) & (ours64 == ref64)
        error = np.where(both_nan | same_inf, 0.0, error)
        error = np.where(np.isnan(error), np.inf, error)  # NaN on one side only: as wrong as can be
        allowed = atol + rtol * np.where(np.isfinite(ref64), np.abs(ref64), 0.0)
        excess = error - allowed
        large = np.abs(ref64) >= max(atol, np.finfo(np.float32).tiny)
        relative = np.where(large, error / np.where(large, np.abs(ref64), 1.0), 0.0)
    return Errors(count=int(ref64.size), max_abs_error=float(error.max(initial=0.0)),
                  max_rel_error=float(relative.max(initial=0.0)),
                  worst_index=int(np.argmax(excess)) if excess.size else 0,
                  mismatches=int(np.count_nonzero(excess > 0)))


def read_input(path: Path, shape: tuple[int, ...], input_name: str) -> np.ndarray:
    """`path` as the model's input: exactly prod(shape) raw little-endian float32 values."""
    import numpy as np

    count = math.prod(shape)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read the input ({error.strerror})") from None
    if len(data) != 4 * count:
        dims = "x".join(map(str, shape))
        raise UserError(f"{path}: {len(data)} bytes, but the model's input {terminal_text(input_name)!r} ({dims}) is "
                        f"{count} float32 values ({4 * count} bytes, raw little-endian); make one with numpy: "
                        f"x.astype('<f4').tofile('in.bin')")
    return np.frombuffer(data, dtype="<f4").reshape(shape)


def _graph(project: Project) -> Graph:
    """The imported network (from the stage cache: the build just imported it)."""
    from tasobuild.digest import sha256_file
    from tasobuild.incremental.stagecache import cached
    from tasobuild.pipeline import imported_graph

    return imported_graph(project.spec.onnx_path, sha256_file(project.spec.onnx_path), cached)


def _require_onnxruntime() -> None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise UserError("verify compares with ONNX Runtime, which is not installed: pip install onnxruntime "
                        "(or pip install 'tasobuild[verify]')") from None


def _onnxruntime_outputs(model: Path, graph: Graph, xs: Sequence[np.ndarray]) -> np.ndarray:
    """The model's outputs for inputs `xs` (in the graph's order) in ONNX Runtime on one thread (a reproducible
    summation order), flat and one after another, in the graph's order."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # its warnings about unused initializers are not the user's business here
    try:
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        feed = {p.onnx_name: _quantized(graph, p.tensor, x) for p, x in zip(graph.input_ports, xs)}
        fetch = [p.onnx_name for p in graph.output_ports]
        ys = session.run(fetch, feed)
        return np.concatenate([_dequantized(graph, p.tensor, np.asarray(y)).reshape(-1)
                               for p, y in zip(graph.output_ports, ys)])
    except Exception as error:  # ONNX Runtime's own exception types are not importable by a stable name
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{model}: ONNX Runtime cannot run the model ({terminal_text(first)})") from None


def _quantized(graph: Graph, tensor: str, x: np.ndarray) -> np.ndarray:
    """An int8 input as the runner makes it from the float file (round, add the zero point, saturate)."""
    import numpy as np

    if graph.dtype(tensor) != "int8":
        return x
    q = graph.quant_of(tensor)
    return np.clip(np.round(x / np.float32(q.scale)) + q.zero_point, -128, 127).astype(np.int8)


def _dequantized(graph: Graph, tensor: str, y: np.ndarray) -> np.ndarray:
    """An int8 output as the runner writes it: (q - zero point) * scale, float32."""
    import numpy as np

    if graph.dtype(tensor) != "int8":
        return y
    q = graph.quant_of(tensor)
    return ((y.astype(np.float32) - q.zero_point) * np.float32(q.scale)).astype(np.float32)


def _output_step(graph: Graph) -> float:
    """The default absolute tolerance: DEFAULT_ATOL for a float network; for a quantised one, one step of the
    output's quantisation (its own scale when int8, else that of the last DequantizeLinear before it)."""
    if not graph.quant:
        return DEFAULT_ATOL
    output = graph.output_ports[0].tensor
    if graph.dtype(output) == "int8":
        return graph.quant_of(output).scale
    steps = [graph.quant_of(n.inputs[0]).scale for n in graph.nodes if n.op == "dequantize"]
    return max(DEFAULT_ATOL, steps[-1]) if steps else DEFAULT_ATOL
