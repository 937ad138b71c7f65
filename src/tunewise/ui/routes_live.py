"""The Live pages: runs in progress, and one run's per-arm progress and training loss as they happen.

`tunewise run` appends to `events.jsonl` in the run folder (store/events.py); `/runs/<id>/events` tails that file
as server-sent events (text/event-stream), from the start or from the `Last-Event-ID` byte offset a reconnecting
browser sends, and ends after the run's last event. static/live.js draws the bars and the loss sparklines.
Reading a file is all it does: nothing in a run folder is executed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from tunewise.store.events import EVENTS_FILE, FINAL_KINDS, read_events
from tunewise.store.process import process_gone
from tunewise.store.runs import RunError, list_runs, open_run
from tunewise.ui.pages import render
from tunewise.ui.routes_run import run_context
from tunewise.ui.security import resolve_run

router = APIRouter()
POLL_S = 0.25
STATUS_EVERY_S = 2.0
KEEPALIVE_S = 15.0
ACTIVE = {"created", "running"}


@router.get("/live", response_class=HTMLResponse)
def live_index(request: Request) -> HTMLResponse:
    """Runs still running, and the runs this UI started (with their state)."""
    ui = request.app.state.ui
    running = [r for r in list_runs(ui.runs_dir) if r.status in ACTIVE]
    gone = {r.id for r in running if _status(r.path)[1]}
    started = list(ui.extra.get("jobs", {}).values())
    return render(request, "live_index.html", {"running": running, "gone": gone, "started": started})


@router.get("/runs/{run_id}/live", response_class=HTMLResponse)
def live_page(request: Request, run_id: str) -> HTMLResponse:
    context = run_context(request, run_id)
    return render(request, "live.html", {**context, "tab": "/live", "status": context["manifest"].get("status")})


def _status(folder: Path) -> tuple[str, bool]:
    """The manifest's status, and whether the process it names has gone without writing a final one (killed)."""
    try:
        manifest = open_run(folder).manifest
    except RunError:
        return "", False
    status = str(manifest.get("status") or "")
    return status, status in ACTIVE and process_gone(manifest)


def _message(data: dict[str, object], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return head + "data: " + json.dumps(data, ensure_ascii=False) + "\n\n"


async def _tail(request: Request, folder: Path, offset: int) -> AsyncIterator[str]:
    """Every complete event line from `offset` on, then the new ones as they are appended; ends after a final
    event, or when the manifest says the run stopped without one (a run from before events, or killed)."""
    path = folder / EVENTS_FILE
    checked = sent = time.monotonic()
    yield "retry: 2000\n\n"
    while not await request.is_disconnected():
        chunk = await asyncio.to_thread(read_events, path, offset)
        offset = chunk.offset
        for n, event in enumerate(chunk.events):
            yield _message(event, offset if n == len(chunk.events) - 1 else None)
        for problem in chunk.problems:
            yield _message({"kind": "problem", "message": problem.replace(str(folder), run_id_of(folder))})
        if any(e.get("kind") in FINAL_KINDS for e in chunk.events):
            return
        now = time.monotonic()
        if chunk.events:
            sent = now
        elif now - checked >= STATUS_EVERY_S:
            checked = now
            status, gone = await asyncio.to_thread(_status, folder)
            if status and status not in ACTIVE:
                yield _message({"kind": "run_ended", "status": status,
                                "message": f"the run is {status}; it wrote no further events"})
                return
            if gone:
                yield _message({"kind": "run_ended", "status": "gone",
                                "message": "the process running this run is gone without a final status (killed "
                                           "or crashed); `tunewise run EXPERIMENT --resume` continues it"})
                return
        if now - sent >= KEEPALIVE_S:
            sent = now
            yield ": keepalive\n\n"
        await asyncio.sleep(POLL_S)


def run_id_of(folder: Path) -> str:
    return folder.name


@router.get("/runs/{run_id}/events")
async def live_events(request: Request, run_id: str) -> StreamingResponse:
    folder = resolve_run(request.app.state.ui.runs_dir, run_id)
    last = request.headers.get("last-event-id", "")
    offset = int(last) if last.isdigit() else 0
    return StreamingResponse(_tail(request, folder, offset), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
