"""The build: the stages of DESIGN.md's data flow, in order, each called once.

spec -> target + graph -> candidates -> costs -> decision (Z3 + arena) -> program -> files + taso.lock

Around them, what makes a build safe to check in and cheap to repeat: a no-op build that sees nothing changed
writes nothing (and leaves a record that lets the next identical command answer before the stages are imported:
noop.fast_up_to_date); a budget change reuses what does not depend on the budget — the imported graph, the
baselines, the weight transforms — from the stage cache; `--frozen` takes the decision from taso.lock instead of
profiling and solving; `--locked` fails if the lock would change; builds of one project are serialised; the tree
and the lock are replaced as a transaction.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from filelock import FileLock

from tasobuild.emit.tree import WriteResult, replace_tree, write_atomic
from tasobuild.errors import UserError
from tasobuild.incremental import (
    busy_lock_path,
    changed_inputs,
    journal_of,
    lock_inputs,
    onnx_digest,
    outputs_intact,
    read_state,
    sha256_bytes,
    write_state,
)
from tasobuild.lock import (
    as_parsed,
    checked_lock,
    differences,
    parse_lock,
    read_lock_text,
    render_lock,
)
from tasobuild.noop import Host, Invocation, Sources, write_noop_record
from tasobuild.spec import Spec, load_spec
from tasobuild.target import Target, load_target

# The stages themselves (NumPy, ONNX, Z3, the kernel library) are imported where they run, so that a build with
# nothing to do — the common case — answers in a fraction of a second.
if TYPE_CHECKING:
    from tasobuild.candidates import NodeCandidates, TransformCandidate
    from tasobuild.costs.cache import Cost
    from tasobuild.costs.stage import Costed
    from tasobuild.emit.program import Program
    from tasobuild.ir import Graph
    from tasobuild.optimize import Decision
    from tasobuild.primitives import KernelCall
    from tasobuild.solve import Plan, Problem
    from tasobuild.tiling import Group, Option

log = logging.getLogger("tasobuild")


@dataclass(frozen=True)
class Options:
    config: Path
    overrides: Mapping[str, str] = field(default_factory=dict)
    progress: bool = True
    locked: bool = False  # fail, writing nothing, if taso.lock or any output would change
    frozen: bool = False  # emit exactly what taso.lock says: no profiling, no solving


@dataclass(frozen=True)
class Planned:
    spec: Spec
    target: Target
    graph: Graph
    nodes: tuple[NodeCandidates, ...]
    transforms: tuple[TransformCandidate, ...]
    costed: Costed
    decision: Decision
    groups: tuple[Group, ...] = ()  # the fused groups the solver could pick


def load_settings(options: Options) -> tuple[Spec, Target]:
    spec = load_spec(options.config, options.overrides)
    return spec, load_target(spec.target.name, spec.spec_dir, spec.where("target.name"))


def imported_graph(onnx_path: Path, onnx_sha: str) -> Graph:
    """The imported network, cached by the ONNX file's digest (importing VGG-16 takes seconds)."""
    from tasobuild.stagecache import cached

    def import_now() -> Graph:
        from tasobuild.importer import (
            import_onnx,  # ONNX itself: only imported on a miss
        )

        return import_onnx(onnx_path)

    return cached("import", onnx_sha, import_now)


def load_inputs(options: Options) -> tuple[Spec, Target, Graph]:
    from tasobuild.incremental import sha256_file

    spec, target = load_settings(options)
    return spec, target, imported_graph(spec.onnx_path, sha256_file(spec.onnx_path))


def all_calls(nodes: tuple[NodeCandidates, ...], transforms: tuple[TransformCandidate, ...]):
    return [call for nc in nodes for c in nc.options for call in c.calls] + [t.call for t in transforms]


def tiling_options(spec: Spec, graph: Graph, nodes: tuple[NodeCandidates, ...], costs: Mapping[str, Cost]
                   ) -> tuple[Option, ...]:
    """The fused groups to offer the solver, of every kind of tiling (none unless optimizer.tiling is on), given the
    candidates' costs."""
    from tasobuild import tiling

    if not spec.optimizer.tiling:
        return ()
    return tiling.options(graph, nodes, costs)


