"""Graph passes over the IR, tinygrad-style: each pass is a short table of rules, applied until none fires.

A rule looks at one node (with a read-only view of its neighbours) and returns the rewritten graph or None.
`PASSES` is the fixed order `import_onnx` applies them in. Each pass is a function Graph -> Graph.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tasobuild import ir
from tasobuild.importer.convert import PAD

LINEAR = ("conv", "fc")
ACTIVATED = ("conv", "fc", "add", "scale")  # ops that carry a fused activation


class NodeError(Exception):
    """A pass found a construct it cannot express; import_onnx turns it into a UserError naming the file."""

    def __init__(self, node: ir.Node, onnx_op: str, message: str) -> None:
        super().__init__(f"node '{node.name}' ({onnx_op}): {message}")


@dataclass(frozen=True)
class View:
    """The graph with its use lists, built once per scan."""

    g: ir.Graph
    producer: Mapping[str, ir.Node]
    uses: Mapping[str, tuple[ir.Node, ...]]

    @staticmethod
    def of(g: ir.Graph) -> View:
        uses: dict[str, list[ir.Node]] = defaultdict(list)
        for n in g.nodes:
            for t in dict.fromkeys(n.inputs):
                uses[t].append(n)
        return View(g, g.producers(), {k: tuple(v) for k, v in uses.items()})

    def consumers(self, tensor: str) -> tuple[ir.Node, ...]:
        return self.uses.get(tensor, ())

    def sole_producer(self, n: ir.Node, ops: Sequence[str]) -> ir.Node | None:
        """n's input producer if it is one of ops, n is its only consumer, and its output is not the graph's."""
        p = self.producer.get(n.inputs[0])
        if p is None or p.op not in ops or p.output in self.g.output_tensors or len(self.consumers(p.output)) != 1:
            return None
        return p


Rule = Callable[[View, ir.Node], "ir.Graph | None"]


def rewrite(g: ir.Graph, rules: Sequence[Rule]) -> ir.Graph:
    """Apply the first rule that fires on the first node it fires on, then rescan, until nothing fires."""
    while True:
        view = View.of(g)
        new = next((r for n in g.nodes for rule in rules if (r := rule(view, n)) is not None), None)
        if new is None:
            return g
        g = new


# --- graph surgery ------------------------------------------------------------------------------------------------

def edit(g: ir.Graph, remove: Sequence[ir.Node] = (), replace: Mapping[str, ir.Node] | None = None,
         constants: Mapping[str, np.ndarray] | None = None, rename: Mapping[str, str] | None = None) -> ir.Graph:
    """Drop nodes, replace nodes (by name, keeping their position), set constants, rename tensors in inputs."""
    gone = {n.name for n in remove}
    replace, rename = replace or {}, rename or {}
    nodes = []
    for n in g.nodes:
        if n.name in gone:
            continue
        n = replace.get(n.name, n)
        if any(t in rename for t in n.inputs):
            n = n.with_(inputs=tuple(rename.get(t, t) for t in n.inputs))
        nodes.append(n)
    consts = {c.name: c for c in g.constants}
    consts.update({k: ir.Constant.of(k, v) for k, v in (constants or {}).items()})
    return dataclasses.replace(g, nodes=tuple(nodes), constants=tuple(v for _, v in sorted(consts.items())))


def absorb(g: ir.Graph, producer: ir.Node, consumer: ir.Node, constants: Mapping[str, np.ndarray] | None = None,
           **changes: object) -> ir.Graph:
    """Fold `consumer` into `producer`: the merged node takes the consumer's output and provenance."""
    merged = producer.with_(output=consumer.output, fused=producer.fused + (consumer.name,) + consumer.fused, **changes)
    return edit(g, remove=(consumer,), replace={producer.name: merged}, constants=constants)


def bypass(v: View, n: ir.Node) -> ir.Graph | None:
    """Remove a node that computes the identity: its consumers read its input instead."""
    if n.output not in v.g.output_tensors:
        return edit(v.g, remove=(n,), rename={n.output: n.inputs[0]})
    p = v.sole_producer(n, tuple(ir.OPS) + (PAD,))
    if p is None:
        return None  # a graph output must keep its name; an identity on the input or a shared tensor stays
    return absorb(v.g, p, n)


# --- pass: remove what computes nothing ---------------------------------------------------------------------------

def _noop_reshape(v: View, n: ir.Node) -> ir.Graph | None:
    if n.op != "reshape" or v.g.shape(n.inputs[0]) != v.g.shape(n.output):
        return None
    return bypass(v, n)


def _reshape_of_reshape(v: View, n: ir.Node) -> ir.Graph | None:
    p = v.producer.get(n.inputs[0])
    if n.op != "reshape" or p is None or p.op != "reshape":
        return None
    return edit(v.g, replace={n.name: n.with_(inputs=p.inputs)})


