"""The Predictions page: every test example with each arm's answer, filtered and paged on the server."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from tunewise.ui.pages import render
from tunewise.ui.predictions_filter import OUTCOMES, PAGE_SIZES, PredictionFilter, matching, page_of
from tunewise.ui.routes_run import run_context
from tunewise.ui.run_data import RunDataError, scorer, task_of

router = APIRouter()
MAX_REFERENCE_CHOICES = 50


@router.get("/runs/{run_id}/predictions", response_class=HTMLResponse)
def predictions_page(request: Request, run_id: str, arm: str = "", reference: str = "", outcome: str = "",
                     disagree: bool = False, q: str = Query("", max_length=500), page: int = Query(1, ge=1),
                     size: int = Query(50)) -> HTMLResponse:
    context = run_context(request, run_id)
    results = context["results"]
    if results is None:
        raise RunDataError(context["problem"])
    task = task_of(context["manifest"], results)
    table = request.app.state.ui.cache.table(context["folder"], list(results["arms"]), scorer(task))
    if not table.arms:
        raise RunDataError("This run has no predictions/<arm>.jsonl files yet, so there is nothing to list.")
    if arm and arm not in table.arms:
        arm = ""
    size = size if size in PAGE_SIZES else 50
    flt = PredictionFilter(arm=arm, reference=reference, outcome=outcome if outcome in OUTCOMES else "",
                           disagree=disagree, q=q.strip())
    rows = matching(table, flt)
    shown, page, pages = page_of(rows, page, size)
    columns = [arm] if arm else table.arms
    # the reference filter lists labels; free-text references (generation, extraction) are searched instead
    distinct = set(table.references)
    labels = results.get("labels") or (sorted(distinct) if len(distinct) <= MAX_REFERENCE_CHOICES else [])
    params = {"arm": flt.arm, "reference": flt.reference, "outcome": flt.outcome,
              "disagree": "true" if flt.disagree else "", "q": flt.q, "size": size if size != 50 else ""}
    return render(request, "predictions.html", {
        **context, "tab": "/predictions", "table": table, "rows": shown, "matched": len(rows), "page": page,
        "pages": pages, "size": size, "columns": columns, "labels": labels, "f": flt, "params": params,
        "page_sizes": PAGE_SIZES, "first_row": (page - 1) * size + 1})