def tiled_calls(options: tuple[Option, ...]) -> list[KernelCall]:
    """Every call of the fused groups' bands and slices, to cost."""
    from tasobuild import tiling

    return tiling.calls(options)


def fused(graph: Graph, options: tuple[Option, ...], costs: Mapping[str, Cost]) -> tuple[Group, ...]:
    """The groups the solver sees: each option with its members' fastest primitives."""
    from tasobuild import tiling

    return tiling.groups(graph, options, costs)


def costed_problem(spec: Spec, target: Target, graph: Graph, progress: bool
                   ) -> tuple[tuple[NodeCandidates, ...], tuple[TransformCandidate, ...], Costed,
                              tuple[Group, ...], Problem]:
    """Candidates, their costs (band calls of fused groups included), the groups and the solver's problem."""
    from tasobuild.costs.stage import Costed, measure_costs
    from tasobuild.optimize import to_problem

    nodes, transforms = candidates_of(spec, graph)
    costed = measure_costs(spec, target, all_calls(nodes, transforms), progress)
    options = tiling_options(spec, graph, nodes, costed.costs)
    tiled = tiled_calls(options)
    if tiled:  # then the calls of the fused groups the untiled costs suggest
        more = measure_costs(spec, target, tiled, progress)
        costed = Costed({**costed.costs, **more.costs}, costed.profiled + more.profiled)
    groups = fused(graph, options, costed.costs)
    return nodes, transforms, costed, groups, to_problem(graph, nodes, transforms, costed.costs, groups)


def candidates_of(spec: Spec, graph: Graph) -> tuple[tuple[NodeCandidates, ...], tuple[TransformCandidate, ...]]:
    """Every node's candidates, from the stage cache when the same nodes and shapes were seen with the same
    allow-list (the weights' values do not matter here: a primitive's calls depend on shapes and attributes)."""
    from tasobuild.candidates import (
        check_allow_list,
        from_listing,
        listing,
        node_candidates,
        transform_candidates,
    )
    from tasobuild.stagecache import cached

    allow = check_allow_list(spec.optimizer.primitives)
    key = hashlib.sha256(repr((graph.nodes, graph.shapes, sorted(allow))).encode()).hexdigest()
    listed = cached("candidates", key, lambda: listing(node_candidates(graph, allow)))
    return from_listing(graph, listed), transform_candidates(graph)


def plan_stages(spec: Spec, target: Target, graph: Graph, progress: bool) -> Planned:
    from tasobuild.optimize import baselines_of, decide, problem_key
    from tasobuild.solve.budgeted import Answer
    from tasobuild.stagecache import cached

    nodes, transforms, costed, groups, problem = costed_problem(spec, target, graph, progress)
    c, limit_s = spec.constraints, spec.optimizer.time_limit / 1000.0
    # The baselines do not depend on the budget, and the budgeted solve's answers depend only on their cap: a
    # budget change reuses both (only proven ones: a solve cut short by its time limit is tried again).
    key = problem_key(problem, limit_s)
    baselines = cached("baselines", key, lambda: baselines_of(problem, limit_s), keep=lambda b: b.proven)

    def remember(cap: int, solve: Callable[[], Answer | None]) -> Answer | None:
        return cached("fastest", f"{key}\0{cap}", solve, keep=lambda answer: answer is not None)

    try:
        decision = decide(problem, c.memory, c.objective, c.latency, limit_s, baselines=baselines,
                          remember=remember)
    except UserError as error:  # say where the budget was set: the spec's line or the command line
        raise UserError(f"{spec.where('constraints.memory')}: {error}") from None
    return Planned(spec, target, graph, nodes, transforms, costed, decision, groups)


def plan(options: Options) -> Planned:
    spec, target, graph = load_inputs(options)
    return plan_stages(spec, target, graph, options.progress)


