"""In-place execution and zero-copy concatenation (tasobuild.primitives.sharing, Choice.in_place / gathers):
hand-worked arenas and offsets on small problems (as TFLite Micro's GreedyMemoryPlanner tests state them), the
overlap checker on regions, the Z3 encoding against `evaluate` on random problems with sharing choices, and builds
of real networks compiled, run and matched against ONNX Runtime, tiled and untiled."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tasobuild.decide import place
from tasobuild.ir import Activation, Constant, Graph, Node, Shape, attrs
from tasobuild.memory import ArenaPlan, Buffer, OverlapError, Region, check_no_overlap
from tasobuild.solve import Choice, Problem, ProblemNode, ProblemTensor, evaluate, greedy
from tasobuild.solve.session import Session
from tests.test_solve import all_transforms, encoding_agrees_with_evaluate, every_plan, random_problem

C = Choice
K = 1024


def _problem(nodes: list[ProblemNode], sizes: dict[str, int], output: str) -> Problem:
    return Problem(tuple(nodes), {t: ProblemTensor(t, b) for t, b in sizes.items()}, "x", "CHW", output, "CHW", {},
                   alignment=64)


# ---- in place: a residual block ----
#   step 0: a = conv(x)   step 1: b = conv(a)   step 2: y = add(b, a)   step 3: the epilogue holds y; 1 KiB each.
# Copying, step 2 holds a, b and y: 3 KiB. In place over b, y is b's buffer: 2 KiB. The greedy planner (largest
# first, ties by first step, then name): a:CHW [0-2] at 0, x:CHW [0-0] at 1024 (a is live), then b:CHW, which holds
# y too [1-3], at 1024 (x is dead by then). Arena 2 KiB, the live-set bound.

def residual(in_place: bool = True) -> Problem:
    add = (C("add", "CHW", "CHW", 1.0, 0),) + ((C("add", "CHW", "CHW", 1.0, 0, in_place=0),) if in_place else ())
    return _problem([ProblemNode("conv_a", ("x",), "a", (C("conv", "CHW", "CHW", 1.0, 0),)),
                     ProblemNode("conv_b", ("a",), "b", (C("conv", "CHW", "CHW", 1.0, 0),)),
                     ProblemNode("add", ("b", "a"), "y", add)], {"x": K, "a": K, "b": K, "y": K}, "y")


def test_add_in_place_residual_block_offsets() -> None:
    p = residual()
    copying = evaluate(p, [n.choices[0] for n in p.nodes])
    assert copying.step_bytes == (2 * K, 2 * K, 3 * K, K) and place(copying).arena_bytes == 3 * K
    plan = Session(p).solve(None, "memory")
    assert plan.choice("add").in_place == 0 and plan.step_bytes == (2 * K, 2 * K, 2 * K, K)
    assert plan.buffer_of("y", "CHW") == plan.buffer_of("b", "CHW") == "b:CHW"
    assert [(b.name, b.first_step, b.last_step) for b in plan.buffers()] == [
        ("a:CHW", 0, 2), ("b:CHW", 1, 3), ("x:CHW", 0, 0)]
    arena = place(plan)
    assert arena.arena_bytes == 2 * K and arena.status == "optimal"
    assert arena.offset_map() == {"a:CHW": 0, "b:CHW": K, "x:CHW": K, "y:CHW": K}  # y is written over b
    assert plan.regions == (Region("b:CHW", "b:CHW", 0, K, 1, 2, "owner"),
                            Region("y:CHW", "b:CHW", 0, K, 2, 3, "in_place", "b:CHW"))


def test_in_place_refused_where_unsafe() -> None:
    base = residual(in_place=False)
    over_input = replace(base.nodes[0], choices=(C("relu", "CHW", "CHW", 1.0, 0, in_place=0),))
    with pytest.raises(ValueError, match="cannot be shared"):  # the caller's input is never overwritten
        replace(base, nodes=(over_input,) + base.nodes[1:])
    read_later = replace(base.nodes[1], choices=(C("relu", "CHW", "CHW", 1.0, 0, in_place=0),))
    with pytest.raises(ValueError, match="cannot be shared"):  # the add reads a after conv_b
        replace(base, nodes=(base.nodes[0], read_later, base.nodes[2]))


def test_in_place_not_over_a_view() -> None:
    """x -> a (conv) -> v = view of a -> y = relu(v) in place: y would overwrite a, whose reader n3 comes later,
    but only through the view: the solver must not pick both."""
    p = _problem([ProblemNode("n0", ("x",), "a", (C("conv", "CHW", "CHW", 1.0, 0),)),
                  ProblemNode("n1", ("a",), "v", (C("view", "CHW", "CHW", 0.0, 0, aliases_input=True),)),
                  ProblemNode("n2", ("v",), "r", (C("relu", "CHW", "CHW", 1.0, 0),
                                                  C("relu", "CHW", "CHW", 1.0, 0, in_place=0))),
                  ProblemNode("n3", ("a", "r"), "y", (C("add", "CHW", "CHW", 1.0, 0),))],
                 {"x": K, "a": K, "v": K, "r": K, "y": K}, "y")
    with pytest.raises(ValueError, match="view"):
        evaluate(p, [n.choices[-1] for n in p.nodes])
    assert Session(p).solve(None, "memory").choice("n2").in_place == -1


# ---- zero-copy concat ----
#   step 0: a = conv(x) 1 KiB   step 1: b = conv(x) 1 KiB   step 2: y = concat(a, b) 2 KiB; x 512 B.
# Copying, step 2 holds a, b and y: 4 KiB. Zero-copy, a and b are y's halves, y reserved from step 0: x + y =
# 2.5 KiB at steps 0 and 1. Greedy: y:CHW [0-3] at 0, x:CHW [0-1] at 2048; a at 0, b at 1024 inside y.

def two_branches(gather_first: bool = False) -> Problem:
    gather = C("concat", "CHW", "CHW", 0.0, 0, gathers=True)
    copy = C("concat", "CHW", "CHW", 1.0, 0)
    return _problem([ProblemNode("conv_a", ("x",), "a", (C("conv", "CHW", "CHW", 1.0, 0),)),
                     ProblemNode("conv_b", ("x",), "b", (C("conv", "CHW", "CHW", 1.0, 0),)),
                     ProblemNode("cat", ("a", "b"), "y", (gather, copy) if gather_first else (copy, gather))],
                    {"x": K // 2, "a": K, "b": K, "y": 2 * K}, "y")


def test_zero_copy_concat_offsets() -> None:
    p = two_branches()
    assert evaluate(p, [n.choices[0] for n in p.nodes]).peak_bytes == 4 * K
    plan = Session(p).solve(None, "memory")
    assert plan.choice("cat").gathers and plan.step_bytes == (2560, 2560, 2 * K, 2 * K)
    arena = place(plan)
    assert arena.arena_bytes == 2560 and arena.status == "optimal"
    assert arena.offset_map() == {"y:CHW": 0, "x:CHW": 2 * K, "a:CHW": 0, "b:CHW": K}
    assert plan.buffer_of("b", "CHW") == "b:CHW" and [b.name for b in plan.buffers()] == ["x:CHW", "y:CHW"]
    assert {r.name: (r.kind, r.offset, r.first_step, r.last_step) for r in plan.regions} == {
        "a:CHW": ("slice", 0, 0, 2), "b:CHW": ("slice", K, 1, 2), "y:CHW": ("owner", 0, 2, 3)}


def reserved_early() -> Problem:
    """x 2 KiB -> a (512 B), t = conv(x) 2 KiB, b = conv(t) 512 B, y = concat(a, b): zero-copy reserves b's half
    of y while x, a and t are live (step 1: 5 KiB against 4.5 KiB copying)."""
    gather = C("concat", "CHW", "CHW", 0.0, 0, gathers=True)
    return _problem([ProblemNode("conv_a", ("x",), "a", (C("conv", "CHW", "CHW", 1.0, 0),)),
                     ProblemNode("conv_t", ("x",), "t", (C("conv", "CHW", "CHW", 1.0, 0),)),
                     ProblemNode("conv_b", ("t",), "b", (C("conv", "CHW", "CHW", 1.0, 0),)),
                     ProblemNode("cat", ("a", "b"), "y", (C("concat", "CHW", "CHW", 1.0, 0), gather))],
                    {"x": 2 * K, "a": K // 2, "t": 2 * K, "b": K // 2, "y": K}, "y")


def test_zero_copy_is_priced_not_always_taken() -> None:
    p = reserved_early()
    assert evaluate(p, [n.choices[-1] for n in p.nodes]).peak_bytes == 5 * K
    smallest = Session(p).solve(None, "memory")
    assert not smallest.choice("cat").gathers and smallest.peak_bytes == 4608
    assert Session(p).solve(None, "latency").choice("cat").gathers  # it is faster: no copy


def test_sharing_kept_only_when_it_gains() -> None:
    """A build decides with and without the sharing choices and keeps sharing only when it wins (pipeline.Solve):
    a plan that sharing cannot improve stays byte for byte the plan of a build without it."""
    from tasobuild.decide import decide, sharing_gains, without_sharing

    p = residual()
    plain = without_sharing(p)
    assert [len(n.choices) for n in plain.nodes] == [1, 1, 1] and without_sharing(plain) is plain
    for objective in ("memory", "latency"):  # as fast, and 2 KiB instead of 3
        assert sharing_gains(decide(p, 1 << 30, objective, None, 10.0), decide(plain, 1 << 30, objective, None, 10.0),
                             objective)
    early = reserved_early()  # zero-copy costs memory there: the smallest plan is the one without it
    assert not sharing_gains(decide(early, 1 << 30, "memory", None, 10.0),
                             decide(without_sharing(early), 1 << 30, "memory", None, 10.0), "memory")
    assert sharing_gains(decide(early, 1 << 30, "latency", None, 10.0),  # but it saves the copy's time
                         decide(without_sharing(early), 1 << 30, "latency", None, 10.0), "latency")


# ---- the overlap checker on regions ----

def test_overlap_checker_on_regions() -> None:
    buffers = [Buffer("y", 2 * K, 0, 3)]
    arena = ArenaPlan((("a", 0), ("b", K), ("y", 0)), 2 * K, 64)
    owner = Region("y", "y", 0, 2 * K, 2, 3, "owner")
    good = [Region("a", "y", 0, K, 0, 2, "slice"), Region("b", "y", K, K, 1, 2, "slice"), owner]
    check_no_overlap(buffers, arena, good)
    with pytest.raises(OverlapError, match="share bytes"):  # two slices over the same bytes at step 1
        check_no_overlap(buffers, ArenaPlan((("a", 0), ("b", 512), ("y", 0)), 2 * K, 64),
                         [good[0], replace(good[1], offset=512), owner])
    with pytest.raises(OverlapError, match="share bytes"):  # a slice still read when its owner is written
        check_no_overlap(buffers, arena, [replace(good[0], last_step=3), good[1], owner])
    with pytest.raises(OverlapError, match="not inside"):  # a slice past its buffer's end
        check_no_overlap(buffers, arena, [good[0], replace(good[1], offset=1536), owner])
    with pytest.raises(OverlapError, match="not 1024 bytes"):  # the arena's offset disagrees with the region's
        check_no_overlap(buffers, ArenaPlan((("a", 0), ("b", 64), ("y", 0)), 2 * K, 64), good)
    in_place = [Region("t", "t", 0, K, 0, 2, "owner"), Region("u", "t", 0, K, 2, 4, "in_place", "t")]
    check_no_overlap([Buffer("t", K, 0, 4)], ArenaPlan((("t", 0),), K, 64), in_place)
    with pytest.raises(OverlapError, match="not in 't'"):  # written over a tensor the buffer does not hold
        check_no_overlap([Buffer("t", K, 0, 4)], ArenaPlan((("t", 0),), K, 64), [replace(in_place[1], source="v")])
    with pytest.raises(OverlapError, match="share bytes"):  # t is still read at step 3, after u overwrote it
        check_no_overlap([Buffer("t", K, 0, 4)], ArenaPlan((("t", 0),), K, 64),
                         [replace(in_place[0], last_step=3), in_place[1]])


# ---- the in-place kernels, against the copying ones ----

@pytest.mark.parametrize("act", [Activation("none"), Activation("relu"), Activation("clip", 0.0, 6.0)])
def test_in_place_kernels_compute_what_the_copying_ones_do(act: Activation) -> None:
    """Every in-place primitive, run on an output buffer that holds input k (as in the arena), between canaries
    (tests/guard.py: nothing written outside it, no other buffer touched), gives the copying primitive's result."""
    from tasobuild.primitives.registry import library
    from tasobuild.primitives.transforms import to_layout
    from tests.guard import guarded_kernels, run_guarded

    shape, rng = Shape(3, 5, 7), np.random.default_rng(11)
    values = {name: rng.uniform(-3, 3, (3, 5, 7)).astype(np.float32) for name in ("a", "b")}
    weights = {"s": rng.uniform(-2, 2, 3).astype(np.float32), "t": rng.uniform(-2, 2, 3).astype(np.float32)}
    nodes = {"add": Node("n", "add", ("a", "b"), "y", act=act), "act": Node("n", "act", ("a",), "y", act=act),
             "scale": Node("n", "scale", ("a",), "y", weights=("s", "t"), act=act),
             "lrn": Node("n", "lrn", ("a",), "y", attrs=attrs(size=5, alpha=0.5, beta=0.75, bias=1.0))}
    by_name = {p.name: p for p in library()}
    tried = 0
    for prim in (p for p in library() if p.in_place >= 0):
        if prim.op == "lrn" and act.kind != "none":
            continue  # LRN fuses no activation
        node = nodes[prim.op]
        graph = Graph((node,), tuple(sorted({"x": shape, "a": shape, "b": shape, "y": shape}.items())),
                      tuple(sorted((Constant.of(k, v) for k, v in weights.items()), key=lambda c: c.name)),
                      "x", "y", (), ())  # a and b are produced inside the network, dead after the node
        assert prim.applies(node, graph), prim.name
        ins = {f"in{k}": to_layout(values[t], prim.layout_in) for k, t in enumerate(node.inputs)}
        ws = {f"w{k}": w for k, w in enumerate(prim.weights(node, graph))}
        copying = by_name[prim.name.rsplit("_inplace", 1)[0]]
        want = run_guarded(guarded_kernels(), copying.call(node, graph), ins | ws)["out"]
        got = run_guarded(guarded_kernels(), prim.call(node, graph),
                          {"out": ins[f"in{prim.in_place}"].reshape(-1).copy()} | ins | ws)["out"]
        np.testing.assert_array_equal(got, want)
        tried += 1
    assert tried == 3 * (2 + 1 + 1) + (act.kind == "none")  # add over either input, act, scale; in each layout; LRN
    # in CHW (5 channels apart of 3: every output reads channels it or an earlier one overwrote)