def _noop_pool(v: View, n: ir.Node) -> ir.Graph | None:
    if n.op not in ("maxpool", "avgpool") or n.attr("kernel") != (1, 1) or n.attr("stride") != (1, 1) \
            or any(n.attr("pads")):
        return None
    return bypass(v, n)


def _dead(v: View, n: ir.Node) -> ir.Graph | None:
    if n.output in v.g.output_tensors or v.consumers(n.output):
        return None
    return edit(v.g, remove=(n,))


def remove_noops(g: ir.Graph) -> ir.Graph:
    return rewrite(g, (_noop_reshape, _reshape_of_reshape, _noop_pool, _dead))


# --- pass: zero padding into the consumer's own padding -----------------------------------------------------------

def _pad_foldable(n: ir.Node) -> bool:
    if n.op == "conv":
        return True
    # avgpool counts padded zeros only with count_include_pad=1 (or when it has no padding of its own to exclude)
    return n.op == "avgpool" and (n.attr("count_include_pad") == 1 or not any(n.attr("pads")))


def _fold_pad(v: View, n: ir.Node) -> ir.Graph | None:
    if n.op != PAD:
        return None
    users = v.consumers(n.output)
    blocker = next((u for u in users if not _pad_foldable(u)), None)
    if blocker is not None or n.output in v.g.output_tensors or not users:
        what = f"'{blocker.name}' ({blocker.op})" if blocker else "the graph output"
        raise NodeError(n, "Pad", f"cannot be folded into {what}; a Pad must feed only Conv or AveragePool "
                                  "with count_include_pad=1")
    grown = {}
    for u in users:
        pads = tuple(a + b for a, b in zip(u.attr("pads"), n.attr("pads")))
        extra = {"count_include_pad": 1} if u.op == "avgpool" else {}
        grown[u.name] = u.with_(inputs=(n.inputs[0],) + u.inputs[1:], attrs={**dict(u.attrs), "pads": pads, **extra},
                                fused=u.fused + (n.name,))
    return edit(v.g, remove=(n,), replace=grown)


def fold_pads(g: ir.Graph) -> ir.Graph:
    return rewrite(g, (_fold_pad,))


# --- pass: per-channel affine (BatchNormalization, Mul/Add by constants) into the producer -------------------------

def _scale_into_linear(v: View, n: ir.Node) -> ir.Graph | None:
    p = v.sole_producer(n, LINEAR) if n.op == "scale" else None
    if p is None or p.act.kind != "none":
        return None
    s, t = (v.g.const(k).astype(np.float64) for k in n.weights)
    w, b = (v.g.const(k).astype(np.float64) for k in p.weights)
    w = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
    return absorb(v.g, p, n, constants={p.weights[0]: w, p.weights[1]: b * s + t}, act=n.act)


def _scale_into_scale(v: View, n: ir.Node) -> ir.Graph | None:
    p = v.sole_producer(n, ("scale",)) if n.op == "scale" else None
    if p is None or p.act.kind != "none":
        return None
    s2, t2 = (v.g.const(k).astype(np.float64) for k in n.weights)
    s1, t1 = (v.g.const(k).astype(np.float64) for k in p.weights)
    return absorb(v.g, p, n, constants={p.weights[0]: s1 * s2, p.weights[1]: t1 * s2 + t2}, act=n.act)


def fold_scales(g: ir.Graph) -> ir.Graph:
    return rewrite(g, (_scale_into_linear, _scale_into_scale))


# --- pass: activations into the op that produces their input -------------------------------------------------------

def _act_into_producer(v: View, n: ir.Node) -> ir.Graph | None:
    p = v.sole_producer(n, ACTIVATED) if n.op == "act" else None
    if p is None or p.act.kind != "none":
        return None
    return absorb(v.g, p, n, act=n.act)


def fuse_activations(g: ir.Graph) -> ir.Graph:
    return rewrite(g, (_act_into_producer,))


# --- final: only live tensors and constants, sorted -----------------------------------------------------------------

def tidy(g: ir.Graph) -> ir.Graph:
    leftover = next((n for n in g.nodes if n.op not in ir.OPS), None)
    if leftover is not None:
        raise NodeError(leftover, leftover.op, "was not folded away")
    live = set(g.input_tensors) | {n.output for n in g.nodes} | {t for n in g.nodes for t in n.inputs}
    used = {w for n in g.nodes for w in n.weights}
    return dataclasses.replace(g, shapes=tuple((k, s) for k, s in g.shapes if k in live),
                   constants=tuple(c for c in g.constants if c.name in used),
                   dtypes=tuple((k, d) for k, d in g.dtypes if k in live),
                   quant=tuple((k, q) for k, q in g.quant if k in live))


PASSES: tuple[Callable[[ir.Graph], ir.Graph], ...] = (
    remove_noops, fold_pads, fold_scales, fuse_activations, remove_noops, tidy,
)
