"""`tunewise review ...`: what people's reviews of a run are turned into. Registered by app.py; `export` only
parses, calls pipeline/review_export.py and prints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape

from tunewise.cli.shared import console, fail

review_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="Use the reviews saved in a run folder (the web UI's Review page writes them).")


@review_app.command("export")
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run folder made by `tunewise run`")],
    out: Annotated[Path, typer.Argument(help="The file to write: .jsonl (chat records), .csv or .tsv")],
    unresolved: Annotated[str, typer.Option("--unresolved", help="A reference marked wrong with no correction: "
                                                                  "drop the example, or keep it as it was")] = "drop",
) -> None:
    """Write the run's examples (its frozen train/val/test split) with the references reviewers corrected.

    The data file the run read and the run folder are never written to.
    """
    from tunewise.pipeline.review_export import ExportError, export_reviewed
    from tunewise.store.runs import RunError

    if unresolved not in ("drop", "keep"):
        raise fail(f"--unresolved {unresolved}: choose drop or keep")
    if not run_dir.is_dir():
        raise fail(f"{run_dir}: not a folder; give a run folder such as runs/<run-id>")
    mode: Literal["drop", "keep"] = "drop" if unresolved == "drop" else "keep"
    try:
        summary = export_reviewed(run_dir, out, mode)
    except (ExportError, RunError) as exc:
        raise fail(str(exc)) from None
    for problem in summary.problems:
        console.print(f"[yellow]warning:[/] {escape(problem)}", soft_wrap=True)
    console.print(f"wrote {summary.examples:,} examples to {escape(str(out))}: {len(summary.corrected)} reference"
                  f"{'' if len(summary.corrected) == 1 else 's'} corrected", highlight=False)
    if summary.unresolved:
        what = "left out" if mode == "drop" else "kept as they were"
        console.print(f"{len(summary.unresolved)} marked wrong without a correction, {what}: "
                      f"{escape(', '.join(summary.unresolved[:10]))}", highlight=False, soft_wrap=True)
