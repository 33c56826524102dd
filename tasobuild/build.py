"""The build: the stages of DESIGN.md's data flow, in order, each called once.

spec -> target + graph -> candidates -> costs -> decision (Z3 + arena) -> program -> files + taso.lock
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from tasobuild import __version__
from tasobuild.candidates import NodeCandidates, TransformCandidate, check_allow_list, node_candidates, \
    transform_candidates
from tasobuild.costs.cache import kernel_digest
from tasobuild.costs.stage import Costed, measure_costs
from tasobuild.emit.program import Program, Toolchain
from tasobuild.emit.project import project_files
from tasobuild.emit.tree import WriteResult, write_atomic, write_tree
from tasobuild.errors import UserError
from tasobuild.ir import Graph
from tasobuild.lock import read_lock, render_lock
from tasobuild.lower import lower
from tasobuild.importer import import_onnx
from tasobuild.optimize import Decision, call_time_ms, decide, to_problem
from tasobuild.resources import kernels_dir
from tasobuild.spec import Spec, load_spec
from tasobuild.target import Target, host_fingerprint, load_target

log = logging.getLogger("tasobuild")


@dataclass(frozen=True)
class Options:
    config: Path
    overrides: Mapping[str, str] = field(default_factory=dict)
    progress: bool = True
    locked: bool = False  # fail, writing nothing, if taso.lock or any output would change


@dataclass(frozen=True)
class Planned:
    spec: Spec
    target: Target
    graph: Graph
    nodes: tuple[NodeCandidates, ...]
    transforms: tuple[TransformCandidate, ...]
    costed: Costed
    decision: Decision


def load_inputs(options: Options) -> tuple[Spec, Target, Graph]:
    spec = load_spec(options.config, options.overrides)
    target = load_target(spec.target.name, spec.spec_dir, spec.where("target.name"))
    graph = import_onnx(spec.onnx_path)
    return spec, target, graph


def all_calls(nodes: tuple[NodeCandidates, ...], transforms: tuple[TransformCandidate, ...]):
    return [call for nc in nodes for c in nc.options for call in c.calls] + [t.call for t in transforms]


def plan(options: Options) -> Planned:
    spec, target, graph = load_inputs(options)
    allow = check_allow_list(spec.optimizer.primitives)
    nodes = node_candidates(graph, allow)
    transforms = transform_candidates(graph)
    costed = measure_costs(spec, target, all_calls(nodes, transforms), options.progress)
    problem = to_problem(graph, nodes, transforms, costed.costs)
    c = spec.constraints
    decision = decide(problem, c.memory, c.objective, c.latency, spec.optimizer.time_limit / 1000.0)
    return Planned(spec, target, graph, nodes, transforms, costed, decision)


def program_of(p: Planned) -> Program:
    d = p.decision
    banner = (
        f"Network: {p.spec.network.onnx} ({len(p.graph.nodes)} nodes)",
        f"Target: {p.target.name} ({p.target.cc} {' '.join(p.target.cflags)})",
        f"Plan: {d.plan.objective} objective, {d.plan.status}; predicted {d.plan.predicted_ms:.3f} ms; "
        f"arena {d.arena.arena_bytes} bytes (budget {p.spec.constraints.memory})",
    )
    toolchain = Toolchain(p.target.cc, tuple(p.target.cflags), tuple(p.target.ldflags))
    return lower(p.graph, p.nodes, p.transforms, d.plan, d.arena, p.spec.project.name, banner, toolchain)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def lock_text(p: Planned, files: Mapping[str, bytes]) -> str:
    d, fp = p.decision, host_fingerprint(p.target)
    inputs = {
        "spec": p.spec.digest,
        "onnx": sha256_file(p.spec.onnx_path),
        "target": p.target.digest,
        "kernels": kernel_digest(),
        "toolchain": fp.compiler,
        "costs_from": fp.digest,
        "tasobuild": __version__,
    }
    plan_table = {
        "arena_bytes": d.arena.arena_bytes,
        "budget_bytes": p.spec.constraints.memory,
        "lower_bound_bytes": d.lower_bound_bytes,
        "objective": d.plan.objective,
        "predicted_ms": round(d.plan.predicted_ms, 6),
        "solver_status": d.plan.status,
    }
    offsets = d.arena.offset_map()
    nodes = []
    for nc in p.nodes:
        ch = d.plan.choice(nc.node.name)
        nodes.append({
            "name": nc.node.name, "op": nc.node.op, "primitive": ch.primitive,
            "layout_in": ch.layout_in, "layout_out": ch.layout_out, "tiling": "none",
            "workspace_bytes": ch.workspace_bytes, "predicted_ms": round(ch.time_ms, 6),
            "output_offset": offsets[d.plan.buffer_of(nc.node.output, ch.layout_out)],
        })
    transforms = [{"tensor": t.tensor, "from": t.from_layout, "to": t.to_layout, "step": t.step}
                  for t in d.plan.transforms]
    costs = [{"call": key, "median_ms": cost.median_ms, "spread_ms": cost.spread_ms, "source": cost.source}
             for key, cost in p.costed.costs.items()]
    digests = {path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())}
    return render_lock(inputs, plan_table, nodes, transforms, costs, digests)


def check_locked(lock_path: Path, previous: Mapping[str, Any] | None, text: str) -> None:
    """--locked: the lock this build would write must be the one checked in; name the first things that differ."""
    import tomllib

    if previous is None:
        raise UserError(f"{lock_path}: --locked, but there is no lock; run `tasobuild build` and commit taso.lock")
    new = tomllib.loads(text)
    changed = [f"inputs.{k}" for k in sorted(set(new["inputs"]) | set(previous.get("inputs", {})))
               if new["inputs"].get(k) != previous.get("inputs", {}).get(k)]
    changed += [f"plan.{k}" for k in sorted(new["plan"]) if new["plan"][k] != previous.get("plan", {}).get(k)]
    old_nodes = {n.get("name"): n for n in previous.get("node", [])}
    changed += [f"node {n['name']!r}" for n in new["node"] if old_nodes.get(n["name"]) != n]
    if not changed and new != previous:
        changed = ["costs or file digests"]
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise UserError(f"{lock_path}: --locked, but the build would change {shown}; run `tasobuild build` "
                        f"and commit taso.lock")


@dataclass(frozen=True)
class BuildResult:
    planned: Planned
    files: WriteResult | None
    lock_path: Path | None


def lock_path_of(spec: Spec) -> Path:
    return spec.spec_dir / "taso.lock"


def build(options: Options) -> BuildResult:
    p = plan(options)
    program = program_of(p)
    files = project_files(program, kernels_dir())
    lock_path = lock_path_of(p.spec)
    previous = read_lock(lock_path)
    text = lock_text(p, files)
    if options.locked:
        check_locked(lock_path, previous, text)
    previous_files = list((previous or {}).get("files", {}))
    written = write_tree(p.spec.out_dir, files, previous_files)
    if not lock_path.exists() or lock_path.read_text(encoding="utf-8") != text:
        write_atomic(lock_path, text.encode())
    return BuildResult(p, written, lock_path)


def report(p: Planned, files: WriteResult | None = None) -> dict[str, Any]:
    """The object `build --json` and `plan --json` print (DESIGN.md)."""
    d = p.decision
    costs = p.costed.costs
    by_node = {nc.node.name: nc for nc in p.nodes}
    nodes = []
    for name, choice in d.plan.choices:
        cand = next(c for c in by_node[name].options if c.primitive.name == choice.primitive)
        nodes.append({
            "name": name, "op": by_node[name].node.op, "primitive": choice.primitive,
            "layout_in": choice.layout_in, "layout_out": choice.layout_out, "tiling": None,
            "workspace_bytes": choice.workspace_bytes, "predicted_ms": call_time_ms(cand.calls, costs),
            "cost_source": sorted({costs[c.key()].source for c in cand.calls}) or ["none"],
        })
    out: dict[str, Any] = {
        "arena_bytes": d.arena.arena_bytes,
        "lower_bound_bytes": d.lower_bound_bytes,
        "budget_bytes": p.spec.constraints.memory,
        "predicted_ms": d.plan.predicted_ms,
        "solver": {"status": d.plan.status, "seconds": d.plan.solver_seconds, "objective": d.plan.objective},
        "profiled": p.costed.profiled,
        "nodes": nodes,
        "transforms": [{"tensor": t.tensor, "from": t.from_layout, "to": t.to_layout, "step": t.step,
                        "predicted_ms": t.time_ms} for t in d.plan.transforms],
        "baselines": {
            "greedy": {"predicted_ms": d.greedy.predicted_ms, "arena_bytes": _arena_of(d.greedy)},
            "time_only": {"predicted_ms": d.time_only.predicted_ms, "arena_bytes": _arena_of(d.time_only)},
        },
    }
    if files is not None:
        out["out_dir"] = str(p.spec.out_dir)
        out["files"] = {"written": list(files.written), "unchanged": list(files.unchanged),
                        "removed": list(files.removed)}
    return out


def _arena_of(plan) -> int:
    from tasobuild.optimize import place

    return place(plan).arena_bytes
