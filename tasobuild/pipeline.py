"""The build's data flow, one stage per step, each a function of typed, immutable values (docs/ARCHITECTURE.md).

    load       taso.toml -> Spec, Target; the ONNX file -> Graph             spec, target, importer
    plan       1 candidates  per node, the primitives that can run it        candidates, primitives
               2 costs       every candidate call's time                     costs (via the Decider)
               3 tiling      the fused groups on offer, their calls costed   tiling
               4 problem     the solver's Problem                            decide.to_problem
               5 decide      Plan (Z3) + ArenaPlan (every buffer's offset)   decide, solve, memory (via the Decider)
    emit       6 lower       the Program: every call with its pointers       lower
               7 render      the C project's files                           emit
               8 lock        what taso.lock records                          lock_data

Where costs and the decision come from is the Decider: `Solve` costs every call (cache, measurement or model) and
asks Z3; `incremental.frozen.FromLock` reads both from taso.lock. A stage that may be reused across builds takes
a `Memo` (the stage cache, incremental.stagecache.cached, or `no_memo`). The build transaction around this —
the lock, the no-op check, replacing the tree — is tasobuild.incremental; this module writes nothing.

The stages' libraries (NumPy, ONNX, Z3, the kernel bindings) are imported where they run, so that importing this
module stays cheap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from tasobuild.device import (
    bare_metal_of,
    budget_source,
    checked_footprint,
    footprint_keys,
    memory_budget,
    ram_too_small,
)
from tasobuild.errors import UserError
from tasobuild.spec import Spec, load_spec
from tasobuild.target import Target, load_target, resolved_threads

if TYPE_CHECKING:
    from tasobuild.candidates import NodeCandidates, TransformCandidate
    from tasobuild.costs.cache import Cost
    from tasobuild.costs.stage import Costed
    from tasobuild.decide import Baselines, Decision
    from tasobuild.emit.program import Program
    from tasobuild.ir import Graph
    from tasobuild.primitives import KernelCall, Primitive
    from tasobuild.solve import Plan, Problem
    from tasobuild.solve.budgeted import Answer
    from tasobuild.tiling import Group, Option

T = TypeVar("T")


class Memo(Protocol):
    """A stage's result by key: reused if known, else computed (and kept if `keep` says it may be reused)."""

    def __call__(self, stage: str, key: str, compute: Callable[[], T], keep: Callable[[T], bool] = ...) -> T: ...


def no_memo(stage: str, key: str, compute: Callable[[], T], keep: Callable[[T], bool] = lambda _: True) -> T:
    """Every stage computed afresh."""
    return compute()


class Decider(Protocol):
    """Where the costs and the decision come from."""

    def costs(self, calls: Sequence[KernelCall]) -> Costed:
        """The cost of every call (each call's key in the result)."""
        ...

    def decide(self, problem: Problem) -> Decision:
        """The plan for the problem, with every buffer placed."""
        ...

    def fixed_order(self, graph: Graph) -> tuple[Graph, str] | None:
        """The execution order this Decider imposes (the lock's) and how it was chosen (ORDERS), or None: the
        optimiser chooses it with the plan (`scheduled`)."""
        ...


# ------------------------------------------------------------------------------------------------------------ load


@dataclass(frozen=True)
class Inputs:
    """What a build reads: the spec, its target and the imported network (and the ONNX file's digest). `graph` is
    in the order of least live tensor bytes (schedule.memory_order); `given`, the same network in the ONNX file's
    order when that differs (an order the build also tries: `scheduled`)."""

    spec: Spec
    target: Target
    graph: Graph
    onnx_sha: str
    given: Graph | None = None


def load_settings(config: Path, overrides: Mapping[str, str]) -> tuple[Spec, Target]:
    spec = load_spec(config, overrides)
    target = load_target(spec.target.name, spec.spec_dir, spec.where("target.name"))
    memory_budget(spec, target)  # no budget and no RAM to take it from: say so before any work
    resolved_threads(spec, target)  # more threads than the target has cores: likewise
    return spec, target


def imported_graph(onnx_path: Path, onnx_sha: str, memo: Memo = no_memo,
                   input_shapes: Mapping[str, Sequence[int]] | None = None, shapes_from: str = "input_shapes"
                   ) -> Graph:
    """The imported network (file_graph), its nodes in the order with the smallest peak of live tensors
    (schedule.memory_order: the file's order when that is as good)."""
    from tasobuild.schedule import memory_order

    return memory_order(file_graph(onnx_path, onnx_sha, memo, input_shapes, shapes_from))


