"""Render results.json through the Jinja2 templates in `templates/` (package data).

Numbers are formatted by the filters below and nowhere else, so a test can format results.json the same
way and find every figure in the page. HTML is autoescaped (arm names, labels and inputs are user data);
only matplotlib's SVG is inserted as markup. Knows nothing about how the results were computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from tunewise.evaluate.money import usd


def num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def signed(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:+.{digits}f}"


def ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:,.0f} ms"


def count(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def pvalue(value: float) -> str:
    return f"{value:.3g}"


def outcome(test: Mapping[str, Any]) -> str:
    """A paired test's result in the verdict's words: a non-significant pair is "the same" only when the
    equivalence test says so; otherwise it is inconclusive."""
    margin = f"±{test.get('margin', 0):g}"
    if test.get("significant"):
        return f"significant (within {margin})" if test.get("equivalent") else "significant"
    return f"equivalent within {margin}" if test.get("equivalent") else "no significant difference; inconclusive"


STATUS_WORDS = {"equivalent": "equivalent within the margin", "worse": "significantly worse",
                "inconclusive": "inconclusive"}


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("tunewise.report", "templates"), undefined=StrictUndefined,
                      autoescape=lambda name: bool(name) and name.endswith(".html.j2"), trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=num, signed=signed, usd=usd, ms=ms, count=count, pvalue=pvalue, outcome=outcome)
    return env


def metric_columns(results: Mapping[str, Any]) -> list[str]:
    """The primary metric first, then the task's other scalar metrics in a stable order."""
    names: list[str] = []
    for arm in results["arms"].values():
        names += [k for k in arm["metrics"] if k not in names]
    primary = results["primary_metric"]
    # for classification `score` is accuracy again; elsewhere it is the task's own score, shown last
    tail = ["score"] if primary != "score" and "accuracy" not in names else []
    return [primary] + [n for n in names if n not in (primary, "score")] + tail


def _context(results: Mapping[str, Any]) -> dict[str, Any]:
    from tunewise.evaluate.verdict import RULE

    metric = results["primary_metric"]
    ranked = sorted(results["arms"], key=lambda a: -results["arms"][a]["metrics"][metric]["value"])
    return {"r": results, "ranked": ranked, "columns": metric_columns(results), "metric": metric, "rule": RULE,
            "recommended": results["verdict"]["recommended"], "status_words": STATUS_WORDS,
            "comparisons": results["verdict"].get("comparisons") or [],
            "confidence": results["verdict"].get("confidence"), "gates": results.get("gates")}


def render_html(results: Mapping[str, Any]) -> str:
    from tunewise.report.plots import all_figures

    return _environment().get_template("report.html.j2").render(**_context(results), figures=all_figures(results))


def render_markdown(results: Mapping[str, Any]) -> str:
    return _environment().get_template("report.md.j2").render(**_context(results))
