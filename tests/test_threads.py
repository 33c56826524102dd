"""Multi-threaded plans (issue 19): calls split over the emitted thread pool, convs by output rows (short maps by
output channels), HWC/HCW pooling by output rows, element-wise and fully connected calls, concat copies, CHW pooling
and LRN, global average pooling and layout transforms into slices or through split wrappers.

* The split of a call, exactly: rows or items per part, workspace slices, buffer offsets and the arena, on
  hand-checked cases; a split call's predicted cost from its whole call's.
* The kernels through the bindings: every conv primitive's split call, its parts run on their workspace slices,
  and every sliced and pooling kernel's, equal the one-thread call bit for bit; the parallel bench entry times
  them on the real thread pool.
* The thread pool itself (tb_threads.c) under a stress run: many steps, start/stop cycles, two runs at once.
* DS-CNN and ResNet-8 with threads=2, compiled, run, matched with ONNX Runtime and bit-identical to the one-thread
  plan's output; DS-CNN for the Cortex-A53 with 4 threads under qemu-aarch64 likewise.
* The settings: [target] threads, "auto", --threads, refusals (more than the target's cores, a microcontroller),
  the lock's [plan] threads.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tasobuild.costs.cache import Cost
from tasobuild.costs.stage import Costed
from tasobuild.memory import ARENA_ALIGN
from tasobuild.primitives import KernelCall
from tasobuild.primitives.parallel import (
    CHANNEL_VIEWS,
    buffer_bytes,
    by_channels,
    largest_share,
    parallel_call,
    part_call,
    part_offsets,
    row_bounds,
    whole_call,
    workspace_bytes,
    workspace_stride_bytes,
)
from tasobuild.resources import kernels_dir
from tests.e2e import assert_matches, make_with, save_onnx, tasobuild, write_spec, write_target_spec
from tests.zoo import ensure_model

HAS_A53 = shutil.which("aarch64-linux-gnu-gcc") is not None and shutil.which("qemu-aarch64") is not None


def small_conv_model(path: Path) -> Path:
    """x (3x7x5) -> 3x3 conv to 8 channels, pad 1 (out 8x7x5) -> ReLU."""
    from onnx import helper

    rng = np.random.default_rng(5)
    weights = {"w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
               "b": rng.standard_normal(8).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    return save_onnx(path, nodes, [1, 3, 7, 5], [1, 8, 7, 5], weights)


def conv_calls(model: Path) -> dict[str, KernelCall]:
    """Primitive name -> its one call, for the model's one conv node."""
    from tasobuild.candidates import node_candidates
    from tasobuild.importer import import_onnx

    graph = import_onnx(model)
    (conv,) = [nc for nc in node_candidates(graph) if nc.node.op == "conv"]
    return {c.primitive.name: c.calls[0] for c in conv.options}


def test_a_call_splits_into_row_views_with_a_workspace_slice_each(tmp_path: Path) -> None:
    calls = conv_calls(small_conv_model(tmp_path / "conv.onnx"))
    im2col = calls["conv_im2col_gemm_chw"]
    # im2col's workspace: cg*k_h*k_w * ceil(out_h*out_w / NR)*NR floats = 27 * 48 floats = 5184 bytes
    assert dict(im2col.buffer_bytes)["ws"] == 27 * 48 * 4 == 5184
    two = parallel_call(im2col, 2)
    assert two is not None and two.parts == 2 and two.key() == im2col.key() + "@2"
    assert row_bounds(two) == (0, 3, 7)  # the caller's part 0 is the smaller one
    assert workspace_stride_bytes(two) == 5184 == 81 * ARENA_ALIGN  # already aligned: slices back to back
    assert workspace_bytes(two) == 2 * 5184
    assert buffer_bytes(two)["ws"] == 10368 and dict(two.buffer_bytes)["ws"] == 5184  # the call's own: one part's
    assert largest_share(two) == pytest.approx(4 / 7)
    parts = [dict(part_call(two, k).params) for k in range(2)]
    assert [(p["oh_begin"], p["oh_end"]) for p in parts] == [(0, 3), (3, 7)]
    assert whole_call(two) == im2col and whole_call(two).key() == im2col.key()
    winograd = parallel_call(calls["conv_winograd_f4x4_3x3_chw"], 2)  # 7 rows: tiles of rows 0-4 and 4-7
    assert winograd is not None and row_bounds(winograd) == (0, 4, 7)
    assert largest_share(winograd) == pytest.approx(1 / 2)  # a tile costs the same, full or not
    four = parallel_call(im2col, 4)
    assert four is not None and row_bounds(four) == (0, 1, 3, 5, 7)
    assert workspace_bytes(four) == 4 * 5184
    # im2row's workspace: ceil(out_h*out_w / MR)*MR * k_h*k_w*cg floats = 36 * 27 floats = 3888 bytes, not a
    # multiple of 64: every slice but the last is padded to 3904 so the next starts aligned
    im2row = parallel_call(calls["conv_im2row_gemm_hwc"], 2)
    assert im2row is not None and dict(im2row.buffer_bytes)["ws"] == 36 * 27 * 4 == 3888
    assert workspace_stride_bytes(im2row) == 3904 and workspace_bytes(im2row) == 3904 + 3888
    # seven rows give at most seven parts; a view (fused tiling's band) and other kernels are never split
    eight = parallel_call(im2col, 8)
    assert eight is not None and eight.parts == 7 and row_bounds(eight) == tuple(range(8))
    assert parallel_call(im2col, 1) is None
    band = replace(im2col, params=tuple((k, 2 if k == "oh_end" else v) for k, v in im2col.params))
    assert parallel_call(band, 2) is None
    # Winograd F(3x3): parts start on its 3-row tiles, so seven rows make at most three parts
    winograd = calls["conv_winograd_f3x3_3x3_chw"]
    assert [row_bounds(parallel_call(winograd, n)) for n in (2, 3, 8)] == [(0, 3, 7), (0, 3, 6, 7), (0, 3, 6, 7)]
    direct = parallel_call(calls["conv_direct_chw"], 2)
    assert direct is not None and workspace_bytes(direct) == 0 and "ws" not in buffer_bytes(direct)


