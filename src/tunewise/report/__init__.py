"""The report: results.json rendered as report.md and a self-contained report.html (inline SVG, no scripts,
no external URLs). Every figure in the report is read from results.json, never recomputed here.

`write_report` writes results.json, metrics.json, report.md and report.html atomically into a run folder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunewise.store.atomic import atomic_write_text


def write_report(run_dir: Path, results: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Path]:
    """Write the evidence files into the run folder; returns their paths by name."""
    from tunewise.report.html import render_html, render_markdown

    paths = {name: run_dir / name for name in ("results.json", "metrics.json", "report.md", "report.html")}
    atomic_write_text(paths["results.json"], json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False))
    atomic_write_text(paths["metrics.json"], json.dumps(metrics, indent=2, ensure_ascii=False, allow_nan=False))
    atomic_write_text(paths["report.md"], render_markdown(results))
    atomic_write_text(paths["report.html"], render_html(results))
    return paths
