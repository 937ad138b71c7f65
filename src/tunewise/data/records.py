"""What every reader returns: raw records (line number + parsed value), the issues found, and facts about the
bytes that `--fix` needs. Shared by the container readers (readers.py for JSON and JSONL, tabular.py for CSV,
TSV, Parquet and Excel) so neither imports the other. Knows nothing about shapes or tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewise.schema import Issue

BOM = b"\xef\xbb\xbf"
DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024
# Formats whose records may be rows of a table; JSON and JSONL only when their records are flat (formats._flat).
TABULAR = ("csv", "parquet", "xlsx", "json", "jsonl")


def fix_name(path: str | Path, fmt: str | None) -> str:
    """The cleaned file to suggest for `--fix`: a table stays a table (CSV, or TSV for a .tsv), so the experiment's
    column mapping still applies to it; JSONL is the cleaned form of JSON and JSONL."""
    if fmt in ("csv", "xlsx", "parquet"):
        return "clean.tsv" if Path(path).suffix.lower() == ".tsv" else "clean.csv"
    return "clean.jsonl"


@dataclass(slots=True)
class RawRecord:
    line: int
    value: Any


@dataclass(slots=True)
class ReadOutcome:
    """Everything a reader found: parsed records, issues, and facts `--fix` needs about the bytes."""

    format: str
    records: list[RawRecord] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    lines_seen: int = 0
    # Set when a defect stopped reading (a JSON syntax error): records after this line were never seen,
    # so `--fix` must refuse rather than write a file that silently lacks them.
    truncated_at: int | None = None
    # The text encoding the file was read with, when it was not plain UTF-8 (a legacy code page, UTF-16...).
    encoding: str | None = None
    # CSV: rows an unbalanced quote merged into one field, first line -> last line (`--fix` says what it lost).
    merged: dict[int, int] = field(default_factory=dict)
