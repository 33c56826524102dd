"""The command line: `tasobuild build | update | plan | pareto | report | profile | primitives | check | init |
targets`.

Results go to stdout (a table, or one JSON object with --json); progress and logs go to stderr. Exit codes:
0 success, 1 a user error (one line on stderr naming the cause), 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table as RichTable

    from tasobuild.api import BuildResult
    from tasobuild.costs.stage import Costed
    from tasobuild.pipeline import Inputs
    from tasobuild.primitives import KernelCall
    from tasobuild.target import Target

from tasobuild import __version__
from tasobuild.errors import UserError
from tasobuild.text import terminal_text
from tasobuild.units import format_size


class _LazyConsole:
    """A rich Console made on first use: `tasobuild build` with nothing to do never pays for importing rich."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(highlight=False, **self._options)
        return getattr(self._console, name)


def Table(*args: Any, **kwargs: Any) -> RichTable:  # noqa: N802 - stands in for rich's class
    from rich.table import Table as RichTable

    return RichTable(*args, **kwargs)


stdout = _LazyConsole(soft_wrap=True)  # a line with a path is never broken where the terminal ends
stderr = _LazyConsole(stderr=True)


def _common(parser: argparse.ArgumentParser, memory: bool = False, shapes: bool = False) -> None:
    # -v after the command too (`tasobuild build -v`); SUPPRESS keeps a -v given before it
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log each stage on stderr")
    parser.add_argument("-c", "--config", type=Path, default=Path("taso.toml"), metavar="PATH",
                        help="the spec (default: ./taso.toml)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    if memory:
        parser.add_argument("--memory", metavar="SIZE", help='override constraints.memory, e.g. "48KiB"')
        parser.add_argument("--threads", metavar="N", help='override target.threads: a count, or "auto"')
    if shapes:
        parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=SHAPE", dest="input_shape",
                            help="pin an input's dynamic dimensions, e.g. input=1x3x224x224 (repeatable; overrides "
                                 "network.input_shapes)")


def _input_shapes(args: argparse.Namespace) -> dict[str, list[int]]:
    """--input-shape NAME=1x3x224x224, each: the input's name (anything but the last "=") and its whole shape."""
    shapes: dict[str, list[int]] = {}
    for text in getattr(args, "input_shape", []):
        name, _, dims = text.rpartition("=")
        try:
            shape = [int(d) for d in dims.lower().split("x")]
        except ValueError:
            shape = []
        if not name or not shape or min(shape) < 1:
            raise UserError(f"command line: --input-shape {text!r}: write NAME=SHAPE, the input's name and every "
                            f"dimension as a positive number, e.g. input=1x3x224x224")
        shapes[name] = shape
    return shapes


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    from tasobuild.api import overrides

    return overrides(getattr(args, "memory", None), _input_shapes(args), getattr(args, "threads", None))


def _progress(args: argparse.Namespace) -> bool:
    """Progress on stderr (a bar on a terminal, a line every few seconds elsewhere), except for --json."""
    return not args.json


def _inputs(args: argparse.Namespace) -> Inputs:
    """The spec, its target and its network, the import from the stage cache."""
    from tasobuild.api import inputs_of

    return inputs_of(args.config, _overrides(args))


def _emit_json(obj: Any) -> None:
    """One JSON value on stdout; an object carries the schema version (docs/tasobuild-json.schema.json)."""
    from tasobuild.report import versioned

    sys.stdout.write(json.dumps(versioned(obj) if isinstance(obj, dict) else obj, indent=2, sort_keys=True) + "\n")


def cmd_build(args: argparse.Namespace) -> int:
    from tasobuild import api

    result = api.build(args.config, memory=args.memory, input_shapes=_input_shapes(args), threads=args.threads,
                       locked=args.locked, frozen=args.frozen, progress=_progress(args))
    return _print_build(args, result)


def cmd_update(args: argparse.Namespace) -> int:
    """`build`, but every cost afresh (the cost cache, measuring what it misses, or the model): the lock's costs are
    not reused, so taso.lock may change."""
    from tasobuild import api

    return _print_build(args, api.build(args.config, memory=args.memory, input_shapes=_input_shapes(args),
                                        threads=args.threads, update=True, progress=_progress(args)))


