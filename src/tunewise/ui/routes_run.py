"""The Run page (verdict, arms, plots, paired tests, cost and ROI, training, robustness, files) and the run's
files, served inert: nothing from a run folder is ever executed, and no file can run script in the browser."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from starlette.background import BackgroundTask

from tunewise.store.runs import RunError, open_run
from tunewise.ui.pages import render
from tunewise.ui.run_data import RunCache, RunDataError, scorer, task_of
from tunewise.ui.security import resolve_run, resolve_run_file

router = APIRouter()
MAX_FILES = 400  # the file list stops here; a run with checkpoints can hold thousands
# Served as text so the browser shows them instead of interpreting them.
_TEXT = {".json", ".jsonl", ".md", ".txt", ".yaml", ".yml", ".csv", ".tsv", ".log", ".html"}
_IMAGES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}
# A run's files may come from anywhere: a sandboxed page with no scripts, no network and no same-origin rights.
_FILE_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def run_context(request: Request, run_id: str) -> dict[str, Any]:
    """What every run-scoped page needs: the folder, its manifest and results (or why they cannot be read)."""
    ui = request.app.state.ui
    folder = resolve_run(ui.runs_dir, run_id)
    try:
        manifest = open_run(folder).manifest
    except RunError as exc:
        raise RunDataError(str(exc)) from None
    try:
        results, problem = ui.cache.results(folder), None
    except RunDataError as exc:
        results, problem = None, str(exc)
    return {"run_id": run_id, "folder": folder, "manifest": manifest, "results": results, "problem": problem,
            "run_tabs": ui.run_tabs}


def list_files(folder: Path) -> tuple[list[str], bool]:
    """Relative paths of the run's regular files (no hidden ones, symlinks not followed), capped at MAX_FILES."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if name.startswith(".") or path.is_symlink():
                continue
            found.append(path.relative_to(folder).as_posix())
            if len(found) >= MAX_FILES:
                return found, True
    return found, False


def _figures(request: Request, folder: Path, results: dict[str, Any]) -> dict[str, str | None]:
    """The report's SVG plots, drawn once per results.json version."""
    from tunewise.report.plots import all_figures

    return request.app.state.ui.cache.memo(folder, "figures", lambda: all_figures(results))


def _ranked(results: dict[str, Any]) -> list[str]:
    metric = results["primary_metric"]

    def value(arm: str) -> float:
        got = results["arms"][arm].get("metrics", {}).get(metric, {}).get("value")
        return -got if isinstance(got, int | float) else 0.0

    return sorted(results["arms"], key=value)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str) -> HTMLResponse:
    context = run_context(request, run_id)
    results = context["results"]
    files, truncated = list_files(context["folder"])
    extra: dict[str, Any] = {"files": files, "files_truncated": truncated, "figures": {}, "ranked": [],
                             "columns": []}
    if results is not None:
        from tunewise.report.html import metric_columns

        try:
            extra.update(figures=_figures(request, context["folder"], results), ranked=_ranked(results),
                         columns=metric_columns(results))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            context["problem"] = (f"results.json does not have the shape this version expects ({type(exc).__name__}: "
                                  f"{exc}); re-create it with `tunewise report <run folder>`.")
            context["results"] = None
    from tunewise.report.html import STATUS_WORDS

    response = render(request, "run.html", {**context, **extra, "tab": "", "status_words": STATUS_WORDS})
    if context["results"] is not None:  # read the predictions after answering, so the Predictions tab is instant
        response.background = BackgroundTask(_prefetch, request.app.state.ui.cache, context)
    return response


def _prefetch(cache: RunCache, context: dict[str, Any]) -> None:
    """Build the run's prediction table in the background; a bad file is reported when the page is opened."""
    try:
        task = task_of(context["manifest"], context["results"])
        cache.table(context["folder"], list(context["results"]["arms"]), scorer(task))
    except (RunDataError, OSError):
        pass


@router.get("/runs/{run_id}/files/{name:path}")
def run_file(request: Request, run_id: str, name: str) -> FileResponse:
    folder = resolve_run(request.app.state.ui.runs_dir, run_id)
    path = resolve_run_file(folder, name)
    suffix = path.suffix.lower()
    if path.name == "report.html":
        media, disposition = "text/html; charset=utf-8", "inline"
    elif suffix in _TEXT:
        media, disposition = "text/plain; charset=utf-8", "inline"
    elif suffix in _IMAGES:
        media, disposition = _IMAGES[suffix], "inline"
    else:
        media, disposition = "application/octet-stream", "attachment"
    response = FileResponse(path, media_type=media, content_disposition_type=disposition, filename=path.name)
    response.headers["Content-Security-Policy"] = _FILE_CSP
    return response