def test_a_split_call_is_predicted_from_its_measured_whole_call_and_contests_it(tmp_path: Path) -> None:
    from tasobuild.costs.stage import AutoPolicy, choose_measurements, split_factor, split_from_whole

    calls = conv_calls(small_conv_model(tmp_path / "conv.onnx"))
    whole, other = calls["conv_im2col_gemm_chw"], calls["conv_direct_chw"]
    two, other_two = parallel_call(whole, 2), parallel_call(other, 2)
    assert two is not None and other_two is not None
    # the whole call measured at 1.4 ms: the split one is its largest part (4 of 7 rows) plus 5 us, times the factor
    known = {whole.key(): Cost(1.4, 0.07, 50, "measured")}
    (cost,) = split_from_whole([two], known, 1.0).values()
    assert cost.median_ms == pytest.approx(1.4 * 4 / 7 + 0.005) and cost.spread_ms == pytest.approx(0.04)
    assert cost.source == "predicted"
    assert split_from_whole([two], known, 2.0)[two.key()].median_ms == pytest.approx(2 * (0.8 + 0.005))
    assert split_from_whole([two], {}, 1.0) == {} == split_from_whole([whole], known, 1.0)
    # the factor: the median of measured split / (largest part + 5 us); none measured: 1
    assert split_factor([whole, two], known) == 1.0
    known[two.key()] = Cost(1.2 * (0.8 + 0.005), 0.01, 50, "measured")
    known[other.key()] = Cost(0.7, 0.01, 50, "measured")
    known[other_two.key()] = Cost(1.4 * (0.4 + 0.005), 0.01, 50, "measured")
    assert split_factor([whole, two, other, other_two], known) == pytest.approx(1.3)
    # one primitive on one thread and split over two are alternatives: "auto" measures them when they are close
    costs = {whole.key(): Cost(1.0, 0.5, 0, "predicted"), two.key(): Cost(0.6, 0.3, 0, "predicted")}
    assert [c.key() for c in choose_measurements([whole, two], costs, AutoPolicy(fraction=1.0))] == \
        sorted([whole.key(), two.key()])


def test_split_candidates_and_the_arena_on_two_threads(tmp_path: Path) -> None:
    """The plan on two threads of the one-conv model: the split candidate's workspace is what the arena holds."""
    from tasobuild.pipeline import load, plan, program_of, render

    model = small_conv_model(tmp_path / "conv.onnx")
    spec = write_spec(tmp_path, model, extra='primitives = ["conv_im2col_gemm_chw"]\n')
    spec.write_text(spec.read_text().replace('costs = "profile"', 'costs = "model"')
                    .replace('name = "host"', 'name = "host"\nthreads = 2'))
    inputs = load(spec)
    planned = plan(inputs, PreferSplit(inputs.spec, inputs.target))
    (conv,) = [nc for nc in planned.nodes if nc.node.op == "conv"]
    assert [(c.primitive.name, c.parts, c.workspace_bytes) for c in conv.options] == [
        ("conv_im2col_gemm_chw", 1, 5184), ("conv_im2col_gemm_chw@2", 2, 10368)]
    choice = planned.decision.plan.choice(conv.node.name)
    assert (choice.primitive, choice.workspace_bytes) == ("conv_im2col_gemm_chw@2", 10368)
    # input 3*7*5 floats (420 B) and output 8*7*5 (1120 B) live with the workspace during the conv: 420 + 1120 +
    # 10368 bytes, each buffer's offset 64-byte aligned (420 B take 448, 1120 B take 1152)
    assert planned.decision.arena.arena_bytes == 448 + 1152 + 10368
    # the emitted C: the pool, the part function with its rows and its workspace slice, the run's parallel step
    source = render(program_of(planned))["src/net.c"].decode()
    offsets = planned.decision.arena.offset_map()
    ws = offsets[f"{conv.node.name}:workspace"] // 4
    assert "static tb_workers workers = TB_WORKERS_INIT(2);" in source
    assert "static const int rows[3] = {0, 3, 7};" in source
    x = offsets[planned.decision.plan.buffer_of(inputs.graph.input, "CHW")] // 4
    assert f"tb_conv_im2col_gemm_chw(&view, A + {x}," in source
    assert f"A + {ws} + part * 1296);" in source  # 5184 bytes = 1296 floats a slice
    assert source.count("tb_workers_run(&workers, part0, arena, 2);") == 1
    # the run holds its pool from its first step to its last, once each
    run = source[source.index("int net_run(void *arena)"):source.index("int net_infer(")]
    hold, release = run.index("tb_workers_hold(&workers, 1);"), run.index("tb_workers_hold(&workers, 0);")
    assert hold < run.index("tb_workers_run(") < release and run.count("tb_workers_hold(") == 2