def _print_build(args: argparse.Namespace, result: BuildResult) -> int:
    rep, lock_path = result.report, result.lock_path
    if args.json:
        _emit_json(rep)
        return 0
    if result.up_to_date:  # plain text: a path is neither wrapped nor read as markup
        sys.stdout.write(f"{rep['out_dir']} is up to date with {lock_path}\n")
        return 0
    _print_totals(rep)
    files = rep["files"]
    stdout.print(f"wrote {len(files['written'])} files, {len(files['unchanged'])} unchanged, "
                 f"{len(files['removed'])} removed in {rep['out_dir']}; lock {lock_path}", markup=False)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from tasobuild import api

    rep = api.plan(args.config, memory=args.memory, input_shapes=_input_shapes(args), threads=args.threads,
                   progress=_progress(args)).report
    if args.json:
        _emit_json(rep)
        return 0
    stdout.print(_plan_table(rep, narrow=stdout.width < WIDE_PLAN_COLUMNS), soft_wrap=False)  # fit the width
    _print_cost_sources(rep)
    _print_totals(rep)
    stdout.print(PLAN_LEGEND, markup=False, soft_wrap=False)  # wrapped at words
    return 0


# Below this terminal width the plan table leaves out the op column and shortens the cost sources to a letter.
WIDE_PLAN_COLUMNS = 110
SOURCE_LETTERS = {"measured": "m", "imported": "i", "predicted": "p", "predicted (host model)": "h", "none": "-"}
PLAN_LEGEND = ("greedy: every layer's fastest primitive on its own, no memory limit; time_only: the fastest plan as "
               "a whole, no memory limit; live-buffer lower bound: the most bytes live at one step, which no "
               "placement of the plan's buffers can beat")


def _plan_table(rep: Mapping[str, Any], narrow: bool) -> RichTable:
    """The plan per node; at a narrow width without the op column, the cost sources as letters (a legend line
    says which), and long names folded onto more lines instead of cut."""
    from rich import box

    table = Table(title="plan", box=box.SIMPLE_HEAD if narrow else box.HEAVY_HEAD, pad_edge=not narrow,
                  collapse_padding=narrow)
    tiled = any(n["tiling"] for n in rep["nodes"])
    columns = ("node", *(() if narrow else ("op",)), "primitive", "layouts", *(("tiling",) if tiled else ()),
               "workspace", "ms", "cost")
    widest = max((len(n["primitive"]) for n in rep["nodes"]), default=0)  # a primitive's name is never broken
    for col in columns:
        table.add_column(col, justify="right" if col in ("workspace", "ms") else "left", overflow="fold",
                         no_wrap=col in ("ms", "workspace", "layouts"),
                         min_width=widest if col == "primitive" else None)

    def source(names: list[str]) -> str:
        return "+".join(SOURCE_LETTERS.get(n, n) for n in names) if narrow else "+".join(names)

    for n in rep["nodes"]:
        table.add_row(_cell(n["name"]), *(() if narrow else (n["op"],)), n["primitive"],
                      f"{n['layout_in']}->{n['layout_out']}", *((n["tiling"] or "",) if tiled else ()),
                      format_size(n["workspace_bytes"]) if n["workspace_bytes"] else "",
                      f"{n['predicted_ms']:.4f}", source(n["cost_source"]))
    for t in rep["transforms"]:
        table.add_row(f"(before step {t['step']})", *(() if narrow else ("transform",)), _cell(t["tensor"]),
                      f"{t['from']}->{t['to']}", *(("",) if tiled else ()), "", f"{t['predicted_ms']:.4f}", "")
    if narrow:
        table.caption = "cost: " + ", ".join(f"{letter} {name}" for name, letter in SOURCE_LETTERS.items())
    return table


def _cell(name: str) -> Any:
    """A model's name as a table cell: shown as it is (no rich markup), without escapes, long names shortened."""
    from rich.text import Text

    return Text(terminal_text(name))


def _print_cost_sources(rep: Mapping[str, Any]) -> None:
    """Which machine the times describe, when not all were measured here: a cross target's predictions are the
    host's times."""
    from tasobuild.costs.provenance import EMULATED, HOST_MODEL, TARGET_MODEL

    sources = sorted({s for n in rep["nodes"] for s in n["cost_source"] if s != "none"})
    if HOST_MODEL in sources:
        stdout.print(f"times '{HOST_MODEL}' are the host's, as its performance model predicts them, not the "
                     f"target's; for the board's own, run `tasobuild profile --emit-harness` there and "
                     f"`tasobuild costs import`", markup=False)
    if TARGET_MODEL in sources:
        stdout.print(f"times '{TARGET_MODEL}' are the performance model's, calibrated to this target's counts on its "
                     f"emulated board", markup=False)
    if EMULATED in sources:
        stdout.print(f"times '{EMULATED}' are instructions counted on the emulated board at one per clock cycle: "
                     f"no wait states, caches or multi-cycle instructions, so lower than the device's", markup=False)


