"""The Start page: paste or upload an experiment YAML, see what is wrong with it line by line, and start it as a
background `tunewise run` that shows up on the Live page. The saving, validation and launch are in
start_jobs.py (where files go, how relative paths resolve); this module only speaks HTTP."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from tunewise.ui.pages import render
from tunewise.ui.start_jobs import MAX_YAML_BYTES, StartedRun, launch, prepare, wait_for_run

router = APIRouter()
WAIT_FOR_RUN_S = 60.0


@router.get("/start", response_class=HTMLResponse)
def start_page(request: Request) -> HTMLResponse:
    return render(request, "start.html", {"text": "", "problems": [], "base": _base(request)})


def _base(request: Request) -> str:
    return str(request.app.state.ui.runs_dir.resolve().parent)


async def _text(request: Request) -> str:
    form = await request.form()
    upload = form.get("file")
    if isinstance(upload, UploadFile) and upload.filename:
        data = await upload.read(MAX_YAML_BYTES + 1)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPException(422, f"{upload.filename} is not UTF-8 text; upload the experiment YAML") from None
    pasted = form.get("yaml")
    return pasted if isinstance(pasted, str) else ""


@router.post("/start")
async def start_experiment(request: Request) -> Response:
    """Validate; on problems show them beside the YAML; else start it and go to its Live page."""
    ui = request.app.state.ui
    text = (await _text(request)).replace("\r\n", "\n")
    saved, overrides, problems = await asyncio.to_thread(prepare, text, ui.runs_dir)
    if problems:  # the form again, with the problems beside it (200: a form page, not a failed request)
        return render(request, "start.html", {"text": text, "problems": problems, "base": _base(request)})
    job: StartedRun = launch(saved, overrides)
    ui.extra.setdefault("jobs", {})[job.name] = job
    run_id = await asyncio.to_thread(wait_for_run, job, ui.runs_dir, WAIT_FOR_RUN_S)
    if run_id is None and job.process.poll() is None:  # still reading its data: it will appear under Live
        return RedirectResponse("/live", status_code=303)
    if run_id is None:
        from tunewise.ui.start_jobs import Problem

        said = job.log_tail() or "(no output)"
        problem = Problem(None, None, f"the run did not start ({job.state()}); its output: {said}",
                          "fix what the output says and start it again")
        return render(request, "start.html", {"text": text, "problems": [problem], "base": _base(request)})
    return RedirectResponse(f"/runs/{run_id}/live", status_code=303)
