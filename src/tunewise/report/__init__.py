"""The report: results.json rendered as report.md and a self-contained report.html (inline SVG, no scripts,
no external URLs). Every figure in the report is read from results.json, never recomputed here.

`write_report` writes results.json, metrics.json, report.md and report.html atomically into a run folder;
`write_results` rewrites only results.json and the two reports (a section of results.json refreshed, such as
the human review); `write_rendered` only the two reports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunewise.store.atomic import atomic_write_text


def write_report(run_dir: Path, results: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Path]:
    """Write the evidence files into the run folder; returns their paths by name."""
    paths = write_results(run_dir, results)
    paths["metrics.json"] = run_dir / "metrics.json"
    atomic_write_text(paths["metrics.json"], json.dumps(metrics, indent=2, ensure_ascii=False, allow_nan=False))
    return paths


def write_results(run_dir: Path, results: Mapping[str, Any], render: bool = True) -> dict[str, Path]:
    """results.json, then (with `render`) report.md and report.html rendered from it, each written atomically."""
    path = run_dir / "results.json"
    atomic_write_text(path, json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False))
    return {"results.json": path, **(write_rendered(run_dir, results) if render else {})}


def write_rendered(run_dir: Path, results: Mapping[str, Any]) -> dict[str, Path]:
    """report.md and report.html from `results` (the HTML redraws the plots: seconds on a large run)."""
    from tunewise.report.html import render_html, render_markdown

    paths = {name: run_dir / name for name in ("report.md", "report.html")}
    atomic_write_text(paths["report.md"], render_markdown(results))
    atomic_write_text(paths["report.html"], render_html(results))
    return paths
