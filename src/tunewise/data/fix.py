"""`tunewise check --fix`: write a cleaned copy of a data file plus a report of every change.

Keeps each usable record in its original shape and order, drops records with errors and later copies of
duplicates and near duplicates, repairs lines that were not UTF-8 (decoded as Windows-1252, the usual
culprit) when they then parse, normalises text (Unicode NFC, `\n` line endings, no BOM or zero-width
characters, no control characters, mojibake repaired, with `--unescape-html` no HTML entities or markup, no
surrounding whitespace) and can redact personal data and secrets. A table can be written back as a UTF-8
CSV/TSV (the re-encoded file). The report says, per label, how much the drops took. The input file is never
touched; both outputs are written atomically.
"""

from __future__ import annotations

import csv
import json
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewise.data import privacy
from tunewise.data.check_report import CheckReport
from tunewise.data.checks import CheckOptions
from tunewise.data.hygiene import clean_text
from tunewise.data.readers import parse_json_line
from tunewise.data.records import BOM, RawRecord
from tunewise.data.shapes import INVISIBLE, to_example
from tunewise.store.atomic import atomic_open

DEDUPED = {"duplicate_example", "near_duplicate"}


class FixError(ValueError):
    """The fix cannot be written as asked (e.g. it would overwrite the input)."""


@dataclass(frozen=True, slots=True)
class FixResult:
    output: Path
    report_path: Path
    kept: int
    dropped: int
    repaired: int
    redacted: int
    warning: str | None = None
    # label -> (dropped, of how many in the file): dropping rows can skew the label balance without a word.
    dropped_labels: dict[str, tuple[int, int]] = field(default_factory=dict)
    # CSV lines an unbalanced quote had merged into one field, all dropped: (first, last) per merge.
    merged: tuple[tuple[int, int], ...] = ()

    def merged_summary(self) -> str:
        lost = sum(last - first + 1 for first, last in self.merged)
        spans = ", ".join(f"{first}-{last}" for first, last in self.merged)
        return f"lost {lost:,} line(s) that an unbalanced quote merged into one field (lines {spans})"

    def label_summary(self) -> str:
        parts = [f"{dropped / total:.0%} of {label!r} ({dropped:,} of {total:,})"
                 for label, (dropped, total) in sorted(self.dropped_labels.items(), key=lambda kv: -kv[1][0])]
        return ", ".join(parts)


TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}


def fix_file(report: CheckReport, output: str | Path, *, redact_pii: bool = False,
             unescape_html: bool = False) -> FixResult:
    """Write the cleaned copy (JSONL; or CSV/TSV, UTF-8, when the input is a table and OUT ends so) and its report."""
    source, out = report.path, Path(output)
    _refuse(report, out)
    drop_reasons = _drop_reasons(report)
    rows = {line: value for line, value in report.dataset.raw.items() if line not in drop_reasons}
    repaired = _repair_encoding(report, drop_reasons)
    rows.update({line: value for line, value in repaired.items()})
    redacted: dict[int, int] = {}
    # Mapped columns are not self-describing, so a mapped file is written in the canonical chat shape (JSONL).
    as_table = out.suffix.lower() in TABLE_SUFFIXES
    examples = {e.line: e for e in report.dataset.examples} if report.dataset.mapping and not as_table else {}
    cleaned: dict[int, Any] = {}
    unescaped: list[int] = []
    for line in sorted(rows):
        value = _clean(examples[line].to_chat_record() if line in examples else rows[line])
        if unescape_html and (decoded := _unescape_html(value)) != value:
            value = decoded
            unescaped.append(line)
        if redact_pii:
            value, count = _redact(value)
            if count:
                redacted[line] = count
        cleaned[line] = value
    _write(out, cleaned, report.dataset.columns if as_table else None)
    dropped = [{"line": line, "codes": sorted({c for c, _ in reasons}), "reasons": [m for _, m in reasons]}
               for line, reasons in sorted(drop_reasons.items()) if line not in repaired]
    labels = _dropped_labels(report, {d["line"] for d in dropped})
    recoded = [{"line": line, "what": f"decoded as {report.dataset.encoding}"} for line in
               sorted(i.line for i in report.issues if i.code == "legacy_encoding" and i.line in rows)]
    fix_report = {
        "input": str(source), "output": str(out), "kept": len(rows), "dropped": dropped,
        "dropped_labels": {label: {"dropped": d, "of": n} for label, (d, n) in labels.items()},
        "repaired": [{"line": line, "what": "decoded as Windows-1252"} for line in sorted(repaired)] + recoded
                    + [{"line": line, "what": "HTML entities decoded, markup dropped"} for line in unescaped],
        "redacted": [{"line": line, "spans": n} for line, n in sorted(redacted.items())],
        "merged_by_unbalanced_quote": [{"lines": [a, b], "count": b - a + 1}
                                       for a, b in sorted(report.dataset.merged.items())],
    }
    report_path = out.with_name(out.name + ".fix-report.json")
    with atomic_open(report_path, "w") as handle:
        json.dump(fix_report, handle, ensure_ascii=False, indent=2)
    minimum = CheckOptions().min_examples
    warning = (f"only {len(rows)} example(s) remain; at least {minimum} are needed to train or evaluate"
               if len(rows) < minimum else None)
    # a line both re-decoded and unescaped is one repaired line
    fixed = len(set(repaired) | {r["line"] for r in recoded} | set(unescaped))
    return FixResult(out, report_path, len(rows), len(dropped), fixed,
                     sum(redacted.values()), warning, labels, tuple(sorted(report.dataset.merged.items())))