def test_every_conv_primitives_split_call_is_bit_identical_and_times_on_the_pool(tmp_path: Path) -> None:
    from tasobuild import native
    from tasobuild.costs.profile import make_buffers

    kernels = native.load()
    calls = conv_calls(small_conv_model(tmp_path / "conv.onnx"))
    assert len(calls) >= 8  # every conv family that applies to a 3x3 conv
    for name, call in sorted(calls.items()):
        for threads in (2, 3, 7):
            split = parallel_call(call, threads)
            assert split is not None, name
            whole = make_buffers(call, seed=1)
            parts = make_buffers(split, seed=1)
            for role in ("in0", "w0", "w1"):
                parts[role] = whole[role]
            kernels.run(call, whole)
            kernels.run(split, parts)  # the parts one after another, each on its workspace slice
            assert whole["out"].tobytes() == parts["out"].tobytes(), (name, threads)
        seconds = kernels.bench(parallel_call(call, 2), make_buffers(parallel_call(call, 2)), 1, 3)
        assert seconds.shape == (3,) and (seconds > 0).all(), name


def seven_row_calls() -> list[KernelCall]:
    """Convs onto a 7x7 map (whose rows split 3/4 on 2 threads) by every kernel with channel views: 3x3 and 1x1
    blocked direct ones from 24 channels in each input layout, with ReLU and with sigmoid (applied after the stores),
    and 1x1 GEMM ones; 128 output channels (four 32-channel panels) and 200 (a narrower last panel)."""
    from tasobuild.candidates import node_candidates
    from tasobuild.ir import Activation
    from tests.test_conv_primitives import Case, conv_graph

    calls = []
    for k, pads, out_c, act in (((3, 3), (1, 1, 1, 1), 128, Activation("relu")),
                                ((1, 1), (0, 0, 0, 0), 200, Activation("sigmoid")),
                                ((1, 1), (0, 0, 0, 0), 128, Activation("none"))):
        _, graph, _ = conv_graph(Case(24, 7, 7, out_c, k, pads=pads, act=act))
        (conv,) = node_candidates(graph)
        calls += [c.calls[0] for c in conv.options if c.calls[0].function in CHANNEL_VIEWS]
    return calls


def test_short_maps_split_by_output_channels_bit_for_bit() -> None:
    calls = seven_row_calls()
    assert {c.function for c in calls} | {c.function for c in thirteen_row_winograd_calls()} == set(CHANNEL_VIEWS)
    wide = next(c for c in calls if c.function == "tb_conv_1x1_gemm_hwc" and dict(c.params)["out_c"] == 200)
    two = parallel_call(wide, 2)
    assert two is not None and by_channels(two) and row_bounds(two) == (0, 96, 200)  # 3 and 4 of 7 panels
    assert dict(part_call(two, 1).params)["oc_begin"] == 96 and dict(part_call(two, 1).params)["oc_end"] == 200
    assert dict(part_call(two, 1).params)["oh_end"] == 7 and largest_share(two) == pytest.approx(104 / 200)
    three = parallel_call(replace(wide, params=tuple((k, 128 if k in ("out_c", "oc_end") else v)
                                                     for k, v in wide.params)), 3)
    assert three is not None and not by_channels(three)  # 2/2/3 rows (share 3/7) beat 32/32/64 channels (1/2)
    assert_channel_parts_bit_for_bit(calls)


def assert_channel_parts_bit_for_bit(calls: list[KernelCall]) -> None:
    """Each call split on 2 threads by output channels (and on 4, however it splits), its parts run one after
    another, gives the whole call's output bit for bit."""
    from tasobuild import native
    from tasobuild.costs.profile import make_buffers

    kernels = native.load()
    for call in calls:
        for threads in (2, 4):
            split = parallel_call(call, threads)
            assert split is not None and (by_channels(split) or threads == 4), (call.function, threads)
            whole, parts = make_buffers(call, seed=4), make_buffers(split, seed=4)
            for role in ("in0", "w0", "w1"):
                parts[role] = whole[role]
            kernels.run(call, whole)
            kernels.run(split, parts)  # the parts one after another, each on its workspace slice
            assert whole["out"].tobytes() == parts["out"].tobytes(), (call.function, call.params, threads)


def thirteen_row_winograd_calls() -> list[KernelCall]:
    """SqueezeNet's last expand 3x3 (64 -> 256 channels on a 13x13 map, ReLU) by every HWC Winograd kernel: its
    rows split 2/3 tile rows (F(3x3)) on 2 threads, its channels 128/128."""
    from tasobuild.candidates import node_candidates
    from tasobuild.ir import Activation
    from tests.test_conv_primitives import Case, conv_graph

    _, graph, _ = conv_graph(Case(64, 13, 13, 256, (3, 3), pads=(1, 1, 1, 1), act=Activation("relu")))
    (conv,) = node_candidates(graph)
    return [c.calls[0] for c in conv.options
            if c.calls[0].function.startswith("tb_conv_winograd") and c.calls[0].function in CHANNEL_VIEWS]


def test_winograd_splits_by_output_channels_on_13_rows_bit_for_bit() -> None:
    calls = thirteen_row_winograd_calls()
    assert len(calls) == 6  # F(2x2), F(3x3), F(4x4), each with its low-memory twin
    f3 = parallel_call(next(c for c in calls if c.function == "tb_conv_winograd_f3x3_3x3_hwc"), 2)
    assert f3 is not None and by_channels(f3) and row_bounds(f3) == (0, 128, 256)
    assert dict(part_call(f3, 1).params)["oc_begin"] == 128 and largest_share(f3) == pytest.approx(1 / 2)
    assert_channel_parts_bit_for_bit(calls)