# ---- the encoding against evaluate, on random problems with sharing choices ----

def with_sharing(p: Problem, seed: int) -> Problem:
    """random_problem's problem with an in-place choice wherever one is safe, and a gather (its output resized to
    its inputs' sum) on a two-input node whose inputs it alone reads."""
    rng = random.Random(seed)
    nodes, sizes = list(p.nodes), {t: v.bytes for t, v in p.tensors.items()}
    readers = {t: [i for i, n in enumerate(nodes) if t in n.inputs] for t in sizes}
    for i, node in enumerate(nodes):
        extra = []
        distinct = len(set(node.inputs)) == len(node.inputs)
        if len(node.inputs) == 2 and distinct and all(
                t != p.graph_input and readers[t] == [i] for t in node.inputs) and rng.random() < 0.7:
            sizes[node.output] = sum(sizes[t] for t in node.inputs)
            lay = rng.choice(("CHW", "HWC"))
            extra.append(C("gather", lay, lay, 0.25, 0, gathers=True))
        else:
            for k, t in enumerate(node.inputs):
                if t not in (p.graph_input, p.graph_output) and max(readers[t]) == i and t not in node.inputs[:k] \
                        and sizes[node.output] <= sizes[t]:
                    lay = rng.choice(("CHW", "HWC"))
                    extra.append(C(f"inplace{k}", lay, lay, rng.choice([0.5, 1.0]), 0, in_place=k))
        nodes[i] = replace(node, choices=node.choices + tuple(extra))
    return replace(p, nodes=tuple(nodes), tensors={t: ProblemTensor(t, b) for t, b in sizes.items()})