def _print_totals(rep: Mapping[str, Any]) -> None:
    stdout.print(f"plan: {rep['predicted_ms']:.3f} ms predicted, arena {format_size(rep['arena_bytes'])} "
                 f"(budget {format_size(rep['budget_bytes'])}, live-buffer lower bound "
                 f"{format_size(rep['lower_bound_bytes'])}), solver {rep['solver']['status']} in "
                 f"{rep['solver']['seconds']:.2f} s, {rep['profiled']} measurements taken", soft_wrap=False)
    for name, b in sorted(rep["baselines"].items()):
        stdout.print(f"  {name:>9}: {b['predicted_ms']:.3f} ms, arena {format_size(b['arena_bytes'])}")


def cmd_pareto(args: argparse.Namespace) -> int:
    from tasobuild import api

    front = api.pareto(args.config, points=args.points, input_shapes=_input_shapes(args), progress=_progress(args))
    frontier = front.frontier
    if args.png:
        from tasobuild.incremental.tree import write_atomic
        from tasobuild.visual.plots import pareto_png

        write_atomic(args.png, pareto_png(frontier))
    if args.json:
        _emit_json(front.as_json())
        return 0
    table = Table(title=f"{frontier.project}: memory vs latency "
                        f"({'every point proven optimal' if front.proven else 'NOT every point proven: see status'})")
    for col in ("", "arena", "peak live", "predicted ms", "status", "what it runs"):
        table.add_column(col, justify="left" if col in ("", "what it runs") else "right", overflow="fold")
    for p in frontier.points:
        table.add_row(p.label, format_size(p.arena_bytes), format_size(p.peak_bytes), f"{p.predicted_ms:.3f}",
                      p.status, p.what)
    stdout.print(table)
    if frontier.note:
        stdout.print(frontier.note, markup=False)
    stdout.print(f"budget {format_size(frontier.budget_bytes)}; " + "; ".join(
        f"{b.name} {b.predicted_ms:.3f} ms, arena {format_size(b.arena_bytes)} ({b.meaning})"
        for b in frontier.baselines), markup=False)
    count = len(frontier.points)
    stdout.print(f"{count} point{'' if count == 1 else 's'} in {frontier.seconds:.2f} s "
                 f"({front.profiled} measurements taken)", markup=False)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from tasobuild.incremental.tree import write_atomic
    from tasobuild.visual.facts import facts_of
    from tasobuild.visual.page import render

    if args.output.is_dir():
        raise UserError(f"-o {args.output}: is a folder; name the HTML file, e.g. {args.output / 'report.html'}")
    if args.png is not None and args.png.exists() and not args.png.is_dir():
        raise UserError(f"--png {args.png}: exists and is not a folder; name a folder for the PNG files")
    report = render(facts_of(args.config, _overrides(args), args.points, _progress(args)))
    pngs = [args.png / name for name in sorted(report.pngs)] if args.png is not None else []
    # everything is computed first, and each file replaced whole: a failure leaves the previous files intact
    for path, data in ((args.output, report.html), *((p, report.pngs[p.name]) for p in pngs)):
        try:
            write_atomic(path, data)
        except OSError as error:
            raise UserError(f"{path}: cannot write it ({error.strerror}); name another file or folder") from None
    if args.json:
        _emit_json({"html": str(args.output), "png": [str(p) for p in pngs]})
    else:
        stdout.print(f"wrote {args.output}" + (f" and {len(pngs)} PNG files to {args.png}" if pngs else ""),
                     markup=False)
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    if args.plan:
        return _profile_plan(args)
    if args.record or args.runs is not None:
        raise UserError(f"{'--record' if args.record else '--runs'} goes with --plan (the emitted program's "
                        f"per-layer times): `tasobuild profile --plan {'--record' if args.record else '--runs N'}`")
    from tasobuild.costs.stage import cached_costs, profile_costs
    from tasobuild.incremental.stagecache import cached
    from tasobuild.pipeline import all_calls, candidates_of, tiled_calls, tiling_options, timed_groups
    from tasobuild.target import resolved_threads

    inputs = _inputs(args)
    spec, target, graph = inputs.spec, inputs.target, inputs.graph
    nodes, transforms = candidates_of(spec, graph, cached, resolved_threads(spec, target))
    calls = all_calls(nodes, transforms)
    # Which band and slice calls fused tiling costs depends on the untiled costs: they come second.
    if args.emit_harness:
        known = cached_costs(target, calls)
        if len(known) == len({c.key() for c in calls}):
            calls = calls + tiled_calls(tiling_options(spec, graph, nodes, known))
        elif spec.optimizer.tiling:
            stderr.print("optimizer.tiling: which fused tiling calls to time depends on these costs; import them, "
                         "then run `tasobuild profile --emit-harness DIR --force` again to time those too",
                         markup=False)
        return _emit_harness(args, target, calls)

    def measured(todo: Sequence[KernelCall]) -> Costed:
        return profile_costs(spec, target, todo, _progress(args))

    untiled = measured(calls)
    # the band and slice calls second, then the groups timed as they run, as a build measuring here asks for them
    options = tiling_options(spec, graph, nodes, untiled.costs)
    _, costed = timed_groups(graph, options, untiled, measured, as_they_run=target.profile)
    calls = calls + tiled_calls(options)  # kernel calls; the runs are passes over some of them
    summary = {"calls": len({c.key() for c in calls}), "profiled": costed.profiled}
    if args.json:
        _emit_json(summary)
    else:
        stdout.print(f"{summary['calls']} kernel calls costed, {summary['profiled']} measured now "
                     f"(the rest from the cost cache)")
    return 0


