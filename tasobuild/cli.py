"""The command line: `tasobuild build | update | plan | pareto | profile | primitives | check | init | targets`.

Results go to stdout (a table, or one JSON object with --json); progress and logs go to stderr. Exit codes:
0 success, 1 a user error (one line on stderr naming the cause), 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table as RichTable

    from tasobuild.incremental.transaction import Options
    from tasobuild.pipeline import Inputs, Solve
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


def _common(parser: argparse.ArgumentParser, memory: bool = False) -> None:
    parser.add_argument("-c", "--config", type=Path, default=Path("taso.toml"), metavar="PATH",
                        help="the spec (default: ./taso.toml)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    if memory:
        parser.add_argument("--memory", metavar="SIZE", help='override constraints.memory, e.g. "48KiB"')
        parser.add_argument("--threads", metavar="N", help='override target.threads: a count, or "auto"')


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    given = {"constraints.memory": getattr(args, "memory", None), "target.threads": getattr(args, "threads", None)}
    return {key: value for key, value in given.items() if value}


def _progress(args: argparse.Namespace) -> bool:
    return not args.json and sys.stderr.isatty()


def _options(args: argparse.Namespace) -> Options:
    from tasobuild.incremental.transaction import Options

    return Options(args.config, _overrides(args), progress=_progress(args), locked=getattr(args, "locked", False),
                   frozen=getattr(args, "frozen", False), update=args.command == "update")


def _inputs(args: argparse.Namespace) -> Inputs:
    """The spec, its target and its network, the import from the stage cache."""
    from tasobuild.incremental.stagecache import cached
    from tasobuild.pipeline import load

    return load(args.config, _overrides(args), cached)


def _solve(inputs: Inputs, args: argparse.Namespace) -> Solve:
    from tasobuild.incremental.stagecache import cached
    from tasobuild.incremental.transaction import locked_costs_of
    from tasobuild.pipeline import Solve

    # the lock's costs first, as `build` takes them, so the plan shown is the plan built
    return Solve(inputs.spec, inputs.target, _progress(args), cached, locked_costs_of(inputs.spec, inputs.target))


def _emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def cmd_build(args: argparse.Namespace) -> int:
    if not args.frozen:  # the common case, nothing changed, answered before the stages' libraries are imported
        from tasobuild.incremental.noop import fast_up_to_date

        known = fast_up_to_date(args.config, _overrides(args), args.locked)
        if known is not None:
            return _print_build(args, known.report, known.lock_path, True)
    from tasobuild.incremental.transaction import build

    result = build(_options(args))
    return _print_build(args, result.report, result.lock_path, result.up_to_date)


def cmd_update(args: argparse.Namespace) -> int:
    """`build`, but every cost afresh (the cost cache, measuring what it misses, or the model): the lock's costs are
    not reused, so taso.lock may change."""
    from tasobuild.incremental.transaction import build

    result = build(_options(args))
    return _print_build(args, result.report, result.lock_path, result.up_to_date)


def _print_build(args: argparse.Namespace, rep: dict[str, Any], lock_path: Path, up_to_date: bool) -> int:
    if args.json:
        _emit_json(rep)
        return 0
    if up_to_date:  # plain text: a path is neither wrapped nor read as markup
        sys.stdout.write(f"{rep['out_dir']} is up to date with {lock_path}\n")
        return 0
    _print_totals(rep)
    files = rep["files"]
    stdout.print(f"wrote {len(files['written'])} files, {len(files['unchanged'])} unchanged, "
                 f"{len(files['removed'])} removed in {rep['out_dir']}; lock {lock_path}", markup=False)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from tasobuild.incremental.stagecache import cached
    from tasobuild.pipeline import lock_data, plan
    from tasobuild.report import report

    inputs = _inputs(args)
    planned = plan(inputs, _solve(inputs, args), cached)
    rep = report(lock_data(planned, {}, {}), profiled=planned.costed.profiled,
                 solver_seconds=planned.decision.plan.solver_seconds)
    if args.json:
        _emit_json(rep)
        return 0
    table = Table(title="plan")
    tiled = any(n["tiling"] for n in rep["nodes"])
    for col in ("node", "op", "primitive", "layouts", *(("tiling",) if tiled else ()), "workspace", "ms", "cost"):
        table.add_column(col, justify="right" if col in ("workspace", "ms") else "left")
    for n in rep["nodes"]:
        table.add_row(_cell(n["name"]), n["op"], n["primitive"], f"{n['layout_in']}->{n['layout_out']}",
                      *((n["tiling"] or "",) if tiled else ()),
                      format_size(n["workspace_bytes"]) if n["workspace_bytes"] else "",
                      f"{n['predicted_ms']:.4f}", "+".join(n["cost_source"]))
    for t in rep["transforms"]:
        table.add_row(f"(before step {t['step']})", "transform", _cell(t["tensor"]), f"{t['from']}->{t['to']}",
                      *(("",) if tiled else ()), "", f"{t['predicted_ms']:.4f}", "")
    stdout.print(table)
    _print_cost_sources(rep)
    _print_totals(rep)
    return 0


def _cell(name: str) -> Any:
    """A model's name as a table cell: shown as it is (no rich markup), without escapes, long names shortened."""
    from rich.text import Text

    return Text(terminal_text(name))


