"""Rich rendering of a split outcome. Presentation only; every user-derived string is escaped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from tunewise.pipeline.split_file import SplitOutcome

SHOWN_LABELS = 8


def render_split(outcome: SplitOutcome, console: Console) -> None:
    summary = outcome.summary
    table = Table(title=escape(f"Split (seed {summary['seed']}) -> {outcome.out_dir}"))
    for name in ("split", "examples", "groups", "labels"):
        table.add_column(name)
    for name, count in summary["counts"].items():
        labels = (summary.get("label_counts") or {}).get(name) or {}
        shown = ", ".join(f"{k}: {v}" for k, v in list(labels.items())[:SHOWN_LABELS])
        more = f" … {len(labels) - SHOWN_LABELS} more" if len(labels) > SHOWN_LABELS else ""
        table.add_row(name, f"{count:,}", f"{summary['groups'][name]:,}", escape(shown) + more)
    console.print(table)
    if outcome.skipped_lines:
        console.print(f"[yellow]{outcome.skipped_lines:,} line(s) with errors were left out; "
                      "run `tunewise check` to see them.[/]")
    if outcome.run is not None:
        console.print(f"run [bold]{outcome.run.id}[/] at {escape(str(outcome.run.path))}")
