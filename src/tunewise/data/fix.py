"""`tunewise check --fix`: write a cleaned copy of a data file plus a report of every change.

Keeps each usable record in its original shape and order, drops records with errors and later copies of
duplicates and near duplicates, repairs lines that were not UTF-8 (decoded as Windows-1252, the usual
culprit) when they then parse, normalises text (Unicode NFC, `\n` line endings, no BOM or zero-width
characters, no surrounding whitespace) and can redact personal data and secrets. The input file is never
touched; both outputs are written atomically.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunewise.data import privacy
from tunewise.data.check_report import CheckReport
from tunewise.data.checks import CheckOptions
from tunewise.data.readers import BOM, RawRecord, parse_json_line
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


def fix_file(report: CheckReport, output: str | Path, *, redact_pii: bool = False) -> FixResult:
    source, out = report.path, Path(output)
    if out.resolve() == source.resolve():
        raise FixError(f"--fix {out} is the input file; tunewise never modifies its input. Choose another path.")
    if out.suffix.lower() != ".jsonl":
        raise FixError(f"--fix {out}: the cleaned file is JSONL; give it a .jsonl name")
    if report.dataset.truncated_at is not None:
        raise FixError(f"{source} could not be read past line {report.dataset.truncated_at}; fix the error there "
                       "first (see the report), or every record after it would be lost from the cleaned file")
    drop_reasons = _drop_reasons(report)
    rows = {line: value for line, value in report.dataset.raw.items() if line not in drop_reasons}
    repaired = _repair_encoding(report, drop_reasons)
    rows.update({line: value for line, value in repaired.items()})
    redacted: dict[int, int] = {}
    # Mapped columns are not self-describing, so a mapped file is written in the canonical chat shape.
    examples = {e.line: e for e in report.dataset.examples} if report.dataset.mapping else {}
    with atomic_open(out, "w") as handle:
        for line in sorted(rows):
            value = _clean(examples[line].to_chat_record() if line in examples else rows[line])
            if redact_pii:
                value, count = _redact(value)
                if count:
                    redacted[line] = count
            handle.write(json.dumps(value, ensure_ascii=False, allow_nan=False) + "\n")
    dropped = [{"line": line, "codes": sorted({c for c, _ in reasons}), "reasons": [m for _, m in reasons]}
               for line, reasons in sorted(drop_reasons.items()) if line not in repaired]
    fix_report = {
        "input": str(source), "output": str(out), "kept": len(rows), "dropped": dropped,
        "repaired": [{"line": line, "what": "decoded as Windows-1252"} for line in sorted(repaired)],
        "redacted": [{"line": line, "spans": n} for line, n in sorted(redacted.items())],
    }
    report_path = out.with_name(out.name + ".fix-report.json")
    with atomic_open(report_path, "w") as handle:
        json.dump(fix_report, handle, ensure_ascii=False, indent=2)
    minimum = CheckOptions().min_examples
    warning = (f"only {len(rows)} example(s) remain; at least {minimum} are needed to train or evaluate"
               if len(rows) < minimum else None)
    return FixResult(out, report_path, len(rows), len(dropped), len(repaired), sum(redacted.values()), warning)


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


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        text = unicodedata.normalize("NFC", value).translate(INVISIBLE)
        return text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


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
