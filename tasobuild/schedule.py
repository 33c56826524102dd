"""The execution order: among the network's topological orders, one whose peak of live tensors is smallest.

In a branching graph (Inception modules, residual blocks, concat trees) the order the branches run in decides what
is live together: running a branch that ends in a small tensor first frees its big intermediate before the next
branch allocates its own. The solver's Problem takes the order as given (step i runs node i), so it is chosen here,
before the solve, from the tensors' sizes alone (workspace and layout transforms depend on the choices: the solver
counts them).

The measure (`peak`) follows the solver's rules (solve.plan.evaluate): a tensor is live from the step that produces
it (the graph inputs: from step 0) through the last step that reads it, the graph outputs to the end; sizes rounded
up to the arena's alignment; a node's workspace (`Dataflow.workspace`, none unless given) is live while it runs;
the peak is the largest sum live at one step.

The order imported networks get is chosen from the tensors alone; the build then tries the orders that a plan's
workspace would choose (`Dataflow.of(graph, workspace=...)`: pipeline.scheduled) and keeps whichever order's plan is
best for the objective, so the order is decided with the plan.

The search (`best_order`): a state is the set of nodes already run (a down-set of the graph); what is live between
steps depends on the set only, not on how it was reached. Dynamic programming over the reachable states, from the
last back to the first, gives the smallest peak of any order; then the order is rebuilt from the first state,
taking at every step the ready node that comes first in the given order among those that still reach that peak,
so it is the optimal order closest to the given one, and the given order itself when it is already optimal
(unchanged networks keep byte-identical outputs). Chains and residual blocks have a few states per node, an
Inception module a few dozen; past STATE_LIMIT states (very wide graphs) a greedy order is tried instead (each step
the ready node that leaves the least live), and kept only if its peak is smaller than the given order's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from tasobuild.ir import Graph
from tasobuild.memory import ARENA_ALIGN, align_up

STATE_LIMIT = 200_000  # states the exact search may visit (a few seconds of Python at worst)


@dataclass(frozen=True)
class Dataflow:
    """What the order depends on: each node's input and output tensors (in the given order) and the sizes."""

    steps: tuple[tuple[tuple[str, ...], str], ...]  # (inputs, output) per node, in the given order
    sizes: Mapping[str, int]  # tensor -> bytes, aligned
    graph_input: str
    graph_output: str
    more_inputs: tuple[str, ...] = ()  # a network's other inputs and outputs
    more_outputs: tuple[str, ...] = ()
    workspace: tuple[int, ...] = ()  # bytes each node holds while it runs, in the given order (): none

    def workspace_of(self, index: int) -> int:
        return self.workspace[index] if self.workspace else 0

    @property
    def graph_inputs(self) -> tuple[str, ...]:
        return (self.graph_input, *self.more_inputs)

    @property
    def graph_outputs(self) -> tuple[str, ...]:
        return (self.graph_output, *self.more_outputs)

    @staticmethod
    def of(graph: Graph, alignment: int = ARENA_ALIGN, workspace: Mapping[str, int] | None = None) -> Dataflow:
        """The graph's dataflow; `workspace`: bytes by node name (a plan's), aligned here."""
        tensors = set(graph.input_tensors) | {n.output for n in graph.nodes}
        held = () if workspace is None else tuple(align_up(workspace.get(n.name, 0), alignment) for n in graph.nodes)
        return Dataflow(tuple((n.inputs, n.output) for n in graph.nodes),
                        {t: align_up(graph.tensor_bytes(t), alignment) for t in sorted(tensors)},
                        graph.input, graph.output, graph.input_tensors[1:], graph.output_tensors[1:], held)


@dataclass(frozen=True)
class Scheduled:
    order: tuple[int, ...]  # indices into the given order
    peak_bytes: int
    given_peak_bytes: int
    proven: bool  # the exact search finished: no order has a smaller peak


def peak(flow: Dataflow, order: Sequence[int]) -> int:
    """The largest sum of live tensors at one step when the nodes run in `order` (module docstring)."""
    last: dict[str, int] = dict.fromkeys(flow.graph_inputs, 0)
    first: dict[str, int] = dict.fromkeys(flow.graph_inputs, 0)
    for step, index in enumerate(order):
        inputs, output = flow.steps[index]
        first[output] = last[output] = step
        for name in inputs:
            last[name] = step
    for name in flow.graph_outputs:
        last[name] = len(order)  # the epilogue step holds the outputs
    live = [0] * (len(order) + 1)
    for step, index in enumerate(order):
        live[step] += flow.workspace_of(index)
    for name, start in first.items():
        for step in range(start, last[name] + 1):
            live[step] += flow.sizes[name]
    return max(live)


