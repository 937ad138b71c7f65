"""Turn a file's bytes into raw records (line number + parsed value), reporting what cannot be parsed.

One reader per container format: JSONL, JSON (an array, or an object holding one), CSV and Parquet.
Readers never raise on bad content: every defect becomes an Issue with its line (and column where the
format has one) and reading goes on, so one pass reports everything. Readers know nothing about shapes
(chat, prompt/completion...) or tasks; `shapes.py` turns raw records into examples.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewise.data.codes import issue
from tunewise.schema import Issue

BOM = b"\xef\xbb\xbf"
DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024
FORMATS = ("jsonl", "json", "csv", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv",
             ".parquet": "parquet", ".pq": "parquet"}


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


def detect_format(path: Path, head: bytes) -> str | None:
    """By extension first; otherwise sniff the first bytes."""
    by_suffix = _SUFFIXES.get(path.suffix.lower())
    if by_suffix:
        return by_suffix
    if head.startswith(b"PAR1"):
        return "parquet"
    stripped = head.removeprefix(BOM).lstrip()
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith(b"{"):
        return "jsonl"
    return None


def read_file(path: Path, fmt: str | None = None, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> ReadOutcome:
    """Read `path` in the given or detected format. Never raises for bad content."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        out = ReadOutcome(format=fmt or "unknown")
        out.issues.append(issue("unreadable_file", f"{path}: {exc.strerror or exc}"))
        return out
    fmt = fmt or detect_format(path, head)
    if fmt is None:
        out = ReadOutcome(format="unknown")
        out.issues.append(issue("unknown_format", f"cannot tell the format of {path.name}"))
        return out
    if not head.strip() and fmt != "parquet":
        out = ReadOutcome(format=fmt)
        out.issues.append(issue("empty_file", f"{path.name} has no content"))
        return out
    reader = {"jsonl": read_jsonl, "json": read_json, "csv": read_csv, "parquet": read_parquet}[fmt]
    if fmt in ("jsonl", "csv"):
        return reader(path, max_line_bytes=max_line_bytes)
    return reader(path)


