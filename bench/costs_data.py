"""Shared by the cost benches: the kernel calls of networks and of synthetic layers, and timing them.

Synthetic layers are single-node graphs with seeded random shapes (log-uniform sizes, log-uniform channel counts
mostly rounded to multiples of 8 as in real networks, the kernel sizes, strides and activations real CNNs use, and
extra draws of the layer kinds the model needs most), run through the real primitive library: every primitive that
applies contributes its call, so primitives added later are covered without touching this file. Two mixes of
synthetic layers (MIXES) are drawn, each with its own seeded streams: "broad" and "real" (see SyntheticMix).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tasobuild.candidates import node_candidates, transform_candidates  # noqa: E402
from tasobuild.errors import UserError  # noqa: E402
from tasobuild.ir import Activation, Graph, Node, Shape, attrs  # noqa: E402
from tasobuild.primitives import KernelCall  # noqa: E402

EVAL_NETWORKS = ("resnet18", "googlenet", "mobilenetv2", "squeezenet11")
# Training networks: none of the evaluation networks. (Shapes may still coincide, e.g. ResNet-50's 3x3 64->64 at
# 56x56 is ResNet-18's too: accuracy figures count only calls whose exact key is not in the training set.)
TRAIN_NETWORKS = ("alexnet", "ds_cnn_torch", "mobilenet_v1_vww_torch", "resnet8_torch", "fc_autoencoder_torch")
# Benches time many calls: shorter than the build's default policy (fewer repetitions, shorter batches) so that the
# whole bench runs in minutes on a library of ~100 primitives; medians stay within a few percent.
BENCH_POLICY_ARGS = dict(min_reps=3, batch_seconds=0.01, warmup_seconds=0.005, time_cap_seconds=0.06)
MAX_SYNTHETIC_FLOPS = 3e8  # keeps one conv under ~0.1 s on a slow primitive, so training stays in minutes


def network_calls(name: str) -> list[KernelCall]:
    """Every candidate call (and layout transform) of a zoo network, deduplicated, sorted by key."""
    from tasobuild.importer import import_onnx
    from tests.zoo import ensure_model

    graph = import_onnx(ensure_model(name))
    return graph_calls(graph)


def graph_calls(graph: Graph) -> list[KernelCall]:
    try:
        nodes = node_candidates(graph)
    except UserError:
        return []
    # In-place twins (primitives.sharing) are left out: the model prices them from their copying kernels
    # (costs/model.py) until it is retrained with them, and the shipped samples stay what they were.
    calls = [call for nc in nodes for c in nc.options if c.primitive.in_place < 0 for call in c.calls]
    calls += [t.call for t in transform_candidates(graph)]
    return sorted({c.key(): c for c in calls}.values(), key=KernelCall.key)


def _graph(node: Node, shapes: dict[str, Shape]) -> Graph:
    x, y = shapes[node.inputs[0]], shapes[node.output]
    return Graph(nodes=(node,), shapes=tuple(sorted(shapes.items())), constants=(), input=node.inputs[0],
                 output=node.output, onnx_input_shape=(1, x.c, x.h, x.w), onnx_output_shape=(1, y.c, y.h, y.w))


def _loguniform_int(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


_ACTIVATIONS = {"relu": Activation("relu"), "none": Activation(), "clip": Activation("clip", 0.0, 6.0),
                "leaky_relu": Activation("leaky_relu", 0.1), "sigmoid": Activation("sigmoid")}


def _activation_broad(rng: np.random.Generator) -> Activation:
    """Every fused activation often: ReLU 3 in 7, none, clip, leaky ReLU and sigmoid 1 in 7 each."""
    return _ACTIVATIONS[str(rng.choice(["relu", "relu", "relu", "none", "clip", "leaky_relu", "sigmoid"]))]


# As CNNs have them: ReLU, none (before an add) and clip (ReLU6) nearly always. Leaky ReLU and sigmoid make some
# kernels several times slower (a depthwise HWC layer 4.4x with leaky ReLU) and the features cannot tell leaky ReLU
# from ReLU: drawn as often as in the broad mix, they teach the model that depthwise HWC is slower than it is.
REAL_ACTIVATION_WEIGHTS = (("relu", 8), ("none", 4), ("clip", 4), ("leaky_relu", 1), ("sigmoid", 1))


def _activation_real(rng: np.random.Generator) -> Activation:
    weights = np.array([w for _, w in REAL_ACTIVATION_WEIGHTS], dtype=float)
    return _ACTIVATIONS[str(rng.choice([k for k, _ in REAL_ACTIVATION_WEIGHTS], p=weights / weights.sum()))]


@dataclass(frozen=True)
class SyntheticMix:
    """How synthetic layers are drawn: conv layer kinds (each entry one equally likely draw) and fused activations.

    Conv kinds: besides the plain mix, kinds the model was weak on are drawn on purpose: 5x5 stride-1 layers (the
    only ones Winograd 5x5 runs), depthwise layers, stems (few input channels, large images, stride 2) and deep
    layers (hundreds of channels on a small image: weight-bound)."""

    name: str
    conv_kinds: tuple[str, ...]
    activation: Callable[[np.random.Generator], Activation]


# "broad": every activation often, depthwise 2 in 10: the shipped model's training mix.
# "real": activations as networks have them and depthwise 4 in 12 (depthwise layers are cheap to time, few
# primitives apply, and their HWC kernel's speed varies most). Tried with the broad mix (BENCHMARKS.md): better
# accuracy and MobileNetV2 plans, but Winograd on ResNet-18's 512-channel 7x7 layers predicted 3-5x too fast.
BROAD = SyntheticMix("broad", ("standard", "standard", "wide", "pointwise", "pointwise", "pointwise", "depthwise",
                               "depthwise", "stem", "deep"), _activation_broad)
REAL = SyntheticMix("real", ("standard", "standard", "wide", "pointwise", "pointwise", "pointwise", "depthwise",
                             "depthwise", "depthwise", "depthwise", "stem", "deep"), _activation_real)
# "deep": only deep layers (128-1024 channels on 3-16 pixel images), weight-bound: tried for ResNet-18's 512-channel
# 7x7 Winograd layers, which it did not fix (BENCHMARKS.md, "Costs and the performance model").
DEEP = SyntheticMix("deep", ("deep",), _activation_real)
MIXES = (BROAD, REAL, DEEP)
ROUND_CHANNELS = 0.75  # share of channel counts drawn as networks have them: a multiple of 8 (vectors run full)


def _channels(rng: np.random.Generator, lo: int, hi: int) -> int:
    """A log-uniform channel count, usually rounded to a multiple of 8 as real networks' are (vectorised kernels
    run 2-3x faster per FLOP on full vectors: a model trained on random counts alone misjudges real layers)."""
    c = _loguniform_int(rng, lo, hi)
    return max(8, 8 * round(c / 8)) if c >= 8 and rng.uniform() < ROUND_CHANNELS else c


def synthetic_conv(rng: np.random.Generator, mix: SyntheticMix = BROAD) -> Graph | None:
    """One random conv layer of one of the mix's kinds, or None if it is outside the FLOP range."""
    kind = str(rng.choice(mix.conv_kinds))
    c = {"depthwise": _channels(rng, 8, 1024), "stem": int(rng.choice([1, 3, 3, 4])),
         "deep": _channels(rng, 128, 1024)}.get(kind, _channels(rng, 3, 1024))
    if kind == "depthwise" and c % 8 == 0:
        # Depthwise layers follow expansions, whose channel counts are multiples of 16 in the networks we know
        # (MobileNet V1/V2, EfficientNet: 32, 96, 144, 576, 960, ...): the HWC depthwise kernel's full vectors.
        # Rounded to 8, half the depthwise layers had 8 channels off the vector path, the model saw few large
        # full-vector ones and predicted MobileNetV2's 112x112x32 layer 3x too slow.
        c = 16 * max(1, round(c / 16))
    h = {"stem": _loguniform_int(rng, 32, 224), "deep": _loguniform_int(rng, 3, 16)}.get(
        kind, _loguniform_int(rng, 3, 112))
    w = h if rng.uniform() < 0.8 else _loguniform_int(rng, 3, 112)
    if kind == "pointwise":
        k, stride, pad = 1, int(rng.choice([1, 1, 1, 1, 2])), 0
    else:
        k = {"standard": int(rng.choice([1, 3, 3, 3, 5, 7])), "wide": 5, "stem": int(rng.choice([3, 5, 7])),
             "depthwise": int(rng.choice([3, 3, 3, 5])), "deep": int(rng.choice([1, 3, 3]))}[kind]
        stride = {"wide": 1, "stem": 2}.get(kind, int(rng.choice([1, 1, 1, 2])))
        pad = k // 2 if rng.uniform() < 0.85 else 0
    m = c * int(rng.choice([1, 1, 1, 1, 1, 2])) if kind == "depthwise" else \
        _channels(rng, 128, 1024) if kind == "deep" else _channels(rng, 4, 1024)
    groups = c if kind == "depthwise" else 1
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    if oh < 1 or ow < 1:
        return None
    flops = 2.0 * m * oh * ow * (c // groups) * k * k
    if not 1e4 <= flops <= MAX_SYNTHETIC_FLOPS:
        return None
    node = Node("conv", "conv", ("x",), "y", ("W", "b"),
                attrs(kernel=(k, k), stride=(stride, stride), pads=(pad, pad, pad, pad), dilation=(1, 1),
                      groups=groups), mix.activation(rng))
    return _graph(node, {"x": Shape(c, h, w), "y": Shape(m, oh, ow)})


def synthetic_op(rng: np.random.Generator, mix: SyntheticMix = BROAD) -> Graph | None:
    """One random non-conv layer: pooling, element-wise, concat, LRN, fc, softmax."""
    # Pools twice as often as the rest: three layouts each, and a pool's layout decides its neighbours' layouts.
    op = str(rng.choice(["maxpool", "maxpool", "avgpool", "avgpool", "gap", "add", "scale", "act", "concat", "lrn",
                         "fc", "softmax"]))
    c, h = _channels(rng, 3, 1024), _loguniform_int(rng, 2, 112)
    w = h if rng.uniform() < 0.8 else _loguniform_int(rng, 2, 112)
    if c * h * w > 2_000_000:
        return None
    x = Shape(c, h, w)
    if op in ("maxpool", "avgpool"):
        k, s = int(rng.choice([2, 3, 3, 5])), int(rng.choice([1, 2, 2]))
        pad = int(rng.choice([0, k // 2]))
        oh, ow = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
        if oh < 1 or ow < 1:
            return None
        extra = {"count_include_pad": int(rng.choice([0, 1]))} if op == "avgpool" else {}
        node = Node(op, op, ("x",), "y", (), attrs(kernel=(k, k), stride=(s, s), pads=(pad, pad, pad, pad),
                                                  **extra))
        return _graph(node, {"x": x, "y": Shape(c, oh, ow)})
    if op == "gap":
        return _graph(Node(op, op, ("x",), "y"), {"x": x, "y": Shape(c, 1, 1)})
    if op == "add":
        return _graph(Node(op, op, ("x", "x2"), "y", act=mix.activation(rng)), {"x": x, "x2": x, "y": x})
    if op == "scale":
        return _graph(Node(op, op, ("x",), "y", ("s", "t"), act=mix.activation(rng)), {"x": x, "y": x})
    if op == "act":
        act = mix.activation(rng)
        return _graph(Node(op, op, ("x",), "y", act=act if act.kind != "none" else Activation("relu")),
                      {"x": x, "y": x})
    if op == "concat":
        parts = [Shape(_loguniform_int(rng, 8, 384), h, w) for _ in range(int(rng.integers(2, 5)))]
        names = tuple(f"x{k}" for k in range(len(parts)))
        shapes = dict(zip(names, parts)) | {"y": Shape(sum(p.c for p in parts), h, w)}
        return _graph(Node(op, op, names, "y"), shapes)
    if op == "lrn":
        node = Node(op, op, ("x",), "y", (), attrs(size=int(rng.choice([3, 5])), alpha=1e-4, beta=0.75, bias=1.0))
        return _graph(node, {"x": x, "y": x})
    k, n = _loguniform_int(rng, 16, 9216), _loguniform_int(rng, 2, 4096)
    if op == "fc":
        if k * n > 20_000_000:
            return None
        return _graph(Node(op, op, ("x",), "y", ("W", "b"), act=mix.activation(rng)),
                      {"x": Shape(k, 1, 1), "y": Shape(n, 1, 1)})
    return _graph(Node(op, op, ("x",), "y"), {"x": Shape(k, 1, 1), "y": Shape(k, 1, 1)})


def synthetic_calls(convs: int, ops: int, seed: int, mix: SyntheticMix = BROAD) -> list[KernelCall]:
    """The calls of `convs` random conv layers and `ops` other layers (and their tensors' layout transforms)."""
    graphs: list[Graph] = []
    for stream, (maker, count) in enumerate(((synthetic_conv, convs), (synthetic_op, ops))):
        rng = np.random.default_rng([seed, stream])  # one stream per kind: more convs leave the ops as they were
        made = 0
        while made < count:
            g = maker(rng, mix)
            if g is not None:
                graphs.append(g)
                made += 1
    calls = {c.key(): c for g in graphs for c in graph_calls(g)}
    return sorted(calls.values(), key=KernelCall.key)


def thin(calls: Sequence[KernelCall], per_function: int, seed: int) -> list[KernelCall]:
    """At most `per_function` calls of each non-conv function (a seeded sample): layout transforms and copies
    would otherwise outnumber the layers whose choice matters."""
    rng = np.random.default_rng(seed)
    by_function: dict[str, list[KernelCall]] = {}
    for call in sorted(calls, key=KernelCall.key):
        by_function.setdefault(call.function, []).append(call)
    kept: list[KernelCall] = []
    for function in sorted(by_function):
        group = by_function[function]
        if len(group) > per_function and group[0].struct != "tb_conv":  # conv shapes are what matters: all kept
            group = [group[i] for i in sorted(rng.choice(len(group), per_function, replace=False))]
        kept += group
    return sorted(kept, key=KernelCall.key)


def training_calls(synthetic_convs: int | Sequence[int] = 48, synthetic_ops: int = 150, per_function: int = 40,
                   seed: int = 0, networks: Sequence[str] = TRAIN_NETWORKS) -> list[KernelCall]:
    """The training set: every call of the training networks plus synthetic layers, thinned per function.
    `synthetic_convs`: conv layers of each mix in MIXES order (an int: the broad mix alone). Each mix's set is
    thinned on its own, then the sets are joined (the broad mix's set alone is the model's first training set)."""
    counts = (synthetic_convs,) if isinstance(synthetic_convs, int) else tuple(synthetic_convs)
    networks_calls = [network_calls(n) for n in networks]
    return union(*(thin(union(synthetic_calls(convs, synthetic_ops, seed, mix), *networks_calls), per_function, seed)
                   for mix, convs in zip(MIXES, counts)))


def union(*call_lists: Iterable[KernelCall]) -> list[KernelCall]:
    return sorted({c.key(): c for calls in call_lists for c in calls}.values(), key=KernelCall.key)


def measure_into_cache(calls: Sequence[KernelCall], cc: str, cflags: Sequence[str], cache_dir: Path,
                       progress: bool = True) -> dict[str, float]:
    """Median ms of every call on this machine with (cc, cflags), through the cost cache in `cache_dir`."""
    from tasobuild import native
    from tasobuild.costs.cache import CostCache, kernel_digest
    from tasobuild.costs.profile import MeasurePolicy, measure

    fingerprint = fingerprint_of(cc, cflags)
    kernels = native.load(cc, tuple(cflags))
    with CostCache(cache_dir) as cache:
        result = measure(calls, kernels, cache, fingerprint=fingerprint.digest, kernel_digest=kernel_digest(),
                         progress=progress, policy=MeasurePolicy(**BENCH_POLICY_ARGS))
    return {k: c.median_ms for k, c in result.costs.items()}


def target_of(cc: str, cflags: Sequence[str]):
    from tasobuild.target import Target

    return Target(name="bench", cc=cc, cflags=tuple(cflags), ldflags=("-lm",), profile=True, source=REPO / "bench")


def fingerprint_of(cc: str, cflags: Sequence[str]):
    from tasobuild.target import host_fingerprint

    return host_fingerprint(target_of(cc, cflags))
