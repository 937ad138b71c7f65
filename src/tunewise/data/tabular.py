"""Readers for tables: CSV/TSV (any encoding, see encoding.py), Parquet and Excel workbooks.

Each row becomes a record (a dict keyed by the header) with the line it starts on: for CSV the physical line
of the file as an editor counts it (a bare carriage return inside a quoted field is text, not a line break),
for Parquet the 1-based row number, for Excel the sheet's row number. Unnamed header cells (a pandas index
exported with `to_csv`) are named `unnamed_<n>` so they can be mapped and kept as metadata. Readers never raise
on bad content; knows nothing about shapes or tasks.
"""

from __future__ import annotations

import base64
import csv
import io
import math
from pathlib import Path
from typing import Any

from tunewise.data.codes import issue
from tunewise.data.encoding import decode_bytes
from tunewise.data.records import DEFAULT_MAX_LINE_BYTES, RawRecord, ReadOutcome
from tunewise.schema import Issue

_EMPTY_CSV_HINT = "Add rows under the header row: one example per row."


def _header(cells: list[Any]) -> list[str]:
    return [str(c).strip() if c is not None and str(c).strip() else f"unnamed_{i}" for i, c in enumerate(cells, 1)]


def _repeated(header: list[str], code: str, line: int) -> Issue | None:
    """A header naming a column twice: a record is a dict, so the later column would silently replace the
    earlier one; refused instead, in every table format."""
    repeated = sorted({h for h in header if header.count(h) > 1})
    if not repeated:
        return None
    return issue(code, f"column(s) {', '.join(map(repr, repeated))} appear more than once in the header", line=line,
                 hint="Give every column a distinct name (rename or delete the repeated header cell).")


def read_csv(path: Path, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, encoding: str | None = None) -> ReadOutcome:
    """CSV/TSV with a header row. Lines that are not UTF-8 are decoded as the detected legacy encoding (a
    warning each) or reported as errors with line and column (see encoding.py)."""
    out = ReadOutcome(format="csv")
    decoded = decode_bytes(path.read_bytes(), encoding)
    out.issues.extend(decoded.issues)
    out.encoding = decoded.encoding
    text = decoded.text
    if not text.strip():
        if not decoded.bad_lines:
            out.issues.append(issue("empty_file", f"{path.name} is empty: no header row and no rows",
                                    hint=_EMPTY_CSV_HINT))
        return out
    dialect = _dialect(text, "\t" if path.suffix.lower() == ".tsv" else None)
    # Lines end at \n only, so a stray \r inside a quoted field stays text and line numbers match the file;
    # a file whose only line ends are \r (old Mac) is split on them instead.
    newline = "" if "\n" not in text else "\n"
    previous_limit = csv.field_size_limit(min(max_line_bytes, 2**31 - 1))  # process-wide: restored below
    try:
        _read_csv_rows(csv.reader(io.StringIO(text, newline=newline), dialect), out, max_line_bytes,
                       decoded.bad_lines)
    finally:
        csv.field_size_limit(previous_limit)
    if not out.records and not any(i.severity.value == "error" for i in out.issues):
        out.issues.append(issue("empty_file", f"{path.name} is empty: it has a header but no rows",
                                hint=_EMPTY_CSV_HINT))
    return out


DELIMITERS = (",", "\t", ";", "|")
SNIFF_LINES, SNIFF_CHARS = 50, 256 * 1024  # the last sampled row may be cut short: it is not counted
MERGED_MIN_LINES = 3  # a row spanning this many lines is looked at for rows an unbalanced quote merged


class _Dialect(csv.excel):
    """Excel's CSV rules with the file's own delimiter (Excel in French or German locales writes `;`)."""


def _dialect(text: str, delimiter: str | None) -> type[csv.Dialect]:
    """The delimiter that splits the header into several columns and the first rows into as many; ties go to the
    comma (then tab, semicolon, pipe). `csv.Sniffer` guesses from character frequencies and is thrown by commas
    in French text, so each candidate is tried as a parser instead."""
    if delimiter is None:
        sample = "\n".join(text[:SNIFF_CHARS].split("\n", SNIFF_LINES + 1)[:SNIFF_LINES])
        scores = []
        for index, candidate in enumerate(DELIMITERS):
            try:
                rows = [r for r in csv.reader(io.StringIO(sample, newline=""), delimiter=candidate) if r]
            except csv.Error:  # the real read reports it, with its line
                continue
            width = len(rows[0]) if rows else 0
            agree = sum(len(r) == width for r in rows[1:-1] or rows) / max(1, len(rows[1:-1] or rows))
            scores.append((width > 1, agree, -index, candidate))
        delimiter = max(scores)[3] if scores and max(scores)[0] else ","
    return type("_Dialect", (_Dialect,), {"delimiter": delimiter})


def _read_csv_rows(reader: Any, out: ReadOutcome, max_line_bytes: int, bad_lines: set[int]) -> None:
    try:
        header = next(reader, None)
    except csv.Error as exc:
        out.issues.append(issue("invalid_csv", f"header cannot be parsed: {exc}", line=1))
        return
    if not header or not any(h.strip() for h in header):
        out.issues.append(issue("empty_file", "no header row", line=1, hint=_EMPTY_CSV_HINT))
        return
    header = _header(header)
    if (repeated := _repeated(header, "invalid_csv", 1)) is not None:
        out.issues.append(repeated)
        return
    start = reader.line_num + 1
    long_rows: list[tuple[int, int, list[str]]] = []
    while True:
        before = reader.line_num
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            too_big = "field larger than field limit" in str(exc)
            out.issues.append(issue("line_too_long" if too_big else "invalid_csv",
                                    f"a field exceeds {max_line_bytes:,} bytes" if too_big else str(exc), line=start))
            if reader.line_num == before:  # the reader cannot move past this point
                break
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        out.lines_seen = reader.line_num
        reported = any(n in bad_lines for n in range(line, start))
        _read_csv_row(row, header, line, out, reported)
        if start - line >= MERGED_MIN_LINES:
            long_rows.append((line, start - 1, row))
    if long_rows:
        seen = [{r.value.get(name) for r in out.records} for name in header]
        for first, last, row in long_rows:
            _report_merged(first, last, row, (header, seen), reader.dialect, out)