def parse_json_line(text: str, line: int) -> tuple[Any, Issue | None]:
    """Parse one JSON text; a syntax error becomes invalid_json with its column."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, issue("invalid_json", f"{exc.msg} at column {exc.colno}", line=line, column=exc.colno)
    except RecursionError:
        return None, issue("nesting_too_deep", "nesting exceeds the JSON parser's depth limit", line=line)


def read_jsonl(path: Path, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> ReadOutcome:
    out = ReadOutcome(format="jsonl")
    crlf_lines: list[int] = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            out.lines_seen = number
            _read_jsonl_line(raw, number, out, crlf_lines, max_line_bytes)
    _report_crlf(crlf_lines, out)
    if not out.records and not any(i.code != "blank_line" for i in out.issues):
        out.issues.insert(0, issue("empty_file", f"{path.name} has no records"))
    return out


def _read_jsonl_line(raw: bytes, number: int, out: ReadOutcome, crlf: list[int], limit: int) -> None:
    if len(raw) > limit:
        out.issues.append(issue("line_too_long", f"line is {len(raw):,} bytes; the limit is {limit:,}", line=number))
        return
    if raw.endswith(b"\r\n"):
        crlf.append(number)
    if raw.startswith(BOM):
        out.issues.append(issue("utf8_bom", "line starts with a UTF-8 byte-order mark", line=number))
        raw = raw[len(BOM):]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        out.issues.append(issue("invalid_utf8", f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is not valid UTF-8",
                                line=number, column=exc.start + 1))
        return
    if not text.strip():
        out.issues.append(issue("blank_line", "blank line", line=number))
        return
    value, problem = parse_json_line(text, number)
    if problem:
        out.issues.append(problem)
    else:
        out.records.append(RawRecord(number, value))


def _report_crlf(crlf_lines: list[int], out: ReadOutcome) -> None:
    """A wholly-CRLF file is one finding; CRLF mixed into an LF file is reported per line."""
    if not crlf_lines:
        return
    if len(crlf_lines) == out.lines_seen or len(crlf_lines) == out.lines_seen - 1:
        out.issues.append(issue("crlf_line_ending", f"all {len(crlf_lines):,} lines end in CRLF", line=crlf_lines[0]))
        return
    out.issues.extend(issue("crlf_line_ending", "line ends in CRLF among LF lines", line=n) for n in crlf_lines)


def read_json(path: Path) -> ReadOutcome:
    """A JSON array of records, or an object with one list of records (e.g. {"data": [...]}).

    Elements are decoded one at a time so each record keeps the line it starts on. A JSONL file saved
    as .json is recognised and read as JSONL, with a warning.
    """
    out = ReadOutcome(format="json")
    data = path.read_bytes()
    if data.startswith(BOM):
        out.issues.append(issue("utf8_bom", "file starts with a UTF-8 byte-order mark", line=1))
        data = data[len(BOM):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        out.issues.append(issue("invalid_utf8", f"byte 0x{data[exc.start]:02x} is not valid UTF-8 (whole file unreadable)",
                                line=line, column=column))
        return out
    out.lines_seen = text.count("\n") + 1
    try:
        _scan_json_document(text, out)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and text.lstrip().startswith("{"):
            jsonl = read_jsonl(path)
            jsonl.issues.insert(0, issue("format_mismatch", f"{path.name} holds one JSON object per line (JSONL)", line=1))
            return jsonl
        out.issues.append(issue("invalid_json", f"{exc.msg} at column {exc.colno}; the rest of the file cannot be read",
                                line=exc.lineno, column=exc.colno))
    except RecursionError:
        out.issues.append(issue("nesting_too_deep", "nesting exceeds the JSON parser's depth limit", line=1))
    return out


class _Scanner:
    """Walks a JSON document with `raw_decode`, tracking line numbers incrementally."""

    def __init__(self, text: str) -> None:
        self.text, self.pos, self._line, self._line_pos = text, 0, 1, 0
        self.decoder = json.JSONDecoder()

    def skip_ws(self) -> str:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def line(self) -> int:
        self._line += self.text.count("\n", self._line_pos, self.pos)
        self._line_pos = self.pos
        return self._line

    def value(self) -> Any:
        value, self.pos = self.decoder.raw_decode(self.text, self.pos)
        return value

    def expect(self, chars: str) -> str:
        char = self.skip_ws()
        if not char or char not in chars:
            raise json.JSONDecodeError(f"Expecting one of {chars!r}", self.text, self.pos)
        self.pos += 1
        return char


def _scan_json_document(text: str, out: ReadOutcome) -> None:
    scan = _Scanner(text)
    first = scan.skip_ws()
    if first == "[":
        _scan_array(scan, out)
    elif first == "{":
        _scan_wrapper_object(scan, out)
    else:
        value = scan.value()
        out.issues.append(issue("data_type", f"top level is {type(value).__name__}, expected an array of objects", line=1))
        return
    if scan.skip_ws():
        raise json.JSONDecodeError("Extra data", text, scan.pos)


def _scan_array(scan: _Scanner, out: ReadOutcome) -> None:
    scan.expect("[")
    if scan.skip_ws() == "]":
        scan.pos += 1
        out.issues.append(issue("empty_file", "the array holds no records", line=scan.line()))
        return
    while True:
        scan.skip_ws()
        line = scan.line()
        out.records.append(RawRecord(line, scan.value()))
        if scan.expect(",]") == "]":
            return


def _scan_wrapper_object(scan: _Scanner, out: ReadOutcome) -> None:
    """{"data": [...], ...}: records come from the first list of objects; other keys are ignored."""
    scan.expect("{")
    found = False
    if scan.skip_ws() == "}":
        scan.pos += 1
    else:
        while True:
            scan.skip_ws()
            scan.value()  # key
            scan.expect(":")
            if not found and scan.skip_ws() == "[":
                _scan_array(scan, out)
                found = True
            else:
                scan.skip_ws()
                scan.value()
            if scan.expect(",}") == "}":
                break
    if not found:
        out.issues.append(issue("data_type", "top-level object holds no list of records", line=1,
                                hint="Use a JSON array of objects, or JSONL with one object per line."))


def read_csv(path: Path, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> ReadOutcome:
    """CSV/TSV with a header row. Invalid UTF-8 is found per row (surrogate escapes), not per file."""
    out = ReadOutcome(format="csv")
    data = path.read_bytes()
    if data.startswith(BOM):
        data = data[len(BOM):]
    text = data.decode("utf-8", errors="surrogateescape")
    dialect: type[csv.Dialect] | csv.Dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    csv.field_size_limit(max(max_line_bytes, 131072))
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        out.issues.append(issue("invalid_csv", f"header cannot be parsed: {exc}", line=1))
        return out
    if not header or not any(h.strip() for h in header):
        out.issues.append(issue("empty_file", "no header row", line=1))
        return out
    header = [h.strip() for h in header]
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            out.issues.append(issue("invalid_csv", str(exc), line=reader.line_num))
            break
        line, start = start, reader.line_num + 1
        out.lines_seen = reader.line_num
        _read_csv_row(row, header, line, out)
    if not out.records and not any(i.severity.value == "error" for i in out.issues):
        out.issues.append(issue("empty_file", f"{path.name} has a header but no rows"))
    return out


def _read_csv_row(row: list[str], header: list[str], line: int, out: ReadOutcome) -> None:
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
            out.issues.append(issue("invalid_utf8", "cell holds bytes that are not valid UTF-8", line=line, field=name))
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
        out.issues.append(issue("empty_file", f"{path.name} has no rows"))
    out.records.extend(RawRecord(index, row) for index, row in enumerate(rows, start=1))
    return out