def with_cached_weights(nodes: tuple[NodeCandidates, ...], plan: Plan, onnx_sha: str) -> tuple[NodeCandidates, ...]:
    """The candidates, the chosen primitives' build-time weight transforms (Winograd's: a fifth of a GoogLeNet
    rebuild) cached by the ONNX file's digest, the node and the primitive — so a budget change transforms only the
    weights of layers whose primitive it changes."""
    from dataclasses import replace

    import numpy

    from tasobuild.stagecache import cached

    def cached_weights(primitive):
        def weights(node, graph):  # NumPy's version in the key: another may round a transform differently
            arrays = cached("weights", f"{onnx_sha}\0{node.name}\0{primitive.name}\0{numpy.__version__}",
                            lambda: primitive.weights(node, graph))
            for array in arrays:
                array.setflags(write=False)
            return arrays
        return replace(primitive, weights=weights)

    def chosen_cached(nc: NodeCandidates) -> NodeCandidates:
        chosen = plan.choice(nc.node.name).primitive
        return replace(nc, options=tuple(replace(c, primitive=cached_weights(c.primitive))
                                         if c.primitive.name == chosen else c for c in nc.options))

    return tuple(chosen_cached(nc) for nc in nodes)


def program_of(p: Planned, onnx_sha: str | None = None) -> Program:
    """The Program to emit; with `onnx_sha`, weight transforms come from the stage cache."""
    from tasobuild.emit.program import Toolchain
    from tasobuild.lower import lower

    d = p.decision
    banner = (
        f"Network: {p.spec.network.onnx} ({len(p.graph.nodes)} nodes)",
        f"Target: {p.target.name} ({p.target.cc} {' '.join(p.target.cflags)})",
        f"Plan: {d.plan.objective} objective, {d.plan.status}; predicted {d.plan.predicted_ms:.3f} ms; "
        f"arena {d.arena.arena_bytes} bytes",  # not the budget: a budget change that keeps the plan rewrites nothing
    )
    toolchain = Toolchain(p.target.cc, tuple(p.target.cflags), tuple(p.target.ldflags))
    nodes = p.nodes if onnx_sha is None else with_cached_weights(p.nodes, d.plan, onnx_sha)
    return lower(p.graph, nodes, p.transforms, d.plan, d.arena, p.spec.project.name, banner, toolchain, p.groups)


def lock_data(p: Planned, inputs: Mapping[str, str], files: Mapping[str, bytes]) -> dict[str, Any]:
    d, costs = p.decision, p.costed.costs
    plan_table = {
        "arena_bytes": d.arena.arena_bytes,
        "budget_bytes": p.spec.constraints.memory,
        "lower_bound_bytes": d.lower_bound_bytes,
        "objective": d.plan.objective,
        "predicted_ms": round(d.plan.predicted_ms, 6),
        "solver_status": d.plan.status,
    }
    for name, b in sorted(d.baselines.items()):
        plan_table[f"{name}_predicted_ms"] = round(b["predicted_ms"], 6)
        plan_table[f"{name}_arena_bytes"] = int(b["arena_bytes"])
    offsets = d.arena.offset_map()
    groups = {g.name: g for g in p.groups}
    nodes = []
    for index, nc in enumerate(p.nodes):
        ch = d.plan.choice(nc.node.name)
        if ch.group:  # a fused member's calls are its band calls
            group = groups[ch.group]
            calls = group.member_calls(group.members.index(index))
        else:
            calls = next(c for c in nc.options if c.primitive.name == ch.primitive).calls
        nodes.append({
            "name": nc.node.name, "op": nc.node.op, "primitive": ch.primitive,
            "layout_in": ch.layout_in, "layout_out": ch.layout_out, "tiling": ch.group or "none",
            "workspace_bytes": ch.workspace_bytes, "predicted_ms": round(ch.time_ms, 6),
            "cost_source": "+".join(sorted({costs[c.key()].source for c in calls})) or "none",
            # a deferred member's output never exists whole: it has rows in its group's window, no offset
            **({} if ch.deferred else {"output_offset": offsets[d.plan.buffer_of(nc.node.output, ch.layout_out)]}),
        })
    return {
        "inputs": dict(inputs),
        "plan": plan_table,
        "node": nodes,
        "transform": [{"tensor": t.tensor, "from": t.from_layout, "to": t.to_layout, "step": t.step,
                       "predicted_ms": round(t.time_ms, 6)} for t in d.plan.transforms],
        "cost": [{"call": key, "median_ms": cost.median_ms, "spread_ms": cost.spread_ms, "source": cost.source}
                 for key, cost in sorted(costs.items())],
        "files": {path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())},
    }