def file_graph(onnx_path: Path, onnx_sha: str, memo: Memo = no_memo,
               input_shapes: Mapping[str, Sequence[int]] | None = None, shapes_from: str = "input_shapes") -> Graph:
    """The imported network in the ONNX file's order, by the file's digest and the pinned input shapes (importing
    VGG-16 takes seconds)."""

    def import_now() -> Graph:
        from tasobuild.importer import import_onnx  # ONNX itself: only imported on a miss

        return import_onnx(onnx_path, input_shapes, shapes_from)

    pins = repr(sorted((name, tuple(dims)) for name, dims in (input_shapes or {}).items()))
    return memo("import", f"{onnx_sha}\0{pins}" if input_shapes else onnx_sha, import_now)


def load(config: Path, overrides: Mapping[str, str] | None = None, memo: Memo = no_memo,
         onnx_sha: str | None = None) -> Inputs:
    """The spec, its target and its network. `onnx_sha`: the ONNX file's digest, if the caller knows it."""
    from tasobuild.digest import sha256_file

    spec, target = load_settings(config, overrides or {})
    return network_inputs(spec, target, onnx_sha or sha256_file(spec.onnx_path), memo)


def network_inputs(spec: Spec, target: Target, onnx_sha: str, memo: Memo = no_memo) -> Inputs:
    """The Inputs of the spec's network, its inputs' dynamic dimensions pinned by network.input_shapes: in the order
    of least live tensor bytes, and in the file's (Inputs.given)."""
    from tasobuild.schedule import memory_order

    given = file_graph(spec.onnx_path, onnx_sha, memo, spec.network.input_shapes, spec.where("network.input_shapes"))
    graph = memory_order(given)
    return Inputs(spec, target, graph, onnx_sha, None if graph is given else given)


def network_graph(spec: Spec, onnx_sha: str, memo: Memo = no_memo) -> Graph:
    """The spec's network, its inputs' dynamic dimensions pinned by network.input_shapes (imported_graph)."""
    return imported_graph(spec.onnx_path, onnx_sha, memo, spec.network.input_shapes,
                          spec.where("network.input_shapes"))


# ------------------------------------------------------------------------------------------------------------ plan


@dataclass(frozen=True)
class Priced:
    """Stages 1-4: the candidates with their costs, the fused groups on offer and the solver's problem."""

    nodes: tuple[NodeCandidates, ...]
    transforms: tuple[TransformCandidate, ...]
    costed: Costed
    groups: tuple[Group, ...]
    problem: Problem


@dataclass(frozen=True)
class Planned:
    """Stages 1-5: the decision and everything it was made from."""

    spec: Spec
    target: Target
    graph: Graph
    nodes: tuple[NodeCandidates, ...]
    transforms: tuple[TransformCandidate, ...]
    costed: Costed
    decision: Decision
    groups: tuple[Group, ...] = ()  # the fused groups the solver could pick
    order: str = "tensors"  # how the execution order (graph's) was chosen: ORDERS


@dataclass(frozen=True)
class Built:
    """Stages 1-8: the plan, the C project's files (path -> bytes) and the lock's data."""

    planned: Planned
    files: Mapping[str, bytes]
    lock: dict[str, Any]


def run(inputs: Inputs, decider: Decider, lock_inputs: Mapping[str, str], memo: Memo = no_memo) -> Built:
    """The whole pipeline: every stage, in order."""
    planned = plan(inputs, decider, memo)  # 1-5
    program = program_of(planned, inputs.onnx_sha, memo)  # 6
    need = checked_footprint(planned.spec, planned.target, program)  # does it fit the device?
    files = render(program)  # 7
    lock = lock_data(planned, lock_inputs, files)  # 8
    if need is not None:
        lock["plan"] |= footprint_keys(need, planned.target)
    return Built(planned, files, lock)


# How an execution order was chosen: the least live tensor bytes (schedule.memory_order, closest to the file's
# order); the file's own order; the least live bytes with each node's fastest choice's workspace (what a fast plan
# holds); the same with the first plan's workspace. The lock records it ([plan] order) when not the first.
ORDERS = ("tensors", "file", "fastest", "plan")


