"""Names from a hostile model in the HTML report (`tasobuild report`): every node and tensor name reaches the page
as text, HTML-escaped, its acting characters made visible; none becomes markup, and the page still renders in
headless Chromium with no console message (an injected script would also be refused by the page's policy, which
Chromium reports on the console)."""

from __future__ import annotations

import html
from pathlib import Path

import onnx

from tests.e2e import tasobuild, write_target_spec
from tests.hostile.test_names_and_numbers import Net, make_model
from tests.test_report import CHROMIUM, assert_renders

NAMES = ("<script>alert(1)</script>", '"><img src=x onerror=alert(2)>', "c</td></tr></table>\u202e&amp;")
TENSORS = ("<!-- h1", "<style>body{display:none}</style>")  # conv1's output, ReLU's (what stays once fused)


def test_hostile_names_are_text_in_the_report(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(make_model(Net(conv_names=NAMES, hidden=TENSORS, input_name="<x>", output_name="y\x1b[2J")),
              str(model))
    spec = write_target_spec(tmp_path, model, "host", costs="model")
    page_path = tmp_path / "report.html"
    tasobuild("report", "-c", str(spec), "-o", str(page_path), "--points", "2")
    page = page_path.read_text(encoding="utf-8")
    for raw in (*NAMES, *TENSORS, "<x>", "y\x1b"):
        assert raw not in page
    assert "<script" not in page and page.count("<img") == 3 and page.count("<style>") == 1
    assert page.count("<table>") == page.count("</table>")
    assert "\u202e" not in page and "\x1b" not in page
    assert html.escape(NAMES[0]) in page  # the name is shown, as text
    assert html.escape("c</td></tr></table><U+202E>&amp;") in page
    assert html.escape(TENSORS[1]) in page and "&lt;x&gt;" in page and "y&lt;U+001B&gt;[2J" in page
    if CHROMIUM is not None:  # the markup-free page renders as a whole, with its tables intact
        assert_renders(page_path, tmp_path, "Memory-latency frontier", "&lt;script&gt;alert(1)&lt;/script&gt;")