def report(lock: Mapping[str, Any], *, profiled: int, solver_seconds: float, out_dir: Path | None = None,
           files: WriteResult | None = None, up_to_date: bool = False) -> dict[str, Any]:
    """The object `build --json` and `plan --json` print (DESIGN.md), read off the lock's data."""
    plan_table = lock["plan"]
    out: dict[str, Any] = {
        "arena_bytes": plan_table["arena_bytes"],
        "budget_bytes": plan_table["budget_bytes"],
        "lower_bound_bytes": plan_table["lower_bound_bytes"],
        "predicted_ms": plan_table["predicted_ms"],
        "solver": {"status": plan_table["solver_status"], "seconds": solver_seconds,
                   "objective": plan_table["objective"]},
        "profiled": profiled,
        "nodes": [{**{k: v for k, v in n.items() if k != "cost_source"}, "cost_source": n["cost_source"].split("+"),
                   "tiling": None if n["tiling"] == "none" else n["tiling"]} for n in lock["node"]],
        "transforms": [dict(t) for t in lock["transform"]],
        "baselines": {name: {"predicted_ms": plan_table[f"{name}_predicted_ms"],
                             "arena_bytes": plan_table[f"{name}_arena_bytes"]} for name in ("greedy", "time_only")},
    }
    if out_dir is not None:
        out["out_dir"] = str(out_dir)
        out["up_to_date"] = up_to_date
    if files is not None:
        out["files"] = {"written": list(files.written), "unchanged": list(files.unchanged),
                        "removed": list(files.removed)}
    return out


@dataclass(frozen=True)
class BuildResult:
    report: dict[str, Any]
    lock_path: Path
    up_to_date: bool


def lock_path_of(spec: Spec) -> Path:
    return spec.spec_dir / "taso.lock"


def recover(lock_path: Path, out_dir: Path) -> None:
    """Finish or undo a build that was killed between replacing the tree and renaming its lock into place."""
    journal = journal_of(lock_path)
    if not journal.exists():
        return
    try:
        pending = parse_lock(journal.read_text(encoding="utf-8"), journal)
    except (UserError, OSError, UnicodeDecodeError):
        journal.unlink()
        return
    from tasobuild.incremental import sha256_file

    tree_is_new = all((out_dir / rel).is_file() and sha256_file(out_dir / rel) == digest
                      for rel, digest in pending["files"].items())
    if tree_is_new:
        os.replace(journal, lock_path)
    else:
        journal.unlink()


def previous_lock(text: str | None, state: Mapping[str, Any], lock_path: Path) -> dict[str, Any] | None:
    """The lock as parsed; the last build kept it parsed in its state, next to the digest of the text it wrote."""
    if text is None:
        return None
    known = state.get("lock", {})
    if "data" in known and known.get("sha256") == sha256_bytes(text.encode()):
        return checked_lock(known["data"], lock_path)
    return parse_lock(text, lock_path)


@dataclass(frozen=True)
class Seen:
    """The sources of the build's inputs, captured before it read them: the no-op record (incremental.py)."""

    invocation: Invocation
    sources: Sources
    host: Host


def up_to_date_report(lock: Mapping[str, Any], out_dir: Path) -> dict[str, Any]:
    files = WriteResult((), tuple(sorted(lock["files"])), ())
    return report(lock, profiled=0, solver_seconds=0.0, out_dir=out_dir, files=files, up_to_date=True)