def plan(inputs: Inputs, decider: Decider, memo: Memo = no_memo) -> Planned:
    """Stages 1-5, the execution order chosen with the plan (`scheduled`) unless the Decider fixes it."""
    fixed = decider.fixed_order(inputs.graph)
    if fixed is None:
        return scheduled(inputs, decider, memo)
    graph, order = fixed
    priced = price(replace(inputs, graph=graph), decider, memo)
    return planned_of(inputs, graph, priced, decider.decide(priced.problem), order)


def planned_of(inputs: Inputs, graph: Graph, priced: Priced, decision: Decision, order: str) -> Planned:
    return Planned(inputs.spec, inputs.target, graph, priced.nodes, priced.transforms, priced.costed, decision,
                   priced.groups, order)


def scheduled(inputs: Inputs, decider: Decider, memo: Memo = no_memo) -> Planned:
    """Stages 1-5 in each distinct order of ORDERS, keeping the plan best for the objective (decide.beats: then by
    the other measure; ties keep the earlier order, so a network whose orders agree plans as it did before). The
    order is part of the decision: a node's workspace, which only the plan knows, can make another order's plan
    faster under the budget, or smaller. The file's order is among those tried, so the result is never worse than
    the topological order the file gives. An order in which no plan fits is skipped (the first such error is
    raised when none fits)."""
    from tasobuild.decide import beats
    from tasobuild.schedule import memory_order

    objective = inputs.spec.constraints.objective
    best: Planned | None = None
    failed: list[UserError] = []
    seen: set[tuple[str, ...]] = set()

    def attempt(graph: Graph, order: str, priced: Priced | None = None) -> Priced | None:
        nonlocal best
        names = tuple(n.name for n in graph.nodes)
        if names in seen:
            return None
        seen.add(names)
        priced = priced or price(replace(inputs, graph=graph), decider, memo)
        try:
            planned = planned_of(inputs, graph, priced, decider.decide(priced.problem), order)
        except UserError as error:
            failed.append(error)
            return priced
        if best is None or beats(planned.decision, best.decision, objective):
            best = planned
        return priced

    first = price(inputs, decider, memo)
    attempt(inputs.graph, "tensors", first)
    if inputs.given is not None:
        attempt(inputs.given, "file")
    attempt(memory_order(inputs.graph, fastest_workspace(first.problem)), "fastest")
    if best is not None and best.order == "tensors":
        chosen = best.decision.plan
        attempt(memory_order(inputs.graph, {name: c.workspace_bytes for name, c in chosen.choices}), "plan")
    if best is None:
        raise failed[0]
    return best


def fastest_workspace(problem: Problem) -> dict[str, int]:
    """Each node's workspace in its fastest unfused choice (ties: the smaller workspace), by node name."""
    return {n.name: min((c for c in n.choices if not c.group), default=n.choices[0],
                        key=lambda c: (c.time_ms, c.workspace_bytes, c.primitive)).workspace_bytes
            for n in problem.nodes}


def price(inputs: Inputs, decider: Decider, memo: Memo = no_memo) -> Priced:
    """Stages 1-4: what the solver is asked."""
    from tasobuild.candidates import faster_transforms
    from tasobuild.costs.stage import measures_here
    from tasobuild.decide import to_problem

    spec, graph = inputs.spec, inputs.graph
    nodes, transforms = candidates_of(spec, graph, memo, resolved_threads(spec, inputs.target))  # 1
    costed = decider.costs(all_calls(nodes, transforms))  # 2
    transforms = faster_transforms(transforms, costed.costs)  # a split transform where it is faster
    groups, costed = fused_tiling(spec, graph, nodes, costed, decider.costs, measures_here(spec, inputs.target))  # 3
    problem = to_problem(graph, nodes, transforms, costed.costs, groups)  # 4
    return Priced(nodes, transforms, costed, groups, problem)


def candidates_of(spec: Spec, graph: Graph, memo: Memo = no_memo, threads: int = 1
                  ) -> tuple[tuple[NodeCandidates, ...], tuple[TransformCandidate, ...]]:
    """Stage 1: every node's candidates, reused when the same nodes and shapes were seen with the same allow-list
    (the weights' values do not matter here: a primitive's calls depend on shapes and attributes); with `threads`
    > 1, each splittable one also on that many threads (candidates.with_threads)."""
    from tasobuild.candidates import (
        check_allow_list,
        from_listing,
        listing,
        node_candidates,
        transform_candidates,
        with_threads,
    )

    allow = check_allow_list(spec.optimizer.primitives)
    key = hashlib.sha256(repr((graph.nodes, graph.shapes, sorted(allow))).encode()).hexdigest()
    listed = memo("candidates", key, lambda: listing(node_candidates(graph, allow)))
    return with_threads(from_listing(graph, listed), threads), transform_candidates(graph, threads)


