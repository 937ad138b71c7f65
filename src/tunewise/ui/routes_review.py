"""The Review page: one test example at a time with every arm's answer and the reference; a person marks which
answers are right, or that the reference is wrong, and saves. Keyboard-driven with static/review.js, and a
plain form without it.

The examples reviewed are a filtered set of the Predictions page (same query parameters; a link there opens
this page on its filters) or, with no filter, the run's review sample (results.json "review": a seeded sample
where the arms disagree). Saving appends to reviews.jsonl and refreshes the run's human-review section in
results.json (evaluate/human_review.py); report.md and report.html follow in the background (report_refresh.py).
Nothing else in the run changes.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from tunewise.evaluate.human_review import HumanReviewError, record_review
from tunewise.store.reviews import ReviewError, make_review, read_reviews
from tunewise.ui.pages import render
from tunewise.ui.predictions_filter import OUTCOMES, PredictionFilter, matching
from tunewise.ui.report_refresh import ReportRefresher
from tunewise.ui.routes_run import run_context
from tunewise.ui.run_data import PredictionTable, RunDataError, scorer, task_of

router = APIRouter()
REVIEWER_COOKIE = "tunewise_reviewer"
FILTER_KEYS = ("arm", "reference", "outcome", "disagree", "q")


def _table(request: Request, run_id: str) -> tuple[dict[str, Any], PredictionTable]:
    context = run_context(request, run_id)
    if context["results"] is None:
        raise RunDataError(context["problem"])
    task = task_of(context["manifest"], context["results"])
    table = request.app.state.ui.cache.table(context["folder"], list(context["results"]["arms"]), scorer(task))
    if not table.arms:
        raise RunDataError("This run has no predictions/<arm>.jsonl files yet, so there is nothing to review.")
    return context, table


def _chosen(table: PredictionTable, results: dict[str, Any], params: dict[str, str]) -> tuple[list[int], str]:
    """Row indices to review and a sentence saying which set they are."""
    if any(params.get(k) for k in FILTER_KEYS):
        flt = PredictionFilter(arm=params.get("arm", "") if params.get("arm") in table.arms else "",
                               reference=params.get("reference", ""),
                               outcome=params.get("outcome", "") if params.get("outcome") in OUTCOMES else "",
                               disagree=params.get("disagree") in ("true", "on", "1"), q=params.get("q", "").strip())
        return matching(table, flt), "the examples matching the Predictions page's filters"
    sample = [item.get("id") for item in ((results.get("review") or {}).get("items") or []) if isinstance(item, dict)]
    where = {example: i for i, example in enumerate(table.ids)}
    rows = [where[s] for s in sample if s in where]
    if rows:
        return rows, "the run's review sample: examples where the arms disagree"
    return [i for i in range(len(table)) if table.disagree[i]], "every example where the arms disagree"


def _filters(request: Request) -> dict[str, str]:
    return {k: v for k in FILTER_KEYS if (v := request.query_params.get(k, "").strip())}


@router.get("/runs/{run_id}/review", response_class=HTMLResponse)
def review_page(request: Request, run_id: str, i: int = Query(0, ge=0), saved: str = "") -> HTMLResponse:
    context, table = _table(request, run_id)
    params = _filters(request)
    rows, described = _chosen(table, context["results"], params)
    found = read_reviews(context["folder"])
    latest = found.latest()
    base = {**context, "tab": "/review", "described": described, "total": len(rows), "params": params,
            "reviewed_here": sum(1 for r in rows if table.ids[r] in latest), "problems": found.problems,
            "human": context["results"].get("human_review"), "saved": saved}
    if not rows:
        return render(request, "review.html", {**base, "row": None})
    position = min(i, len(rows) - 1)
    row = rows[position]
    example = table.ids[row]
    review = latest.get(example)
    arms = [{"index": n, "name": arm, "answer": table.answers[arm][row], "error": table.errors[arm][row],
             "auto": table.correct[arm][row],
             "verdict": review.verdicts.get(arm, "") if review else _default(table.correct[arm][row])}
            for n, arm in enumerate(table.arms)]
    step = {"prev": _href(run_id, params, position - 1) if position > 0 else None,
           "next": _href(run_id, params, position + 1) if position + 1 < len(rows) else None}
    return render(request, "review.html", {
        **base, "row": row, "position": position, "example": example, "input": table.inputs[row],
        "reference": table.references[row], "arms": arms, "review": review, "step": step,
        "reviewer": review.reviewer if review else request.cookies.get(REVIEWER_COOKIE, "")})


def _default(correct: bool | None) -> str:
    """Before anyone reviews an example, each arm starts as the metric scored it."""
    return "" if correct is None else ("right" if correct else "wrong")


def _href(run_id: str, params: dict[str, str], position: int, **extra: str) -> str:
    query = {**params, "i": str(position), **extra}
    return f"/runs/{run_id}/review?{urlencode(query)}"


@router.post("/runs/{run_id}/review")
async def save_review_form(request: Request, run_id: str) -> RedirectResponse:
    """Save the form's review (CSRF checked by the app before this runs), then show the next example."""
    context, table = await asyncio.to_thread(_table, request, run_id)  # a first read of a big run takes a while
    form = await request.form()
    field = {k: v for k, v in form.items() if isinstance(v, str)}
    example = field.get("example_id", "")
    if example not in table.ids:
        raise HTTPException(422, f"example_id {example!r} is not a test example of this run; reload the page.")
    verdicts = {}
    for n, arm in enumerate(table.arms):
        value = field.get(f"verdict_{n}", "")
        if value not in ("", "right", "wrong"):
            raise HTTPException(422, f"verdict_{n} ({arm}): {value!r} is neither 'right' nor 'wrong'.")
        if value:
            verdicts[arm] = value
    corrected = field.get("corrected_reference", "").strip() or None
    try:
        review = make_review({"example_id": example, "reviewer": field.get("reviewer", "").strip(),
                              "verdicts": verdicts, "reference_wrong": field.get("reference_wrong") == "on",
                              "corrected_reference": corrected, "note": field.get("note", "").strip()})
        await asyncio.to_thread(record_review, context["folder"], review, False)
    except (ReviewError, HumanReviewError) as exc:
        raise HTTPException(422, f"The review was not saved: {exc}") from None
    ui = request.app.state.ui
    ui.extra.setdefault("report_refresher", ReportRefresher()).schedule(context["folder"])
    params = {k: field[k] for k in FILTER_KEYS if field.get(k)}
    position = int(field["position"]) if field.get("position", "").isdigit() else 0
    step = 1 if field.get("go") == "next" else 0
    response = RedirectResponse(_href(run_id, params, position + step, saved=example), status_code=303)
    response.set_cookie(REVIEWER_COOKIE, review.reviewer, httponly=True, samesite="strict", path="/")
    return response