def build(options: Options) -> BuildResult:
    sources = Sources.capture(options.config)  # before the spec is read
    spec, target = load_settings(options)
    seen = Seen(Invocation.of(options.config, options.overrides, options.locked), sources, Host.capture(target))
    lock_path = lock_path_of(spec)
    with FileLock(str(busy_lock_path(lock_path))):  # one build of a project at a time
        recover(lock_path, spec.out_dir)
        text = read_lock_text(lock_path)
        state = read_state(spec.out_dir)
        previous = previous_lock(text, state, lock_path)
        onnx_sha, onnx_stamp = onnx_digest(spec.onnx_path, state)
        inputs = lock_inputs(spec, target, onnx_sha)
        if previous is not None and text is not None and not options.frozen \
                and not changed_inputs(previous, inputs) and outputs_intact(spec.out_dir, previous, lock_path, state):
            if state["onnx"]["stamp"] != onnx_stamp:  # touched, same bytes: trust the new stamp from now on
                state = write_state(spec.out_dir, spec.onnx_path, onnx_sha, onnx_stamp, previous["files"], lock_path,
                                    text, previous)
            rep = up_to_date_report(previous, spec.out_dir)
            write_noop_record(seen.invocation, seen.sources, seen.host, lock_path, sha256_bytes(text.encode()),
                              state["onnx"], spec.out_dir, state["files"], rep)
            return BuildResult(rep, lock_path, True)
        return _build_and_write(options, spec, target, inputs, onnx_stamp, previous, lock_path, seen)


def _build_and_write(options: Options, spec: Spec, target: Target, inputs: Mapping[str, str],
                     onnx_stamp: list[int] | None, previous: Mapping[str, Any] | None, lock_path: Path,
                     seen: Seen) -> BuildResult:
    from tasobuild.emit.project import project_files
    from tasobuild.resources import kernels_dir

    graph = imported_graph(spec.onnx_path, inputs["onnx"])
    if options.frozen:
        from tasobuild.frozen import planned_from_lock

        planned = planned_from_lock(spec, target, graph, previous, inputs, lock_path, *candidates_of(spec, graph))
    else:
        planned = plan_stages(spec, target, graph, options.progress)
    files = project_files(program_of(planned, inputs["onnx"]), kernels_dir())
    data = lock_data(planned, inputs, files)
    if options.frozen:
        assert previous is not None
        data["inputs"] = previous["inputs"]  # the lock is the truth: it stays exactly as it is
        data["cost"] = previous["cost"]
        drift = differences(previous, as_parsed(data))
        if drift:
            raise UserError(f"{lock_path}: --frozen, but rebuilding from the lock gives a different {drift[0]}; "
                            f"the lock does not match this tasobuild or its inputs: run `tasobuild build`")
    text = render_lock(data)
    parsed = as_parsed(data)
    if options.locked:
        if previous is None:
            raise UserError(f"{lock_path}: --locked, but there is no lock; run `tasobuild build` and commit taso.lock")
        drift = differences(previous, parsed)
        if drift:
            shown = ", ".join(drift[:4]) + (f" and {len(drift) - 4} more" if len(drift) > 4 else "")
            raise UserError(f"{lock_path}: --locked, but the build would change {shown}; run `tasobuild build` "
                            f"and commit taso.lock")
    lock_changes = not lock_path.exists() or lock_path.read_text(encoding="utf-8") != text
    previous_files = list((previous or {}).get("files", {}))
    if lock_changes:
        write_atomic(journal_of(lock_path), text.encode())  # the new lock, ready to be renamed into place
    written = replace_tree(spec.out_dir, files, previous_files)
    if lock_changes:
        os.replace(journal_of(lock_path), lock_path)
    state = write_state(spec.out_dir, spec.onnx_path, inputs["onnx"], onnx_stamp, data["files"], lock_path, text,
                        parsed)
    if not options.frozen:  # a frozen build keeps the lock's inputs, which need not be this machine's
        write_noop_record(seen.invocation, seen.sources, seen.host, lock_path, sha256_bytes(text.encode()),
                          state["onnx"], spec.out_dir, state["files"], up_to_date_report(parsed, spec.out_dir))
    rep = report(data, profiled=planned.costed.profiled, solver_seconds=planned.decision.plan.solver_seconds,
                 out_dir=spec.out_dir, files=written)
    return BuildResult(rep, lock_path, False)


def plan_report(options: Options) -> dict[str, Any]:
    """`tasobuild plan`: decide and report, writing nothing."""
    p = plan(options)
    data = lock_data(p, {}, {})
    return report(data, profiled=p.costed.profiled, solver_seconds=p.decision.plan.solver_seconds)


