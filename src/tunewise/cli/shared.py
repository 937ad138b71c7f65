"""What every command module of the CLI shares: the consoles, the one-line failure, the common options and the
argument helpers. Kept apart from app.py so a command can live in its own module (registered by app.py)
without an import cycle. No logic here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err = Console(stderr=True)

TaskOpt = Annotated[str | None, typer.Option("--task", help="classify | extract | generate (default: inferred)")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Tokenizer/model: local folder or hub id (default: bundled SmolLM2)")]
MapOpt = Annotated[list[str] | None, typer.Option("--map", help="Column mapping ROLE=COLUMN, e.g. --map input=body --map output=category")]
FormatOpt = Annotated[str | None, typer.Option("--format", help="jsonl | json | csv | parquet | xlsx (default: from the extension)")]
EncodingOpt = Annotated[str | None, typer.Option("--encoding", help="Text encoding, e.g. cp1252 or utf-16 (default: UTF-8, else detected)")]
SheetOpt = Annotated[str | None, typer.Option("--sheet", help="Excel: the sheet to read (default: the first)")]
RunsOpt = Annotated[Path, typer.Option("--runs-dir", help="Where run folders and the registry live")]
MaxLineOpt = Annotated[int, typer.Option("--max-line-bytes", min=1, max=2**31 - 1,
                                         help="JSONL lines and CSV fields longer than this are errors")]


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print("[bold red]error:[/] " + escape(message), soft_wrap=True)
    return typer.Exit(code)


def mapping_of(items: list[str] | None):
    from tunewise.data.shapes import ColumnMapping, MappingError

    if not items:
        return None
    try:
        return ColumnMapping.parse(items)
    except MappingError as exc:
        raise fail(str(exc)) from None


def existing(path: Path) -> Path:
    if not path.exists():
        raise fail(f"{path}: no such file")
    if path.is_dir():
        raise fail(f"{path} is a folder; give a data file (.jsonl, .json, .csv, .tsv, .parquet or .xlsx)")
    return path


def cannot_write(path: Path | None, exc: OSError) -> typer.Exit:
    where = exc.filename or path
    return fail(f"cannot write {where}: {exc.strerror or exc}; choose a writable path")