def sliced_calls() -> dict[str, KernelCall]:
    """An element-wise call of each sliced kernel on 1000 floats (not a multiple of the 64-item quantum: the last
    part has the vector loops' tails) and a fully connected layer of 96 inputs and 1000 outputs (62 whole panels of
    16 and a narrower one)."""
    act = (("act", 4), ("act_a", 0.0), ("act_b", 0.0))  # sigmoid: expf per element
    n, k = 1000, 96
    flat = (("n", n),) + act
    return {
        "tb_add": KernelCall("tb_add", "tb_flat", flat, ("in0", "in1", "out"),
                             (("in0", 4 * n), ("in1", 4 * n), ("out", 4 * n))),
        "tb_add_inplace": KernelCall("tb_add_inplace", "tb_flat", flat, ("out", "in1"),
                                     (("out", 4 * n), ("in1", 4 * n))),
        "tb_act": KernelCall("tb_act", "tb_flat", flat, ("in0", "out"), (("in0", 4 * n), ("out", 4 * n))),
        "tb_act_inplace": KernelCall("tb_act_inplace", "tb_flat", flat, ("out",), (("out", 4 * n),)),
        "tb_fc_gemv": KernelCall("tb_fc_gemv", "tb_fc", (("in_n", k), ("out_n", n)) + act, ("in0", "w0", "w1", "out"),
                                 (("in0", 4 * k), ("w0", 4 * k * n), ("w1", 4 * n), ("out", 4 * n))),
    }


def test_element_wise_and_fully_connected_calls_split_into_slices_bit_for_bit() -> None:
    from tasobuild import native
    from tasobuild.costs.profile import make_buffers

    calls = sliced_calls()
    fc = parallel_call(calls["tb_fc_gemv"], 2)
    assert fc is not None and row_bounds(fc) == (0, 512, 1000)  # 16 quanta of 64 outputs (4 panels), 8 + 8
    assert [dict(part_call(fc, j).params)["out_n"] for j in range(2)] == [512, 488]
    assert part_offsets(fc, 1) == (0, 512 * 96, 512, 512)  # the input whole; weights, bias, output from item 512
    assert part_offsets(fc, 0) == (0, 0, 0, 0) and largest_share(fc) == pytest.approx(512 / 1000)
    three = parallel_call(calls["tb_add"], 3)
    assert three is not None and row_bounds(three) == (0, 320, 640, 1000)
    assert part_offsets(three, 2) == (640, 640, 640) and workspace_bytes(three) == 0
    small = replace(calls["tb_act"], params=(("n", 64),) + calls["tb_act"].params[1:])
    assert parallel_call(small, 2) is None  # one quantum: one thread
    softmax = replace(calls["tb_act"], function="tb_softmax")
    assert parallel_call(softmax, 2) is None  # not element-wise: never split
    kernels = native.load()
    for name, call in sorted(calls.items()):
        for threads in (2, 3, 16, 64):
            split = parallel_call(call, threads)
            assert split is not None and split.parts == min(threads, 16), name
            whole, parts = make_buffers(call, seed=1), make_buffers(split, seed=1)
            kernels.run(call, whole)
            kernels.run(split, parts)  # the parts one after another, each on its buffers' slice
            assert whole["out"].tobytes() == parts["out"].tobytes(), (name, threads)
        split = parallel_call(call, 2)
        assert split is not None
        seconds = kernels.bench(split, make_buffers(split), 1, 3)
        assert seconds.shape == (3,) and (seconds > 0).all(), name


def pool_call(function: str, k: int, stride: int, pads: tuple[int, int], include_pad: int) -> KernelCall:
    """A pooling call on 24 channels of 15x13 pixels, `pads` (top and left, bottom and right) around them."""
    c, in_h, in_w = 24, 15, 13
    out_h, out_w = (in_h + sum(pads) - k) // stride + 1, (in_w + sum(pads) - k) // stride + 1
    params = (("c", c), ("in_h", in_h), ("in_w", in_w), ("out_h", out_h), ("out_w", out_w), ("k_h", k), ("k_w", k),
              ("stride_h", stride), ("stride_w", stride), ("pad_top", pads[0]), ("pad_left", pads[0]),
              ("pad_bottom", pads[1]), ("pad_right", pads[1]), ("count_include_pad", include_pad))
    return KernelCall(function, "tb_pool", params, ("in0", "out"),
                      (("in0", 4 * c * in_h * in_w), ("out", 4 * c * out_h * out_w)))


def test_hwc_and_hcw_pooling_splits_by_rows_bit_for_bit() -> None:
    from tasobuild import native
    from tasobuild.costs.profile import make_buffers

    # 3x3, stride 2, pad 1 (and 2 below: a ceil-mode window clipped there), 15 rows -> 8 output rows: part 1 starts
    # at output row 4, whose window starts at input row 4*2 - 1 = 7: 8 input rows, no top padding
    maxpool = pool_call("tb_maxpool_hwc", 3, 2, (1, 2), 0)
    two = parallel_call(maxpool, 2)
    assert two is not None and row_bounds(two) == (0, 4, 8)
    assert [(dict(part_call(two, k).params)["in_h"], dict(part_call(two, k).params)["out_h"],
             dict(part_call(two, k).params)["pad_top"]) for k in range(2)] == [(15, 4, 1), (8, 4, 0)]
    assert part_offsets(two, 1) == (7 * 13 * 24, 4 * 7 * 24) and part_offsets(two, 0) == (0, 0)
    # pad 2 with stride 1: part 1's first window (row 1 of 15 here) would start in the padding: one thread
    assert parallel_call(pool_call("tb_maxpool_hwc", 5, 1, (2, 2), 0), 15) is None
    kernels = native.load()
    calls = [pool_call(f"tb_{kind}_{layout}", k, stride, pads, include)
             for kind in ("maxpool", "avgpool") for layout in ("hwc", "hcw")
             for k, stride, pads, include in ((3, 2, (1, 2), 1), (3, 1, (1, 1), 0), (2, 2, (0, 0), 0))]
    for call in calls:
        for threads in (2, 3, 5):
            split = parallel_call(call, threads)
            assert split is not None, call.function
            whole, parts = make_buffers(call, seed=2), make_buffers(split, seed=2)
            kernels.run(call, whole)
            kernels.run(split, parts)
            assert whole["out"].tobytes() == parts["out"].tobytes(), (call.function, call.params, threads)
    seconds = kernels.bench(two, make_buffers(two), 1, 3)
    assert seconds.shape == (3,) and (seconds > 0).all()


