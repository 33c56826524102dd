"""The problem as Z3 pseudo-boolean constraints. Mirrors `plan.evaluate` rule for rule (see its docstring);
solve.py checks every model against it.

Variables: x[i][k] — node i runs its k-th (pruned) choice; exactly one per node. Everything else is a Boolean
function of x, defined step by step over the steps a tensor can be live ([producer, reach]):
  P[t][L]     t is produced in layout L
  want[t][L][s]  the reader of t at step s wants it in L (the epilogue wants the output in output_layout)
  A[t][L][s]  some reader at step >= s wants L        F[t][L][s]  some reader at step <= s wants L
  O[t][s]     the original version of t is live: s is its producer step, or a reader at >= s wants the produced
              layout, or a layout is first wanted at >= s (its transform reads the original), or a view of it is
  C[t][L][s]  the converted copy in L != produced is live: first want <= s <= last want (F and A), or a view of it is
Memory at step s = sum of aligned bytes over live versions (a view's own version weighs 0) + the chosen workspace.
Time = sum of chosen node times + sum of transform times (transform t: a->b runs iff P[t][a] and t is ever wanted
in b), all in integer nanoseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import z3

from tasobuild.solve.plan import to_ns
from tasobuild.solve.problem import LAYOUTS, Choice, Layout, Problem, Topology, topology

Lit = Union[bool, z3.BoolRef]  # Python constants are folded away before they reach Z3


def or_(*xs: Lit) -> Lit:
    live = [x for x in xs if x is not False]
    if any(x is True for x in live):
        return True
    return False if not live else live[0] if len(live) == 1 else z3.Or(*live)


def and_(*xs: Lit) -> Lit:
    live = [x for x in xs if x is not True]
    if any(x is False for x in live):
        return False
    return True if not live else live[0] if len(live) == 1 else z3.And(*live)


def not_(x: Lit) -> Lit:
    return (not x) if isinstance(x, bool) else z3.Not(x)


Terms = tuple[tuple[z3.BoolRef, int], ...]  # (literal, weight) for z3.PbLe


@dataclass(frozen=True)
class Encoding:
    problem: Problem  # with pruned choices
    x: tuple[tuple[z3.BoolRef, ...], ...]
    constraints: tuple[z3.BoolRef, ...]  # exactly-one, definitions, forbidden (missing) transforms
    time_terms: Terms  # total time in ns = sum of weights of true literals
    step_terms: tuple[Terms, ...]  # aligned bytes live at each step
    step_const: tuple[int, ...]  # bytes live at each step whatever the choices
    time_const: int  # ns spent whatever the choices (a transform that must always run)

    def picks(self, model: z3.ModelRef) -> list[Choice]:
        out = []
        for node, xs in zip(self.problem.nodes, self.x):
            on = [c for c, v in zip(node.choices, xs) if z3.is_true(model.eval(v, model_completion=True))]
            assert len(on) == 1, f"node {node.name}: {len(on)} choices in the model"
            out.append(on[0])
        return out

    def step_bytes(self, model: z3.ModelRef) -> list[int]:
        return [const + sum(w for v, w in terms if z3.is_true(model.eval(v, model_completion=True)))
                for const, terms in zip(self.step_const, self.step_terms)]

    def memory_at_most(self, budget: int) -> list[z3.BoolRef]:
        """Constraints: every step's memory <= budget (steps that can never exceed it are left out)."""
        out: list[z3.BoolRef] = []
        for const, terms in zip(self.step_const, self.step_terms):
            if const > budget:
                return [z3.BoolVal(False)]
            if const + sum(w for _, w in terms) > budget:
                out.append(z3.PbLe(list(terms), budget - const))
        return out

    def time_at_most(self, budget_ns: int) -> list[z3.BoolRef]:
        if budget_ns < self.time_const:
            return [z3.BoolVal(False)]
        return [z3.PbLe(list(self.time_terms), budget_ns - self.time_const)] if self.time_terms else []

    def lowest_peak(self) -> int:
        """A trivial lower bound on any plan's peak: the bytes live whatever the choices."""
        return max(self.step_const)


def encode(problem: Problem) -> Encoding:
    return _Builder(problem, topology(problem)).build()


