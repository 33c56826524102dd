"""The untiled arena against its lower bound and against TensorFlow Lite Micro's, per network, without and with
in-place and zero-copy execution (and the tiled arena, without and with).

For each network, the plan tasobuild builds with `objective = "memory"`, `tiling = false`, `costs = "model"` (the
smallest live-set peak the solver finds), and the same with the in-place and zero-copy primitives left out; then:
the live-set bound (the most bytes live at one step: no placement does better), the greedy placement's arena
(memory.plan_arena, TFLM's GreedyMemoryPlanner's algorithm), the exact placement's (placement.place: what a build
emits), its status and seconds, the nodes that run in place or zero-copy; the tiled smallest arena
(`tiling = true`) without and with sharing; and the execution order's live-tensor peak as the ONNX file gives it
and as schedule.memory_order chooses it.

TFLM's figures are its activation arena (input and output included) for the float32 MLPerf Tiny models as
TensorFlow exports them, measured for the issue (tests/fixtures/models/*_tf.onnx are those exports); TFLM was not
run here.

    TASOBUILD_CACHE_DIR=... python bench/memory.py [ds_cnn_tf resnet8_tf mobilenet_v1_vww_tf mobilenet_v2_035
                                                   mobilenetv2 googlenet squeezenet11 inception_block]

mobilenet_v2_035: MLPerf Tiny's MobileNetV2-0.35 (96x96), float, as TensorFlow exports it
(tests/fixtures/int8/mobilenet_v2_035.float.onnx, the float network of the int8 fixture).

inception_block: tests/test_sharing.py's Inception-style block (8x8x8 input, three branches concatenated, a residual
add), generated with fixed seeds: a network whose peak is its concat.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import record, table

NETWORKS = ("ds_cnn_tf", "resnet8_tf", "mobilenet_v1_vww_tf", "mobilenet_v2_035", "mobilenetv2", "googlenet",
            "squeezenet11", "inception_block")
TFLM_ARENA = {"ds_cnn_tf": 64_000, "resnet8_tf": 196_608, "mobilenet_v1_vww_tf": 294_912, "mobilenet_v2_035": 552_960}
FLOAT_FIXTURES = {"mobilenet_v2_035": Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "int8" /
                  "mobilenet_v2_035.float.onnx"}
SETTINGS = {"constraints.objective": "memory", "optimizer.tiling": "false", "optimizer.costs": "model"}
TIME_LIMIT_S = 10.0


# The plan without sharing: every primitive of the ops that can share memory but its in-place and zero-copy ones.
SHARING_OPS = ("act", "add", "concat", "lrn", "scale")


def no_sharing_line() -> str:
    from tasobuild.primitives.registry import library

    names = sorted(p.name for p in library() if p.op in SHARING_OPS and p.in_place < 0 and not p.gathers)
    return "primitives = [" + ", ".join(f'"{n}"' for n in names) + "]\n"


def smallest_plan(path: Path, sharing: bool, tiling: bool):  # -> (pipeline.Planned, fastest plan's arena)
    """What a build plans (the execution order chosen with the plan; with sharing: kept only where it gains), and
    the fastest plan's arena when the sharing choices are on offer (decide.baselines_of on the whole problem, in the
    chosen order, whatever the build keeps)."""
    from dataclasses import replace

    from tasobuild.decide import baselines_of
    from tasobuild.pipeline import Solve, load, plan, price
    from tests.e2e import write_spec

    with tempfile.TemporaryDirectory() as tmp:
        spec = write_spec(Path(tmp), path, memory="4 GiB", extra="" if sharing else no_sharing_line())
        inputs = load(spec, {**SETTINGS, "optimizer.tiling": "true" if tiling else "false"})
        solve = Solve(inputs.spec, inputs.target)
        planned = plan(inputs, solve)
        if tiling:
            return planned, 0
        problem = price(replace(inputs, graph=planned.graph), solve).problem
        return planned, int(baselines_of(problem, TIME_LIMIT_S).summary["time_only"]["arena_bytes"])


def arena_of(plan) -> int:  # noqa: ANN001 (a solve.Plan)
    """The arena a build emits for this plan (decide.place, its placement given TIME_LIMIT_S)."""
    from tasobuild.decide import PLACEMENT_SHARE, place

    return place(plan, TIME_LIMIT_S / PLACEMENT_SHARE).arena_bytes


def row_for(model: str) -> list[str]:
    from tasobuild.importer import import_onnx
    from tasobuild.memory import lower_bound, plan_arena
    from tasobuild.placement import place
    from tasobuild.schedule import Dataflow, best_order
    from tests.test_sharing import inception_model
    from tests.zoo import ensure_model

    path = (inception_model(Path(tempfile.mkdtemp()) / "b.onnx") if model == "inception_block"
            else FLOAT_FIXTURES.get(model) or ensure_model(model))
    order = best_order(Dataflow.of(import_onnx(path)))
    untiled = {sharing: smallest_plan(path, sharing, tiling=False) for sharing in (False, True)}
    decided = {k: p.decision for k, (p, _) in untiled.items()}
    fastest = {k: arena for k, (_, arena) in untiled.items()}
    before, plan = decided[False].plan, decided[True].plan
    buffers = plan.buffers()
    bound = lower_bound(buffers, plan.alignment)
    greedy = plan_arena(buffers, plan.alignment).arena_bytes
    started = time.perf_counter()
    exact = place(buffers, plan.alignment, TIME_LIMIT_S)
    seconds = time.perf_counter() - started
    tiled = {sharing: smallest_plan(path, sharing, tiling=True)[0].decision for sharing in (False, True)}
    tiled_arena = {k: arena_of(d.plan) for k, d in tiled.items()}
    shared = [c for _, c in plan.choices if c.in_place >= 0 or c.gathers]
    tflm = TFLM_ARENA.get(model)
    return [model, f"{len(buffers)}", f"{tflm:,}" if tflm else "—",
            f"{before.peak_bytes:,} → {bound:,}", f"{arena_of(before):,} → {exact.arena_bytes:,}", f"{greedy:,}",
            exact.status, f"{seconds:.3f}",
            f"{sum(c.in_place >= 0 for c in shared)} / {sum(c.gathers for c in shared)}",
            f"{tiled_arena[False]:,} → {tiled_arena[True]:,}", f"{fastest[False]:,} → {fastest[True]:,}",
            f"{order.given_peak_bytes:,} → {order.peak_bytes:,}", untiled[True][0].order]


def main(models: list[str]) -> None:
    headers = ["network", "buffers", "TFLM arena", "live-set bound, no sharing → sharing",
               "exact arena, no sharing → sharing", "greedy arena", "placement", "placement s",
               "in place / zero-copy nodes", "tiled arena, no sharing → sharing",
               "fastest plan's arena, no sharing → sharing", "tensor peak, file order → chosen order",
               "order planned"]
    rows = [row_for(m) for m in models]
    body = (table(headers, rows) + "\n\nBytes. Plan: `objective = \"memory\"`, `tiling = false` (the tiled column: "
            "`tiling = true`), `costs = \"model\"`. No sharing: the in-place and zero-copy primitives left out "
            "(`optimizer.primitives`); sharing: as a build plans (element-wise ops written over a dead input, concat "
            "inputs written into their slices of the output). TFLM arena: TensorFlow Lite Micro's activation arena "
            "(input and output included) for the float32 TensorFlow exports of the MLPerf Tiny models, as measured "
            "for the issue (not run here); — where none was measured. Exact arena: tasobuild.placement (Z3, "
            "warm-started by greedy; greedy kept without a solve when it reaches the bound); greedy arena, placement "
            "and its seconds are the sharing plan's. Fastest plan: the time-only plan (`objective = \"latency\"`, "
            "no budget; among the fastest, the smallest peak), untiled, solved with the sharing choices on offer. "
            "Tensor peak: the live tensors' peak (activations only, no workspace, no sharing) in the ONNX file's "
            "order and in the order tasobuild.schedule picks by tensors. Order planned: the order the sharing plan "
            "runs in, chosen with the plan (pipeline.ORDERS: `tensors` the least live tensor bytes, `file` the ONNX "
            "file's, `fastest` / `plan` the least live bytes with a fast plan's / the first plan's workspace).\n\n"
            "Sharing lowers a peak only where the peak is an element-wise node, an LRN or a concat (GoogLeNet: its "
            "stem's second LRN, in place; the peak moves to the first max pool); in place / zero-copy "
            "counts what the smallest plan runs so (at a peak set elsewhere it keeps whichever is faster). DS-CNN "
            "has neither outside its fused activations: its peak is a convolution's input and output. ResNet-8's is "
            "a 3x3 convolution of its first stage, which holds its input, its output and the stage's skip tensor "
            "(3 x 64 KiB); the adds come after it, and no kernel writes a convolution over its own input. Below "
            "that takes running the stage's two convolutions fused in row bands, which the tiled plans here do not "
            "(the tiling's part of issue 16).")
    record("memory", "Arena placement: greedy, exact, the live-set bound and TFLM, without and with in-place and "
           "zero-copy execution", "TASOBUILD_CACHE_DIR=... python bench/memory.py", body)


if __name__ == "__main__":
    main(sys.argv[1:] or list(NETWORKS))