def copy_calls() -> dict[str, KernelCall]:
    """A concat's copy of its second input (24 of 40 channels, 15x13 pixels) in each layout, CHW max and average
    pooling (3x3, stride 2, pad 1 below a ceil-mode clip) of 24 channels, global average pooling in CHW and HWC
    (channels, the latter through its split wrapper), LRN in HWC (rows) and CHW (channels, through its split
    wrapper), and the six layout transforms (rows; those to and from CHW through their wrappers)."""
    c, h, w, out_c = 24, 15, 13, 40
    copy = (("c", c), ("h", h), ("w", w), ("out_c", out_c), ("c_offset", 16))
    copies = {f"tb_copy_channels_{layout}": KernelCall(f"tb_copy_channels_{layout}", "tb_channels", copy,
                                                       ("in1", "out"), (("in1", 4 * c * h * w),
                                                                        ("out", 4 * out_c * h * w)))
              for layout in ("chw", "hwc", "hcw")}
    tensor = (("c", c), ("h", h), ("w", w), ("act", 0), ("act_a", 0.0), ("act_b", 0.0))
    whole = (("in0", 4 * c * h * w), ("out", 4 * c * h * w))
    return {**copies,
            "tb_maxpool_chw": pool_call("tb_maxpool_chw", 3, 2, (1, 2), 0),
            "tb_avgpool_chw": pool_call("tb_avgpool_chw", 3, 2, (1, 2), 1),
            **{name: KernelCall(name, "tb_tensor", tensor, ("in0", "out"), (("in0", 4 * c * h * w), ("out", 4 * c)))
               for name in ("tb_gap_chw", "tb_gap_hwc")},
            **{name: KernelCall(name, "tb_lrn", (("c", c), ("h", h), ("w", w), ("size", 5), ("alpha", 1e-4),
                                                 ("beta", 0.75), ("bias", 1.0)), ("in0", "out"), whole)
               for name in ("tb_lrn_hwc", "tb_lrn_chw")},
            **{name: KernelCall(name, "tb_tensor", tensor, ("in0", "out"), whole)
               for name in ("tb_layout_hwc_to_hcw", "tb_layout_hcw_to_hwc", "tb_layout_chw_to_hwc",
                            "tb_layout_hwc_to_chw", "tb_layout_chw_to_hcw", "tb_layout_hcw_to_chw")}}


def test_concat_copies_chw_pooling_lrn_and_row_transposes_split_into_slices_bit_for_bit() -> None:
    from tasobuild import native
    from tasobuild.costs.profile import make_buffers

    calls = copy_calls()
    # HWC: rows 7 and 8 of 15, the input 7 rows of 13 pixels of 24 channels further, the output 7 rows of 40
    hwc = parallel_call(calls["tb_copy_channels_hwc"], 2)
    assert hwc is not None and row_bounds(hwc) == (0, 7, 15)
    assert part_offsets(hwc, 1) == (7 * 13 * 24, 7 * 13 * 40) and dict(part_call(hwc, 1).params)["h"] == 8
    # CHW: channels 12 and 12, one block each, the input and the output 12 planes further
    chw = parallel_call(calls["tb_copy_channels_chw"], 2)
    assert chw is not None and part_offsets(chw, 1) == (12 * 15 * 13, 12 * 15 * 13)
    # CHW pooling: channels 0-7, 8-15, 16-23 of 15x13 -> 8x7 planes
    pool = parallel_call(calls["tb_maxpool_chw"], 3)
    assert pool is not None and row_bounds(pool) == (0, 8, 16, 24)
    assert part_offsets(pool, 2) == (16 * 15 * 13, 16 * 8 * 7)
    gap = parallel_call(calls["tb_gap_chw"], 2)
    assert gap is not None and part_offsets(gap, 1) == (12 * 15 * 13, 12)
    gap_hwc = parallel_call(replace(calls["tb_gap_chw"], function="tb_gap_hwc"), 2)  # channels 12 apart: a wrapper
    assert gap_hwc is not None and part_offsets(gap_hwc, 1) == (0, 0)
    assert dict(part_call(gap_hwc, 1).params)["c_begin"] == 12 and part_call(gap_hwc, 1).function.endswith("_channels")
    assert parallel_call(replace(calls["tb_gap_chw"], function="tb_gap_hcw"), 2) is None
    lrn = parallel_call(calls["tb_lrn_chw"], 2)  # channels 0-11 and 12-23, each reading its neighbours whole
    assert lrn is not None and part_offsets(lrn, 1) == (0, 0)
    assert part_call(lrn, 1) == replace(calls["tb_lrn_chw"], function="tb_lrn_chw_channels", struct="tb_lrn_view",
                                        params=calls["tb_lrn_chw"].params + (("c_begin", 12), ("c_end", 24)))
    assert whole_call(lrn) == calls["tb_lrn_chw"]
    assert parallel_call(replace(calls["tb_lrn_chw"], function="tb_lrn_chw_inplace"), 2) is None  # its ring: whole
    kernels = native.load()
    for name, call in sorted(calls.items()):
        for threads in (2, 3, 7):
            split = parallel_call(call, threads)
            assert split is not None and split.parts == threads, name
            whole, parts = make_buffers(call, seed=3), make_buffers(split, seed=3)
            kernels.run(call, whole)
            kernels.run(split, parts)
            assert whole["out"].tobytes() == parts["out"].tobytes(), (name, threads)
        split = parallel_call(call, 2)
        assert split is not None
        seconds = kernels.bench(split, make_buffers(split), 1, 3)
        assert seconds.shape == (3,) and (seconds > 0).all(), name


