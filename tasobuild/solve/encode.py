"""The problem as Z3 pseudo-boolean constraints. Mirrors `plan.evaluate` rule for rule; search.py checks every
model against it.

Variables: x[i][k] — node i runs its k-th (pruned) choice; exactly one per node. Everything else is a Boolean
function of x. Time (always built):
  P[t][L]  t is produced in layout L          W[t][L]  some reader (or the epilogue, for the output) wants t in L
  a transform t: a->b runs iff P[t][a] and W[t][b]; total time = chosen node times + transform times, in integer ns.
Memory (built on first use; time-only solves never need it), over the steps t can be live ([producer, reach]):
  want[t][L][s]  the reader at step s wants L
  A[t][L][s]  some reader at step >= s wants L        F[t][L][s]  some reader at step <= s wants L
  O[t][s]     the original version of t is live: s is its producer step, or a reader at >= s wants the produced
              layout, or a layout is first wanted at >= s (its transform reads the original), or a view of it is
  C[t][L][s]  the converted copy in L != produced is live: first want <= s <= last want, or a view of it is
  memory at step s = aligned bytes of live versions (a view's own version weighs 0) + the chosen workspace.
A deferred member of a fused group (Choice.deferred) is a view here: its output weighs nothing and keeps its input
live, as the group runs at its last member's step. Members of a group are picked together (iff). An in-place choice
(Choice.in_place) is a view of the input it overwrites, the same way. A zero-copy gather (Choice.gathers): the
slices (its inputs' versions in its layout) weigh nothing; its output weighs its size from the first step a slice
is produced in that layout (G); an interleaved one (Choice.interleave, HWC) only with every producer writing its
slice strided (Choice.strided_out), and a strided writer only with its reader's gather. A group's last member whose
output overlaps the group's input (Choice.output_lead) saves overlap_saving bytes at its step: the step's constant
is that much lower and Not(x) adds it back, so the weights stay positive. Neither may take over the memory of a
view (Not(And(x, view at the producer))).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterable
from typing import TypeAlias

import z3

from tasobuild.solve.plan import to_ns
from tasobuild.solve.problem import LAYOUTS, Choice, Layout, Problem, group_members, overlap_saving, topology

Lit: TypeAlias = "bool | z3.BoolRef"  # Python constants are folded away before they reach Z3
Terms = tuple[tuple[z3.BoolRef, int], ...]  # (literal, weight) for z3.PbLe


# Formulas are built through Z3's C API: the Python wrapper re-checks and re-coerces every argument, which
# dominated encoding time on networks with thousands of choices. Every Encoding has its own Z3 context, so that
# solving one problem twice in one process starts from the same solver state and gives the same plan.


def _nary(fn: Callable[..., z3.Ast], xs: list[z3.BoolRef]) -> z3.BoolRef:
    ctx = xs[0].ctx
    args = (z3.Ast * len(xs))(*[x.as_ast() for x in xs])
    return z3.BoolRef(fn(ctx.ref(), len(xs), args), ctx)


def bool_var(name: str, ctx: z3.Context) -> z3.BoolRef:
    sort = z3.BoolSort(ctx).ast
    return z3.BoolRef(z3.Z3_mk_const(ctx.ref(), z3.Z3_mk_string_symbol(ctx.ref(), name), sort), ctx)


def or_(*xs: Lit) -> Lit:
    live = [x for x in xs if x is not False]
    if any(x is True for x in live):
        return True
    return False if not live else live[0] if len(live) == 1 else _nary(z3.Z3_mk_or, live)


def and_(*xs: Lit) -> Lit:
    live = [x for x in xs if x is not True]
    if any(x is False for x in live):
        return False
    return True if not live else live[0] if len(live) == 1 else _nary(z3.Z3_mk_and, live)


def not_(x: Lit) -> Lit:
    return (not x) if isinstance(x, bool) else z3.BoolRef(z3.Z3_mk_not(x.ctx.ref(), x.as_ast()), x.ctx)


def iff(a: z3.BoolRef, b: z3.BoolRef) -> z3.BoolRef:
    return z3.BoolRef(z3.Z3_mk_eq(a.ctx.ref(), a.as_ast(), b.as_ast()), a.ctx)


def _is_true(model: z3.ModelRef, decl: z3.Ast) -> bool:
    """A Boolean constant's value in the model (unassigned: false), without the wrapper's per-call overhead."""
    ctx = model.ctx.ref()
    value = z3.Z3_model_get_const_interp(ctx, model.model, decl)
    return bool(value) and z3.Z3_get_bool_value(ctx, value) == z3.Z3_L_TRUE


def true_in(model: z3.ModelRef, lit: z3.BoolRef) -> bool:
    return bool(z3.is_true(model.eval(lit, model_completion=True)))


INT_MAX = 2**31 - 1  # z3's pseudo-boolean coefficients and bounds are C ints


def pb_le(terms: Terms, k: int, ctx: z3.Context) -> z3.BoolRef:
    """sum of weights of true literals <= k. Goes straight to the C API (the Python wrapper re-checks every
    argument, which dominated solve time); falls back to integer arithmetic for weights beyond a C int."""
    if not terms or k < 0:
        return z3.BoolVal(k >= 0, ctx)
    if k > INT_MAX or any(w > INT_MAX for _, w in terms):
        return z3.Sum([z3.If(v, w, 0) for v, w in terms]) <= k
    args = (z3.Ast * len(terms))(*[v.as_ast() for v, _ in terms])
    coeffs = (ctypes.c_int * len(terms))(*[w for _, w in terms])
    return z3.BoolRef(z3.Z3_mk_pble(ctx.ref(), len(terms), args, coeffs, k), ctx)


def assert_all(solver: z3.Solver | z3.Optimize, lits: Iterable[z3.BoolRef]) -> None:
    """solver.add(*lits), without the wrapper's per-argument cast (every literal here is a BoolRef already)."""
    ref = solver.ctx.ref()
    if isinstance(solver, z3.Optimize):
        for lit in lits:
            z3.Z3_optimize_assert(ref, solver.optimize, lit.as_ast())
    else:
        for lit in lits:
            z3.Z3_solver_assert(ref, solver.solver, lit.as_ast())