def random_gather_problem(seed: int) -> Problem:
    """x -> t -> a, b (from t or x; b maybe through a view c of t) -> y = concat(a, b) -> out; random choices,
    layouts and sizes; t sometimes read again after the concat (so the gather's slices share the arena with it)."""
    rng = random.Random(seed)
    size = lambda: rng.choice([64, 128, 192])  # noqa: E731

    def choices(n: int = 3) -> tuple[Choice, ...]:
        return tuple(C(f"p{k}", rng.choice(("CHW", "HWC")), rng.choice(("CHW", "HWC")),
                       rng.choice([0.5, 1.0, 1.5]), rng.choice([0, 0, 64])) for k in range(rng.randint(1, n)))

    sizes = {"x": size(), "t": size(), "a": size(), "b": size()}
    b_from = rng.choice(["t", "x", "c"])
    nodes = [ProblemNode("n_t", ("x",), "t", choices()), ProblemNode("n_a", (rng.choice(["t", "x"]),), "a", choices())]
    if b_from == "c":
        sizes["c"] = sizes["t"]
        lay = rng.choice(("CHW", "HWC"))
        nodes.append(ProblemNode("n_c", ("t",), "c", (C("view", lay, lay, 0.0, 0, aliases_input=True),) + choices(1)))
    nodes.append(ProblemNode("n_b", (b_from,), "b", choices()))
    sizes["y"] = sizes["a"] + sizes["b"]
    lay = rng.choice(("CHW", "HWC"))
    nodes.append(ProblemNode("n_y", ("a", "b"), "y", choices(2) + (C("gather", lay, lay, 0.0, 0, gathers=True),)))
    sizes["out"] = sizes["y"]
    nodes.append(ProblemNode("n_out", ("y", "t") if rng.random() < 0.4 else ("y",), "out", choices()))
    transforms = {k: v for k, v in all_transforms(sizes, 0.25).items() if rng.random() < 0.9}
    p = Problem(tuple(nodes), {t: ProblemTensor(t, b) for t, b in sizes.items()}, "x", rng.choice(("CHW", "HWC")),
                "out", rng.choice(("CHW", "HWC")), transforms, alignment=64)
    return with_sharing(p, seed)


