"""The report's pictures as PNG bytes, drawn by matplotlib's Agg renderer on Figures of their own (no pyplot, no
global state). The bytes are the same for the same facts: no date or software version is written into the PNG.
No name from the model is drawn (steps and labels only; the page's tables map them to names), so nothing in a
picture needs escaping."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from typing import Literal

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from tasobuild.visual.facts import Facts, Layer
from tasobuild.visual.frontier import Frontier

KIB = 1024.0
DPI = 100
BASELINE_MARKERS = {"greedy": ("X", "#9467bd"), "time_only": ("*", "#ff7f0e")}
TENSOR_COLOUR, WORKSPACE_COLOUR = "#4c78a8", "#f58518"
PREDICTED_COLOUR, MEASURED_COLOUR = "#9ecae9", "#2ca02c"


def png_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI, metadata={"Software": None})  # no version or date: same bytes
    return out.getvalue()


def pareto_png(frontier: Frontier) -> bytes:
    """The frontier (arena against predicted time), each point labelled with its letter and what it runs, the
    baselines as markers and the budget as a vertical line; a single point says why it is alone."""
    fig = Figure(figsize=(8, 6))
    ax = fig.add_subplot()
    points = frontier.points
    xs, ys = [p.arena_bytes / KIB for p in points], [p.predicted_ms for p in points]
    ax.step(xs, ys, where="post", marker="o", color=TENSOR_COLOUR, label="frontier (solver's plans)", zorder=5)
    for p, x, y in zip(points, xs, ys):
        ax.annotate(f"{p.label}: {textwrap.fill(p.what, 38)}", (x, y), xytext=(6, 6), textcoords="offset points",
                    fontsize=7, va="bottom")
    for b in frontier.baselines:
        marker, colour = BASELINE_MARKERS.get(b.name, ("s", "#7f7f7f"))
        ax.scatter([b.arena_bytes / KIB], [b.predicted_ms], marker=marker, color=colour, s=120,
                   zorder=4, alpha=0.8, label=f"baseline {b.name}: {b.meaning}")
    ax.axvline(frontier.budget_bytes / KIB, color="#d62728", linestyle="--", label="memory budget")
    if frontier.note:
        ax.text(0.02, 0.02, textwrap.fill(frontier.note, 90), transform=ax.transAxes, fontsize=8, va="bottom",
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "#999999"})
    ax.set_xlabel("arena (KiB)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(f"{frontier.project}: memory-latency frontier")
    ax.margins(x=0.25, y=0.25)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=1, frameon=False)
    fig.tight_layout()
    return png_bytes(fig)


def arena_png(facts: Facts) -> bytes:
    """The arena over time: every buffer a box, its offset and size up, its lifetime across (steps, the layer table's
    numbering); the arena, the live-set lower bound and the budget as lines."""
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    for box in facts.boxes:
        ax.add_patch(Rectangle((box.first_step, box.offset / KIB), box.last_step + 1 - box.first_step,
                               box.size / KIB, facecolor=WORKSPACE_COLOUR if box.workspace else TENSOR_COLOUR,
                               edgecolor="white", linewidth=0.8, alpha=0.9))
    ax.axhline(facts.arena_bytes / KIB, color="black", linewidth=1)
    ax.axhline(facts.lower_bound_bytes / KIB, color="#7f7f7f", linestyle=":")
    ax.axhline(facts.budget_bytes / KIB, color="#d62728", linestyle="--")
    ax.set_xlim(0, max(facts.steps, 1))
    ax.set_ylim(0, max(facts.arena_bytes, facts.budget_bytes) / KIB * 1.05)
    ax.set_xlabel("step (layer number in the plan table; the last is the epilogue)")
    ax.set_ylabel("arena offset (KiB)")
    ax.set_title(f"{facts.project}: arena {facts.arena_bytes / KIB:g} KiB over time")
    ax.legend(handles=[Patch(color=TENSOR_COLOUR, label="tensor"), Patch(color=WORKSPACE_COLOUR, label="workspace"),
                       _line("black", "-", "arena"), _line("#7f7f7f", ":", "live-set lower bound"),
                       _line("#d62728", "--", "memory budget")], fontsize=7, loc="upper right")
    fig.tight_layout()
    return png_bytes(fig)


def layers_png(layers: Sequence[Layer]) -> bytes:
    """Time per layer: predicted, and measured where the plan's cost is a real time."""
    fig = Figure(figsize=(8, max(2.5, 0.22 * len(layers) + 1.2)))
    ax = fig.add_subplot()
    ys = list(range(len(layers)))
    ax.barh([y - 0.2 for y in ys], [layer.predicted_ms or 0.0 for layer in layers], height=0.4,
            color=PREDICTED_COLOUR, label="predicted (performance model, or the plan's prediction)")
    ax.barh([y + 0.2 for y in ys], [layer.measured_ms or 0.0 for layer in layers], height=0.4,
            color=MEASURED_COLOUR, label="measured (or imported from the device)")
    ax.set_yticks(ys, [str(layer.step) for layer in layers], fontsize=7)
    ax.invert_yaxis()
    ax.set_ylabel("step")
    ax.set_xlabel("ms")
    ax.set_title("time per layer")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return png_bytes(fig)


def _line(colour: str, style: Literal["-", ":", "--"], label: str) -> Line2D:
    return Line2D([], [], color=colour, linestyle=style, label=label)