def _print_cost_sources(rep: dict[str, Any]) -> None:
    """Which machine the times describe, when not all were measured here: a cross target's predictions are the
    host's times."""
    from tasobuild.costs.provenance import HOST_MODEL

    sources = sorted({s for n in rep["nodes"] for s in n["cost_source"] if s != "none"})
    if HOST_MODEL in sources:
        stdout.print(f"times '{HOST_MODEL}' are the host's, as its performance model predicts them, not the "
                     f"target's; for the board's own, run `tasobuild profile --emit-harness` there and "
                     f"`tasobuild costs import`", markup=False)


def _print_totals(rep: dict[str, Any]) -> None:
    stdout.print(f"plan: {rep['predicted_ms']:.3f} ms predicted, arena {format_size(rep['arena_bytes'])} "
                 f"(budget {format_size(rep['budget_bytes'])}, live-buffer lower bound "
                 f"{format_size(rep['lower_bound_bytes'])}), solver {rep['solver']['status']} in "
                 f"{rep['solver']['seconds']:.2f} s, {rep['profiled']} measurements taken")
    for name, b in sorted(rep["baselines"].items()):
        stdout.print(f"  {name:>9}: {b['predicted_ms']:.3f} ms, arena {format_size(b['arena_bytes'])}")


def cmd_pareto(args: argparse.Namespace) -> int:
    import time

    from tasobuild.decide import place
    from tasobuild.incremental.stagecache import cached
    from tasobuild.pipeline import price
    from tasobuild.solve import Session

    inputs = _inputs(args)
    spec = inputs.spec
    priced = price(inputs, _solve(inputs, args), cached)
    costed, problem = priced.costed, priced.problem
    started = time.perf_counter()
    plans = Session(problem).pareto(points=args.points, time_limit_s=spec.optimizer.time_limit / 1000.0)
    seconds = time.perf_counter() - started
    points: list[dict[str, Any]] = [
        {"arena_bytes": place(p).arena_bytes, "peak_bytes": p.peak_bytes, "predicted_ms": p.predicted_ms,
         "status": p.status, "tie_break": p.tie_break} for p in plans]
    points.sort(key=lambda p: (p["arena_bytes"], p["predicted_ms"]))
    if args.png:
        _plot_pareto(points, args.png, spec.project.name)
    if args.json:
        _emit_json({"points": points, "solver": {"seconds": seconds}})
        return 0
    proven = all(p["status"] == "optimal" for p in points)
    table = Table(title=f"{spec.project.name}: memory vs latency "
                        f"({'every point proven optimal' if proven else 'NOT every point proven: see status'})")
    for col in ("arena", "peak live", "predicted ms", "status", "tie break"):
        table.add_column(col, justify="right")
    for p in points:
        table.add_row(format_size(p["arena_bytes"]), format_size(p["peak_bytes"]), f"{p['predicted_ms']:.3f}",
                      p["status"], p["tie_break"])
    stdout.print(table)
    stdout.print(f"{len(points)} points in {seconds:.2f} s ({costed.profiled} measurements taken)")
    return 0