def test_transforms_are_offered_split_and_the_faster_call_is_kept(tmp_path: Path) -> None:
    from tasobuild.candidates import faster_transforms, transform_candidates
    from tasobuild.importer import import_onnx

    graph = import_onnx(small_conv_model(tmp_path / "conv.onnx"))
    assert all(t.split is None for t in transform_candidates(graph))  # one thread: nothing to split
    offered = {(t.tensor, t.src, t.dst): t for t in transform_candidates(graph, 2)}
    rows = offered[("y", "HWC", "HCW")]  # 8x7x5: rows 0-3 and 3-7, 5 pixels of 8 channels per row
    assert rows.split is not None and row_bounds(rows.split) == (0, 3, 7)
    assert part_offsets(rows.split, 1) == (3 * 5 * 8, 3 * 8 * 5)
    assert offered[("y", "HCW", "HWC")].split is not None
    to_chw = offered[("y", "HWC", "CHW")].split  # by rows through its wrapper: channels stay 7 rows apart
    assert to_chw is not None and part_offsets(to_chw, 1) == (0, 0)
    assert dict(part_call(to_chw, 1).params) == {**dict(to_chw.params), "h_begin": 3, "h_end": 7}
    assert part_call(to_chw, 1).function == "tb_layout_hwc_to_chw_rows"

    def costs(split_ms: float) -> dict[str, Cost]:
        return {**{t.call.key(): Cost(0.010, 0.0, 5, "measured") for t in offered.values()},
                **{t.split.key(): Cost(split_ms, 0.0, 5, "measured") for t in offered.values() if t.split}}

    faster = {(t.tensor, t.src, t.dst): t for t in faster_transforms(tuple(offered.values()), costs(0.006))}
    assert faster[("y", "HWC", "HCW")].call == rows.split and faster[("y", "HWC", "HCW")].split is None
    assert faster[("y", "CHW", "HWC")].call == offered[("y", "CHW", "HWC")].split
    slower = faster_transforms(tuple(offered.values()), costs(0.010))  # a tie stays on one thread
    assert all(t.call.parts == 1 and t.split is None for t in slower)


POOL_STRESS = r"""
#include <stdio.h>
#include "tb_threads.h"

static tb_workers workers = TB_WORKERS_INIT(THREADS);
static long counts[2][THREADS];

static void count(void *arena, int part) { ++((long *)arena)[part]; }

static void *other_run(void *unused)
{
    int i;
    (void)unused;
    for (i = 0; i < 20000; ++i) tb_workers_run(&workers, count, counts[1], THREADS);
    return 0;
}

int main(void)
{
    int i, k;
    pthread_t other;
    for (i = 0; i < 20000; ++i) {
        tb_workers_run(&workers, count, counts[0], i % THREADS + 1);
        if (i % 5000 == 4999) tb_workers_stop(&workers);  /* a later run starts them again */
    }
    pthread_create(&other, 0, other_run, 0);  /* two runs at once on different arenas take turns */
    for (i = 0; i < 20000; ++i) tb_workers_run(&workers, count, counts[0], THREADS);
    pthread_join(other, 0);
    tb_workers_stop(&workers);
    for (k = 0; k < THREADS; ++k) printf("%ld %ld\n", counts[0][k], counts[1][k]);
    return 0;
}
"""


@pytest.mark.parametrize("threads", [2, 4])
def test_the_thread_pool_runs_every_part_of_every_step(tmp_path: Path, threads: int) -> None:
    (tmp_path / "stress.c").write_text(POOL_STRESS)
    subprocess.run(["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", f"-DTHREADS={threads}",
                    f"-I{kernels_dir()}", "stress.c", str(kernels_dir() / "tb_threads.c"), "-o", "stress"],
                   cwd=tmp_path, check=True)
    out = subprocess.run(["./stress"], cwd=tmp_path, check=True, capture_output=True, text=True, timeout=120).stdout
    rows = [tuple(map(int, line.split())) for line in out.splitlines()]
    # part k ran in every step with more than k parts: 20000 steps cycling through 1..threads parts, then 20000
    expected_first = [sum(1 for i in range(20000) if i % threads + 1 > k) + 20000 for k in range(threads)]
    assert rows == [(expected_first[k], 20000) for k in range(threads)]


POOL_HOLD = r"""
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <time.h>
#include "tb_threads.h"

static tb_workers workers = TB_WORKERS_INIT(2);
static long counts[2];

static void count(void *arena, int part) { ++((long *)arena)[part]; }

static void pause_ms(long ms)
{
    struct timespec t = {0, ms * 1000000L};
    nanosleep(&t, 0);
}

int main(void)
{
    int i, asleep_held = 0, waits = 0;
    tb_workers_hold(&workers, 1);  /* before the first step, as the emitted run does */
    tb_workers_run(&workers, count, counts, 2);
    for (i = 0; i < 50; ++i) {  /* gaps of 2 ms, ten times TB_SPIN_US: held, the worker polls through them */
        pause_ms(2);
        asleep_held += __atomic_load_n(&workers.sleepers, __ATOMIC_SEQ_CST);
        tb_workers_run(&workers, count, counts, 2);
    }
    tb_workers_hold(&workers, 0);
    while (__atomic_load_n(&workers.sleepers, __ATOMIC_SEQ_CST) == 0 && waits < 10000) {  /* released: it sleeps */
        pause_ms(1);
        ++waits;
    }
    printf("%ld %ld %d %d\n", counts[0], counts[1], asleep_held, waits < 10000);
    tb_workers_stop(&workers);
    return 0;
}
"""