SEEDS = [s for s in range(60) if any(c.in_place >= 0 or c.gathers
                                     for n in with_sharing(random_problem(s), s).nodes for c in n.choices)][:10]
PROBLEMS = [with_sharing(random_problem(s), s) for s in SEEDS] + [random_gather_problem(s) for s in range(10)]


@pytest.mark.parametrize("p", PROBLEMS, ids=range(len(PROBLEMS)))
def test_encoding_agrees_with_evaluate_with_sharing(p: Problem) -> None:
    encoding_agrees_with_evaluate(p)  # consistent() checks every plan's regions too


@pytest.mark.parametrize("p", PROBLEMS, ids=range(len(PROBLEMS)))
def test_solver_finds_brute_force_optimum_with_sharing(p: Problem) -> None:
    plans = every_plan(p)
    if not plans:
        return
    fastest = min(q.time_ns for q in plans)
    session = Session(p)
    assert session.solve(None).time_ns == fastest
    assert session.solve(None, "memory").peak_bytes == min(q.peak_bytes for q in plans)


# ---- end to end: real networks, compiled, run, matched against ONNX Runtime ----

def inception_model(path: Path) -> Path:
    """An Inception-style block with a residual: x (8x8x8) -> [1x1 conv 16 | 1x1 conv 8, ReLU, 3x3 conv 16 |
    3x3 max pool, 1x1 conv 8] -> concat (40 channels) -> ReLU -> 1x1 conv 8 -> + x -> ReLU."""
    from onnx import helper

    from tests.e2e import save_onnx

    rng = np.random.default_rng(7)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    weights = {"wa": w(16, 8, 1, 1), "wb1": w(8, 8, 1, 1), "wb2": w(16, 8, 3, 3), "wc": w(8, 8, 1, 1),
               "wp": w(8, 40, 1, 1)}
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="branch_a"),
             helper.make_node("Conv", ["x", "wb1"], ["b1"], name="branch_b1"),
             helper.make_node("Relu", ["b1"], ["b1r"], name="relu_b1"),
             helper.make_node("Conv", ["b1r", "wb2"], ["b"], name="branch_b2", pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["x"], ["c1"], name="pool_c", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c1", "wc"], ["c"], name="branch_c"),
             helper.make_node("Concat", ["a", "b", "c"], ["cat"], name="concat", axis=1),
             helper.make_node("Relu", ["cat"], ["catr"], name="relu_cat"),
             helper.make_node("Conv", ["catr", "wp"], ["p"], name="project"),
             helper.make_node("Add", ["p", "x"], ["s"], name="skip"),
             helper.make_node("Relu", ["s"], ["y"], name="relu_out")]
    return save_onnx(path, nodes, [1, 8, 8, 8], [1, 8, 8, 8], weights)


def _build_and_match(tmp_path: Path, model: Path, tiling: bool, memory: str = "8 MiB", extra: str = "",
                     objective: str = "memory", threads: int = 1) -> dict:
    from tests.e2e import assert_matches, build_and_compile, make_with, run_binary, write_target_spec
    from tests.zoo.reference import random_input, run_onnxruntime

    spec = write_target_spec(tmp_path, model, "host", costs="model", memory=memory,
                             extra=f"tiling = {'true' if tiling else 'false'}\n{extra}")
    spec.write_text(spec.read_text().replace(f'memory = "{memory}"', f'memory = "{memory}"\nobjective = "{objective}"')
                    .replace('[target]\nname = "host"', f'[target]\nname = "host"\nthreads = {threads}'))
    built = build_and_compile(spec)
    x = random_input(model, seed=0)
    ours, _ = run_binary(built.binary, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))
    # in-place calls pass one pointer twice: warning-free and clean under the sanitizers too
    checked = make_with(built.out_dir, ["-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined", "-g"])
    ours, _ = run_binary(checked, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))
    report: dict = built.report
    return report


def _shared(report: dict) -> dict[str, str]:
    return {n["name"]: n["primitive"] for n in report["nodes"]
            if "_inplace" in n["primitive"] or "zerocopy" in n["primitive"]}


