"""`tunewise check` as a function: read a file, run every check once, return one report.

Glue only: composes `formats`, `tokens`, `checks` and `stats`. The report is plain data so the CLI can
print it with Rich or as JSON, and the fine-tuning API (later) can reuse the same verdict on uploads.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from tunewise.data.bulk import collector_paused
from tunewise.data.checks import TASKS, CheckOptions, infer_task, run_checks
from tunewise.data.codes import FILE_STOPPERS, issue
from tunewise.data.formats import Dataset, read_examples
from tunewise.data.records import DEFAULT_MAX_LINE_BYTES
from tunewise.data.shapes import ColumnMapping
from tunewise.data.stats import dataset_stats, text_stats
from tunewise.data.textviews import TextViews
from tunewise.data.tokens import TokenCounter, load_counter
from tunewise.schema import Issue, Severity


@dataclass(slots=True)
class CheckReport:
    path: Path
    format: str
    shape: str | None
    task: str
    tokenizer: str
    context_length: int | None
    issues: list[Issue]
    stats: dict[str, Any]
    dataset: Dataset = field(repr=False)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity is Severity.WARNING]

    @property
    def exit_code(self) -> int:
        """0 when the file is usable as is, 2 when any error was found (as `check` promises)."""
        return 2 if self.errors else 0

    def counts_by_code(self) -> Counter[str]:
        return Counter(i.code for i in self.issues)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "shape": self.shape,
            "task": self.task,
            "tokenizer": self.tokenizer,
            "context_length": self.context_length,
            "ok": not self.errors,
            "summary": {
                "lines": self.dataset.lines_seen,
                "valid_examples": len(self.dataset.examples),
                "errors": len(self.errors),
                "warnings": len(self.warnings),
                "by_code": dict(sorted(self.counts_by_code().items())),
            },
            "stats": self.stats,
            "encoding": self.dataset.encoding,
            "inferred": self.dataset.inferred.to_json() if self.dataset.inferred else None,
            "issues": [i.to_dict() for i in self.issues],
        }


@collector_paused()
def check_file(
    path: str | Path,
    *,
    task: str | None = None,
    model: str | None = None,
    counter: TokenCounter | None = None,
    fmt: str | None = None,
    shape: str | None = None,
    mapping: ColumnMapping | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    context_length: int | None = None,
    options: CheckOptions = CheckOptions(),
    encoding: str | None = None,
    sheet: str | None = None,
) -> CheckReport:
    """Check `path` in one pass. Raises only for bad arguments (an unknown task), never for bad data."""
    if task is not None and task not in TASKS:
        raise ValueError(f"--task {task!r} is not one of {', '.join(TASKS)}")
    data = read_examples(path, fmt=fmt, shape=shape, mapping=mapping, max_line_bytes=max_line_bytes, encoding=encoding,
                         sheet=sheet, task=task)
    issues = list(data.issues)
    if counter is None:
        counter, fallback = load_counter(model)
        if fallback:
            issues.append(issue("tokenizer_unavailable", fallback))
    resolved_task = task or infer_task(data.examples, data.shape)
    limit = context_length or counter.context_length
    views = TextViews(data.examples)  # each distinct text's words and normal form, shared by stats and checks
    # Texts the pre-token shortcut cannot count go to the Rust tokenizer, which releases the GIL: it runs in
    # another thread beside the pure-Python checks and statistics, which ask for the counts last.
    with ThreadPoolExecutor(max_workers=1) as pool:
        lengths = cache(counter.lengths_later(data.examples, views.texts, pool))
        text = text_stats(data.examples, resolved_task, views)
        if data.examples or not any(i.code in FILE_STOPPERS for i in issues):
            issues += run_checks(data.examples, data.shape, resolved_task, lengths, limit, options, views)
        stats = dataset_stats(data.examples, lengths(), resolved_task, text)
    issues.sort(key=lambda i: i.line if i.line is not None else 0)
    return CheckReport(path=Path(path), format=data.format, shape=data.shape, task=resolved_task,
                       tokenizer=counter.source if counter.exact else "words (no tokenizer)",
                       context_length=limit, issues=issues, stats=stats, dataset=data)