def test_a_held_pool_polls_through_long_gaps_and_sleeps_once_released(tmp_path: Path) -> None:
    """tb_workers_hold (the emitted run holds its pool): between parallel steps 2 ms apart, ten times TB_SPIN_US,
    the worker of a held pool is never asleep (no futex wake before the next step); released, it goes to sleep.
    TB_HOLD_US is raised so that a loaded machine, which may deschedule the worker for a while, cannot end the
    hold early."""
    (tmp_path / "hold.c").write_text(POOL_HOLD)
    subprocess.run(["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-DTB_HOLD_US=60000000",
                    f"-I{kernels_dir()}", "hold.c", str(kernels_dir() / "tb_threads.c"), "-o", "hold"],
                   cwd=tmp_path, check=True)
    out = subprocess.run(["./hold"], cwd=tmp_path, check=True, capture_output=True, text=True, timeout=120).stdout
    assert out.split() == ["51", "51", "0", "1"]


# ---------------------------------------------------------------------------------------- whole networks


class PreferSplit:
    """The build's Decider, but with every split call 2 ns (the solver's unit is 1 ns) cheaper than its one-thread
    call, so the plan on N
    threads is the one-thread plan with every splittable conv split (which these small networks would not all be:
    waking a worker costs about as much as their layers take). Costs from the performance model, as in
    test_decide: the same on every machine."""

    def __init__(self, spec: object, target: object) -> None:
        from tasobuild.pipeline import Solve

        self.solve = Solve(spec, target)  # type: ignore[arg-type]

    def costs(self, calls: Sequence[KernelCall]) -> Costed:
        wholes = {whole_call(c).key(): whole_call(c) for c in calls if c.parts > 1}
        costed = self.solve.costs([*calls, *wholes.values()])
        costs = dict(costed.costs)
        for call in calls:
            if call.parts > 1:
                base = costs[whole_call(call).key()]
                costs[call.key()] = Cost(base.median_ms - 2e-6, base.spread_ms, 0, "predicted")
        return Costed(costs, costed.profiled, costed.from_lock)

    def decide(self, problem: object) -> object:
        return self.solve.decide(problem)  # type: ignore[arg-type]

    def fixed_order(self, graph: object) -> None:
        return None


def built_project(root: Path, model: Path, target: str, threads: int, extra: str = "") -> tuple[Path, list[str]]:
    """The network built for `target` on `threads` threads (pipeline with PreferSplit; `extra`: more [optimizer]
    lines), its files written to root/out and made; the plan's primitives."""
    from tasobuild.pipeline import load, run

    root.mkdir(parents=True)
    spec = write_target_spec(root, model, target, costs="model", extra=extra)
    spec.write_text(spec.read_text().replace(f'name = "{target}"', f'name = "{target}"\nthreads = {threads}', 1))
    inputs = load(spec)
    built = run(inputs, PreferSplit(inputs.spec, inputs.target), {})
    for path, data in built.files.items():
        (root / "out" / path).parent.mkdir(parents=True, exist_ok=True)
        (root / "out" / path).write_bytes(data)
    if target == "host":  # warnings fail the build; the Makefile's own flags (-O3 -march=native) are kept
        make_with(root / "out", ["-Wall", "-Wextra", "-Werror"])
    else:
        subprocess.run(["make", "-s", "-j2", "-C", str(root / "out")], check=True, capture_output=True)
    plan = built.planned.decision.plan
    return root / "out" / "net_main", [plan.choice(nc.node.name).primitive for nc in built.planned.nodes]


def run_program(binary: Path, x: np.ndarray, runner: Sequence[str] = ()) -> np.ndarray:
    x.astype("<f4").tofile(binary.parent / "in.bin")
    subprocess.run([*runner, str(binary), "in.bin", "out.bin"], cwd=binary.parent, check=True, timeout=600)
    return np.fromfile(binary.parent / "out.bin", dtype="<f4")


