"""The Runs page: the registry, newest first, filtered by experiment name and status."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tunewise.store.runs import STATUSES, RunError, list_runs, open_run
from tunewise.ui.pages import render

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def runs_page(request: Request, experiment: str = "", status: str = "") -> HTMLResponse:
    ui = request.app.state.ui
    records = list_runs(ui.runs_dir)
    rows = []
    for record in records:
        if status and record.status != status:
            continue
        try:
            manifest = open_run(record.path).manifest
        except RunError:
            manifest = None  # the registry row is enough to list it; the run page explains the folder
        summary = ui.cache.summary(record, manifest)
        if experiment and experiment.lower() not in summary.experiment.lower():
            continue
        rows.append(summary)
    return render(request, "runs.html", {
        "rows": rows, "total": len(records), "runs_dir": str(ui.runs_dir), "statuses": sorted(STATUSES),
        "filters": {"experiment": experiment, "status": status}})