def _refuse(report: CheckReport, out: Path) -> None:
    source = report.path
    if out.resolve() == source.resolve():
        raise FixError(f"--fix {out} is the input file; tunewise never modifies its input. Choose another path.")
    suffix = out.suffix.lower()
    if suffix in TABLE_SUFFIXES and report.format not in ("csv", "xlsx", "parquet"):
        raise FixError(f"--fix {out}: a {report.format} file is cleaned into JSONL; give it a .jsonl name")
    if suffix != ".jsonl" and suffix not in TABLE_SUFFIXES:
        raise FixError(f"--fix {out}: the cleaned file is JSONL (or CSV/TSV for a table); give it a .jsonl name")
    if report.dataset.truncated_at is not None:
        raise FixError(f"{source} could not be read past line {report.dataset.truncated_at}; fix the error there "
                       "first (see the report), or every record after it would be lost from the cleaned file")


def _write(out: Path, rows: dict[int, Any], columns: list[str] | None) -> None:
    """JSONL, or (with `columns`) a UTF-8 CSV/TSV with the input's header: the re-encoded table."""
    with atomic_open(out, "w") as handle:
        if columns is None:
            for value in rows.values():
                handle.write(json.dumps(value, ensure_ascii=False, allow_nan=False) + "\n")
            return
        writer = csv.DictWriter(handle, fieldnames=columns, delimiter=TABLE_SUFFIXES[out.suffix.lower()],
                                lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows.values())


def _dropped_labels(report: CheckReport, dropped: set[int]) -> dict[str, tuple[int, int]]:
    """For classification: how much of each label the drops took (labels read from every row that had one)."""
    if report.task != "classify":
        return {}
    labels = report.dataset.labels_by_line
    totals = Counter(labels.values())
    lost = Counter(labels[line] for line in dropped if line in labels)
    return {label: (lost[label], totals[label]) for label in sorted(lost)}


def _drop_reasons(report: CheckReport) -> dict[int, list[tuple[str, str]]]:
    reasons: dict[int, list[tuple[str, str]]] = {}
    for found in report.issues:
        if found.line is not None and (found.severity.value == "error" or found.code in DEDUPED):
            where = f" ({found.field})" if found.field else ""
            reasons.setdefault(found.line, []).append((found.code, f"{found.code}{where}: {found.message}"))
    return reasons


def _repair_encoding(report: CheckReport, drop_reasons: dict[int, list[tuple[str, str]]]) -> dict[int, Any]:
    """Lines whose only error is invalid UTF-8 are re-decoded as Windows-1252 and kept if they parse."""
    if report.format != "jsonl":
        return {}
    wanted = {line for line, reasons in drop_reasons.items() if {c for c, _ in reasons} == {"invalid_utf8"}}
    repaired: dict[int, Any] = {}
    if not wanted:
        return repaired
    with open(report.path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number not in wanted:
                continue
            text = raw.removeprefix(BOM).decode("cp1252", errors="replace")
            value, problem = parse_json_line(text, number)
            if problem is None:
                example, problems = to_example(RawRecord(number, value), report.shape, report.dataset.mapping)
                if example is not None and not problems:
                    repaired[number] = value
    return repaired


def _map_text(value: Any, repair: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return repair(value)
    if isinstance(value, dict):
        return {key: _map_text(item, repair) for key, item in value.items()}
    if isinstance(value, list):
        return [_map_text(item, repair) for item in value]
    return value


def _clean_str(value: str) -> str:
    text = clean_text(unicodedata.normalize("NFC", value).translate(INVISIBLE))
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def _clean(value: Any) -> Any:
    return _map_text(value, _clean_str)


def _unescape_html(value: Any) -> Any:
    return _map_text(value, lambda text: clean_text(text, unescape_html=True).strip())


def _redact(value: Any) -> tuple[Any, int]:
    if isinstance(value, str):
        findings = privacy.scan(value)
        return (privacy.redact(value, findings), len(findings)) if findings else (value, 0)
    if isinstance(value, dict):
        pairs = {key: _redact(item) for key, item in value.items()}
        return {key: v for key, (v, _) in pairs.items()}, sum(n for _, n in pairs.values())
    if isinstance(value, list):
        pairs_list = [_redact(item) for item in value]
        return [v for v, _ in pairs_list], sum(n for _, n in pairs_list)
    return value, 0