def all_calls(nodes: Sequence[NodeCandidates], transforms: Sequence[TransformCandidate]) -> list[KernelCall]:
    """Every call of every candidate and layout transform, to cost."""
    return [call for nc in nodes for c in nc.options for call in c.calls] + \
        [call for t in transforms for call in (t.call, t.split) if call is not None]


def merged(first: Costed, second: Costed) -> Costed:
    """Both rounds' costs; a call costed in both keeps the first's, which the choices made since were based on (a
    tiled call with an untiled call's key, predicted anew by "auto": the lock must record the cost that picked the
    groups' primitives, or --frozen offers other groups and finds no cost for their calls)."""
    from tasobuild.costs.stage import Costed

    return Costed({**second.costs, **first.costs}, first.profiled + second.profiled, first.from_lock | second.from_lock)


def fused_tiling(spec: Spec, graph: Graph, nodes: tuple[NodeCandidates, ...], costed: Costed,
                 costs: Callable[[Sequence[KernelCall]], Costed], as_they_run: bool = False
                 ) -> tuple[tuple[Group, ...], Costed]:
    """Stage 3: the fused groups on offer (none unless optimizer.tiling is on) and the costs with their calls'.
    Which groups are offered depends on the untiled costs, so their calls are costed (by `costs`) second; then
    `timed_groups`."""
    return timed_groups(graph, tiling_options(spec, graph, nodes, costed.costs), costed, costs, as_they_run)


def timed_groups(graph: Graph, options: Sequence[Option], costed: Costed,
                 costs: Callable[[Sequence[KernelCall]], Costed], as_they_run: bool = False
                 ) -> tuple[tuple[Group, ...], Costed]:
    """The groups of `options` with the costs of their calls (by `costs`) added to `costed`; `as_they_run`
    (costs.stage.measures_here), the groups whose kind says so are then timed as they run, their calls in
    sequence (tiling.runs), until every group offered has its run's time."""
    from tasobuild import tiling

    tiled = tiled_calls(options)
    if tiled:
        costed = merged(costed, costs(tiled))
    groups = fused(graph, options, costed.costs)
    # A group's run can cost more than its calls' sum, so a group its kind dropped as dominated by one now timed
    # may be kept next: time the runs of the groups kept until every kept group's is known.
    while as_they_run and (runs := [r for r in tiling.runs(groups) if r.key() not in costed.costs]):
        costed = merged(costed, costs(runs))
        groups = fused(graph, options, costed.costs)
    return groups, costed


def tiling_options(spec: Spec, graph: Graph, nodes: tuple[NodeCandidates, ...], costs: Mapping[str, Cost]
                   ) -> tuple[Option, ...]:
    """The fused groups to offer the solver, of every kind of tiling (none unless optimizer.tiling is on), given the
    candidates' costs."""
    from tasobuild import tiling

    if not spec.optimizer.tiling:
        return ()
    return tiling.options(graph, nodes, costs)


def tiled_calls(options: Sequence[Option]) -> list[KernelCall]:
    """Every call of the fused groups' bands and slices, to cost."""
    from tasobuild import tiling

    return tiling.calls(options)


def fused(graph: Graph, options: Sequence[Option], costs: Mapping[str, Cost]) -> tuple[Group, ...]:
    """The groups the solver sees: each option with its members' fastest primitives."""
    from tasobuild import tiling

    return tiling.groups(graph, options, costs)