class _Builder:
    def __init__(self, problem: Problem, topo: Topology) -> None:
        self.p, self.topo = problem, topo
        self.constraints: list[z3.BoolRef] = []
        self.n_steps = problem.epilogue_step + 1
        self.x = tuple(tuple(z3.Bool(f"x|{i}|{k}") for k in range(len(node.choices)))
                       for i, node in enumerate(problem.nodes))
        self.time_terms: list[tuple[z3.BoolRef, int]] = []
        self.step_terms: list[list[tuple[z3.BoolRef, int]]] = [[] for _ in range(self.n_steps)]
        self.step_const = [0] * self.n_steps
        self.time_const = 0
        self.orig_live: dict[str, dict[int, Lit]] = {}  # O[t][s], filled outputs-first so views can refer to it

    def define(self, name: str, expr: Lit) -> Lit:
        """A named Boolean for a shared subformula (constants stay constants)."""
        if isinstance(expr, bool) or z3.is_const(expr):
            return expr
        v = z3.Bool(name)
        self.constraints.append(v == expr)
        return v

    def add_memory(self, step: int, lit: Lit, size: int) -> None:
        if lit is True:
            self.step_const[step] += size
        elif lit is not False and size > 0:
            self.step_terms[step].append((lit, size))

    def build(self) -> Encoding:
        p = self.p
        for i, (node, xs) in enumerate(zip(p.nodes, self.x)):
            self.constraints.append(z3.PbEq([(v, 1) for v in xs], 1))
            for v, c in zip(xs, node.choices):
                self.time_terms.append((v, to_ns(c.time_ms)))
                self.add_memory(i, v, p.aligned(c.workspace_bytes))
        producer = self.topo.producer_step
        for tensor in sorted(producer, key=lambda t: (-producer[t], t)):
            self.tensor(tensor)
        return Encoding(p, self.x, tuple(self.constraints), tuple((v, w) for v, w in self.time_terms if w > 0),
                        tuple(tuple(t) for t in self.step_terms), tuple(self.step_const), self.time_const)

    def choices_at(self, step: int, pred) -> Lit:
        node = self.p.nodes[step]
        return or_(*[v for v, c in zip(self.x[step], node.choices) if pred(c)])

    def tensor(self, t: str) -> None:
        p, topo = self.p, self.topo
        start, end = topo.producer_step[t], topo.reach[t]
        steps = range(start, end + 1)
        readers = set(topo.consumer_steps[t])
        is_input = t == p.graph_input
        size = p.aligned(p.tensors[t].bytes)

        def produced_in(layout: Layout) -> Lit:
            if is_input:
                return layout == p.input_layout
            return self.choices_at(start, lambda c: c.layout_out == layout)

        def want(layout: Layout, s: int) -> Lit:
            if s not in readers:
                return False
            if s == p.epilogue_step:
                return layout == p.output_layout
            return self.choices_at(s, lambda c: c.layout_in == layout)

        P = {L: self.define(f"P|{t}|{L}", produced_in(L)) for L in LAYOUTS}
        A: dict[Layout, dict[int, Lit]] = {L: {end + 1: False} for L in LAYOUTS}
        F: dict[Layout, dict[int, Lit]] = {L: {start - 1: False} for L in LAYOUTS}
        for L in LAYOUTS:
            for s in reversed(steps):
                A[L][s] = self.define(f"A|{t}|{L}|{s}", or_(want(L, s), A[L][s + 1]))
            for s in steps:
                F[L][s] = self.define(f"F|{t}|{L}|{s}", or_(F[L][s - 1], want(L, s)))

        # Views of t: ext[L][s] = a view consuming t in layout L is chosen and its output's original is live at s.
        ext: dict[Layout, dict[int, list[Lit]]] = {L: {s: [] for s in steps} for L in LAYOUTS}
        for r in sorted(readers & topo.view_capable):
            out = p.nodes[r].output
            for v, c in zip(self.x[r], p.nodes[r].choices):
                if c.aliases_input:
                    for s, live in self.orig_live[out].items():
                        ext[c.layout_in][s].append(and_(v, live))

        self.orig_live[t] = {}
        view = False if is_input else self.choices_at(start, lambda c: c.aliases_input)
        for s in steps:
            reads = [and_(A[L][s], or_(P[L], not_(F[L][s - 1]))) for L in LAYOUTS]
            viewed = [and_(P[L], or_(*ext[L][s])) for L in LAYOUTS]
            live = self.define(f"O|{t}|{s}", or_(s == start, *reads, *viewed))
            self.orig_live[t][s] = live
            self.add_memory(s, and_(live, not_(view)), size)
            for L in LAYOUTS:
                copy = and_(not_(P[L]), or_(and_(F[L][s], A[L][s]), *ext[L][s]))
                self.add_memory(s, self.define(f"C|{t}|{L}|{s}", copy), size)

        for a in LAYOUTS:
            for b in LAYOUTS:
                if a == b:
                    continue
                runs = and_(P[a], A[b][start])
                if runs is False:
                    continue
                if (t, a, b) not in p.transform_ms:  # no such transform: this combination of layouts is impossible
                    self.constraints.append(z3.BoolVal(False) if runs is True else z3.Not(runs))
                    continue
                ns = to_ns(p.transform_ms[(t, a, b)])
                if runs is True:
                    self.time_const += ns
                elif ns > 0:
                    self.time_terms.append((self.define(f"T|{t}|{a}|{b}", runs), ns))
