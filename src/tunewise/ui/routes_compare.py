"""The Compare page: two arms of a run, or the same arm (or any arm) in another run on the same frozen split,
with the evaluation's paired test between them and the examples where they differ."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tunewise.store.runs import list_runs
from tunewise.ui.compare_data import Side, paired_test, same_split_problem, shared_ids, test_split_hash
from tunewise.ui.pages import render
from tunewise.ui.routes_run import run_context
from tunewise.ui.run_data import RunDataError, scorer, task_of

router = APIRouter()
SHOWN_DIFFERENCES = 25


def _choices(request: Request, context: dict[str, Any]) -> list[tuple[str, str]]:
    """(value, text) for side B: this run's arms, then the arms of other runs with the same frozen test split."""
    ui = request.app.state.ui
    run_id, results = context["run_id"], context["results"]
    options = [(f"{run_id}/{arm}", arm) for arm in results["arms"]]
    mine = test_split_hash(context["folder"])
    if mine is None:
        return options
    for record in list_runs(ui.runs_dir):
        if record.path.name == run_id or test_split_hash(record.path) != mine:
            continue
        try:
            arms = ui.cache.results(record.path)["arms"]
        except RunDataError:
            continue
        options += [(f"{record.path.name}/{arm}", f"{arm} · run {record.path.name}") for arm in arms]
    return options


def _side_b(request: Request, context: dict[str, Any], b: str) -> tuple[Side, dict[str, Any], dict[str, Any]]:
    """Side B from `<run id>/<arm>` (or a bare arm of this run): its Side, manifest and results."""
    run_b, _, arm = b.partition("/") if "/" in b else (context["run_id"], "", b)
    if run_b == context["run_id"]:
        return Side(run_b, context["folder"], arm), context["manifest"], context["results"]
    other = run_context(request, run_b)
    if other["results"] is None:
        raise RunDataError(f"Run {run_b}: {other['problem']}")
    return Side(run_b, other["folder"], arm), other["manifest"], other["results"]


def _differences(table_a: Any, arm_a: str, table_b: Any, arm_b: str, ids: list[str]) -> tuple[dict[str, int], list]:
    """Agreement counts over the shared examples and the first examples where exactly one side is right."""
    index_a = {e: i for i, e in enumerate(table_a.ids)}
    index_b = {e: i for i, e in enumerate(table_b.ids)}
    counts = {"both right": 0, "only A right": 0, "only B right": 0, "both wrong": 0}
    shown: list[dict[str, Any]] = []
    for example in ids:
        i, j = index_a[example], index_b[example]
        ok_a, ok_b = bool(table_a.correct[arm_a][i]), bool(table_b.correct[arm_b][j])
        key = "both right" if ok_a and ok_b else "only A right" if ok_a else "only B right" if ok_b else "both wrong"
        counts[key] += 1
        if ok_a != ok_b and len(shown) < SHOWN_DIFFERENCES:
            shown.append({"id": example, "input": table_a.inputs[i], "reference": table_a.references[i],
                          "a": table_a.answers[arm_a][i], "b": table_b.answers[arm_b][j], "a_right": ok_a})
    return counts, shown


@router.get("/runs/{run_id}/compare", response_class=HTMLResponse)
def compare_page(request: Request, run_id: str, a: str = "", b: str = "") -> HTMLResponse:
    context = run_context(request, run_id)
    results = context["results"]
    if results is None:
        raise RunDataError(context["problem"])
    arms = list(results["arms"])
    ranked = sorted(arms, key=lambda n: -float(results["arms"][n].get("metrics", {}).get(
        results["primary_metric"], {}).get("value") or 0.0))
    a = a if a in arms else (ranked[0] if ranked else "")
    b = b or f"{run_id}/{ranked[1] if len(ranked) > 1 else a}"
    page: dict[str, Any] = {**context, "tab": "/compare", "arms": arms, "a": a, "b": b,
                            "choices": _choices(request, context), "test": None, "refusal": None}
    side_a = Side(run_id, context["folder"], a)
    side_b, manifest_b, results_b = _side_b(request, context, b)
    if side_b.arm not in results_b["arms"]:
        page["refusal"] = f"Run {side_b.run_id} has no arm {side_b.arm!r}; pick one from the list."
    elif side_b.run_id != run_id:
        page["refusal"] = same_split_problem(context["folder"], side_b.folder)
    if page["refusal"] is None and a:
        cache = request.app.state.ui.cache
        task = task_of(context["manifest"], results)
        table_a = cache.table(context["folder"], arms, scorer(task))
        table_b = cache.table(side_b.folder, list(results_b["arms"]), scorer(task_of(manifest_b, results_b)))
        missing = [s.arm for s, t in ((side_a, table_a), (side_b, table_b)) if s.arm not in t.answers]
        if missing:
            raise RunDataError(f"No predictions/{missing[0]}.jsonl for arm {missing[0]!r}; it may have failed.")
        label_a = a if side_b.run_id == run_id else f"{a} ({run_id})"
        label_b = side_b.arm if side_b.run_id == run_id else f"{side_b.arm} ({side_b.run_id})"
        test, n = paired_test(side_a, table_a, side_b, table_b, results, task, label_a, label_b)
        counts, shown = _differences(table_a, a, table_b, side_b.arm,
                                     shared_ids(table_a, a, table_b, side_b.arm))
        page.update(test=test, n=n, counts=counts, shown=shown, label_a=label_a, label_b=label_b)
    return render(request, "compare.html", page)
