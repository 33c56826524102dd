"""The report as one HTML page that opens anywhere with no network: its CSS inline, its pictures inline as base64
PNG, no script, and a Content-Security-Policy that forbids fetching anything. Every name that comes from the model
or the spec is escaped for HTML after its acting characters are made visible (tasobuild.text.terminal_text), so a
hostile name is shown, never run."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tasobuild.text import terminal_text
from tasobuild.units import format_size
from tasobuild.visual.facts import Facts
from tasobuild.visual.plots import arena_png, layers_png, pareto_png

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; } td.name { max-width: 28em; overflow-wrap: anywhere; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
p.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 1em; }
"""
# Nothing may be fetched: images are data: URLs and the style is inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass(frozen=True)
class Report:
    """The page and its pictures (the same PNG bytes the page embeds), by file name."""

    html: bytes
    pngs: Mapping[str, bytes]


def render(facts: Facts) -> Report:
    pngs = {"pareto.png": pareto_png(facts.frontier), "arena.png": arena_png(facts),
            "layers.png": layers_png(facts.layers)}
    return Report(page(facts, pngs).encode("utf-8"), pngs)


def text(value: object) -> str:
    """A value from outside (a name from the model, a path from the spec) as inert HTML text."""
    return html.escape(terminal_text(str(value)), quote=True)


def page(facts: Facts, pngs: Mapping[str, bytes]) -> str:
    f = facts
    title = f"tasobuild report: {text(f.project)}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title>", f"<style>{CSS}</style>", "</head>", "<body>", f"<h1>{title}</h1>",
        _summary(f),
        "<h2>Plan per layer</h2>",
        "<p>Predicted: the performance model's time for the layer's kernel calls (or the plan's cost when that is "
        "itself a prediction). Measured: the time of the same calls measured on this machine, or imported from the "
        "device (<code>tasobuild costs import</code>), where the plan's cost is one. Cost source: where the cost "
        "the solver used comes from.</p>",
        _layer_table(f), _call_table(f), _transform_table(f), _img(pngs, "layers.png", "time per layer"),
        "<h2>Arena over time</h2>",
        f"<p>Every buffer is a box: its offset and size up, its lifetime across (steps, as numbered above). The "
        f"arena is {format_size(f.arena_bytes)}; no placement of this plan's buffers can be smaller than the most "
        f"bytes live at one step, {format_size(f.lower_bound_bytes)}. Placement: {text(f.placement_status)} "
        f"(proven bound {format_size(f.placement_bound_bytes)}).</p>",
        _img(pngs, "arena.png", "arena over time"), _buffer_table(f),
        "<h2>Memory-latency frontier</h2>", _frontier(f), _img(pngs, "pareto.png", "memory-latency frontier"),
        "<h2>RAM and flash</h2>", _footprint(f),
        "</body>", "</html>", "",
    ]
    return "\n".join(parts)


