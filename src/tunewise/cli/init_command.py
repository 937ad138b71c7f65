"""`tunewise init`: write an experiment file: the commented template, or (`--from DATA`) one made for that data.

Registered on the app by cli/app.py. Parses, calls `pipeline.init_from`, prints; no decisions here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tunewise.cli.shared import (
    EncodingOpt,
    FormatOpt,
    MapOpt,
    SheetOpt,
    TaskOpt,
    cannot_write,
    console,
    existing,
    fail,
    mapping_of,
)

ArmsOpt = Annotated[str | None, typer.Option(
    "--arms", help="With --from: comma-separated arm types (default: zero_shot,few_shot,retrieval,classical)")]


def init(
    path: Annotated[Path, typer.Argument(help="Where to write the experiment file")] = Path("experiment.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Print every field and what it means instead")] = False,
    data: Annotated[Path | None, typer.Option("--from", help="Write an experiment made for this data file")] = None,
    task: TaskOpt = None,
    arms: ArmsOpt = None,
    fmt: FormatOpt = None,
    mapping: MapOpt = None,
    encoding: EncodingOpt = None,
    sheet: SheetOpt = None,
    test: Annotated[Path | None, typer.Option("--test", help="With --from: your own test file (instead of a random test split)")] = None,
    val: Annotated[Path | None, typer.Option("--val", help="With --from: your own validation file")] = None,
) -> None:
    """Write a commented example experiment to edit, or with --from DATA one ready to run on that data."""
    from importlib.resources import files

    from tunewise.config import dump_schema_doc
    from tunewise.store.atomic import atomic_write_text

    if explain:
        console.print(dump_schema_doc(), markup=False, highlight=False)
        return
    if path.exists() and not force:
        raise fail(f"{path} exists; pass --force to replace it")
    if data is None:
        text = files("tunewise.templates").joinpath("experiment.yaml").read_text(encoding="utf-8")
        hint = "set data.path and the task, then"
    else:
        held_out = {name: existing(p) for name, p in (("test", test), ("val", val)) if p is not None}
        text = _drafted(existing(data), path, task, arms, fmt, mapping, encoding, sheet, held_out)
        hint = "check it, then"
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    console.print(f"wrote {escape(str(path))}: {hint} `tunewise run {escape(str(path))}`", soft_wrap=True)


def _drafted(data: Path, path: Path, task: str | None, arms: str | None, fmt: str | None, mapping: list[str] | None,
             encoding: str | None, sheet: str | None, held_out: dict[str, Path]) -> str:
    from tunewise.pipeline.init_from import InitError, draft_experiment

    try:
        draft = draft_experiment(data, path, task=task, arms=[a.strip() for a in arms.split(",")] if arms else None,
                                 fmt=fmt, mapping=mapping_of(mapping), encoding=encoding, sheet=sheet,
                                 held_out=held_out)
    except (InitError, ValueError) as exc:
        raise fail(str(exc)) from None
    dataset = draft.report.dataset
    console.print(f"{escape(str(data))}: {len(dataset.examples):,} examples, task {draft.report.task}"
                  + (f", encoding {dataset.encoding}" if dataset.encoding else ""), soft_wrap=True)
    if dataset.inferred is not None and dataset.inferred.mapping is not None:
        console.print(f"inferred columns ({dataset.inferred.confidence} confidence): "
                      f"{escape(dataset.inferred.map_args())}", soft_wrap=True)
    for note in draft.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    return draft.text
