"""Rich rendering of an experiment's result: one row per arm, best first. Presentation only."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from tunewise.evaluate.money import usd
from tunewise.pipeline.experiment import ExperimentResult


def render_result(result: ExperimentResult, console: Console) -> None:
    metrics = result.metrics
    labelled = any("accuracy" in m for m in metrics.values())
    table = Table(title=escape(f"Run {result.run.id}: {next(iter(metrics.values()), {}).get('n', 0)} test examples"))
    judged = any("judge" in m for m in metrics.values())  # evaluation.judge's score, when a judge ran
    # a reference metric that ranks free text (evaluation.primary_metric rouge_l, chrf, bleu, field_f1) gets a column
    shown = result.primary_metric if not labelled and result.primary_metric not in ("score", "judge") else None
    columns = ("arm", "accuracy", "macro-F1") if labelled else \
        ("arm", "exact match") + ((shown,) if shown else ()) + (("judge",) if judged else ())
    show_failed = any(m["failed"] for m in metrics.values())
    show_cost = any(m.get("cost_per_1k_usd") for m in metrics.values())
    for name in columns + (("failed",) if show_failed else ()) + ("p50 ms", "compute s/1k", "prompt tok") + \
            (("$/1k req",) if show_cost else ()) + ("cached",):
        table.add_column(name, justify="left" if name == "arm" else "right", no_wrap=True)
    key = result.primary_metric
    for name, m in sorted(metrics.items(), key=lambda item: -item[1].get(key, 0.0)):
        quality = (f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}") if labelled else (f"{m['score']:.3f}",)
        quality += (f"{m[shown]:.3f}" if shown in m else "–",) if shown else ()
        quality += (f"{m['judge']:.3f}" if "judge" in m else "–",) if judged and not labelled else ()
        failed = (str(m["failed"]),) if show_failed else ()
        cost = (usd(m["cost_per_1k_usd"]) if "cost_per_1k_usd" in m else "–",) if show_cost else ()
        table.add_row(escape(name), *quality, *failed, f"{m['latency_p50_s'] * 1000:,.0f}",
                      f"{m['compute_s_per_1k']:,.1f}" if "compute_s_per_1k" in m else "–",
                      f"{m['prompt_tokens_mean']:,.0f}", *cost, f"{m['cached']}/{m['n']}")
    console.print(table)
    for name, reason in result.failures.items():
        console.print(f"[red]✗ {escape(name)}:[/] {escape(reason)}")
    if result.robustness:
        render_robustness(result.robustness, result.primary_metric if labelled or shown else "score", console)
    console.print(f"answer cache: {result.cache_hits:,} hit(s), {result.cache_misses:,} miss(es) · "
                  f"{result.seconds:.1f} s · predictions in {escape(str(result.run.path / 'predictions'))}")
    if result.verdict is not None:
        render_verdict(result.verdict, result.run.path, console)


def render_verdict(verdict: dict, run_dir: Path, console: Console) -> None:
    """The verdict's headline, its reasons (with each inconclusive pair's detectable difference and the examples
    needed), how often the rule picks each arm on resamples of the test set, and where the full report is."""
    console.print(Panel(escape(verdict["headline"]), title="verdict", title_align="left", border_style="bold"))
    for reason in verdict["reasons"]:
        console.print(f"  · {escape(reason)}")
    confidence = verdict.get("confidence")
    if confidence:
        console.print(f"[bold]{escape(confidence['summary'])}[/]")
    if any(c["status"] == "inconclusive" for c in verdict.get("comparisons") or []):
        console.print(f"More test examples may settle what is inconclusive: tunewise run EXPERIMENT --resume "
                      f"{escape(str(run_dir))} --extend (within evaluation.budget, alpha spent over looks)")
    console.print(f"report: {escape(str(run_dir / 'report.html'))} (and report.md, results.json)")


def render_robustness(robustness: dict[str, dict[str, dict[str, float | int]]], metric: str, console: Console) -> None:
    """One row per arm: the clean score on the perturbed subset, then each perturbation's score and drop."""
    perturbations = sorted({name for per_arm in robustness.values() for name in per_arm})
    rows = {arm: per_arm for arm, per_arm in robustness.items() if per_arm}
    if not rows:
        return
    n = max(cell["n"] for per_arm in rows.values() for cell in per_arm.values())
    table = Table(title=escape(f"Robustness: {metric} on {n} perturbed test examples (drop from clean)"))
    for name in ("arm", "clean", *perturbations):
        table.add_column(escape(name), justify="left" if name == "arm" else "right", no_wrap=True)
    for arm, per_arm in sorted(rows.items(), key=lambda item: -next(iter(item[1].values()))["clean_score"]):
        clean = next(iter(per_arm.values()))["clean_score"]
        cells = [f"{per_arm[p]['score']:.3f} ({0.0 - per_arm[p]['drop']:+.3f})" if p in per_arm else "–"
                 for p in perturbations]
        table.add_row(escape(arm), f"{clean:.3f}", *cells)
    console.print(table)