def _plot_pareto(points: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.step([p["arena_bytes"] / 1024 for p in points], [p["predicted_ms"] for p in points], where="post",
            marker="o")
    ax.set_xlabel("arena (KiB)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(f"{title}: memory-latency frontier")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def cmd_profile(args: argparse.Namespace) -> int:
    from tasobuild.costs.stage import cached_costs, profile_costs
    from tasobuild.incremental.stagecache import cached
    from tasobuild.pipeline import all_calls, candidates_of, tiled_calls, tiling_options
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
    costed = profile_costs(spec, target, calls, _progress(args))
    tiled = tiled_calls(tiling_options(spec, graph, nodes, costed.costs))
    profiled = costed.profiled + (profile_costs(spec, target, tiled, _progress(args)).profiled if tiled else 0)
    calls = calls + tiled
    summary = {"calls": len({c.key() for c in calls}), "profiled": profiled}
    if args.json:
        _emit_json(summary)
    else:
        stdout.print(f"{summary['calls']} kernel calls costed, {summary['profiled']} measured now "
                     f"(the rest from the cost cache)")
    return 0


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
    summary = {
        "spec": str(spec.spec_path), "network": spec.network.onnx, "target": target.name,
        "nodes": len(graph.nodes), "candidates": sum(len(n.options) for n in nodes),
        "input": list(graph.onnx_input_shape), "output": list(graph.onnx_output_shape),
    }
    if args.json:
        _emit_json(summary)
    else:
        stdout.print(terminal_text(f"{summary['spec']}: ok — {summary['network']} has {summary['nodes']} nodes "
                                   f"({summary['candidates']} candidate primitives), input {summary['input']}, "
                                   f"output {summary['output']}; target {summary['target']}"), markup=False)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from tasobuild.importer import import_onnx
    from tasobuild.starter import starter_spec

    model = Path(args.model)
    import_onnx(model)  # fail now, with the model's own error, rather than at the first build
    path: Path = args.config
    if path.exists() and not args.force:
        raise UserError(f"{path} already exists; pass --force to overwrite it")
    text = starter_spec(model, path.resolve().parent)
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
    "profile": (cmd_profile, "measure every candidate the network needs (cache misses only)"),
    "costs": (cmd_costs, "export the cost cache of the spec's target to CSV, or import a CSV (e.g. from a device)"),
    "primitives": (cmd_primitives, "list the primitive library"),
    "check": (cmd_check, "validate the spec and the model without building"),
    "init": (cmd_init, "write a commented starter taso.toml for a model"),
    "targets": (cmd_targets, "list the built-in targets"),
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="tasobuild", description=__doc__.splitlines()[0])
    top.add_argument("--version", action="version", version=f"tasobuild {__version__}")
    top.add_argument("-v", "--verbose", action="store_true", help="log each stage on stderr")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _common(p, memory=name in ("build", "plan", "update"))
        if name == "build":
            p.add_argument("--locked", action="store_true", help="fail if the plan or any output would change")
            p.add_argument("--frozen", action="store_true",
                           help="rebuild exactly from taso.lock: no profiling, no solving")
        if name == "pareto":
            p.add_argument("--points", type=int, default=10, help="how many frontier points (default 10)")
            p.add_argument("--png", type=Path, metavar="PATH", help="also plot the frontier to this PNG")
        if name == "profile":
            p.add_argument("--emit-harness", type=Path, metavar="DIR",
                           help="write a standalone C program that times the calls on the device, instead")
            p.add_argument("--force", action="store_true", help="with --emit-harness: write into a folder that is "
                           "not empty, overwriting the harness files in it")
        if name == "costs":
            p.add_argument("action", choices=("export", "import"))
            p.add_argument("file", type=Path, metavar="FILE.csv")
        if name == "init":
            p.add_argument("model", metavar="MODEL.onnx")
            p.add_argument("--force", action="store_true", help="overwrite an existing spec")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="tasobuild: %(message)s",
                        stream=sys.stderr)
    handler, _ = COMMANDS[args.command]
    try:
        return handler(args)
    except UserError as error:
        print(f"tasobuild: error: {terminal_text(str(error))}", file=sys.stderr)  # names in it come from models
        return 1
    except KeyboardInterrupt as interrupt:  # tree.InterruptedAfterCommit says the new outputs were in place
        print(f"tasobuild: interrupted; {interrupt.args[0] if interrupt.args else 'previous outputs are intact'}",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