def onnx_reference(model: Path) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    shape = [d if isinstance(d, int) else 1 for d in session.get_inputs()[0].shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return x, session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("model_name", ["ds_cnn_tf", "resnet8_tf"])
def test_network_on_two_threads_matches_onnx_runtime_and_one_thread_bit_for_bit(
        tmp_path: Path, model_name: str) -> None:
    model = ensure_model(model_name)
    x, reference = onnx_reference(model)
    one, one_plan = built_project(tmp_path / "t1", model, "host", 1)
    two, two_plan = built_project(tmp_path / "t2", model, "host", 2)
    split = [name for name in two_plan if name.endswith("@2")]
    # every conv split by rows; element-wise ops into slices (ResNet-8's adds; the fully connected layers of 12 and
    # 10 outputs are one slice: one thread)
    assert [name for name in two_plan if name.startswith("conv_") and not name.endswith("@2")] == []
    assert len(split) >= sum(1 for name in one_plan if name.startswith("conv_")) >= 5
    if model_name == "resnet8_tf":
        assert sum(name.startswith("add_") for name in split) == 3
    # the same convolutions, split; elsewhere the solver may break a tie otherwise with more candidates on offer (an
    # add in place over either input, a softmax of 1x1 pixels in either layout)
    def convs(plan: list[str]) -> list[str]:
        return [name.removesuffix("@2") for name in plan if name.startswith("conv_")]

    def same(plan: list[str]) -> list[str]:
        return [re.sub(r"_inplace\d$", "_inplace", name.removesuffix("@2")) for name in plan]

    assert convs(two_plan) == convs(one_plan)
    source = (two.parent / "src" / "net.c").read_text()
    # every split node runs on the pool, and so does a layout transform the costs found faster split
    assert source.count("tb_workers_run(&workers, part") >= len(split)
    assert "-pthread" in (two.parent / "Makefile").read_text()
    assert "tb_threads" not in (one.parent / "src" / "net.c").read_text()
    assert not (one.parent / "src" / "kernels" / "tb_threads.h").exists()
    ours_one, ours_two = run_program(one, x), run_program(two, x)
    assert_matches(ours_two, reference)
    if same(two_plan) == same(one_plan):  # the same primitives: the same sums, bit for bit
        assert ours_two.tobytes() == ours_one.tobytes()


def test_a_seven_row_network_splits_by_channels_and_matches_one_thread_bit_for_bit(tmp_path: Path) -> None:
    """x (3x7x7) -> 3x3 conv to 64 channels, ReLU -> 1x1 conv to 64 channels, on the blocked direct kernels: 7
    rows split 3/4 on 2 threads, 64 channels 32/32, so both convs split by channels."""
    from onnx import helper

    rng = np.random.default_rng(7)
    weights = {"w1": rng.standard_normal((64, 3, 3, 3)).astype(np.float32),
               "w2": (rng.standard_normal((64, 64, 1, 1)) / 8).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2")]
    model = save_onnx(tmp_path / "seven.onnx", nodes, [1, 3, 7, 7], [1, 64, 7, 7], weights)
    x, reference = onnx_reference(model)
    allow = 'primitives = ["conv_direct_blocked_chw_to_hwc", "conv_direct_blocked_hwc"]\n'
    one, _ = built_project(tmp_path / "t1", model, "host", 1, allow)
    two, two_plan = built_project(tmp_path / "t2", model, "host", 2, allow)
    assert two_plan == ["conv_direct_blocked_chw_to_hwc@2", "conv_direct_blocked_hwc@2"]
    source = (two.parent / "src" / "net.c").read_text()
    assert source.count("static const int channels[3] = {0, 32, 64};") == 2
    assert source.count("view.oc_begin = channels[part];") == 2 and "view.oh_begin" not in source
    ours_one, ours_two = run_program(one, x), run_program(two, x)
    assert_matches(ours_two, reference)
    assert ours_two.tobytes() == ours_one.tobytes()


@pytest.mark.skipif(not HAS_A53, reason="needs aarch64-linux-gnu-gcc and qemu-aarch64")
def test_cortex_a53_on_four_threads_runs_under_qemu_and_matches(tmp_path: Path) -> None:
    model = ensure_model("ds_cnn_tf")
    x, reference = onnx_reference(model)
    qemu = ("qemu-aarch64", "-L", "/usr/aarch64-linux-gnu")
    one, one_plan = built_project(tmp_path / "t1", model, "cortex-a53", 1)
    four, four_plan = built_project(tmp_path / "t4", model, "cortex-a53", 4)
    assert sum(name.endswith("@4") for name in four_plan) >= 5
    ours_one, ours_four = run_program(one, x, qemu), run_program(four, x, qemu)
    assert_matches(ours_four, reference)
    assert ours_four.tobytes() == ours_one.tobytes()


# ---------------------------------------------------------------------------------------- settings


def test_threads_settings_resolve_and_the_lock_records_them(tmp_path: Path) -> None:
    from tasobuild.pipeline import load_settings
    from tasobuild.target import resolved_threads

    model = small_conv_model(tmp_path / "conv.onnx")
    spec = write_spec(tmp_path, model)
    spec.write_text(spec.read_text().replace('costs = "profile"', 'costs = "model"'))
    assert resolved_threads(*load_settings(spec, {})) == 1  # no key: one thread, on any machine
    cores = len(os.sched_getaffinity(0))
    assert resolved_threads(*load_settings(spec, {"target.threads": "auto"})) == cores
    assert resolved_threads(*load_settings(spec, {"target.threads": "1"})) == 1
    tasobuild("build", "-c", str(spec))
    assert "threads" not in (tmp_path / "taso.lock").read_text()  # one-thread locks stay as they were
    if cores >= 2:
        tasobuild("build", "-c", str(spec), "--threads", "2")
        assert "\nthreads = 2\n" in (tmp_path / "taso.lock").read_text()


def test_more_threads_than_the_target_has_are_refused_in_one_line(tmp_path: Path) -> None:
    model = small_conv_model(tmp_path / "conv.onnx")
    (tmp_path / "a53").mkdir()
    a53 = write_target_spec(tmp_path / "a53", model, "cortex-a53")
    a53.write_text(a53.read_text().replace('name = "cortex-a53"', 'name = "cortex-a53"\nthreads = 5'))
    proc = tasobuild("plan", "-c", str(a53), check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "taso.toml:9: target.threads = 5, but target 'cortex-a53' has 4 cores" in proc.stderr
    (tmp_path / "m4").mkdir()
    m4 = write_target_spec(tmp_path / "m4", model, "cortex-m4", memory="64 KiB")
    proc = tasobuild("plan", "-c", str(m4), "--threads", "2", check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "command line: target.threads = 2, but target 'cortex-m4' is a microcontroller" in proc.stderr
    proc = tasobuild("plan", "-c", str(m4), "--threads", "two", check=False)
    assert proc.returncode == 1 and "threads" in proc.stderr and "Traceback" not in proc.stderr