def add_soft_all(opt: z3.Optimize, weighted: Iterable[tuple[z3.BoolRef, int]], group: str
                 ) -> z3.OptimizeObjective | None:
    """opt.add_soft(lit, weight, id=group) for each pair, through the C API; the group's objective handle."""
    ref, symbol, index = opt.ctx.ref(), z3.to_symbol(group, opt.ctx), None
    for lit, weight in weighted:
        index = z3.Z3_optimize_assert_soft(ref, opt.optimize, lit.as_ast(), str(weight), symbol)
    return None if index is None else z3.OptimizeObjective(opt, index, False)


class Encoding:
    """Variables and constraints for one (pruned) problem. Immutable after construction, except that the memory
    part is built once, the first time it is asked for."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.topo = topology(problem)
        self.ctx = z3.Context()
        self.x = tuple(tuple(bool_var(f"x|{i}|{k}", self.ctx) for k in range(len(node.choices)))
                       for i, node in enumerate(problem.nodes))
        self.constraints: list[z3.BoolRef] = [z3.PbEq([(v, 1) for v in xs], 1) for xs in self.x]
        for members in group_members(problem).values():  # a fused group runs whole or not at all
            first = self.x[members[0][0]][members[0][1]]
            self.constraints += [iff(first, self.x[s][k]) for s, k in members[1:]]
        self.constraints += self._sharing()
        self.time_const = 0  # ns spent whatever the choices (a transform that must always run)
        self.node_terms: Terms = tuple((v, to_ns(c.time_ms)) for xs, n in zip(self.x, problem.nodes)
                                       for v, c in zip(xs, n.choices))
        self.transform_terms: Terms = self._transforms()  # literals are named variables
        self.time_terms: Terms = tuple((v, w) for v, w in self.node_terms + self.transform_terms if w > 0)
        self._memory: tuple[tuple[int, ...], tuple[Terms, ...]] | None = None
        self._tensor_low: tuple[int, ...] = ()
        self._tensor_high: tuple[int, ...] = ()
        self._x_ast = [[z3.Z3_get_app_decl(self.ctx.ref(), v.as_ast()) for v in xs] for xs in self.x]

    def _sharing(self) -> list[z3.BoolRef]:
        """An in-place output or a gathered slice takes over its input's memory: that input's producer must not be
        a read-only view of another tensor, nor its other readers views of it (plan._check_shared_source)."""
        p, producer = self.problem, self.topo.producer_step
        out = []
        for step, node in enumerate(p.nodes):
            for v, c in zip(self.x[step], node.choices):
                shared = node.inputs if c.gathers else (node.inputs[c.in_place],) if c.in_place >= 0 else ()
                for name in shared:
                    if name in p.graph_inputs:
                        continue
                    q = producer[name]
                    for w, d in zip(self.x[q], p.nodes[q].choices):
                        if d.shares_data or (c.gathers and (d.no_buffer or d.gathers)):
                            out.append(z3.Not(z3.And(v, w)))
                    for r in self.topo.consumer_steps[name]:
                        if r != step and r < p.epilogue_step:
                            out += [z3.Not(z3.And(v, w)) for w, d in zip(self.x[r], p.nodes[r].choices)
                                    if d.shares_data]
                    if c.interleave:  # an interleaved slice: its producer writes it strided
                        out += [z3.Not(z3.And(v, w)) for w, d in zip(self.x[q], p.nodes[q].choices)
                                if not d.strided_out]
                if c.strided_out:  # a strided output: only as the slice of its reader's gather
                    (r,) = self.topo.consumer_steps[node.output]
                    out.append(z3.Or(z3.Not(v), *[w for w, d in zip(self.x[r], p.nodes[r].choices)
                                                  if d.interleave]))
        return out

    # ---- decoding (literals in terms are all plain variables, so a model lookup is enough) ----
    def picks(self, model: z3.ModelRef) -> list[Choice]:
        out = []
        for node, decls in zip(self.problem.nodes, self._x_ast):
            on = [c for c, d in zip(node.choices, decls) if _is_true(model, d)]
            assert len(on) == 1, f"node {node.name}: {len(on)} choices in the model"
            out.append(on[0])
        return out

    def time_ns(self, model: z3.ModelRef) -> int:
        """Total time as the model's literals say (tests compare it with `evaluate`)."""
        return self.time_const + sum(w for v, w in self.time_terms if true_in(model, v))

    def step_bytes(self, model: z3.ModelRef) -> list[int]:
        """Memory at each step as the model's literals say (tests compare it with `evaluate`)."""
        const, terms = self.memory()
        return [c + sum(w for v, w in ts if true_in(model, v)) for c, ts in zip(const, terms)]

    # ---- time ----
    def time_at_most(self, budget_ns: int) -> list[z3.BoolRef]:
        return [pb_le(self.time_terms, budget_ns - self.time_const, self.ctx)]

    def _choices_at(self, step: int, pred: Callable[[Choice], bool]) -> Lit:
        """Some choice with the property is picked at this step: True when all have it (exactly one is picked)."""
        chosen = [v for v, c in zip(self.x[step], self.problem.nodes[step].choices) if pred(c)]
        return True if len(chosen) == len(self.x[step]) else or_(*chosen)

    def produced_in(self, t: str, layout: Layout) -> Lit:
        if t in self.problem.graph_inputs:
            return layout == self.problem.input_layout
        return self._choices_at(self.topo.producer_step[t], lambda c: c.layout_out == layout)

    def want(self, t: str, layout: Layout, step: int) -> Lit:
        if step not in self.topo.consumer_steps[t]:
            return False
        if step == self.problem.epilogue_step:
            return layout == self.problem.output_layout
        return self._choices_at(step, lambda c: c.layout_in == layout)

    def _transforms(self) -> Terms:
        p = self.problem
        terms: list[tuple[z3.BoolRef, int]] = []
        for t in sorted(self.topo.producer_step):
            wanted = {L: self._define(f"W|{t}|{L}", or_(*[self.want(t, L, s) for s in self.topo.consumer_steps[t]]))
                      for L in LAYOUTS}
            for a in LAYOUTS:
                made = self.produced_in(t, a)
                for b in LAYOUTS:
                    runs = False if a == b else and_(made, wanted[b])
                    if runs is False:
                        continue
                    if (t, a, b) not in p.transform_ms:  # no such transform: this combination is impossible
                        self.constraints.append(z3.BoolVal(False, self.ctx) if runs is True else z3.Not(runs))
                    elif runs is True:
                        self.time_const += to_ns(p.transform_ms[(t, a, b)])
                    else:
                        terms.append((self._define(f"T|{t}|{a}|{b}", runs), to_ns(p.transform_ms[(t, a, b)])))
        return tuple(terms)

    def _define(self, name: str, expr: Lit) -> Lit:
        """A named Boolean for a shared subformula (constants and plain variables stay as they are)."""
        if isinstance(expr, bool) or z3.is_const(expr):
            return expr
        v = bool_var(name, self.ctx)
        self.constraints.append(iff(v, expr))
        return v

    # ---- memory ----
    def memory_at_most(self, budget: int) -> list[z3.BoolRef]:
        """Constraints: every step's memory <= budget (steps that can never exceed it are left out).
        Adds the memory definitions to `constraints` the first time: call it before reading `constraints`."""
        const, terms = self.memory()
        out: list[z3.BoolRef] = []
        for c, ts in zip(const, terms):
            if c > budget:
                return [z3.BoolVal(False, self.ctx)]
            if c + sum(w for _, w in ts) > budget:
                out.append(pb_le(ts, budget - c, self.ctx))
        return out

    def tensor_bytes_range(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Per step, the (fewest, most) bytes the tensors live there can take whatever the choices: the memory
        apart from the running node's workspace. The most is an over-estimate (every possible copy at once)."""
        self.memory()
        return self._tensor_low, self._tensor_high

    def memory(self) -> tuple[tuple[int, ...], tuple[Terms, ...]]:
        """(bytes live at each step whatever the choices, (literal, bytes) terms at each step)."""
        if self._memory is None:
            builder = _MemoryBuilder(self)
            self._memory = builder.build()
            self._tensor_high = tuple(builder.high)
            self._tensor_low = tuple(c + extra + saved
                                     for c, extra, saved in zip(self._memory[0], builder.low, builder.saved))
        return self._memory


class _MemoryBuilder:
    def __init__(self, enc: Encoding) -> None:
        self.enc, self.p, self.topo = enc, enc.problem, enc.topo
        n_steps = self.p.epilogue_step + 1
        self.const = [0] * n_steps
        self.terms: list[list[tuple[z3.BoolRef, int]]] = [[] for _ in range(n_steps)]
        self.orig_live: dict[str, dict[int, Lit]] = {}  # O[t][s], filled outputs-first so views can refer to it
        self.high = [0] * n_steps  # most tensor bytes possibly live at each step
        self.low = [0] * n_steps  # fewest, beyond the constants: a version of every tensor still to be read
        self.saved = [0] * n_steps  # taken off the constants for overlapping outputs (Choice.output_lead)

    def add(self, step: int, lit: Lit, size: int) -> None:
        if lit is True:
            self.const[step] += size
        elif lit is not False and size > 0:
            self.terms[step].append((lit, size))

    def build(self) -> tuple[tuple[int, ...], tuple[Terms, ...]]:
        for i, (node, xs) in enumerate(zip(self.p.nodes, self.enc.x)):
            for k, (v, c) in enumerate(zip(xs, node.choices)):
                self.add(i, v, self.p.aligned(c.workspace_bytes))
                saving = overlap_saving(self.p, i, c)
                if saving > 0:  # sum - saving * x = sum + saving * Not(x) - saving
                    self.const[i] -= saving
                    self.saved[i] += saving
                    self.add(i, self.enc._define(f"V|{i}|{k}", not_(v)), saving)
        for t in reversed([*self.p.graph_inputs, *(n.output for n in self.p.nodes)]):  # a view's output first
            self.tensor(t)
        return tuple(self.const), tuple(tuple(ts) for ts in self.terms)

    def tensor(self, t: str) -> None:
        enc, p = self.enc, self.p
        start, end = self.topo.producer_step[t], self.topo.reach[t]
        steps = range(start, end + 1)
        size = p.aligned(p.tensors[t].bytes)
        P = {L: enc.produced_in(t, L) for L in LAYOUTS}
        A: dict[Layout, dict[int, Lit]] = {L: {end + 1: False} for L in LAYOUTS}
        F: dict[Layout, dict[int, Lit]] = {L: {start - 1: False} for L in LAYOUTS}
        for L in LAYOUTS:
            for s in reversed(steps):
                A[L][s] = enc._define(f"A|{t}|{L}|{s}", or_(enc.want(t, L, s), A[L][s + 1]))
            for s in steps:
                F[L][s] = enc._define(f"F|{t}|{L}|{s}", or_(F[L][s - 1], enc.want(t, L, s)))

        # Views of t: ext[L][s] = a view reading t in layout L is chosen and its output's original is live at s.
        ext: dict[Layout, dict[int, list[Lit]]] = {L: {s: [] for s in steps} for L in LAYOUTS}
        for r in sorted(set(self.topo.consumer_steps[t]) & self.topo.view_capable):
            out = p.nodes[r].output
            for v, c in zip(enc.x[r], p.nodes[r].choices):
                if c.no_buffer and p.nodes[r].inputs[c.source] == t:
                    for s, live in self.orig_live[out].items():
                        ext[c.layout_in][s].append(and_(v, live))
        # A zero-copy gather reading t: t's version in the gather's layout is a slice of its output (which weighs it).
        sliced: dict[Layout, list[Lit]] = {L: [] for L in LAYOUTS}
        for r in self.topo.consumer_steps[t]:
            if r < p.epilogue_step:
                for v, c in zip(enc.x[r], p.nodes[r].choices):
                    if c.gathers:
                        sliced[c.layout_in].append(v)
        in_slice = {L: or_(*sliced[L]) for L in LAYOUTS}

        view = False if t in p.graph_inputs else enc._choices_at(start, lambda c: c.no_buffer)
        last_read = max(self.topo.consumer_steps[t], default=start)
        self.orig_live[t] = {}
        for s in steps:
            reads = [and_(A[L][s], or_(P[L], not_(F[L][s - 1]))) for L in LAYOUTS]
            viewed = [and_(P[L], or_(*ext[L][s])) for L in LAYOUTS]
            live = enc._define(f"O|{t}|{s}", or_(s == start, *reads, *viewed))
            self.orig_live[t][s] = live
            a_slice = or_(*[and_(P[L], in_slice[L]) for L in LAYOUTS])
            versions = [enc._define(f"M|{t}|{s}", and_(live, not_(view), not_(a_slice)))]  # a view weighs nothing
            for L in LAYOUTS:
                copy = and_(not_(P[L]), or_(and_(F[L][s], A[L][s]), *ext[L][s]), not_(in_slice[L]))
                versions.append(enc._define(f"C|{t}|{L}|{s}", copy))
            for lit in versions:
                self.add(s, lit, size)
            self.high[s] += size * min(len(LAYOUTS), sum(lit is not False for lit in versions))  # one per layout
            if view is False and a_slice is False and start < s <= last_read and not any(v is True for v in versions):
                self.low[s] += size  # read at or after s: the original or a copy holds it
        if t not in p.graph_inputs:
            self.gathered(start)

    def gathered(self, step: int) -> None:
        """A zero-copy gather's output buffer exists from the first step one of its slices is written in place:
        the step its producer runs, when it produces the slice's layout (else the copy is made at the gather)."""
        enc, p = self.enc, self.p
        node = p.nodes[step]
        size = p.aligned(p.tensors[node.output].bytes)
        for k, (v, c) in enumerate(zip(enc.x[step], node.choices)):
            if not c.gathers:
                continue
            made = [(self.topo.producer_step[name], enc.produced_in(name, c.layout_in)) for name in node.inputs]
            for s in range(min(q for q, _ in made), step):
                lit = and_(v, or_(*[m for q, m in made if q <= s]))
                self.add(s, enc._define(f"G|{node.output}|{k}|{s}", lit), size)
                if lit is not False:
                    self.high[s] += size


def encode(problem: Problem) -> Encoding:
    return Encoding(problem)
