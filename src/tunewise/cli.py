"""The `tunewise` command line: parse arguments, call stage functions, print with Rich. No logic here."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Should you fine-tune? Measure it on your own data.")
console = Console()
err = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Should you fine-tune? Measure it on your own data."""

TaskOpt = Annotated[Optional[str], typer.Option("--task", help="classify | extract | generate (default: inferred)")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="Tokenizer/model: local folder or hub id (default: bundled SmolLM2)")]
MapOpt = Annotated[Optional[list[str]], typer.Option("--map", help="Column mapping ROLE=COLUMN, e.g. --map input=body --map output=category")]
FormatOpt = Annotated[Optional[str], typer.Option("--format", help="jsonl | json | csv | parquet (default: from the extension)")]


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _mapping(items: list[str] | None):
    from tunewise.data.shapes import ColumnMapping, MappingError

    if not items:
        return None
    try:
        return ColumnMapping.parse(items)
    except MappingError as exc:
        raise fail(str(exc)) from None


def _existing(path: Path) -> Path:
    if not path.exists():
        raise fail(f"{path}: no such file")
    if path.is_dir():
        raise fail(f"{path} is a folder; give a data file (.jsonl, .json, .csv or .parquet)")
    return path


@app.command()
def check(
    data: Annotated[Path, typer.Argument(help="Data file to check")],
    task: TaskOpt = None,
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    fix: Annotated[Optional[Path], typer.Option("--fix", help="Write a cleaned copy to this path (JSONL)")] = None,
    redact_pii: Annotated[bool, typer.Option("--redact-pii", help="With --fix: replace personal data and secrets")] = False,
    fmt: FormatOpt = None,
    mapping: MapOpt = None,
    no_pii: Annotated[bool, typer.Option("--no-pii", help="Skip the PII and secrets scan")] = False,
    max_line_bytes: Annotated[int, typer.Option(help="Lines longer than this are errors")] = 4 * 1024 * 1024,
) -> None:
    """Report every problem in a data file, line by line, before any compute is spent. Exit 2 on errors."""
    from tunewise.data.check_report import check_file
    from tunewise.data.check_view import render_check
    from tunewise.data.checks import CheckOptions
    from tunewise.data.fix import FixError, fix_file

    _existing(data)
    column_mapping = _mapping(mapping)
    try:
        with err.status(f"Checking {data} …", spinner="dots") if not as_json else nullcontext():
            report = check_file(data, task=task, model=model, fmt=fmt, mapping=column_mapping,
                                max_line_bytes=max_line_bytes, options=CheckOptions(scan_pii=not no_pii))
    except ValueError as exc:
        raise fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n")
    else:
        render_check(report, console)
    if fix is not None:
        try:
            result = fix_file(report, fix, redact_pii=redact_pii)
        except FixError as exc:
            raise fail(str(exc)) from None
        (err if as_json else console).print(
            f"[bold]fixed:[/] kept {result.kept:,}, dropped {result.dropped:,}, repaired {result.repaired:,}, "
            f"redacted {result.redacted:,} span(s) -> {result.output} (report: {result.report_path})")
    raise typer.Exit(report.exit_code)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