@pytest.mark.slow  # two builds, compiles and runs: 60-120 s on a busy 2-core machine
@pytest.mark.parametrize("tiling", [False, True])
def test_inception_block_zero_copy_and_in_place_match_onnxruntime(tmp_path: Path, tiling: bool) -> None:
    report = _build_and_match(tmp_path, inception_model(tmp_path / "inception.onnx"), tiling)
    shared = _shared(report)
    # either gather reaches the bound (CHW slices are blocks, HWC slices strided); the model's costs pick one
    assert shared["concat"] in ("concat_zerocopy_chw", "concat_zerocopy_hwc")
    assert shared["relu_cat"].endswith("_inplace0")
    # x 2 KiB + the 10 KiB concat output (its slices written in place) + one 2 KiB intermediate
    assert report["arena_bytes"] == report["lower_bound_bytes"] == 14_336
    source = (tmp_path / "out" / "src" / "net.c").read_text()
    words = " ".join(source.replace("*", " ").split())  # the comments wrap
    assert "no copy: each input's producer wrote it straight into its channel slice of the output" in words
    assert "in place: the output is written over cat, read by no later layer" in words
    assert "tb_copy_channels" not in source


@pytest.mark.slow  # a build, two compiles and runs: 40-90 s on a busy 2-core machine
def test_layout_transforms_write_into_the_slices(tmp_path: Path) -> None:
    """Every convolution restricted to HWC outputs: the concat's inputs reach CHW by layout transforms, which write
    straight into the slices (the zero-copy concat still copies nothing itself)."""
    import tomllib

    from tasobuild.primitives.registry import library

    names = [p.name for p in library() if (p.op == "conv" and p.layout_out == "HWC") or p.name == "concat_zerocopy_chw"]
    report = _build_and_match(tmp_path, inception_model(tmp_path / "inception.onnx"), tiling=False,
                              extra="primitives = [" + ", ".join(f'"{n}"' for n in names) + "]\n")
    assert _shared(report)["concat"] == "concat_zerocopy_chw"
    transforms = tomllib.loads((tmp_path / "taso.lock").read_text())["transform"]
    assert {(t["tensor"], t["from"], t["to"]) for t in transforms if t["step"] == 5} == {
        ("a", "HWC", "CHW"), ("b", "HWC", "CHW"), ("c", "HWC", "CHW")}
    # the lock alone, with an empty cost cache, rebuilds the same tree (the slices' offsets included)
    frozen = subprocess.run([sys.executable, "-m", "tasobuild", "build", "-c", str(tmp_path / "taso.toml"), "--frozen",
                             "--json"], capture_output=True, text=True, check=True,
                            env={**os.environ, "TASOBUILD_CACHE_DIR": str(tmp_path / "empty-cache")})
    assert json.loads(frozen.stdout)["files"]["written"] == []


@pytest.mark.slow  # a build, two compiles and runs of ResNet-8 per case: 60-150 s on a busy 2-core machine
@pytest.mark.parametrize("tiling", [False, True])
def test_resnet8_residual_adds_in_place_match_onnxruntime(tmp_path: Path, tiling: bool) -> None:
    from tasobuild.primitives.registry import library
    from tests.zoo import ensure_model

    # The adds are not at the peak, so the smallest plan runs them in place only if that is faster: the allow-list
    # makes every add run in place, to run those kernels in a real network.
    in_place = sorted(p.name for p in library() if p.op == "add" and p.in_place >= 0)
    report = _build_and_match(tmp_path, ensure_model("resnet8_tf"), tiling,
                              extra="primitives = [" + ", ".join(f'"{n}"' for n in in_place) + "]\n")
    adds = [n for n in report["nodes"] if n["op"] == "add"]
    assert len(adds) == 3 and all(n["primitive"] in in_place for n in adds)
    # untiled, the peak is a convolution's (its input, its output and the skip's tensor, 64 KiB each): TFLM's arena;
    # tiled, which groups fuse depends on the members' fastest primitives (the costs in the session's cache), and the
    # smallest plan is never above the untiled one
    assert report["arena_bytes"] == report["lower_bound_bytes"]
    assert report["arena_bytes"] == 196_608 if not tiling else report["arena_bytes"] <= 196_608


@pytest.mark.slow  # a build, two compiles and runs: 30-60 s on a busy 2-core machine
def test_lrn_in_place_matches_onnxruntime(tmp_path: Path) -> None:
    """x 8x8x8 -> 1x1 conv to 16 -> LRN (size 5) -> 1x1 conv to 8. In planes of 8x8 floats (256 B): the convolutions
    hold 8 + 16 and 16 + 8; the LRN its input and output, 32, or in place 16 + its workspace (2 saved channels and
    the accumulation plane) 19. The smallest plan runs it in place: 24 planes, 6,144 bytes."""
    from onnx import helper

    from tests.e2e import save_onnx

    rng = np.random.default_rng(3)
    weights = {"w1": (rng.standard_normal((16, 8, 1, 1)) / 3).astype(np.float32),
               "w2": (rng.standard_normal((8, 16, 1, 1)) / 4).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="expand"),
             helper.make_node("LRN", ["a"], ["n"], name="norm", size=5, alpha=0.2, beta=0.75, bias=1.5),
             helper.make_node("Conv", ["n", "w2"], ["y"], name="project")]
    model = save_onnx(tmp_path / "lrn.onnx", nodes, [1, 8, 8, 8], [1, 8, 8, 8], weights)
    report = _build_and_match(tmp_path, model, tiling=False)
    assert _shared(report) == {"norm": "lrn_direct_chw_inplace0"}
    assert report["arena_bytes"] == report["lower_bound_bytes"] == 24 * 256
    words = " ".join((tmp_path / "out" / "src" / "net.c").read_text().replace("*", " ").split())
    assert "in place: the output is written over a, read by no later layer" in words


# ---- zero-copy concat in HWC: producers write their channel slice with an output pixel stride ----

