"""What a long step shows on stderr while it runs: a spinner or a bar on a terminal, a line every few seconds
otherwise (a CI log, a pipe), so that a build is never silent for tens of seconds.

Two shapes of work: `activity` (one thing of unknown length, e.g. compiling the kernel bindings) and `counting`
(N things, e.g. profiling N kernel calls). Both are no-ops when `enabled` is False (`--json` keeps stderr for logs).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# How often a line is printed when stderr is not a terminal.
LINE_EVERY_SECONDS = 5.0


def _is_terminal() -> bool:
    return sys.stderr.isatty()


def _line(text: str) -> None:
    print(f"tasobuild: {text}", file=sys.stderr, flush=True)


@contextmanager
def activity(message: str, enabled: bool, every_s: float = LINE_EVERY_SECONDS) -> Iterator[None]:
    """While the block runs: a spinner with `message` on a terminal; elsewhere `message` at once, then a line
    every `every_s` seconds saying it is still running."""
    if not enabled:
        yield
        return
    if _is_terminal():
        from rich.console import Console

        with Console(stderr=True).status(message):
            yield
        return
    _line(f"{message} ...")
    started, done = time.monotonic(), threading.Event()

    def remind() -> None:
        while not done.wait(every_s):
            _line(f"{message}: still running ({time.monotonic() - started:.0f} s)")

    reminder = threading.Thread(target=remind, daemon=True)
    reminder.start()
    try:
        yield
    finally:
        done.set()
        reminder.join()


@contextmanager
def counting(what: str, total: int, enabled: bool, every_s: float = LINE_EVERY_SECONDS
             ) -> Iterator[Callable[[str], None]]:
    """Yields `step(description)`, called before each of `total` items: a bar on a terminal; elsewhere a line
    "what: k/total" at most every `every_s` seconds (and the first at once)."""
    if not enabled:
        yield lambda description: None
        return
    if _is_terminal():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   TextColumn("{task.description}"))
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("", total=total)
            started = [False]

            def advance(description: str) -> None:
                if started[0]:
                    bar.advance(task)
                started[0] = True
                bar.update(task, description=description)

            yield advance
        return
    state = {"done": 0, "said": float("-inf")}
    began = time.monotonic()

    def step(description: str) -> None:
        now = time.monotonic()
        if now - state["said"] >= every_s:
            _line(f"{what}: {int(state['done'])}/{total} ({now - began:.0f} s) {description}")
            state["said"] = now
        state["done"] += 1

    yield step
