"""The optimiser: hand-worked problems with exact answers, and brute force over every plan of small random
problems (the Z3 encoding must agree with `evaluate` on every combination; the solver must find the optimum)."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest
import z3

from tasobuild.errors import UserError
from tasobuild.memory import check_no_overlap, lower_bound, plan_arena, with_regions
from tasobuild.solve import (
    LAYOUTS,
    Choice,
    Plan,
    Problem,
    ProblemNode,
    ProblemTensor,
    evaluate,
    greedy,
    min_peak_bytes,
    pareto,
    prune,
    solve,
)
from tasobuild.solve.encode import encode
from tasobuild.solve.search import Clock, slice_params, time_softs
from tasobuild.solve.session import Session

C = Choice


def all_transforms(sizes: dict[str, int], ms: float) -> dict[tuple[str, str, str], float]:
    return {(t, a, b): ms for t in sizes for a in LAYOUTS for b in LAYOUTS if a != b}


def problem(nodes: list[ProblemNode], sizes: dict[str, int], output: str, transform_ms: float | dict = 1.0,
            input_layout: str = "CHW", output_layout: str = "CHW") -> Problem:
    transforms = transform_ms if isinstance(transform_ms, dict) else all_transforms(sizes, transform_ms)
    return Problem(nodes=tuple(nodes), tensors={t: ProblemTensor(t, b) for t, b in sizes.items()},
                   graph_input="in", input_layout=input_layout, graph_output=output, output_layout=output_layout,
                   transform_ms=transforms, alignment=1)


def consistent(plan: Plan, p: Problem) -> Plan:
    """The solver's memory accounting and the planner's agree; the arena can be laid out without overlaps."""
    assert plan.peak_bytes == lower_bound(plan.buffers(), p.alignment) == max(plan.step_bytes)
    arena = with_regions(plan_arena(plan.buffers(), p.alignment), plan.regions)
    check_no_overlap(plan.buffers(), arena, plan.regions)  # regions: tensors that share a buffer (test_sharing.py)
    assert arena.arena_bytes >= plan.peak_bytes
    return plan


def primitives(plan: Plan) -> dict[str, str]:
    return {name: c.primitive for name, c in plan.choices}


# ---- a 3-layer chain where per-layer greedy selection is wrong ----

def chain3() -> Problem:
    sizes = {"in": 100, "a": 100, "b": 100, "out": 100}
    return problem([
        ProblemNode("n1", ("in",), "a", (C("direct", "CHW", "CHW", 5.0, 0), C("gemm", "HWC", "HWC", 4.0, 50))),
        ProblemNode("n2", ("a",), "b", (C("direct", "CHW", "CHW", 5.0, 0), C("gemm", "HWC", "HWC", 4.5, 50))),
        ProblemNode("n3", ("b",), "out", (C("direct", "CHW", "CHW", 5.0, 0), C("wino", "HWC", "HWC", 4.0, 50))),
    ], sizes, "out", transform_ms=2.0)


def test_chain_greedy_pays_transforms_solver_does_not() -> None:
    p = chain3()
    g = consistent(greedy(p), p)
    # greedy: 4.0 + 4.5 + 4.0 = 12.5, plus in CHW->HWC and out HWC->CHW (2.0 each) = 16.5
    assert primitives(g) == {"n1": "gemm", "n2": "gemm", "n3": "wino"}
    assert g.time_ns == 16_500_000 and g.predicted_ms == pytest.approx(16.5)
    assert [(t.tensor, t.from_layout, t.to_layout, t.step) for t in g.transforms] == [
        ("in", "CHW", "HWC", 0), ("out", "HWC", "CHW", 3)]
    # steps: 0: in + in:HWC + a + ws = 350; 1: a + b + ws = 250; 2: 250; 3 (epilogue): out:HWC + out:CHW = 200
    assert g.step_bytes == (350, 250, 250, 200)

    s = consistent(solve(p, None), p)
    assert primitives(s) == {"n1": "direct", "n2": "direct", "n3": "direct"}
    assert s.time_ns == 15_000_000 and s.transforms == () and s.status == "optimal"
    assert s.step_bytes == (200, 200, 200, 100)
    assert s.bound == pytest.approx(15.0)


# ---- a budget that forces a slower primitive with a smaller workspace ----

def two_layers() -> Problem:
    sizes = {"in": 1000, "a": 1000, "out": 100}
    return problem([
        ProblemNode("conv", ("in",), "a", (C("im2col", "CHW", "CHW", 2.0, 4000), C("direct", "CHW", "CHW", 6.0, 0))),
        ProblemNode("fc", ("a",), "out", (C("gemm", "CHW", "CHW", 1.0, 500), C("naive", "CHW", "CHW", 1.5, 0))),
    ], sizes, "out")


def test_budget_forces_small_workspace_primitive() -> None:
    p = two_layers()
    fast = consistent(solve(p, None), p)
    assert primitives(fast) == {"conv": "im2col", "fc": "gemm"}
    assert fast.time_ns == 3_000_000 and fast.step_bytes == (6000, 1600, 100)
    # 3000 bytes: im2col needs in + a + 4000 = 6000 at step 0, so direct (6 ms); gemm still fits (1600)
    small = consistent(solve(p, 3000), p)
    assert primitives(small) == {"conv": "direct", "fc": "gemm"}
    assert small.time_ns == 7_000_000 and small.peak_bytes == 2000 and small.status == "optimal"
    assert solve(p, 2000) == small  # exactly at the budget


def test_impossible_budget_names_smallest_budget() -> None:
    p = two_layers()
    assert min_peak_bytes(p) == 2000  # step 0 always holds in + a
    with pytest.raises(UserError, match=r"memory budget 1999 bytes .* smallest budget with a plan is 2000 bytes"):
        solve(p, 1999)


def test_memory_objective_and_latency_budget() -> None:
    p = two_layers()
    m = consistent(solve(p, None, objective="memory"), p)
    assert m.peak_bytes == 2000 and m.time_ns == 7_000_000  # then fastest at that peak: gemm over naive
    assert primitives(m) == {"conv": "direct", "fc": "gemm"}
    assert m.status == "optimal" and m.tie_break == "optimal" and m.bound == 2000
    # within 3.5 ms only im2col will do (3.0 or 3.5 ms); then naive saves gemm's 500-byte workspace... but the peak
    # is step 0 (6000) either way, so the tie break picks the faster gemm.
    t = consistent(solve(p, None, objective="memory", latency_budget_ms=3.5), p)
    assert primitives(t) == {"conv": "im2col", "fc": "gemm"} and t.peak_bytes == 6000
    with pytest.raises(UserError, match=r"latency budget 2.5 ms is too tight: the fastest plan takes 3 ms"):
        solve(p, None, objective="memory", latency_budget_ms=2.5)
    with pytest.raises(UserError, match=r"smallest budget with a plan within 3.5 ms is 6000 bytes"):
        solve(p, 5000, objective="memory", latency_budget_ms=3.5)


# ---- a diamond: a residual add reads a tensor two steps after it was made ----

def diamond() -> Problem:
    sizes = {"in": 100, "a": 100, "b": 50, "out": 50}
    return problem([
        ProblemNode("n1", ("in",), "a", (C("conv", "CHW", "CHW", 1.0, 0),)),
        ProblemNode("n2", ("a",), "b", (C("fast", "HWC", "CHW", 1.0, 0), C("slow", "CHW", "CHW", 3.0, 0))),
        ProblemNode("add", ("a", "b"), "out", (C("add", "CHW", "CHW", 0.5, 0),)),
    ], sizes, "out", transform_ms=0.5)


def test_diamond_keeps_residual_live_and_converts_once() -> None:
    p = diamond()
    s = consistent(solve(p, None), p)
    assert primitives(s) == {"n1": "conv", "n2": "fast", "add": "add"}
    assert s.time_ns == 3_000_000  # 1 + 0.5 (a to HWC) + 1 + 0.5
    assert [(t.tensor, t.from_layout, t.to_layout, t.step) for t in s.transforms] == [("a", "CHW", "HWC", 1)]
    lives = {b.name: (b.size, b.first_step, b.last_step) for b in s.buffers()}
    assert lives == {"in:CHW": (100, 0, 0), "a:CHW": (100, 0, 2), "a:HWC": (100, 1, 1), "b:CHW": (50, 1, 2),
                     "out:CHW": (50, 2, 3)}
    assert s.step_bytes == (200, 250, 200, 50)
    # 200 bytes: the copy of `a` does not fit next to a and b, so the slow CHW primitive (no transform)
    tight = consistent(solve(p, 200), p)
    assert primitives(tight)["n2"] == "slow" and tight.time_ns == 4_500_000 and tight.transforms == ()
    assert tight.step_bytes == (200, 150, 200, 50)


# ---- a concat whose output three consumers want in two layouts: one shared transform ----

def concat_fanout() -> Problem:
    sizes = {"in": 100, "a": 100, "b": 100, "c": 200, "d": 50, "e": 50, "f": 50, "out": 50}
    return problem([
        ProblemNode("n1", ("in",), "a", (C("conv", "CHW", "CHW", 1.0, 0),)),
        ProblemNode("n2", ("in",), "b", (C("conv", "CHW", "CHW", 1.0, 0),)),
        ProblemNode("cat", ("a", "b"), "c", (C("concat", "CHW", "CHW", 0.1, 0),)),
        ProblemNode("n4", ("c",), "d", (C("gemm", "HWC", "CHW", 1.0, 0),)),
        ProblemNode("n5", ("c",), "e", (C("direct", "CHW", "CHW", 1.0, 0), C("gemm", "HWC", "CHW", 1.2, 0))),
        ProblemNode("n6", ("c",), "f", (C("gemm", "HWC", "CHW", 1.0, 0),)),
        ProblemNode("sum", ("d", "e", "f"), "out", (C("add3", "CHW", "CHW", 0.1, 0),)),
    ], sizes, "out", transform_ms=0.3)


def test_concat_consumers_share_one_transform() -> None:
    p = concat_fanout()
    s = consistent(solve(p, None), p)
    assert primitives(s)["n5"] == "direct"
    # one transform of c, before its first HWC consumer (n4, step 3), shared with n6 (step 5)
    assert [(t.tensor, t.from_layout, t.to_layout, t.step) for t in s.transforms] == [("c", "CHW", "HWC", 3)]
    assert s.time_ns == 5_500_000  # 1 + 1 + 0.1 + 1 + 1 + 1 + 0.1 + 0.3
    lives = {b.name: (b.first_step, b.last_step) for b in s.buffers()}
    assert lives["c:CHW"] == (2, 4) and lives["c:HWC"] == (3, 5)
    assert s.step_bytes == (200, 300, 400, 450, 500, 350, 200, 50)
    # 450 bytes: n5 reads the shared HWC copy instead, so the CHW original dies right after the transform
    tight = consistent(solve(p, 450), p)
    assert primitives(tight)["n5"] == "gemm" and tight.time_ns == 5_700_000
    assert [t.step for t in tight.transforms] == [3]
    assert tight.step_bytes == (200, 300, 400, 450, 300, 350, 200, 50)
    assert min_peak_bytes(p) == 450


# ---- a view (reshape): the output is the input's memory ----

def flatten() -> Problem:
    sizes = {"in": 400, "a": 400, "flat": 400, "out": 40}
    return problem([
        ProblemNode("conv", ("in",), "a", (C("direct", "CHW", "CHW", 1.0, 0),)),
        ProblemNode("flatten", ("a",), "flat", (C("view", "CHW", "CHW", 0.0, 0, aliases_input=True),
                                                C("copy", "CHW", "CHW", 0.2, 0))),
        ProblemNode("fc", ("flat",), "out", (C("gemm", "CHW", "CHW", 1.0, 0), C("gemm_t", "HWC", "CHW", 0.5, 0))),
    ], sizes, "out", transform_ms=1.0)


def test_view_shares_its_input_buffer() -> None:
    p = flatten()
    s = consistent(solve(p, None), p)
    assert primitives(s) == {"conv": "direct", "flatten": "view", "fc": "gemm"}
    assert s.time_ns == 2_000_000
    assert s.buffer_of("flat", "CHW") == s.buffer_of("a", "CHW") == "a:CHW"
    lives = {b.name: (b.size, b.first_step, b.last_step) for b in s.buffers()}
    assert lives == {"in:CHW": (400, 0, 0), "a:CHW": (400, 0, 2), "out:CHW": (40, 2, 3)}
    assert s.step_bytes == (800, 400, 440, 40)


def test_view_read_in_another_layout_keeps_source_until_the_transform() -> None:
    p = flatten()
    picks = [p.nodes[0].choices[0], p.nodes[1].choices[0], p.nodes[2].choices[1]]  # view, then gemm_t (HWC)
    e = consistent(evaluate(p, picks), p)
    assert [(t.tensor, t.from_layout, t.to_layout, t.step) for t in e.transforms] == [("flat", "CHW", "HWC", 2)]
    lives = {b.name: (b.first_step, b.last_step) for b in e.buffers()}
    assert lives == {"in:CHW": (0, 0), "a:CHW": (0, 2), "flat:HWC": (2, 2), "out:CHW": (2, 3)}
    assert e.step_bytes == (800, 400, 840, 40) and e.time_ns == 2_500_000


# ---- pruning, missing transforms, determinism, pareto ----

def test_prune_drops_dominated_choices_deterministically() -> None:
    a = C("a", "CHW", "CHW", 1.0, 100)
    b = C("b", "CHW", "CHW", 2.0, 0)
    dominated = C("c", "CHW", "CHW", 2.0, 100)  # slower than a, larger than b
    twin = C("a2", "CHW", "CHW", 1.0, 100)  # same as a: the first by name survives
    other_layout = C("d", "HWC", "HWC", 5.0, 999)
    view = C("v", "CHW", "CHW", 3.0, 0, aliases_input=True)  # aliasing is a different kind
    assert prune((dominated, other_layout, twin, b, view, a)) == (a, b, view, other_layout)


def test_missing_transform_forbids_layout_mismatch() -> None:
    p = chain3()
    # no transform of `in` or `out` at all: the HWC primitives can only be used in the middle... which needs
    # transforms of a and b: allow only a CHW->HWC and b HWC->CHW
    only = {("a", "CHW", "HWC"): 0.1, ("b", "HWC", "CHW"): 0.1}
    q = problem(list(p.nodes), {t: v.bytes for t, v in p.tensors.items()}, "out", transform_ms=only)
    s = consistent(solve(q, None), q)
    assert primitives(s) == {"n1": "direct", "n2": "gemm", "n3": "direct"}
    assert s.time_ns == 14_700_000
    with pytest.raises(ValueError, match="no transform"):
        greedy(q)  # the per-layer choice would need in CHW->HWC


def test_no_plan_without_transforms_is_a_user_error() -> None:
    p = problem([ProblemNode("n", ("in",), "out", (C("gemm", "HWC", "HWC", 1.0, 0),))],
                {"in": 8, "out": 8}, "out", transform_ms={})
    with pytest.raises(UserError, match="transform is missing"):
        solve(p, None)


def test_deterministic() -> None:
    p = concat_fanout()
    assert solve(p, None) == solve(p, None)
    assert solve(p, 450) == solve(p, 450)
    assert pareto(p) == pareto(p)


def test_pareto_chain() -> None:
    p = two_layers()
    points = pareto(p, points=5)
    assert [(q.peak_bytes, q.time_ns) for q in points] == [(2000, 7_000_000), (6000, 3_000_000)]
    assert all(q.status == "optimal" for q in points)


# ---- the session: bounds, budget pruning, reuse ----

def test_tensor_bytes_range_and_floor() -> None:
    # two_layers has no layout freedom: the bounds are exact. Step 0 holds in + a, step 1 a + out, then out.
    s = Session(two_layers())
    assert s.enc.tensor_bytes_range() == ((2000, 1100, 100), (2000, 1100, 100))
    assert s.floor == 2000  # = min_peak_bytes: step 0 with direct's zero workspace
    # concat_fanout: at step 3, c must be live in CHW (n5 may read it) and in HWC (n4 must), with d: 450;
    # at step 4 n5 may read the CHW original or the HWC copy, so 300..500
    s = Session(concat_fanout())
    assert s.enc.tensor_bytes_range() == ((200, 300, 400, 450, 300, 350, 200, 50),
                                          (200, 300, 400, 450, 500, 350, 200, 50))
    assert s.floor == 450 == min_peak_bytes(concat_fanout())


def test_budget_pruning() -> None:
    # choices (pruned order): conv [im2col 2 ms/4000 B, direct 6 ms], fc [gemm 1 ms/500 B, naive]
    s = Session(two_layers())
    assert s.excluded(None) == {(0, 1), (1, 1)}  # no cap: the fastest of each kind
    # 3000 bytes: im2col cannot fit (2000 + 4000); gemm always fits (1100 + 500), so naive is dominated
    assert s.excluded(3000) == {(0, 0), (1, 1)}
    assert s.infeasible(3000) == {(0, 0)}
    assert s.excluded(1999) == {(0, 0), (0, 1), (1, 1)}  # below the floor nothing fits at step 0
    # concat_fanout at 450: every step can still reach 450 with some choice, and n5's two kinds both stay
    assert Session(concat_fanout()).excluded(450) == frozenset()


def slower_group() -> Problem:
    """n1 -> n2, fused or not. Alone: 1 + 1 ms, n1 with 100 B of workspace. Fused: 1.5 + 1 ms, no workspace, and
    n1's output never exists whole. Steps alone: 0: in + a + 100 = 300; 1: a + out = 200; fused: 0: in = 100
    (a deferred member keeps its input live); 1: in + out = 200."""
    sizes = {"in": 100, "a": 100, "out": 100}
    return problem([
        ProblemNode("n1", ("in",), "a", (C("direct", "CHW", "CHW", 1.0, 100),
                                         C("fused", "CHW", "CHW", 1.5, 0, group="g", deferred=True))),
        ProblemNode("n2", ("a",), "out", (C("direct", "CHW", "CHW", 1.0, 0),
                                          C("fused", "CHW", "CHW", 1.0, 0, group="g"))),
    ], sizes, "out")


def test_group_slower_than_its_members_alone_never_enters_where_its_steps_always_fit() -> None:
    s = Session(slower_group())
    # the most its span can take: step 0 in + a + 100 B of workspace; step 1 in, a (either may be live) and out
    assert s.enc.tensor_bytes_range()[1][:2] == (200, 300)
    assert s.excluded(None) == s.excluded(300) == {(0, 1), (1, 1)}
    assert s.excluded(299) == frozenset()  # step 1 might not fit: the group stays, as it saves memory
    assert primitives(s.solve(None)) == {"n1": "direct", "n2": "direct"}
    small = s.solve(299)
    assert primitives(small) == {"n1": "fused", "n2": "fused"}
    assert (small.peak_bytes, small.time_ns) == (200, 2_500_000)
    assert [(q.peak_bytes, q.time_ns) for q in Session(slower_group()).pareto(4)] == [
        (200, 2_500_000), (300, 2_000_000)]


def test_session_reuses_proven_answers() -> None:
    p = concat_fanout()
    s = Session(p)
    fastest = s.solve(None)
    assert fastest.peak_bytes == 500 and fastest.solver_seconds > 0
    # any budget the fastest plan fits is answered without Z3, and so is the tie break's own question
    again = s.solve(600)
    assert again == replace(fastest, solver_seconds=0.0) and again.solver_seconds == 0.0
    assert s.solve(450) == solve(p, 450)
    assert s.solve(470).solver_seconds == 0.0  # the 450 answer (peak 450) covers 450..499


def test_slices_alternate_and_double() -> None:
    assert [(q["maxres.hill_climb"], q["random_seed"], q["rlimit"]) for q in map(slice_params, range(4))] == [
        (False, 0, 3_000_000), (True, 0, 6_000_000), (False, 1, 12_000_000), (True, 1, 24_000_000)]


# ---- brute force on small random problems ----

def random_problem(seed: int, groups: bool = False) -> Problem:
    """A small random problem; with `groups`, fused groups over some single-reader pairs of nodes too."""
    rng = random.Random(seed)
    sizes = {"in": rng.choice([64, 128, 192])}
    nodes = []
    n = rng.randint(3, 5)
    for i in range(n):
        out = f"t{i}" if i < n - 1 else "out"
        earlier = sorted(sizes)
        if rng.random() < 0.35 and len(earlier) > 1:
            inputs = tuple(rng.sample(earlier, 2))
            sizes[out] = rng.choice([64, 128, 192])
            view_ok = False
        else:
            inputs = (earlier[-1] if rng.random() < 0.7 else rng.choice(earlier),)
            view_ok = rng.random() < 0.4
            sizes[out] = sizes[inputs[0]] if view_ok else rng.choice([64, 128, 192])
        choices = []
        for k in range(rng.randint(1, 3)):
            lin, lout = rng.choice(LAYOUTS), rng.choice(LAYOUTS)
            choices.append(C(f"p{k}", lin, lout, rng.choice([0.5, 1.0, 1.5, 2.0]), rng.choice([0, 0, 64, 192])))
        if view_ok:
            lay = rng.choice(LAYOUTS)
            choices.append(C("view", lay, rng.choice([lay, rng.choice(LAYOUTS)]), 0.0, 0, aliases_input=True))
        nodes.append(ProblemNode(f"n{i}", inputs, out, tuple(choices)))
    if groups:
        nodes = with_random_groups(nodes, random.Random(seed + 1000))
    transforms = {k: v for k, v in all_transforms(sizes, 0.25).items() if rng.random() < 0.9}
    return Problem(tuple(nodes), {t: ProblemTensor(t, b) for t, b in sizes.items()}, "in", rng.choice(LAYOUTS),
                   "out", rng.choice(LAYOUTS), transforms, alignment=64)


def with_random_groups(nodes: list[ProblemNode], rng: random.Random) -> list[ProblemNode]:
    """Pair nodes i, i+1 into a fused group where i+1 alone reads i's output (and i has one input)."""
    out = list(nodes)
    for i in range(len(nodes) - 1):
        first, second = nodes[i], nodes[i + 1]
        readers = [n for n in nodes if first.output in n.inputs]
        if readers != [second] or len(set(first.inputs)) != 1 or len(set(second.inputs)) != 1 or \
                first.output == "out" or rng.random() < 0.4:
            continue
        lin, lout = rng.choice(LAYOUTS), rng.choice(LAYOUTS)
        group = f"g{i}"
        out[i] = replace(out[i], choices=out[i].choices + (
            C("fused", lin, "HWC", rng.choice([0.5, 1.0, 1.5]), 0, group=group, deferred=True),))
        out[i + 1] = replace(out[i + 1], choices=out[i + 1].choices + (
            C("fused", "HWC", lout, rng.choice([0.5, 1.0, 1.5]), rng.choice([0, 64, 128]), group=group),))
    return out