def concat_pool_model(path: Path, side: int = 6, width_a: int = 16) -> Path:
    """x (16 x side x side) -> [1x1 conv width_a, ReLU | 3x3 conv 16 | 3x3 max pool] -> concat (width_a + 32
    channels) -> 1x1 conv 16; a branch_a not 16 channels wide goes last in the concat, where its slice starts
    aligned."""
    from onnx import helper

    from tests.e2e import save_onnx

    rng = np.random.default_rng(3)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    weights = {"wa": w(width_a, 16, 1, 1), "wb": w(16, 16, 3, 3), "wp": w(16, width_a + 32, 1, 1)}
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a0"], name="branch_a"),
             helper.make_node("Relu", ["a0"], ["a"], name="relu_a"),
             helper.make_node("Conv", ["x", "wb"], ["b"], name="branch_b", pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["x"], ["c"], name="pool_c", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["a", "b", "c"] if width_a == 16 else ["b", "c", "a"], ["cat"], name="concat",
                              axis=1),
             helper.make_node("Conv", ["cat", "wp"], ["y"], name="project")]
    return save_onnx(path, nodes, [1, 16, side, side], [1, 16, side, side], weights)


HWC_ONLY = ("conv_1x1_gemm_hwc", "conv_im2row_gemm_hwc", "maxpool_direct_hwc", "concat_copy_hwc",
            "concat_zerocopy_hwc", "conv_1x1_gemm_hwc_strided", "conv_im2row_gemm_hwc_strided",
            "maxpool_direct_hwc_strided")


def test_hwc_strided_calls_hand_checked() -> None:
    """The strided variants' calls: out_ps = the concat's 48 channels, `out` from the slice's first channel to its
    last pixel's last channel ((36 - 1) * 48 + 16 floats); the gather's slices at channels 0, 16, 32 (bytes 0, 64,
    128), each 36 runs of 64 bytes every 192."""
    import tempfile

    from tasobuild.decide import interleave
    from tasobuild.importer import import_onnx
    from tasobuild.primitives.registry import library
    from tasobuild.solve.problem import slice_extent, slice_offsets
    with tempfile.TemporaryDirectory() as d:
        graph = import_onnx(concat_pool_model(Path(d) / "m.onnx"))
    prims = {p.name: p for p in library()}
    node = {n.name: n for n in graph.nodes}
    (conv,) = prims["conv_1x1_gemm_hwc_strided"].call(node["branch_a"], graph)
    (dense,) = prims["conv_1x1_gemm_hwc"].call(node["branch_a"], graph)
    assert conv.params == dense.params + (("out_ps", 48),) and conv.function == dense.function
    assert dict(conv.buffer_bytes)["out"] == (35 * 48 + 16) * 4
    (pool,) = prims["maxpool_direct_hwc_strided"].call(node["pool_c"], graph)
    assert dict(pool.params)["out_ps"] == 48 and dict(pool.buffer_bytes)["out"] == (35 * 48 + 16) * 4
    assert prims["concat_zerocopy_hwc"].applies(node["concat"], graph)
    assert not prims["conv_1x1_gemm_hwc_strided"].applies(node["project"], graph)  # no concat reads it
    assert interleave(node["concat"], graph, prims["concat_zerocopy_hwc"]) == 36
    assert interleave(node["concat"], graph, prims["concat_zerocopy_chw"]) == 0
    made = [ProblemNode(f"n{t}", ("x",), t, (C("conv", "HWC", "HWC", 1.0, 0, strided_out=True),)) for t in "abc"]
    p = _problem(made + [ProblemNode("cat", ("a", "b", "c"), "y", (C("concat", "HWC", "HWC", 0.0, 0, gathers=True,
                                                                     interleave=36),))],
                 {"x": 64, "a": 36 * 64, "b": 36 * 64, "c": 36 * 64, "y": 36 * 192}, "y")
    assert slice_offsets(p, p.nodes[3], 36) == (0, 64, 128)
    assert slice_extent(p, p.nodes[3], "b", 36) == (35 * 192 + 64, 64, 192)


def test_strided_slices_in_the_overlap_checker() -> None:
    """Two interleaved slices live at once share no bytes when their runs are disjoint within the stride; runs
    that meet in a pixel are an overlap."""
    buffers = [Buffer("y", 4 * 192, 0, 3)]
    arena = ArenaPlan((("y", 0),), 4 * 192, 64)
    a = Region("a", "y", 0, 3 * 192 + 64, 0, 2, "slice", run=64, stride=192)
    b = Region("b", "y", 64, 3 * 192 + 128, 1, 2, "slice", run=128, stride=192)
    owner = Region("y", "y", 0, 4 * 192, 2, 3, "owner")
    check_no_overlap(buffers, arena, [a, b, owner])
    wide = replace(a, run=128, size=3 * 192 + 128)
    with pytest.raises(OverlapError, match="share bytes"):
        check_no_overlap(buffers, arena, [wide, b, owner])


