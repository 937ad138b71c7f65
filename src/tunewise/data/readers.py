"""Turn a file's bytes into raw records (line number + parsed value), reporting what cannot be parsed.

One reader per container format: JSONL and JSON (an array, or an object holding one) here; CSV/TSV, Parquet
and Excel in tabular.py. Text that may not be UTF-8 is decoded by encoding.py.
Readers never raise on bad content: every defect becomes an Issue with its line (and column where the
format has one) and reading goes on, so one pass reports everything. Readers know nothing about shapes
(chat, prompt/completion...) or tasks; `shapes.py` turns raw records into examples.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from tunewise.data.codes import issue
from tunewise.data.encoding import check_codec, decode_bytes
from tunewise.data.records import BOM, DEFAULT_MAX_LINE_BYTES, RawRecord, ReadOutcome
from tunewise.data.tabular import read_csv, read_parquet, read_xlsx
from tunewise.schema import Issue

FORMATS = ("jsonl", "json", "csv", "parquet", "xlsx")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv",
             ".parquet": "parquet", ".pq": "parquet", ".xlsx": "xlsx"}


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


def read_file(path: Path, fmt: str | None = None, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
              encoding: str | None = None, sheet: str | None = None) -> ReadOutcome:
    """Read `path` in the given or detected format. Never raises for bad content (only for bad arguments:
    an unknown --format, --encoding or --sheet)."""
    if fmt is not None and fmt.lower() not in FORMATS:
        raise ValueError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if encoding is not None:
        check_codec(encoding)
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        out = ReadOutcome(format=fmt or "unknown")
        out.issues.append(issue("unreadable_file", f"{path}: {exc.strerror or exc}"))
        return out
    fmt = fmt.lower() if fmt else detect_format(path, head)
    if fmt is None:
        out = ReadOutcome(format="unknown")
        out.issues.append(issue("unknown_format", f"cannot tell the format of {path.name}"))
        return out
    if not head.strip() and fmt not in ("parquet", "xlsx"):
        out = ReadOutcome(format=fmt)
        out.issues.append(issue("empty_file", f"{path.name} is empty (0 bytes of content)", hint=_EMPTY_HINTS[fmt]))
        return out
    if fmt == "csv":
        return read_csv(path, max_line_bytes=max_line_bytes, encoding=encoding)
    if fmt == "jsonl":
        return read_jsonl(path, max_line_bytes=max_line_bytes, encoding=encoding)
    if fmt == "json":
        return read_json(path, encoding=encoding)
    return read_xlsx(path, sheet) if fmt == "xlsx" else read_parquet(path)


_EMPTY_HINTS = {"jsonl": "Add examples: one JSON object per line.", "json": "Add a JSON array of example objects.",
                "csv": "Add a header row and one example per row."}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (strict parsers such as the OpenAI upload reject it)")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_CR_HINT = "The file uses CR-only (old Mac) line endings; convert them to \\n so each record is on its own line."


def parse_json_line(text: str, line: int) -> tuple[Any, Issue | None]:
    """Parse one JSON text; a syntax error becomes invalid_json with its column."""
    try:
        return _DECODER.decode(text), None
    except json.JSONDecodeError as exc:
        hint = _CR_HINT if "\r" in text.rstrip("\r\n") else None
        return None, issue("invalid_json", f"{exc.msg} at column {exc.colno}", line=line, column=exc.colno, hint=hint)
    except RecursionError:
        return None, issue("nesting_too_deep", "nesting exceeds the JSON parser's depth limit", line=line)
    except ValueError as exc:  # NaN/Infinity, or an integer beyond Python's digit limit
        return None, issue("invalid_json", str(exc).splitlines()[0][:200], line=line)


def read_jsonl(path: Path, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, encoding: str | None = None) -> ReadOutcome:
    """One JSON object per line. UTF-8 unless `encoding` is given or a UTF-16/32 byte-order mark says otherwise;
    lines that are not UTF-8 stay errors (`--fix` re-decodes them), since each line stands alone."""
    out = ReadOutcome(format="jsonl")
    with open(path, "rb") as handle:
        wide = handle.read(4).startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff"))
    skip: set[int] = set()
    if encoding is not None or wide:
        decoded = decode_bytes(path.read_bytes(), encoding, detect=False)
        out.issues.extend(decoded.issues)
        out.encoding, skip = decoded.encoding, decoded.bad_lines
        source: Any = io.BytesIO(decoded.text.encode("utf-8", errors="surrogateescape"))
    else:
        source = open(path, "rb")  # closed by the `with` below
    crlf_lines: list[int] = []
    with source as handle:
        number = 0
        while True:
            raw = handle.readline(max_line_bytes + 1)
            if not raw:
                break
            number += 1
            out.lines_seen = number
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                size = len(raw) + _skip_rest_of_line(handle)
                out.issues.append(issue("line_too_long", f"line is {size:,} bytes; the limit is {max_line_bytes:,}",
                                        line=number))
                continue
            if number not in skip:
                _read_jsonl_line(raw, number, out, crlf_lines, max_line_bytes)
    _report_crlf(crlf_lines, out)
    if not out.records and not any(i.code != "blank_line" for i in out.issues):
        out.issues.insert(0, issue("empty_file", f"{path.name} has no records", hint=_EMPTY_HINTS["jsonl"]))
    return out


def _skip_rest_of_line(handle: Any, chunk: int = 1 << 20) -> int:
    """Consume an over-long line without holding it in memory; return how many bytes were skipped."""
    skipped = 0
    while True:
        part = handle.readline(chunk)
        skipped += len(part)
        if not part or part.endswith(b"\n"):
            return skipped


def _read_jsonl_line(raw: bytes, number: int, out: ReadOutcome, crlf: list[int], limit: int) -> None:
    if len(raw.rstrip(b"\r\n")) > limit:
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


def read_json(path: Path, encoding: str | None = None) -> ReadOutcome:
    """A JSON array of records, an object with one list of records (e.g. {"data": [...]}), or an object of
    equal-length columns ({"review": [...], "sentiment": [...]}).

    Elements are decoded one at a time so each record keeps the line it starts on. A JSONL file saved
    as .json is recognised and read as JSONL, with a warning.
    """
    out = ReadOutcome(format="json")
    data = path.read_bytes()
    if data.startswith(BOM):
        out.issues.append(issue("utf8_bom", "file starts with a UTF-8 byte-order mark", line=1))
    decoded = decode_bytes(data, encoding)
    out.issues.extend(decoded.issues)
    out.encoding = decoded.encoding
    if decoded.bad_lines:  # one JSON document: a byte it cannot read makes the whole file unreadable
        out.truncated_at = min(decoded.bad_lines)
        return out
    text = decoded.text
    out.lines_seen = text.count("\n") + 1
    try:
        _scan_json_document(text, out)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and text.lstrip().startswith("{"):
            jsonl = read_jsonl(path, encoding=encoding)
            jsonl.issues.insert(0, issue("format_mismatch", f"{path.name} holds one JSON object per line (JSONL)", line=1))
            return jsonl
        _stop(out, issue("invalid_json", f"{exc.msg} at column {exc.colno}; lines {exc.lineno}-{out.lines_seen} "
                                         "cannot be read until this is fixed", line=exc.lineno, column=exc.colno))
    except RecursionError:
        _stop(out, issue("nesting_too_deep", "nesting exceeds the JSON parser's depth limit", line=1))
    except ValueError as exc:  # NaN/Infinity or an over-long integer somewhere in the document
        _stop(out, issue("invalid_json", f"{str(exc).splitlines()[0][:200]}; the file cannot be read", line=1))
    return out


def _stop(out: ReadOutcome, problem: Issue) -> None:
    out.issues.append(problem)
    out.truncated_at = problem.line or 1


class _Scanner:
    """Walks a JSON document with `raw_decode`, tracking line numbers incrementally."""

    def __init__(self, text: str) -> None:
        self.text, self.pos, self._line, self._line_pos = text, 0, 1, 0
        self.decoder = _DECODER

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


RECORD_KEYS = ("data", "examples", "records", "rows", "items")


def _records_key(document: dict[str, Any]) -> str | None:
    """Which list holds the records: a conventional name first, else the first list of objects."""
    lists = [k for k, v in document.items() if isinstance(v, list) and v and all(isinstance(i, dict) for i in v[:100])]
    named = [k for k in RECORD_KEYS if k in lists]
    return (named or lists or [None])[0]


def _is_columns(document: dict[str, Any]) -> bool:
    """A table stored by column: {"review": [...], "sentiment": [...]} (pandas `to_json(orient="list")`) or
    {"review": {"0": ..., "1": ...}, ...} (pandas' default `to_json()`), every column the same rows, of scalars."""
    columns = list(document.values())
    if not columns or not all(isinstance(c, type(columns[0])) and isinstance(c, (list, dict)) and c for c in columns):
        return False
    rows = [list(c) if isinstance(c, dict) else len(c) for c in columns]
    cells = [x for c in columns for x in (c.values() if isinstance(c, dict) else c)]
    return all(r == rows[0] for r in rows) and not any(isinstance(x, (dict, list)) for x in cells)


def _scan_columns(scan: _Scanner, document: dict[str, Any], out: ReadOutcome) -> None:
    """One record per row; its line is where the first column's value for it stands in the file."""
    lines: list[int] = []
    scan.expect("{")
    scan.skip_ws()
    scan.value()
    scan.expect(":")
    closing = "]" if scan.expect("[{") == "[" else "}"
    while True:
        scan.skip_ws()
        if closing == "}":  # a row index: "0": value
            scan.value()
            scan.expect(":")
            scan.skip_ws()
        lines.append(scan.line())
        scan.value()
        if scan.expect("," + closing) == closing:
            break
    scan.pos = len(scan.text)
    first = next(iter(document.values()))
    keys = list(first) if isinstance(first, dict) else range(len(first))
    out.records.extend(RawRecord(line, {name: column[key] for name, column in document.items()})
                       for key, line in zip(keys, lines))


def _scan_wrapper_object(scan: _Scanner, out: ReadOutcome) -> None:
    """{"data": [...], ...}: the whole object is parsed once to choose the list, then scanned for lines."""
    document = scan.decoder.decode(scan.text)
    key = _records_key(document)
    if key is None and _is_columns(document):
        _scan_columns(scan, document, out)
        return
    if key is None:
        out.issues.append(issue("data_type", "top-level object holds no list of records", line=1,
                                hint="Use a JSON array of objects, JSONL, an object like {\"data\": [...]}, or "
                                     "columns of equal length like {\"text\": [...], \"label\": [...]}."))
        scan.pos = len(scan.text)
        return
    scan.expect("{")
    while True:
        scan.skip_ws()
        name = scan.value()
        scan.expect(":")
        scan.skip_ws()
        if name == key:
            _scan_array(scan, out)
        else:
            scan.value()
        if scan.expect(",}") == "}":
            return