def _profile_plan(args: argparse.Namespace) -> int:
    """`profile --plan`: the emitted program's per-layer times against the plan's predictions."""
    from dataclasses import asdict

    from tasobuild.layer_profile import DEFAULT_RUNS, profile_layers

    if args.emit_harness:
        raise UserError("--plan and --emit-harness: one or the other (the harness times candidates on a device, "
                        "--plan the emitted program here)")
    runs = DEFAULT_RUNS if args.runs is None else args.runs
    result = profile_layers(args.config, _overrides(args), runs=runs, record=args.record, progress=_progress(args))
    if args.json:
        _emit_json({**asdict(result), "out_dir": str(result.out_dir), "emulator": list(result.emulator)})
        return 0
    emulated = f" under {result.emulator[0]}: emulator times, not the device's" if result.emulator else ""
    unit, scale = ("µs", 1000.0) if result.predicted_total_ms < 1.0 else ("ms", 1.0)
    table = Table(title=f"{result.target}: {unit} per layer, measured (median of {result.runs} runs{emulated}) and "
                        f"predicted")
    for col in ("#", "layer", "measured", "IQR", "predicted", "ratio", "cost"):
        table.add_column(col, justify="left" if col in ("layer", "cost") else "right",
                         min_width=16 if col == "layer" else None, no_wrap=col == "cost")
    for layer in result.layers:
        table.add_row(str(layer.index), _cell(layer.label), f"{layer.measured_ms * scale:.3f}",
                      f"{layer.spread_ms * scale:.3f}", f"{layer.predicted_ms * scale:.3f}",
                      _ratio(layer.measured_ms, layer.predicted_ms), ", ".join(layer.cost_source))
    table.add_row("", "total", f"{result.measured_total_ms * scale:.3f}", "",
                  f"{result.predicted_total_ms * scale:.3f}",
                  _ratio(result.measured_total_ms, result.predicted_total_ms), "")
    stdout.print(table)
    stdout.print(f"total: the median whole run; the layers' medians add up to "
                 f"{sum(layer.measured_ms for layer in result.layers) * scale:.3f} {unit}. ratio: measured / "
                 f"predicted", markup=False)
    if args.record:
        single = sum(layer.call is not None for layer in result.layers)
        stdout.print(f"recorded {result.recorded} kernel calls in the cost cache, from the {single} of "
                     f"{len(result.layers)} layers that are one call each (fused groups and primitives of several "
                     f"calls are not recorded); `tasobuild update` plans with them", markup=False)
    return 0


def _ratio(measured: float, predicted: float) -> str:
    return f"{measured / predicted:.2f}" if predicted > 0 else ""