class Solve:
    """The Decider of a build: costs from taso.lock first (`locked`, by call key), the rest from the cost cache,
    measured or predicted (optimizer.costs), and the fastest plan under the budget from Z3, reusing across budgets
    what does not depend on the budget."""

    def __init__(self, spec: Spec, target: Target, progress: bool = False, memo: Memo = no_memo,
                 locked: Mapping[str, Cost] | None = None) -> None:
        self.spec, self.target, self.progress, self.memo = spec, target, progress, memo
        self.locked = dict(locked or {})

    def costs(self, calls: Sequence[KernelCall]) -> Costed:
        from tasobuild.costs.stage import measure_costs

        return measure_costs(self.spec, self.target, calls, self.progress, self.locked)

    def fixed_order(self, graph: Graph) -> tuple[Graph, str] | None:
        return None  # the order is chosen with the plan

    def baselines(self, problem: Problem) -> Baselines:
        """The greedy and the time-only plans. They do not depend on the budget: a budget change reuses them (only
        proven ones: a solve cut short by its time limit is tried again)."""
        from tasobuild.decide import baselines_of, problem_key

        limit_s = self.spec.optimizer.time_limit / 1000.0
        return self.memo("baselines", problem_key(problem, limit_s), lambda: baselines_of(problem, limit_s),
                         keep=lambda b: b.proven)

    def decide(self, problem: Problem) -> Decision:
        """The decision with the in-place and zero-copy choices if it beats the one without (decide.sharing_gains),
        else the one without: a network that gains nothing from sharing gets the plan it got before it existed."""
        from tasobuild.decide import sharing_gains, without_sharing

        plain = without_sharing(problem)
        if plain is problem:
            return self._decide(problem)
        try:
            first = self._decide(plain)
        except UserError:  # no plan fits without sharing
            return self._decide(problem)
        try:
            shared = self._decide(problem)
        except UserError:
            return first
        return shared if sharing_gains(shared, first, self.spec.constraints.objective) else first

    def _decide(self, problem: Problem) -> Decision:
        from tasobuild.decide import NoArenaFits, decide, problem_key

        c, limit_s = self.spec.constraints, self.spec.optimizer.time_limit / 1000.0
        # The budgeted solve's answers depend only on their cap: a budget change reuses them (only proven ones).
        key = problem_key(problem, limit_s)
        baselines = self.baselines(problem)

        def remember(cap: int, solve: Callable[[], Answer | None]) -> Answer | None:
            return self.memo("fastest", f"{key}\0{cap}", solve, keep=lambda answer: answer is not None)

        try:
            return decide(problem, memory_budget(self.spec, self.target), c.objective, c.latency, limit_s,
                          baselines=baselines, remember=remember)
        except NoArenaFits as error:
            if self.spec.constraints.memory is None:  # the budget is the device's RAM: say so, and what would fit
                raise UserError(ram_too_small(self.spec, self.target, error)) from None
            raise UserError(f"{budget_source(self.spec, self.target)}: {error}") from None
        except UserError as error:  # say where the budget was set: the spec's line, the command line, the target
            raise UserError(f"{budget_source(self.spec, self.target)}: {error}") from None



# ------------------------------------------------------------------------------------------------------------ emit


def program_of(p: Planned, onnx_sha: str | None = None, memo: Memo = no_memo) -> Program:
    """Stage 6: the Program to render; with `onnx_sha`, the weight transforms go through `memo`."""
    from tasobuild.emit.program import Toolchain
    from tasobuild.lower import lower

    d = p.decision
    banner = (
        f"Network: {p.spec.network.onnx} ({len(p.graph.nodes)} nodes)",
        f"Target: {p.target.name} ({p.target.cc} {' '.join(p.target.cflags)})",
        f"Plan: {d.plan.objective} objective, {d.plan.status}; predicted {d.plan.predicted_ms:.3f} ms; "
        f"arena {d.arena.arena_bytes} bytes",  # not the budget: a budget change that keeps the plan rewrites nothing
    )
    toolchain = Toolchain(p.target.cc, tuple(p.target.cflags), tuple(p.target.ldflags), bare_metal_of(p.target))
    nodes = p.nodes if onnx_sha is None else with_memo_weights(p.nodes, d.plan, onnx_sha, memo)
    return lower(p.graph, nodes, p.transforms, d.plan, d.arena, p.spec.project.name, banner, toolchain, p.groups)


def with_memo_weights(nodes: tuple[NodeCandidates, ...], plan: Plan, onnx_sha: str, memo: Memo
                      ) -> tuple[NodeCandidates, ...]:
    """The candidates, the chosen primitives' build-time weight transforms (Winograd's: a fifth of a GoogLeNet
    rebuild) through `memo` by the ONNX file's digest, the node and the primitive — so a budget change transforms
    only the weights of layers whose primitive it changes."""
    import numpy

    def memo_weights(primitive: Primitive) -> Primitive:
        def weights(node: Any, graph: Graph) -> tuple[Any, ...]:  # NumPy's version in the key: another may round
            arrays = memo("weights", f"{onnx_sha}\0{node.name}\0{primitive.name}\0{numpy.__version__}",
                          lambda: primitive.weights(node, graph))
            for array in arrays:
                array.setflags(write=False)
            return tuple(arrays)
        return replace(primitive, weights=weights)

    def chosen_memo(nc: NodeCandidates) -> NodeCandidates:
        chosen = plan.choice(nc.node.name).primitive
        return replace(nc, options=tuple(replace(c, primitive=memo_weights(c.primitive))
                                         if c.primitive.name == chosen else c for c in nc.options))

    return tuple(chosen_memo(nc) for nc in nodes)


