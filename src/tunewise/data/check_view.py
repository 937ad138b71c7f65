"""Rich rendering of a check report: issues grouped by code with their first line numbers, then stats.

Presentation only; the numbers come from `CheckReport`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunewise.data.check_report import CheckReport
from tunewise.data.codes import CODES, FILE_STOPPERS
from tunewise.data.infer import Inference, mapping_items
from tunewise.schema import Issue, Severity

FIRST_LINES = 6
SHOWN_LABELS = 30


def render_check(report: CheckReport, console: Console) -> None:
    data = report.dataset
    console.print(
        f"[bold]{escape(str(report.path))}[/]  format={report.format} shape={report.shape or '?'} task={report.task}  "
        f"lines={data.lines_seen:,} valid examples={len(data.examples):,}"
        + (f" encoding={data.encoding}" if data.encoding else "")
    )
    if data.inferred is not None:
        render_inference(report, data.inferred, console)
    if report.issues:
        console.print(_issue_table(report.issues))
        _render_hints(report.issues, console)
    _render_stats(report, console)
    errors, warnings = len(report.errors), len(report.warnings)
    if any(i.code in FILE_STOPPERS for i in report.errors):  # --fix cannot repair these: say what can
        console.print(f"[bold red]✗ {errors:,} error(s)[/], {warnings:,} warning(s). Fix the problem above (see "
                      "How to fix) before training.")
    elif errors:
        console.print(f"[bold red]✗ {errors:,} error(s)[/], {warnings:,} warning(s). "
                      "Fix the errors (or run `tunewise check --fix OUT`) before training.")
    else:
        console.print(f"[bold green]✓ no errors[/], {warnings:,} warning(s).")


def render_inference(report: CheckReport, inferred: Inference, console: Console) -> None:
    """The guessed mapping with the exact lines that override it, or (when unsure) every column to choose from."""
    path = escape(str(report.path))
    if inferred.mapping is not None:
        roles = ", ".join(f"{role}={escape(column)}" for role, column in mapping_items(inferred.mapping))
        console.print(f"[bold]inferred columns[/] ({inferred.confidence} confidence): {roles}")
        for reason in inferred.reasons:
            console.print(f"  · {escape(reason)}")
        rest = [c for c in report.dataset.columns if c not in inferred.mapping.used()]
        if rest:
            console.print(f"  · kept as metadata on every example: {escape(', '.join(rest))}")
        console.print(f"  to override: tunewise check {path} {escape(inferred.map_args())}\n"
                      f"  or in the experiment YAML: {escape(inferred.yaml_line())}", highlight=False, soft_wrap=True)
        return
    table = Table(title=escape(f"Columns of {report.path.name}: which is the input, which the answer?"))
    for name in ("column", "type", "filled", "distinct", "mean chars", "examples"):
        table.add_column(name, overflow="fold")
    for p in inferred.profiles:
        table.add_row(escape(p.name), p.kind, f"{p.filled:,}", f"{p.distinct:,}", f"{p.mean_chars:.0f}",
                      escape(" | ".join(e[:30] for e in p.examples)))
    console.print(table)
    console.print(f"[bold red]cannot infer the mapping:[/] {escape(inferred.problem or '')}.\n"
                  f"  Name the columns, e.g.: tunewise check {path} {escape(inferred.map_args())}\n"
                  f"  or in the experiment YAML: {escape(inferred.yaml_line())}", highlight=False, soft_wrap=True)


def _issue_table(issues: list[Issue]) -> Table:
    grouped: dict[str, list[Issue]] = defaultdict(list)
    for found in issues:
        grouped[found.code].append(found)
    table = Table(title="Issues by code", show_lines=False)
    for name in ("severity", "code", "count", "first lines", "example"):
        table.add_column(name, overflow="fold")
    order = sorted(grouped, key=lambda c: (CODES[c].severity is not Severity.ERROR, -len(grouped[c]), c))
    for code in order:
        items = grouped[code]
        lines = [str(i.line) for i in items if i.line is not None][:FIRST_LINES]
        more = " …" if sum(i.line is not None for i in items) > FIRST_LINES else ""
        first = items[0]
        example = (f"{first.field}: " if first.field else "") + first.message
        style = "red" if first.severity is Severity.ERROR else "yellow"
        table.add_row(f"[{style}]{first.severity.value}[/]", code, f"{len(items):,}", ", ".join(lines) + more,
                      escape(example[:120]))
    return table


def _render_hints(issues: list[Issue], console: Console) -> None:
    """One fix per code, below the table, so the table stays readable in an 80-column terminal."""
    seen: dict[str, str] = {}
    for found in issues:
        seen.setdefault(found.code, found.hint)
    console.print("[bold]How to fix[/]")
    for code, hint in seen.items():
        console.print(f"  [cyan]{code}[/]: {escape(hint)}", highlight=False, soft_wrap=True)


def _render_stats(report: CheckReport, console: Console) -> None:
    stats = report.stats
    if not stats.get("examples"):
        return
    tokenizer = Path(report.tokenizer).name if "/" in report.tokenizer else report.tokenizer
    table = Table(title=escape(f"Token lengths ({tokenizer} tokenizer; context {report.context_length or 'unknown'})"))
    table.add_column("part")
    keys = ("min", "p50", "p90", "p95", "p99", "max", "mean")
    for key in keys:
        table.add_column(key, justify="right")
    for part in ("prompt", "output", "total"):
        summary = stats["tokens"][part]
        table.add_row(part, *(f"{summary[k]:,}" for k in keys))
    console.print(table)
    diversity = stats["diversity"]
    console.print(
        f"examples {stats['examples']:,} · messages/example {stats['messages_per_example']} · "
        f"vocabulary {stats['vocabulary_size']:,} words · distinct-1/2 inputs "
        f"{diversity['input_distinct_1']:.3f}/{diversity['input_distinct_2']:.3f}, outputs "
        f"{diversity['output_distinct_1']:.3f}/{diversity['output_distinct_2']:.3f}"
    )
    labels = stats.get("labels")
    if labels:
        table = Table(title="Labels")
        table.add_column("label")
        table.add_column("examples", justify="right")
        table.add_column("share", justify="right")
        total = sum(labels.values())
        for label, n in list(labels.items())[:SHOWN_LABELS]:
            table.add_row(escape(label), f"{n:,}", f"{n / total:.1%}")
        if len(labels) > SHOWN_LABELS:
            rest = list(labels.values())[SHOWN_LABELS:]
            table.add_row(f"… {len(rest):,} more", f"{sum(rest):,}", f"{sum(rest) / total:.1%}")
        console.print(table)