def best_order(flow: Dataflow, state_limit: int = STATE_LIMIT) -> Scheduled:
    """The order with the smallest peak, closest to the given one (module docstring)."""
    given = tuple(range(len(flow.steps)))
    given_peak = peak(flow, given)
    search = _Search(flow)
    exact = search.solve(state_limit)
    if exact is not None:
        return Scheduled(exact, peak(flow, exact), given_peak, proven=True)
    heuristic = search.greedy()
    heuristic_peak = peak(flow, heuristic)
    if heuristic_peak < given_peak:
        return Scheduled(heuristic, heuristic_peak, given_peak, proven=False)
    return Scheduled(given, given_peak, given_peak, proven=False)


def memory_order(graph: Graph, workspace: Mapping[str, int] | None = None) -> Graph:
    """The graph with its nodes in the order best_order picks (the same graph when the given order is best);
    `workspace`: bytes each node holds while it runs, by name (a plan's), else none."""
    chosen = best_order(Dataflow.of(graph, workspace=workspace))
    if chosen.order == tuple(range(len(graph.nodes))):
        return graph
    return replace(graph, nodes=tuple(graph.nodes[i] for i in chosen.order))


def in_order(graph: Graph, names: Sequence[str]) -> Graph | None:
    """The graph with its nodes in the order `names` lists them (the same graph if it is that order already); None
    when `names` are not the graph's nodes, or not in an order that runs every node after its inputs exist."""
    by_name = {n.name: n for n in graph.nodes}
    if sorted(names) != sorted(by_name) or len(set(names)) != len(names):
        return None
    available = set(graph.input_tensors)
    for name in names:
        if not set(by_name[name].inputs) <= available:
            return None
        available.add(by_name[name].output)
    if tuple(names) == tuple(n.name for n in graph.nodes):
        return graph
    return replace(graph, nodes=tuple(by_name[name] for name in names))


class _Search:
    """States are bit masks of the nodes run; live(S) is the bytes live between steps once S has run."""

    def __init__(self, flow: Dataflow) -> None:
        self.flow = flow
        n = len(flow.steps)
        producer = {out: i for i, (_, out) in enumerate(flow.steps)}
        self.needs = [0] * n  # mask of the nodes whose outputs node i reads
        readers: dict[str, int] = {}  # tensor -> mask of the nodes that read it
        for i, (inputs, _) in enumerate(flow.steps):
            for name in inputs:
                readers[name] = readers.get(name, 0) | 1 << i
                if name in producer:
                    self.needs[i] |= 1 << producer[name]
        self.readers = readers
        self.full = (1 << n) - 1

    def held(self, tensor: str, done: int) -> bool:
        """Is `tensor` (available once `done` has run) still live between steps?"""
        return tensor in self.flow.graph_outputs or self.readers.get(tensor, 0) & ~done != 0

    def ready(self, done: int) -> list[int]:
        return [i for i in range(len(self.flow.steps))
                if not done >> i & 1 and self.needs[i] & ~done == 0]

    def after(self, done: int, live: int, i: int) -> tuple[int, int, int]:
        """(bytes live while node i runs, the state after it, bytes live after it)."""
        inputs, output = self.flow.steps[i]
        running = live + self.flow.sizes[output] + self.flow.workspace_of(i)
        nxt = done | 1 << i
        freed = sum(self.flow.sizes[t] for t in sorted(set(inputs)) if not self.held(t, nxt))
        kept = self.flow.sizes[output] if self.held(output, nxt) else 0
        return running, nxt, live + kept - freed

    def solve(self, state_limit: int) -> tuple[int, ...] | None:
        start_live = sum(self.flow.sizes[t] for t in set(self.flow.graph_inputs))
        live = {0: start_live}
        levels: list[list[int]] = [[0]]
        for _ in range(len(self.flow.steps)):  # every state, level by level (level = nodes run)
            nxt: dict[int, None] = {}
            for done in levels[-1]:
                for i in self.ready(done):
                    _, state, after = self.after(done, live[done], i)
                    if state not in live:
                        live[state] = after
                        nxt[state] = None
                        if len(live) > state_limit:
                            return None
            levels.append(list(nxt))
        best = {self.full: live[self.full]}  # the epilogue holds the output
        for level in reversed(levels[:-1]):
            for done in level:
                best[done] = min(max(running, best[state])
                                 for running, state, _ in (self.after(done, live[done], i) for i in self.ready(done)))
        target, done, order = best[0], 0, []
        while done != self.full:  # the first ready node (given order) that still reaches the optimum
            for i in self.ready(done):
                running, state, _ = self.after(done, live[done], i)
                if max(running, best[state]) <= target:
                    order.append(i)
                    done = state
                    break
        return tuple(order)

    def greedy(self) -> tuple[int, ...]:
        done, live, order = 0, sum(self.flow.sizes[t] for t in set(self.flow.graph_inputs)), []
        while done != self.full:
            options = [(after, running, i, state) for i in self.ready(done)
                       for running, state, after in [self.after(done, live, i)]]
            after, _, i, done = min(options)
            live = after
            order.append(i)
        return tuple(order)