def render(program: Program) -> dict[str, bytes]:
    """Stage 7: the C project's files, by path relative to build.out."""
    from tasobuild.emit.project import project_files
    from tasobuild.resources import kernels_dir

    return project_files(program, kernels_dir())


def chosen_calls(p: Planned) -> list[list[KernelCall]]:
    """The calls each node runs in the plan, in node order: its chosen primitive's, or a fused member's band calls."""
    groups = {g.name: g for g in p.groups}
    out: list[list[KernelCall]] = []
    for index, nc in enumerate(p.nodes):
        ch = p.decision.plan.choice(nc.node.name)
        if ch.group:  # a fused member's calls are its band calls
            group = groups[ch.group]
            out.append(list(group.member_calls(group.members.index(index))))
        else:
            out.append(list(next(c for c in nc.options if c.primitive.name == ch.primitive).calls))
    return out


def lock_data(p: Planned, inputs: Mapping[str, str], files: Mapping[str, bytes]) -> dict[str, Any]:
    """Stage 8: what taso.lock records (incremental.lock renders it). Plain Python values only (float(), int()):
    the solver's sums may be NumPy scalars, which the lock writer refuses."""
    from tasobuild.costs.provenance import describe
    from tasobuild.costs.stage import has_target_model

    d, costs = p.decision, p.costed.costs
    cross = not p.target.profile  # a prediction describes the host, not the target: the labels say so
    own = has_target_model(p.target)  # unless the target has its own model
    plan_table = {
        "arena_bytes": d.arena.arena_bytes,
        "budget_bytes": memory_budget(p.spec, p.target),
        "lower_bound_bytes": d.lower_bound_bytes,
        "objective": d.plan.objective,
        "placement": d.arena.status,  # "optimal": no offsets make a smaller arena for this plan's buffers
        "placement_bound_bytes": d.arena.bound_bytes,  # proven: no placement of these buffers is smaller
        "predicted_ms": round(float(d.plan.predicted_ms), 6),
        "solver_status": d.plan.status,
        # only when > 1, so the locks of one-thread plans stay as they were
        **({"threads": threads} if (threads := resolved_threads(p.spec, p.target)) > 1 else {}),
        **({"order": p.order} if p.order != "tensors" else {}),  # likewise: only when not the usual order
    }
    for name, b in sorted(d.baselines.items()):
        plan_table[f"{name}_predicted_ms"] = round(float(b["predicted_ms"]), 6)
        plan_table[f"{name}_arena_bytes"] = int(b["arena_bytes"])
    offsets = d.arena.offset_map()
    nodes = []
    for nc, calls in zip(p.nodes, chosen_calls(p)):
        ch = d.plan.choice(nc.node.name)
        nodes.append({
            "name": nc.node.name, "op": nc.node.op, "primitive": ch.primitive,
            "layout_in": ch.layout_in, "layout_out": ch.layout_out, "tiling": ch.group or "none",
            "workspace_bytes": ch.workspace_bytes, "predicted_ms": round(float(ch.time_ms), 6),
            "cost_source": "+".join(sorted({describe(costs[c.key()].source, cross, own) for c in calls})) or "none",
            # a deferred member's output never exists whole: it has rows in its group's window, no offset
            **({} if ch.deferred else {"output_offset": offsets[d.plan.buffer_of(nc.node.output, ch.layout_out)]}),
        })
    return {
        "inputs": dict(inputs),
        "plan": plan_table,
        "node": nodes,
        "transform": [{"tensor": t.tensor, "from": t.from_layout, "to": t.to_layout, "step": t.step,
                       "predicted_ms": round(float(t.time_ms), 6)} for t in d.plan.transforms],
        "cost": [{"call": key, "median_ms": cost.median_ms, "spread_ms": cost.spread_ms,
                  "source": describe(cost.source, cross, own)} for key, cost in sorted(costs.items())],
        "files": {path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())},
    }