def test_hwc_gather_needs_strided_producers() -> None:
    """The solver takes the HWC gather only with both producers strided, and a strided producer only with it;
    evaluate refuses the mixes."""
    def node(name: str, out: str) -> ProblemNode:
        return ProblemNode(name, ("x",), out, (C("conv", "HWC", "HWC", 1.0, 0),
                                               C("conv_strided", "HWC", "HWC", 1.6, 0, strided_out=True)))
    gather = C("zc", "HWC", "HWC", 0.0, 0, gathers=True, interleave=4)
    p = Problem((node("conv_a", "a"), node("conv_b", "b"),
                 ProblemNode("cat", ("a", "b"), "y", (C("copy", "HWC", "HWC", 1.0, 0), gather)),
                 ProblemNode("proj", ("y",), "z", (C("conv", "HWC", "HWC", 1.0, 0),))),
                {t: ProblemTensor(t, b) for t, b in {"x": 1024, "a": 1024, "b": 1024, "y": 2048,
                                                     "z": 256}.items()},
                "x", "HWC", "z", "HWC", {}, alignment=64)
    plain, strided = p.nodes[0].choices
    with pytest.raises(ValueError, match="stride"):
        evaluate(p, [plain, p.nodes[1].choices[1], gather, p.nodes[3].choices[0]])
    with pytest.raises(ValueError, match="no gather"):
        evaluate(p, [strided, p.nodes[1].choices[1], p.nodes[2].choices[0], p.nodes[3].choices[0]])
    memory = Session(p).solve(None, "memory")
    assert memory.choice("cat").gathers and memory.choice("conv_a").strided_out
    assert memory.choice("conv_b").strided_out
    # a: runs of 256 bytes at 0, b at 256, every 512 bytes
    assert [(r.name, r.offset, r.size, r.run, r.stride) for r in memory.regions if r.kind == "slice"] == [
        ("a:HWC", 0, 3 * 512 + 256, 256, 512), ("b:HWC", 256, 3 * 512 + 256, 256, 512)]
    fast = Session(p).solve(None, "latency")  # the strided convs are slower than the copy saves
    assert not fast.choice("cat").gathers and not fast.choice("conv_a").strided_out
    assert not greedy(p).choice("cat").gathers  # the baseline copies
    only_gather = replace(p, nodes=(*p.nodes[:2], replace(p.nodes[2], choices=(gather,)), p.nodes[3]))
    baseline = greedy(only_gather)  # an allow-list left the gather alone: its producers write strided
    assert baseline.choice("conv_a").strided_out and baseline.choice("conv_b").strided_out


@pytest.mark.slow  # a build, two compiles and runs: 30-60 s on a busy 2-core machine
@pytest.mark.parametrize("threads", [1, 2])
def test_hwc_zero_copy_concat_of_convs_and_a_pool_matches_onnxruntime(tmp_path: Path, threads: int) -> None:
    """On two threads the strided calls are split by rows (convs: row views; the pool: its parts' buffers offset
    by whole rows of the concat's pixels)."""
    names = ", ".join(f'"{n}"' for n in HWC_ONLY)
    side = 6 if threads == 1 else 64  # big enough that splitting pays
    report = _build_and_match(tmp_path, concat_pool_model(tmp_path / "m.onnx", side), tiling=False,
                              objective="latency", extra=f"primitives = [{names}]\n", threads=threads)
    primitive = {n["name"]: n["primitive"].split("@")[0] for n in report["nodes"]}
    assert primitive["concat"] == "concat_zerocopy_hwc"
    assert {primitive[k] for k in ("branch_a", "branch_b", "pool_c")} == {
        "conv_1x1_gemm_hwc_strided", "conv_im2row_gemm_hwc_strided", "maxpool_direct_hwc_strided"}
    source = (tmp_path / "out" / "src" / "net.c").read_text()
    assert "tb_copy_channels" not in source and source.count(".out_ps = 48") >= 3
    if threads == 2:
        assert sum(n["primitive"].endswith("@2") for n in report["nodes"]) >= 2


# The GEMM-backed HWC convolutions and their strided variants, the HWC concats: every conv and concat in HWC, so
# each concat of these networks can gather once its producers write strided.
HWC_BIG = ("conv_1x1_gemm_hwc", "conv_im2row_scan_hwc", "conv_im2row_gemm_hwc", "conv_im2row_gemm_chw_to_hwc",
           "concat_copy_hwc", "concat_zerocopy_hwc", "conv_1x1_gemm_hwc_strided", "conv_im2row_scan_hwc_strided",
           "conv_im2row_gemm_hwc_strided", "maxpool_direct_hwc", "maxpool_direct_hwc_strided",
           "conv_winograd_f4x4_3x3_hwc", "conv_winograd_f4x4_3x3_hwc_strided", "conv_direct_blocked_hwc",
           "conv_direct_blocked_hwc_strided")


@pytest.mark.slow  # a build, a compile and a run of a big network: 60-200 s on a busy 2-core machine
@pytest.mark.parametrize(("name", "concats"), [("squeezenet11", 8), ("googlenet", 9)])
def test_big_networks_gather_every_hwc_concat_and_match_onnxruntime(tmp_path: Path, name: str,
                                                                      concats: int) -> None:
    from tests.e2e import assert_matches, build_and_compile, run_binary, write_target_spec
    from tests.zoo import ensure_model
    from tests.zoo.reference import random_input, run_onnxruntime

    model = ensure_model(name)
    # no copying concat on offer: every concat gathers (the costs alone take a gather only where it is faster)
    names = ", ".join(f'"{n}"' for n in HWC_BIG if n != "concat_copy_hwc")
    spec = write_target_spec(tmp_path, model, "host", costs="model", extra=f"tiling = false\nprimitives = [{names}]\n")
    built = build_and_compile(spec)
    x = random_input(model, seed=0)
    ours, _ = run_binary(built.binary, x, tmp_path)
    assert_matches(ours, run_onnxruntime(model, x))
    primitive = [n["primitive"] for n in built.report["nodes"]]
    assert primitive.count("concat_zerocopy_hwc") == concats and "concat_copy_hwc" not in primitive
    source = (built.out_dir / "src" / "net.c").read_text()
    assert "tb_copy_channels" not in source


