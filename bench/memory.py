"""The untiled arena against its lower bound and against TensorFlow Lite Micro's, per network.

For each network, the plan tasobuild builds with `objective = "memory"`, `tiling = false`, `costs = "model"` (the
smallest live-set peak the solver finds), then: the live-set bound (the most bytes live at one step: no placement
does better), the greedy placement's arena (memory.plan_arena, TFLM's GreedyMemoryPlanner's algorithm), the exact
placement's (placement.place: what a build emits), its status and seconds; and the execution order's
live-tensor peak as the ONNX file gives it and as schedule.memory_order chooses it.

TFLM's figures are its activation arena (input and output included) for the float32 MLPerf Tiny models as
TensorFlow exports them, measured for the issue (tests/fixtures/models/*_tf.onnx are those exports); TFLM was not
run here.

    TASOBUILD_CACHE_DIR=... python bench/memory.py [ds_cnn_tf resnet8_tf mobilenet_v1_vww_tf mobilenetv2 googlenet]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import record, table

NETWORKS = ("ds_cnn_tf", "resnet8_tf", "mobilenet_v1_vww_tf", "mobilenetv2", "googlenet")
TFLM_ARENA = {"ds_cnn_tf": 64_000, "resnet8_tf": 196_608, "mobilenet_v1_vww_tf": 294_912}
SETTINGS = {"constraints.objective": "memory", "optimizer.tiling": "false", "optimizer.costs": "model"}
TIME_LIMIT_S = 10.0


def row_for(model: str) -> list[str]:
    from tasobuild.importer import import_onnx
    from tasobuild.memory import lower_bound, plan_arena
    from tasobuild.pipeline import Solve, load, price
    from tasobuild.placement import place
    from tasobuild.schedule import Dataflow, best_order
    from tests.e2e import write_spec
    from tests.zoo import ensure_model

    path = ensure_model(model)
    order = best_order(Dataflow.of(import_onnx(path)))
    with tempfile.TemporaryDirectory() as tmp:
        inputs = load(write_spec(Path(tmp), path, memory="4 GiB"), SETTINGS)
        solve = Solve(inputs.spec, inputs.target)
        plan = solve.decide(price(inputs, solve).problem).plan
    buffers = plan.buffers()
    bound = lower_bound(buffers, plan.alignment)
    greedy = plan_arena(buffers, plan.alignment).arena_bytes
    started = time.perf_counter()
    exact = place(buffers, plan.alignment, TIME_LIMIT_S)
    seconds = time.perf_counter() - started
    tflm = TFLM_ARENA.get(model)
    return [model, f"{len(buffers)}", f"{tflm:,}" if tflm else "—", f"{bound:,}", f"{greedy:,}",
            f"{exact.arena_bytes:,}", exact.status, f"{seconds:.3f}",
            f"{order.given_peak_bytes:,} → {order.peak_bytes:,}"]


def main(models: list[str]) -> None:
    headers = ["network", "buffers", "TFLM arena", "live-set bound", "greedy arena", "exact arena", "placement",
               "placement s", "tensor peak, file order → chosen order"]
    rows = [row_for(m) for m in models]
    body = (table(headers, rows) + "\n\nBytes. Plan: `objective = \"memory\"`, `tiling = false`, `costs = \"model\"`."
            " TFLM arena: TensorFlow Lite Micro's activation arena (input and output included) for the float32 "
            "TensorFlow exports of the MLPerf Tiny models, as measured for the issue (not run here); — where none "
            "was measured. Exact arena: tasobuild.placement (Z3, warm-started by greedy; greedy kept without a "
            "solve when it reaches the bound). Tensor peak: the live tensors' peak (activations only, no workspace) "
            "in the ONNX file's order and in the order tasobuild.schedule picks.")
    record("memory", "Arena placement: greedy, exact, the live-set bound and TFLM",
           "TASOBUILD_CACHE_DIR=... python bench/memory.py", body)


if __name__ == "__main__":
    main(sys.argv[1:] or list(NETWORKS))