def _report_merged(first: int, last: int, row: list[str], columns: tuple[list[str], list[set[Any]]], dialect: Any,
                   out: ReadOutcome) -> None:
    """A quote opened and never closed (or closed rows later) makes the reader take the following rows as text of
    one field: the file then reads without an error, rows short. Told apart from a long multi-line text by its
    lines: most parse as whole rows of the table, and some hold a value another row has in the same column
    (`columns`: the header and, per column, the values the file's rows have)."""
    header, seen = columns
    cell = max(range(len(row)), key=lambda i: row[i].count("\n"))
    try:
        inner = [next(csv.reader([text], dialect), []) for text in row[cell].split("\n") if text.strip()]
    except csv.Error:  # a line no row could be: not merged rows
        return
    shaped = [r for r in inner if len(r) == len(header)]
    known = [r for r in shaped if any(v.strip() and v in seen[i] for i, v in enumerate(r) if i != cell)]
    if len(header) < 2 or len(shaped) < 2 or 2 * len(shaped) < len(inner) or not known:
        return
    out.records[:] = [r for r in out.records if r.line != first]
    out.issues[:] = [i for i in out.issues if not (i.line == first and i.code == "invalid_csv")]
    out.merged[first] = last
    name = header[cell] if cell < len(header) else f"field {cell + 1}"
    out.issues.append(issue(
        "unbalanced_quote", f"the quote opening field {name!r} on line {first} is not closed until line {last}, so "
        f"lines {first}-{last} ({last - first + 1} lines, about {len(shaped)} rows) were read as one field",
        line=first, field=name, hint=f"Close the quote on line {first}, or write a quote inside a field as two "
        f"(\"\"); `--fix` drops lines {first}-{last} and says so."))


def _read_csv_row(row: list[str], header: list[str], line: int, out: ReadOutcome, reported: bool) -> None:
    if not any(cell.strip() for cell in row):
        out.issues.append(issue("blank_line", "blank row", line=line))
        return
    if len(row) != len(header):
        out.issues.append(issue("invalid_csv", f"row has {len(row)} fields, the header has {len(header)}", line=line))
        return
    for name, cell in zip(header, row):
        try:
            cell.encode("utf-8")
        except UnicodeEncodeError:
            if not reported:  # the decoder has already named the line and column
                out.issues.append(issue("invalid_utf8", "cell holds bytes that are not valid UTF-8", line=line,
                                        field=name))
            return
    out.records.append(RawRecord(line, dict(zip(header, row))))


def read_parquet(path: Path) -> ReadOutcome:
    """Parquet rows become records; `line` is the 1-based row number."""
    out = ReadOutcome(format="parquet")
    try:
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises many types for corrupt files; all mean the same to a user
        out.issues.append(issue("invalid_parquet", f"{path.name}: {exc}"))
        return out
    out.lines_seen = len(rows)
    if not rows:
        out.issues.append(issue("empty_file", f"{path.name} has no rows", hint="Write at least one row to the file."))
    out.records.extend(RawRecord(index, json_safe(row)) for index, row in enumerate(rows, start=1))
    return out


def read_xlsx(path: Path, sheet: str | None = None) -> ReadOutcome:
    """The first sheet (or `sheet`) of an Excel workbook: the first non-empty row is the header, `line` is the
    sheet's row number as Excel shows it, empty rows are skipped (sheets often carry formatted blank rows)."""
    out = ReadOutcome(format="xlsx")
    try:
        import openpyxl

        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # zipfile, XML and openpyxl errors all mean: not a workbook we can read
        out.issues.append(issue("invalid_xlsx", f"{path.name}: {exc}"))
        return out
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise ValueError(f"--sheet {sheet!r}: {path.name} has sheet(s) {', '.join(map(repr, book.sheetnames))}")
        rows = (book[sheet] if sheet else book.worksheets[0]).iter_rows(values_only=True)
        header: list[str] | None = None
        for number, cells in enumerate(rows, start=1):
            if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
                continue
            out.lines_seen = number
            if header is None:
                header = _header(list(cells))
                if (repeated := _repeated(header, "invalid_xlsx", number)) is not None:
                    out.issues.append(repeated)
                    return out
                continue
            values = [_cell(c) for c in cells] + [""] * (len(header) - len(cells))
            out.records.append(RawRecord(number, dict(zip(header, values))))
    finally:
        book.close()
    if not out.records:
        out.issues.append(issue("empty_file", f"{path.name}: the sheet has no rows under its header",
                                hint="Put a header row and one example per row on the first sheet (or pass --sheet)."))
    return out


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return int(value)  # Excel stores every number as a float; a class id 1 must not read as "1.0"
    return json_safe(value)


def json_safe(value: Any) -> Any:
    """Parquet and Excel carry types JSON lacks (timestamps, decimals, bytes); keep them as strings so every
    later stage can write records as plain JSON."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