def every_plan(p: Problem) -> list[Plan]:
    plans = []
    for picks in itertools.product(*(n.choices for n in p.nodes)):
        try:
            plans.append(evaluate(p, picks))
        except ValueError:  # a needed transform is missing
            pass
    return plans


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("seed", range(12))
def test_encoding_agrees_with_evaluate_on_every_plan(seed: int, grouped: bool) -> None:
    encoding_agrees_with_evaluate(random_problem(seed, grouped))


def encoding_agrees_with_evaluate(p: Problem) -> None:
    """Every combination of choices: Z3 finds it impossible exactly when evaluate does, else the same memory at every
    step (within the encoding's proven range), the same time, and a consistent plan."""
    enc = encode(p)
    enc.memory()
    solver = z3.Solver(ctx=enc.ctx)
    solver.add(*enc.constraints)
    for picks in itertools.product(*[range(len(n.choices)) for n in p.nodes]):
        fixed = [enc.x[i][k] for i, k in enumerate(picks)]
        try:
            want = evaluate(p, [n.choices[k] for n, k in zip(p.nodes, picks)])
        except ValueError:
            assert solver.check(*fixed) == z3.unsat  # a missing transform makes the combination impossible
            continue
        assert solver.check(*fixed) == z3.sat
        model = solver.model()
        assert tuple(enc.step_bytes(model)) == want.step_bytes
        low, high = enc.tensor_bytes_range()
        workspace = [p.aligned(n.choices[k].workspace_bytes) for n, k in zip(p.nodes, picks)] + [0]
        assert all(lo + w <= b <= hi + w for lo, hi, w, b in zip(low, high, workspace, want.step_bytes))
        assert enc.time_ns(model) == want.time_ns
        consistent(want, p)


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("seed", range(12))
def test_solver_finds_brute_force_optimum(seed: int, grouped: bool) -> None:
    solver_finds_brute_force_optimum(random_problem(seed, grouped))