def _summary(f: Facts) -> str:
    rows = [
        ("network", text(f.network)), ("target", text(f.target)), ("objective", text(f.objective)),
        ("predicted latency", f"{f.predicted_ms:.4f} ms"),
        ("arena", f"{format_size(f.arena_bytes)} of a {format_size(f.budget_bytes)} budget"),
        ("live-set lower bound", format_size(f.lower_bound_bytes)),
        ("solver", f"{text(f.solver_status)} (optimal: proven fastest within the budget; feasible: the best found "
                   f"in optimizer.time_limit)"),
    ]
    rows += [(f"baseline {b.name}", f"{b.predicted_ms:.4f} ms, arena {format_size(b.arena_bytes)}: {text(b.meaning)}")
             for b in f.frontier.baselines]
    return '<dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: frozenset[int] = frozenset(),
           names: frozenset[int] = frozenset()) -> str:
    """Cells are HTML already (escaped by the caller)."""
    def cell(i: int, value: str) -> str:
        cls = ' class="n"' if i in numeric else ' class="name"' if i in names else ""
        return f"<td{cls}>{value}</td>"

    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(cell(i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _layer_table(f: Facts) -> str:
    rows = [(str(layer.step), text(layer.name), text(layer.op), text(layer.primitive),
             f"{text(layer.layout_in)}&rarr;{text(layer.layout_out)}", text(layer.tiling),
             format_size(layer.workspace_bytes) if layer.workspace_bytes else "", _ms(layer.predicted_ms),
             _ms(layer.measured_ms), text(" + ".join(layer.cost_source))) for layer in f.layers]
    return _table(("step", "node", "op", "primitive", "layouts", "fused group", "workspace", "predicted ms",
                   "measured ms", "cost source"), rows, numeric=frozenset({0, 6, 7, 8}), names=frozenset({1}))


def _call_table(f: Facts) -> str:
    # a call key is generated (a kernel and its numbers): shown whole, escaped all the same
    rows = [(str(c.step), f"<code>{html.escape(c.call)}</code>", _ms(c.median_ms), _ms(c.spread_ms), text(c.source))
            for c in f.calls]
    return (f"<details><summary>the {len(f.calls)} kernel calls of the plan, each with its cost and where it comes "
            f"from</summary>" + _table(("step", "call", "ms", "spread ms", "source"), rows,
                                       numeric=frozenset({0, 2, 3}), names=frozenset({1})) + "</details>")


def _transform_table(f: Facts) -> str:
    if not f.transforms:
        return "<p>No layout transforms.</p>"
    rows = [(str(t.step), text(t.tensor), f"{text(t.from_layout)}&rarr;{text(t.to_layout)}", _ms(t.planned_ms))
            for t in f.transforms]
    return "<p>Layout transforms, each run before its step:</p>" + _table(
        ("before step", "tensor", "layouts", "predicted ms"), rows, numeric=frozenset({0, 3}), names=frozenset({1}))


def _buffer_table(f: Facts) -> str:
    rows = [(text(b.buffer), "workspace" if b.workspace else "tensor", str(b.offset), str(b.size),
             f"{b.first_step}&ndash;{b.last_step}") for b in f.boxes]
    return (f"<details><summary>{len(f.boxes)} buffers</summary>"
            + _table(("buffer", "kind", "offset", "bytes", "steps"), rows, numeric=frozenset({2, 3}),
                     names=frozenset({0})) + "</details>")


def _frontier(f: Facts) -> str:
    fr = f.frontier
    rows = [(p.label, format_size(p.arena_bytes), format_size(p.peak_bytes), f"{p.predicted_ms:.4f}",
             text(p.status), text(p.what)) for p in fr.points]
    note = f'<p class="note">{text(fr.note)}</p>' if fr.note else ""
    return ("<p>The fastest plan under each of several budgets, from the smallest possible arena to the fastest "
            f"plan's; the dashed line is the budget ({format_size(fr.budget_bytes)}), the markers the baselines.</p>"
            + note + _table(("point", "arena", "peak live", "predicted ms", "solver", "what it runs"), rows,
                            numeric=frozenset({1, 2, 3})))


def _footprint(f: Facts) -> str:
    fp = f.footprint
    ram = (f"{format_size(fp.ram_bytes)}: arena {format_size(fp.arena_bytes)} + stack {format_size(fp.stack_bytes)}"
           f" + static data {format_size(fp.static_bytes)}")
    flash = (f"{format_size(fp.flash_bytes)}: code about {format_size(fp.code_bytes)} + weights "
             f"{format_size(fp.weight_bytes)}")
    if f.ram_needed_bytes != fp.ram_bytes:
        ram += f"; with code and weights, which this board loads into RAM: {format_size(f.ram_needed_bytes)}"
    rows = [("RAM needed", ram), ("flash needed", flash),
            ("target RAM", _against(f.ram_needed_bytes, f.target_ram_bytes)),
            ("target flash", _against(fp.flash_bytes, f.target_flash_bytes))]
    return ('<dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"
            "<p>Code and static data are estimates that err on the large side; the arena and the weights are "
            "exact.</p>")


def _against(need: int, have: int | None) -> str:
    if have is None:
        return "not stated by the target"
    if need <= have:
        return f"{format_size(have)}: fits, {format_size(have - need)} to spare"
    return f"{format_size(have)}: does NOT fit, {format_size(need - have)} short (build refuses this plan)"


def _img(pngs: Mapping[str, bytes], name: str, alt: str) -> str:
    return f'<p><img alt="{alt}" src="data:image/png;base64,{base64.b64encode(pngs[name]).decode("ascii")}"></p>'