def _emit_harness(args: argparse.Namespace, target: Target, calls: list[KernelCall]) -> int:
    from tasobuild.costs.harness import HarnessToolchain, emit_harness

    directory: Path = args.emit_harness
    if directory.is_dir() and any(directory.iterdir()) and not args.force:
        raise UserError(f"{directory}: not empty; pass --force to overwrite the harness files in it "
                        f"(its other files are kept), or name a new folder")
    if os.path.lexists(directory) and not directory.is_dir():
        raise UserError(f"{directory}: exists and is not a folder; name a new folder for the harness")
    toolchain = HarnessToolchain(target.cc, tuple(target.cflags), tuple(target.ldflags))
    files = emit_harness(calls, args.emit_harness, toolchain)
    summary = {"calls": len({c.key() for c in calls}), "directory": str(args.emit_harness), "files": len(files)}
    if args.json:
        _emit_json(summary)
    else:
        stdout.print(f"wrote a harness timing {summary['calls']} kernel calls to {args.emit_harness}: run `make` "
                     f"and `./harness > costs.csv` on the target, then `tasobuild costs import costs.csv`",
                     markup=False)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0 if the program's output is within tolerance of ONNX Runtime's, 1 if not."""
    from dataclasses import asdict

    from tasobuild.verify import verify

    result = verify(args.config, _overrides(args), input_path=args.input, seed=args.seed, atol=args.atol,
                    rtol=args.rtol, build_first=not args.no_build, progress=_progress(args))
    if args.json:
        _emit_json({**asdict(result), "out_dir": str(result.out_dir), "emulator": list(result.emulator),
                    "passed": result.passed})
        return 0 if result.passed else 1
    where = f"under {' '.join(result.emulator[:1])}" if result.emulator else "natively"
    errors = result.errors
    verdict = ("PASS" if result.passed else f"MISMATCH: {errors.mismatches} of {errors.count} values past the "
               f"tolerance, the worst at index {errors.worst_index}")
    sys.stdout.write(f"{result.out_dir}: {result.target} program ({where}) on {result.input} against ONNX Runtime, "
                     f"{errors.count} output values: max abs error {errors.max_abs_error:.3g}, max rel error "
                     f"{errors.max_rel_error:.3g} (tolerance {result.atol:g} + {result.rtol:g} * |reference|): "
                     f"{verdict}\n")
    return 0 if result.passed else 1


def cmd_costs(args: argparse.Namespace) -> int:
    from tasobuild.costs.stage import export_costs, import_costs
    from tasobuild.spec import load_spec
    from tasobuild.target import load_target

    spec = load_spec(args.config, {})
    target = load_target(spec.target.name, spec.spec_dir, spec.where("target.name"))
    count = (export_costs if args.action == "export" else import_costs)(target, args.file)
    if args.json:
        _emit_json({args.action + "ed": count, "file": str(args.file), "target": target.name})
    else:
        done = "exported to" if args.action == "export" else "imported from"
        stdout.print(f"{count} costs of target {target.name!r} {done} {args.file}")
    return 0


def cmd_primitives(args: argparse.Namespace) -> int:
    from tasobuild.primitives.registry import library

    rows = [{"name": p.name, "op": p.op, "family": p.family, "layout_in": p.layout_in, "layout_out": p.layout_out}
            for p in library()]
    if args.json:
        _emit_json(rows)
        return 0
    if not sys.stdout.isatty():  # piped (into grep, say): whole names, one primitive a line, for the allow-list
        sys.stdout.write("".join("\t".join(r[c] for c in ("name", "op", "family", "layout_in", "layout_out")) + "\n"
                                 for r in rows))
        return 0
    table = Table(title=f"{len(rows)} primitives")
    for col in ("name", "op", "family", "layout_in", "layout_out"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(r[c] for c in ("name", "op", "family", "layout_in", "layout_out")))
    stdout.print(table)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from tasobuild.candidates import check_allow_list, node_candidates

    inputs = _inputs(args)
    spec, target, graph = inputs.spec, inputs.target, inputs.graph
    nodes = node_candidates(graph, check_allow_list(spec.optimizer.primitives))
    summary: dict[str, Any] = {
        "spec": str(spec.spec_path), "network": spec.network.onnx, "target": target.name,
        "nodes": len(graph.nodes), "candidates": sum(len(n.options) for n in nodes),
        "input": list(graph.onnx_input_shape), "output": list(graph.onnx_output_shape),
        "inputs": [{"name": port.onnx_name, "shape": list(port.onnx_shape)} for port in graph.input_ports],
        "outputs": [{"name": port.onnx_name, "shape": list(port.onnx_shape)} for port in graph.output_ports],
    }
    if args.json:
        _emit_json(summary)
    else:
        ports = f"{_ports(summary['inputs'], 'input')}, {_ports(summary['outputs'], 'output')}"
        stdout.print(terminal_text(f"{summary['spec']}: ok — {summary['network']} has {summary['nodes']} nodes "
                                   f"({summary['candidates']} candidate primitives), {ports}; target "
                                   f"{summary['target']}"), markup=False)
    return 0


def _ports(ports: list[dict[str, Any]], what: str) -> str:
    """"input [1, 1, 49, 10]" for one, "inputs 'a' [1, 3], 'b' [1, 4]" for more."""
    if len(ports) == 1:
        return f"{what} {ports[0]['shape']}"
    return f"{what}s " + ", ".join(f"{p['name']!r} {p['shape']}" for p in ports)


def cmd_init(args: argparse.Namespace) -> int:
    from tasobuild.importer import import_onnx
    from tasobuild.starter import starter_spec

    model, pins = Path(args.model), _input_shapes(args)
    import_onnx(model, pins, "command line")  # fail now, with the model's own error, rather than at the first build
    path: Path = args.config
    if path.exists() and not args.force:
        raise UserError(f"{path} already exists; pass --force to overwrite it")
    text = starter_spec(model, path.resolve().parent, input_shapes=pins)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if args.json:
        _emit_json({"written": str(path)})
    else:
        stdout.print(f"wrote {path}; edit the memory budget, then run `tasobuild build -c {path}`", markup=False)
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from tasobuild.target import builtin_target_names, load_target

    targets = [load_target(name, Path.cwd()) for name in builtin_target_names()]
    rows = [{"name": t.name, "description": t.description, "cc": t.cc, "cflags": list(t.cflags),
             "profile": t.profile, **_installed(t)} for t in targets]
    if args.json:
        _emit_json(rows)
        return 0
    table = Table(title="built-in targets")
    for col in ("name", "description", "compiler", "profiled here", "tools here"):
        table.add_column(col)
    for r in rows:
        compiler = f"{r['cc']} {' '.join(r['cflags'])}"
        table.add_row(r["name"], r["description"], compiler, "yes" if r["profile"] else "no", _tools_text(r))
    stdout.print(table)
    return 0


def _installed(target: Any) -> dict[str, Any]:
    """Whether the target's compiler and emulator are on PATH here ("found" / "missing"; the emulator None if the
    target has none: the host runs its own programs), and the Debian packages that install what is missing."""
    import shutil

    compiler = "found" if shutil.which(target.cc_argv[0]) else "missing"
    emulator = None if not target.emulator_argv else "found" if shutil.which(target.emulator_argv[0]) else "missing"
    install = [*((target.cc_package or "").split() if compiler == "missing" else ()),
               *((target.emulator_package or "").split() if emulator == "missing" else ())]
    return {"compiler": compiler, "emulator": emulator, "install": install}


def _tools_text(row: dict[str, Any]) -> str:
    found = f"compiler {row['compiler']}" + (f", emulator {row['emulator']}" if row["emulator"] else "")
    return found + (f" (apt-get install {' '.join(row['install'])})" if row["install"] else "")


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "build": (cmd_build, "plan, then emit the C project and taso.lock"),
    "update": (cmd_update, "build, re-costing every call instead of reusing taso.lock's costs (the lock may change)"),
    "plan": (cmd_plan, "show the plan: per node the primitive, layouts, workspace and predicted time"),
    "pareto": (cmd_pareto, "the memory-latency frontier"),
    "report": (cmd_report, "one self-contained HTML page (and PNGs): the plan, the arena over time, the frontier"),
    "profile": (cmd_profile, "measure every candidate the network needs (cache misses only); --plan: the emitted "
                             "program's per-layer times against the plan's"),
    "verify": (cmd_verify, "build if needed, run the emitted program on an input and compare it with ONNX Runtime"),
    "costs": (cmd_costs, "export the cost cache of the spec's target to CSV, or import a CSV (e.g. from a device)"),
    "primitives": (cmd_primitives, "list the primitive library"),
    "check": (cmd_check, "validate the spec and the model without building"),
    "init": (cmd_init, "write a commented starter taso.toml for a model"),
    "targets": (cmd_targets, "list the built-in targets"),
}


class UsageError(Exception):
    """A command line argparse refuses: `main` prints it (and, with --json, its JSON object) and exits 2."""

    def __init__(self, prog: str, usage: str, message: str) -> None:
        super().__init__(message)
        self.prog, self.usage = prog, usage


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, self.format_usage(), message)


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="tasobuild", description=__doc__.splitlines()[0])
    top.add_argument("--version", action="version", version=f"tasobuild {__version__}")
    top.add_argument("-v", "--verbose", action="store_true", help="log each stage on stderr")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _common(p, memory=name in ("build", "plan", "update", "profile"),
                shapes=name in ("build", "plan", "update", "pareto", "check", "init", "profile"))
        if name == "build":
            p.add_argument("--locked", action="store_true", help="fail if the plan or any output would change")
            p.add_argument("--frozen", action="store_true",
                           help="rebuild exactly from taso.lock: no profiling, no solving")
        if name == "pareto":
            p.add_argument("--points", type=int, default=10, help="how many frontier points (default 10)")
            p.add_argument("--png", type=Path, metavar="PATH", help="also plot the frontier to this PNG")
        if name == "report":
            p.add_argument("-o", "--output", type=Path, default=Path("report.html"), metavar="FILE",
                           help="the HTML file (default: ./report.html)")
            p.add_argument("--png", type=Path, metavar="DIR", help="also write the pictures as PNG files here")
            p.add_argument("--points", type=int, default=6, help="how many frontier points (default 6)")
        if name == "profile":
            p.add_argument("--emit-harness", type=Path, metavar="DIR",
                           help="write a standalone C program that times the calls on the device, instead")
            p.add_argument("--force", action="store_true", help="with --emit-harness: write into a folder that is "
                           "not empty, overwriting the harness files in it")
            p.add_argument("--plan", action="store_true", help="instead: build if needed, run the emitted program "
                           "with per-layer timing (make profile) and show measured against predicted per layer")
            p.add_argument("--runs", type=int, metavar="N", help="with --plan: timed runs per layer (default 100)")
            p.add_argument("--record", action="store_true", help="with --plan: store the times of layers that are "
                           "one kernel call in the cost cache, as measurements of those calls")
        if name == "verify":
            from tasobuild.verify import DEFAULT_ATOL, DEFAULT_RTOL

            p.add_argument("--input", type=Path, metavar="FILE", action="append",
                           help="raw little-endian float32 of the model's input shape (default: a seeded "
                                "standard-normal input); once per input for a model of several, in its order")
            p.add_argument("--seed", type=int, default=0, help="seed of the random input (default 0)")
            p.add_argument("--no-build", action="store_true", help="verify the project as it is in build.out "
                           "(say, edited or copied), without building it first")
            p.add_argument("--atol", type=float, default=None,
                           help=f"absolute tolerance (default {DEFAULT_ATOL:g}; a quantised network's: one output "
                                "quantisation step)")
            p.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                           help=f"relative tolerance, times |reference| (default {DEFAULT_RTOL:g})")
        if name == "costs":
            p.add_argument("action", choices=("export", "import"))
            p.add_argument("file", type=Path, metavar="FILE.csv")
        if name == "init":
            p.add_argument("model", metavar="MODEL.onnx")
            p.add_argument("--force", action="store_true", help="overwrite an existing spec")
    return top


def _print_error(prog: str, message: str, as_json: bool) -> None:
    """The one line on stderr; with --json also the error object on stdout. `message` is shown as text: names in it
    may come from a model."""
    message = terminal_text(message)
    print(f"{prog}: error: {message}", file=sys.stderr)
    if as_json:
        from tasobuild.report import error_object

        _emit_json(error_object(message))


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    try:
        args = parser().parse_args(arguments)
    except UsageError as error:
        sys.stderr.write(error.usage)
        _print_error(error.prog, str(error), "--json" in arguments)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="tasobuild: %(message)s",
                        stream=sys.stderr)
    handler, _ = COMMANDS[args.command]
    try:
        return handler(args)
    except UserError as error:
        _print_error("tasobuild", str(error), args.json)
        return 1
    except KeyboardInterrupt as interrupt:  # tree.InterruptedAfterCommit says the new outputs were in place
        print(f"tasobuild: interrupted; {interrupt.args[0] if interrupt.args else 'previous outputs are intact'}",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