def solver_finds_brute_force_optimum(p: Problem) -> None:
    """Every question (fastest, smallest, budgeted, within a latency budget, pareto) answered as brute force
    over every plan answers it."""
    plans = every_plan(p)
    if not plans:
        with pytest.raises(UserError):
            solve(p, None)
        return
    fastest = min(q.time_ns for q in plans)
    smallest = min(q.peak_bytes for q in plans)
    s = consistent(solve(p, None), p)
    assert s.time_ns == fastest
    assert s.peak_bytes == min(q.peak_bytes for q in plans if q.time_ns == fastest)  # the tie break
    assert min_peak_bytes(p) == smallest
    m = consistent(solve(p, None, objective="memory"), p)
    assert (m.peak_bytes, m.time_ns) == (smallest, min(q.time_ns for q in plans if q.peak_bytes == smallest))
    budget = (smallest + s.peak_bytes) // 2
    b = consistent(solve(p, budget), p)
    assert b.time_ns == min(q.time_ns for q in plans if q.peak_bytes <= budget)
    assert b.peak_bytes == min(q.peak_bytes for q in plans if q.peak_bytes <= budget and q.time_ns == b.time_ns)
    # memory objective within a latency budget halfway between the fastest plan and the smallest plan's time
    limit_ns = (fastest + m.time_ns) // 2
    within = [q for q in plans if q.time_ns <= limit_ns]
    w = consistent(solve(p, None, objective="memory", latency_budget_ms=limit_ns / 1e6), p)
    assert w.peak_bytes == min(q.peak_bytes for q in within)
    assert w.time_ns == min(q.time_ns for q in within if q.peak_bytes == w.peak_bytes)
    if smallest > 0:
        with pytest.raises(UserError, match=f"smallest budget with a plan is {smallest} bytes"):
            solve(p, smallest - 1)
    # pareto: exactly the points of the true frontier that the budgets hit, each one on it
    frontier = pareto(p, points=4)
    assert [q.peak_bytes for q in frontier] == sorted({q.peak_bytes for q in frontier})
    assert all(x.time_ns > y.time_ns for x, y in itertools.pairwise(frontier))
    for point in frontier:
        assert point.status == "optimal"
        assert point.time_ns == min(q.time_ns for q in plans if q.peak_bytes <= point.peak_bytes)
        assert point.peak_bytes == min(q.peak_bytes for q in plans if q.time_ns <= point.time_ns)
    assert (frontier[0].peak_bytes, frontier[-1].time_ns) == (smallest, fastest)
    # with room for every point, the walk down the frontier finds all of them, each proven
    true = sorted({(q.peak_bytes, q.time_ns) for q in plans
                   if not any(r.peak_bytes <= q.peak_bytes and r.time_ns <= q.time_ns
                              and (r.peak_bytes, r.time_ns) != (q.peak_bytes, q.time_ns) for r in plans)})
    whole = pareto(p, points=max(2, len(true)))
    assert [(q.peak_bytes, q.time_ns) for q in whole] == true
    assert all((q.status, q.tie_break) == ("optimal", "optimal") for q in whole)


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("seed", range(12))
def test_coarse_bound_keeps_the_exact_optimum(seed: int, grouped: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first slice too short to settle anything sends every question through the coarse search (COARSE_NS at
    0.4 ms: most weights here floor to 0 or 1 units, so the coarse plan is often not the fastest) and the bounded
    exact one; the answers are still the brute-force optima."""
    from tasobuild.solve import search
    p = random_problem(seed, grouped)
    plans = every_plan(p)
    if not plans:
        return
    coarse_runs: list[Plan | None] = []

    def counted(*args: object) -> Plan | None:
        coarse_runs.append(coarse_plan(*args))  # type: ignore[arg-type]
        return coarse_runs[-1]

    coarse_plan = search._coarse_plan
    monkeypatch.setattr(search, "FIRST_SLICE_RLIMIT", 200)
    monkeypatch.setattr(search, "COARSE_NS", 400_000)
    monkeypatch.setattr(search, "_coarse_plan", counted)
    fastest = min(q.time_ns for q in plans)
    s = Session(p)
    assert s.solve(None, tie_break=False).time_ns == fastest
    for cap in sorted({q.peak_bytes for q in plans}):
        found = Session(p).fastest_under(cap, search.Clock(60))
        assert found.proven and found.picks is not None
        assert evaluate(p, found.picks).time_ns == min(q.time_ns for q in plans if q.peak_bytes <= cap)
    assert coarse_runs and all(run is not None for run in coarse_runs)


# ---- interleaved (HWC) gathers and their strided producers ----

def random_strided_problem(seed: int) -> Problem:
    """in -> t -> a, b (, c) (each from t or in) -> y = concat -> out, where the concat may gather its inputs
    interleaved (HWC, 2 pixels) and each producer has dense choices and strided ones (random layouts in, times,
    workspace): the gather is worth taking, or not, depending on the budget."""
    rng = random.Random(seed)
    size = lambda: rng.choice([128, 256, 384])  # noqa: E731  (runs of 64, 128, 192 bytes: aligned slices)

    def choices(n: int, strided: int = 0) -> tuple[Choice, ...]:
        dense = tuple(C(f"p{k}", rng.choice(("CHW", "HWC")), rng.choice(("CHW", "HWC")),
                        rng.choice([0.5, 1.0, 1.5]), rng.choice([0, 0, 64])) for k in range(rng.randint(1, n)))
        return dense + tuple(C(f"p{k}_strided", rng.choice(("CHW", "HWC")), "HWC", rng.choice([0.5, 1.0, 1.5, 2.0]),
                               rng.choice([0, 64]), strided_out=True) for k in range(strided))

    sizes = {"in": size(), "t": size()}
    nodes = [ProblemNode("n_t", ("in",), "t", choices(2))]
    parts = ["a", "b", "c"][:rng.randint(2, 3)]
    for name in parts:
        sizes[name] = size()
        nodes.append(ProblemNode(f"n_{name}", (rng.choice(["t", "in"]),), name, choices(2, rng.randint(1, 2))))
    sizes["y"] = sum(sizes[t] for t in parts)
    copies = tuple(C(f"copy_{lay}", lay, lay, rng.choice([0.25, 0.5, 1.0]), 0) for lay in ("CHW", "HWC"))
    gather = C("zc", "HWC", "HWC", rng.choice([0.0, 0.25]), 0, gathers=True, interleave=2)
    nodes.append(ProblemNode("n_y", tuple(parts), "y", copies + (gather,)))
    sizes["out"] = size()
    nodes.append(ProblemNode("n_out", ("y",), "out", choices(2)))
    return Problem(tuple(nodes), {t: ProblemTensor(t, b) for t, b in sizes.items()}, "in", rng.choice(LAYOUTS),
                   "out", rng.choice(LAYOUTS), all_transforms(sizes, 0.25), alignment=64)


@pytest.mark.parametrize("seed", range(10))
def test_solver_finds_brute_force_optimum_with_strided_gathers(seed: int) -> None:
    p = random_strided_problem(seed)
    encoding_agrees_with_evaluate(p)
    solver_finds_brute_force_optimum(p)


def strided_concat() -> Problem:
    """x -> conv_a, conv_b (dense 1.0 ms; strided 1.6 ms, or with 64 B of workspace 1.4 and 1.5 ms) -> cat (copy
    0.8 ms, or an HWC gather at 0 ms). 1 KiB tensors, y 2 KiB."""
    def node(name: str, out: str, faster: float) -> ProblemNode:
        return ProblemNode(name, ("x",), out, (C("conv", "HWC", "HWC", 1.0, 0),
                                               C("conv_strided", "HWC", "HWC", 1.6, 0, strided_out=True),
                                               C("conv_strided_ws", "HWC", "HWC", faster, 64, strided_out=True)))
    gather = C("zc", "HWC", "HWC", 0.0, 0, gathers=True, interleave=4)
    return Problem((node("conv_a", "a", 1.4), node("conv_b", "b", 1.5),
                    ProblemNode("cat", ("a", "b"), "y", (C("copy", "HWC", "HWC", 0.8, 0), gather))),
                   {t: ProblemTensor(t, b) for t, b in {"x": 1024, "a": 1024, "b": 1024, "y": 2048}.items()},
                   "x", "HWC", "y", "HWC", {}, alignment=64)


def test_a_gather_and_its_strided_writers_are_one_soft() -> None:
    """Hand-worked on strided_concat. Per node the fastest allowed choice weighs 0: the copy costs 0.8 ms over the
    gather, each strided choice 0.6 / 0.4 ms (conv_a) and 0.6 / 0.5 ms (conv_b) over its dense one. The gather is
    picked exactly when both writers are strided, so their least strided deltas (0.4 + 0.5 ms) move onto the
    gather's soft: 0.9 ms on 'not the gather', 0.2 and 0.1 ms on the 1.6 ms strided choices, none on the others.
    The fastest plan copies (0.8 < 0.9 ms); every question agrees with brute force."""
    p = strided_concat()
    enc = encode(p)
    base, soft = time_softs(enc, frozenset())
    assert base == 2 * 1_000_000  # the two dense convs; the gather weighs nothing
    assert {str(lit): w for lit, w in soft} == {"Not(x|2|1)": 900_000, "Not(x|2|0)": 800_000,
                                                "Not(x|0|1)": 200_000, "Not(x|1|1)": 100_000}
    fast = Session(p).solve(None)
    assert not fast.choice("cat").gathers and fast.time_ns == 2_800_000
    small = Session(p).solve(None, "memory")
    assert small.choice("cat").gathers and (small.peak_bytes, small.time_ns) == (3072, 3_200_000)
    solver_finds_brute_force_optimum(p)



def test_walk_limit_counts_z3_work_not_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk down the frontier stops on Z3 work, not on the wall clock: a microsecond's worth of work is not enough
    for slower_group's two points (with none, pareto falls back to spaced budgets, which find them too), while with
    work to spare the same microsecond limit, long past in wall-clock time, walks the whole frontier."""
    from tasobuild.solve import session
    clock = Clock(0.0, work=10**9)
    assert not clock.expired() and Clock(0.0).expired()
    assert Session(slower_group()).walk(4, 1e-6) is None
    monkeypatch.setattr(session, "WALK_WORK_PER_S", 0)
    assert [(q.peak_bytes, q.time_ns) for q in Session(slower_group()).pareto(4)] == [
        (200, 2_500_000), (300, 2_000_000)]
    monkeypatch.setattr(session, "WALK_WORK_PER_S", 10**15)
    walked = Session(slower_group()).walk(4, 1e-6)
    assert walked is not None and [(q.peak_bytes, q.time_ns) for q in walked] == [(200, 2_500_000), (300, 2_000_000)]


# ---- the descent: SAT checks on the time from a good plan, bisecting from a proven lower bound ----

def test_ascent_climbs_from_a_lower_bound_to_the_fastest_plan_and_gives_up_on_none() -> None:
    """Hand-worked on chain3 (plans of 15, 16.5, 17.5, 18, 18.5 and 21 ms) from a 10 ms bound: "faster than
    10.01 ms?" no, then 10.03, 10.07, 10.15, 10.31, 10.63, 11.27, 12.55 ms (the step doubling from 10 us), no;
    15.11 ms finds the 15 ms plan, and the descent from the bound 12.55 ms proves it. With no plan at all, every
    check says no up to the slowest time a plan could take, and the ascent leaves the question to maxres (None)."""
    from tasobuild.solve import search
    p = chain3()
    enc = encode(p)
    base, soft = time_softs(enc, frozenset())
    plan = search.ascend(enc, list(enc.constraints), base, soft, Clock(60), lambda _: True, 10_000_000)
    assert plan is not None and plan.time_ns == 15_000_000 and set(primitives(plan).values()) == {"direct"}
    nothing = [*enc.constraints, z3.BoolVal(False, enc.ctx)]
    assert search.ascend(enc, nothing, base, soft, Clock(60), lambda _: True, 10_000_000) is None


def test_descent_proves_the_fastest_plan_and_bisects_from_a_lower_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hand-worked on chain3: from the greedy plan (16.5 ms: gemm, gemm, wino and two 2 ms transforms) a linear
    descent asks for a plan faster than 16.5 ms, then faster than each one found, and ends on 15 ms (all direct, no
    transform) when none is faster. Given the lower bound 15 ms (as a larger cap's answer gives it), the first check
    asks for one faster than 15.75 ms (halfway), finds 15 ms, which meets the bound: one check, proven."""
    from tasobuild.solve import search
    p = chain3()
    enc = encode(p)
    base, soft = time_softs(enc, frozenset())
    start = evaluate(p, [n.choices[1] for n in p.nodes])
    assert start.time_ns == 16_500_000
    checks: list[int] = []
    run = search.Clock.run

    def counted(self: Clock, solver: z3.Solver, rlimit: int = 0, charge_used: bool = False) -> z3.CheckSatResult:
        checks.append(rlimit)
        return run(self, solver, rlimit, charge_used)

    monkeypatch.setattr(search.Clock, "run", counted)
    plan, proven = search.descend(enc, enc.constraints, base, soft, start, Clock(60), lambda _: True)
    assert proven and plan.time_ns == 15_000_000 and set(primitives(plan).values()) == {"direct"}
    assert len(checks) >= 2  # at least one faster plan, then "none faster"
    checks.clear()
    plan, proven = search.descend(enc, enc.constraints, base, soft, start, Clock(60), lambda _: True, 15_000_000)
    assert proven and plan.time_ns == 15_000_000 and len(checks) == 1
    # from a loose bound (10 ms): halfway 13.25 and 14.875 ms, no plan; 15.6875 finds 15 ms; 14.9375, none. The
    # bound rose: the next check asks just below the best plan (faster than 15 ms), none, proven: 5 checks, where
    # bisecting on would take 16 more to close 14.9375 .. 15 ms (chain3's plans: 15, 16.5, 17.5, 18, 18.5, 21 ms)
    asked: list[int] = []
    pb_le = search.pb_le

    def recorded(terms: tuple[tuple[z3.BoolRef, int], ...], k: int, ctx: z3.Context) -> z3.BoolRef:
        asked.append(base + k + 1)  # "faster than" this many ns
        return pb_le(terms, k, ctx)

    monkeypatch.setattr(search, "pb_le", recorded)
    plan, proven = search.descend(enc, enc.constraints, base, soft, start, Clock(60), lambda _: True, 10_000_000)
    assert proven and plan.time_ns == 15_000_000
    assert asked == [13_250_000, 14_875_000, 15_687_500, 14_937_500, 15_000_000]
    # a step out of work leaves the best plan so far, unproven
    monkeypatch.setattr(search, "DESCENT_STEP_RLIMIT", 1)
    plan, proven = search.descend(enc, enc.constraints, base, soft, start, Clock(60, work=10**6), lambda _: True)
    assert not proven and plan.time_ns <= start.time_ns


@pytest.mark.parametrize("descent_rlimit", [5_000_000, 1])
@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("seed", range(12))
def test_walk_through_the_descent_keeps_the_exact_frontier(seed: int, grouped: bool, descent_rlimit: int,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """With a first slice too short to settle anything, every question of the walk after the first goes through the
    descent, bisecting from the interval bound (the answer at the cap above); with descent steps out of work at once
    (rlimit 1), through the coarse bound's exact MaxSAT instead. The frontier is the brute-force one either way."""
    from tasobuild.solve import search
    p = random_problem(seed, grouped)
    plans = every_plan(p)
    if not plans:
        return
    monkeypatch.setattr(search, "FIRST_SLICE_RLIMIT", 200)
    monkeypatch.setattr(search, "DESCENT_STEP_RLIMIT", descent_rlimit)
    descents: list[bool] = []
    descend = search.descend

    def counted(*args: object) -> tuple[Plan, bool]:
        found = descend(*args)  # type: ignore[arg-type]
        descents.append(found[1])
        return found

    monkeypatch.setattr(search, "descend", counted)
    true = sorted({(q.peak_bytes, q.time_ns) for q in plans
                   if not any(r.peak_bytes <= q.peak_bytes and r.time_ns <= q.time_ns
                              and (r.peak_bytes, r.time_ns) != (q.peak_bytes, q.time_ns) for r in plans)})
    walked = Session(p).walk(max(2, len(true)), 60)
    assert walked is not None and [(q.peak_bytes, q.time_ns) for q in walked] == true
    assert all((q.status, q.tie_break) == ("optimal", "optimal") for q in walked)
    assert descents and (any(descents) or descent_rlimit == 1)  # at rlimit 1, proven only where a plan met the bound
