"""Rich rendering of an experiment's result: one row per arm, best first. Presentation only."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from tunewise.experiment import ExperimentResult


def render_result(result: ExperimentResult, console: Console) -> None:
    metrics = result.metrics
    labelled = any("accuracy" in m for m in metrics.values())
    table = Table(title=escape(f"Run {result.run.id}: {next(iter(metrics.values()), {}).get('n', 0)} test examples"))
    columns = ("arm", "accuracy", "macro-F1") if labelled else ("arm", "exact match")
    show_failed = any(m["failed"] for m in metrics.values())
    show_cost = any(m.get("cost_per_1k_usd") for m in metrics.values())
    for name in columns + (("failed",) if show_failed else ()) + ("p50 ms", "prompt tok") + \
            (("$/1k req",) if show_cost else ()) + ("cached",):
        table.add_column(name, justify="left" if name == "arm" else "right", no_wrap=True)
    key = result.primary_metric if labelled else "score"
    for name, m in sorted(metrics.items(), key=lambda item: -item[1].get(key, 0.0)):
        quality = (f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}") if labelled else (f"{m['score']:.3f}",)
        failed = (str(m["failed"]),) if show_failed else ()
        cost = (f"{m['cost_per_1k_usd']:.4f}" if "cost_per_1k_usd" in m else "–",) if show_cost else ()
        table.add_row(escape(name), *quality, *failed, f"{m['latency_p50_s'] * 1000:,.0f}",
                      f"{m['prompt_tokens_mean']:,.0f}", *cost, f"{m['cached']}/{m['n']}")
    console.print(table)
    for name, reason in result.failures.items():
        console.print(f"[red]✗ {escape(name)}:[/] {escape(reason)}")
    console.print(f"answer cache: {result.cache_hits:,} hit(s), {result.cache_misses:,} miss(es) · "
                  f"{result.seconds:.1f} s · predictions in {escape(str(result.run.path / 'predictions'))}")
    if result.verdict is not None:
        render_verdict(result.verdict, result.run.path, console)


def render_verdict(verdict: dict, run_dir: Path, console: Console) -> None:
    """The verdict's headline, its reasons, and where the full report is."""
    console.print(Panel(escape(verdict["headline"]), title="verdict", title_align="left", border_style="bold"))
    for reason in verdict["reasons"]:
        console.print(f"  · {escape(reason)}")
    console.print(f"report: {escape(str(run_dir / 'report.html'))} (and report.md, results.json)")
