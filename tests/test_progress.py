"""Progress off a terminal: plain lines at a steady interval with an ETA, not bars printed only at the end."""

from __future__ import annotations

import io

from rich.console import Console

from tunewise.pipeline.experiment import rich_progress
from tunewise.pipeline.progress import plain_progress, progress_line


def test_plain_lines_come_at_the_interval_with_an_eta() -> None:
    lines: list[str] = []
    now = [0.0]
    with plain_progress(lines.append, interval=10, clock=lambda: now[0]) as factory:
        with factory("search", 100) as advance:
            for _ in range(10):
                now[0] += 4
                advance(10)
    assert lines[0] == "search: 0/100 (0%) elapsed 0:00:00 eta ?"
    # a line at 12 s, 24 s and 36 s of a 40 s task (not one per advance), then the final one
    assert lines[1] == "search: 30/100 (30%) elapsed 0:00:12 eta 0:00:28"
    assert len(lines) == 5 and lines[-1] == "search: 100/100 (100%) elapsed 0:00:40 eta 0:00:00"


def test_progress_line_formats_hours() -> None:
    assert progress_line("index", 1, 4, 3600) == "index: 1/4 (25%) elapsed 1:00:00 eta 3:00:00"


def test_rich_progress_writes_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    with rich_progress(Console(file=out, force_terminal=False, width=200)) as factory:
        with factory("classical (search)", 3) as advance:
            advance(3)
    assert out.getvalue().splitlines() == ["classical (search): 0/3 (0%) elapsed 0:00:00 eta ?",
                                           "classical (search): 3/3 (100%) elapsed 0:00:00 eta 0:00:00"]
