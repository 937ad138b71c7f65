"""Rich rendering of `tunewise advise`: the checklist, then the candidates with their estimates. Presentation only."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tunewise.advise.readiness import Advice

_STYLE = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "blocker": "[bold red]blocker[/]"}


def _money(value: float | None) -> str:
    if value is None:
        return "–"
    return "<$0.01" if value < 0.01 else f"${value:,.2f}"


def _hours(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 1 / 60:
        return f"{max(value * 3600, 1):,.0f} s"
    return f"{value * 60:,.0f} min" if value < 1 else f"{value:,.1f} h"


def render_advice(advice: Advice, console: Console) -> None:
    data = advice.data
    console.print(f"[bold]{escape(str(data['path']))}[/]  task={escape(data['task'])}  examples={data['examples']:,}  "
                  f"tokenizer={escape(str(data['tokenizer']))}")
    table = Table(title="Fine-tuning readiness")
    for name in ("", "check", "evidence", "what to do"):
        table.add_column(name, overflow="fold")
    for item in advice.items:
        table.add_row(_STYLE[item.status], escape(item.title), escape(item.evidence),
                      "" if item.action == "none" else escape(item.action))
    console.print(table)
    req = advice.requirements
    candidates = Table(title=escape(f"Candidate base models (catalog: {advice.catalog}; {req.epochs} epoch(s); "
                                    "estimates, see below)"))
    for name in ("model", "kind", "params", "context", "licence", "train tokens", "CPU time", "GPU time", "cost",
                 "notes"):
        # a model name stays on one line, so it can be read and copied into a config as it is
        candidates.add_column(name, justify="right" if name in ("params", "context", "train tokens") else "left",
                              overflow="fold", no_wrap=name == "model")
    for c in advice.candidates:
        params = "–" if c.parameters is None else f"{c.parameters / 1e6:,.0f}M"
        cost = _money(c.api_usd) if c.kind == "api" else f"CPU {_money(c.cpu_usd)} · GPU {_money(c.gpu_usd)}"
        name = escape(c.name) if c.suitable else f"[dim]{escape(c.name)}[/]"
        candidates.add_row(name, c.kind, params, f"{c.context_length:,}", escape(c.licence), f"{c.training_tokens:,}",
                           _hours(c.cpu_hours), _hours(c.gpu_hours), cost,
                           escape("; ".join(c.notes)) or ("" if c.suitable else "not suitable"))
    console.print(candidates)
    for line in advice.assumptions:
        console.print(f"[dim]· {escape(line)}[/]")
    style = "bold red" if advice.blockers else ("bold yellow" if advice.warnings else "bold green")
    console.print(f"[{style}]{escape(advice.summary)}[/]")