def test_strided_kernels_write_exactly_their_slice() -> None:
    """Every strided primitive, on the hand-made network's branches (slices at channels 0, 16 and 32 of 48), gives
    the dense primitive's values at p * 48 + j (j < 16) and writes nothing between them (the guard's NaN canaries
    stay); a conv's two row views (rows 0-2, 2-6; Winograd's at its tile height) on the same buffer, and the call
    split for two threads, write the same bits as the whole call."""
    import tempfile

    from tasobuild.importer import import_onnx
    from tasobuild.primitives.parallel import buffer_bytes as parallel_buffer_bytes
    from tasobuild.primitives.parallel import parallel_call
    from tasobuild.primitives.registry import library
    from tasobuild.primitives.transforms import to_layout
    from tests.guard import CANARY_BITS, guarded_kernels, run_guarded

    with tempfile.TemporaryDirectory() as d:
        graph = import_onnx(concat_pool_model(Path(d) / "m.onnx"))
    by_name = {p.name: p for p in library()}
    x = np.random.default_rng(5).uniform(-1, 1, (16, 6, 6)).astype(np.float32)
    tried = set()
    for prim in (p for p in library() if p.strided_out):
        for node in (n for n in graph.nodes if prim.applies(n, graph)):
            dense = by_name[prim.name.removesuffix("_strided")]
            buffers = {"in0": to_layout(x, prim.layout_in)} | {
                f"w{k}": w for k, w in enumerate(prim.weights(node, graph))}
            want = run_guarded(guarded_kernels(), dense.call(node, graph), buffers)["out"].reshape(36, 16)
            (call,) = prim.call(node, graph)
            got = run_guarded(guarded_kernels(), call, buffers)["out"]
            span = np.full(36 * 48, np.nan, np.float32)
            span[:got.size] = got
            pixels = span.reshape(36, 48)
            np.testing.assert_array_equal(pixels[:, :16], want)
            assert (pixels[:, 16:].view(np.uint32)[:-1] == CANARY_BITS).all()  # the last pixel ends the span
            if call.struct == "tb_conv":  # Winograd's views split on its m-row tiles (as threads split it)
                cut = int(prim.name.split("winograd_f")[1][0]) if "winograd" in prim.name else 2
                views = tuple(replace(call, params=tuple((k, {"oh_begin": a, "oh_end": b}.get(k, v))
                                                         for k, v in call.params)) for a, b in ((0, cut), (cut, 6)))
                np.testing.assert_array_equal(run_guarded(guarded_kernels(), views, buffers)["out"], got)
            split = parallel_call(call, 2)  # two threads' parts (row views; the pool's parts offset by out_ps)
            assert split is not None, prim.name
            sizes = parallel_buffer_bytes(split)
            on_threads = {"out": np.full(sizes["out"] // 4, np.nan, np.float32)} | (
                {"ws": np.zeros(sizes["ws"] // 4, np.float32)} if "ws" in sizes else {})
            guarded_kernels().run(split, buffers | on_threads)
            np.testing.assert_array_equal(on_threads["out"], got)
            tried.add((prim.name, node.name))
    # 1x1, im2row, kn2col (two) and blocked direct (three) on branch_a; im2row, kn2col, Winograd 3x3 (f2, f3, f4)
    # and blocked direct on branch_b; the pool
    assert {n for _, n in tried} == {"branch_a", "branch_b", "pool_c"} and len(tried) == 12 + 14 + 1


@pytest.mark.parametrize("width", [8, 24])
def test_strided_blocked_channel_pairs(width: int) -> None:
    """The blocked direct kernel's channel-pair panels (8 or 24 channels wide, AVX-512) store at the pixel stride too:
    branch_a's width channels, the last of the width + 32 concat, hold the dense call's values and nothing else is
    written (a slice 8 or 24 channels wide can only be last: the next would start unaligned)."""
    import tempfile

    from tasobuild.importer import import_onnx
    from tasobuild.primitives.registry import library
    from tasobuild.primitives.transforms import to_layout
    from tests.guard import CANARY_BITS, guarded_kernels, run_guarded

    with tempfile.TemporaryDirectory() as d:
        graph = import_onnx(concat_pool_model(Path(d) / "m.onnx", width_a=width))
    node = next(n for n in graph.nodes if n.name == "branch_a")
    by_name = {p.name: p for p in library()}
    x = np.random.default_rng(7).uniform(-1, 1, (16, 6, 6)).astype(np.float32)
    tried = 0
    for prim in (p for p in library() if p.strided_out and "direct_blocked" in p.name and p.applies(node, graph)):
        buffers = {"in0": to_layout(x, prim.layout_in)} | {f"w{k}": w for k, w in enumerate(prim.weights(node, graph))}
        want = run_guarded(guarded_kernels(), by_name[prim.name.removesuffix("_strided")].call(node, graph),
                           buffers)["out"].reshape(36, width)
        (call,) = prim.call(node, graph)
        assert dict(call.params)["out_ps"] == width + 32
        got = run_guarded(guarded_kernels(), call, buffers)["out"]
        pixels = np.concatenate([got, np.full(36 * (width + 32) - got.size, np.nan, np.float32)]).reshape(36, -1)
        np.testing.assert_array_equal(pixels[:, :width], want)
        assert (pixels[:, width:].view(np.uint32)[:-1] == CANARY_BITS).all()
        tried += 1
    assert tried >= 1


@pytest.mark.slow  # a build, two compiles and runs of SqueezeNet: 60-200 s on a busy 2-core machine
def test_squeezenet_tiled_with_hwc_gathers_matches_onnxruntime(tmp_path: Path) -> None:
    """Fused tiling beside the HWC gathers (memory objective): the row groups read gathered concat outputs as any
    buffer; a concat whose producer runs in a group copies."""
    from tests.zoo import ensure_model

    names = ", ".join(f'"{n}"' for n in HWC_BIG)
    report = _build_and_match(tmp_path, ensure_model("squeezenet11"), tiling=True, memory="2 MiB",
                              extra=f"primitives = [{names}]\n")
    assert any(n["primitive"] == "concat_zerocopy_hwc" for n in report["nodes"])
    assert any(n["tiling"] for n in report["nodes"])
