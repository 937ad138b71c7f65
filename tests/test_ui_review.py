"""The Review, Live and Start pages of `tunewise ui` through FastAPI's TestClient, on a real finished run: reviews
saved with CSRF and refreshed into results.json, bad input refused with a page that says why, the events
stream of a run, and experiments validated (and started) from the Start page."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from reviewed_run import experiment_yaml, finished_run

from tunewise.store.events import EVENTS_FILE
from tunewise.store.reviews import read_reviews
from tunewise.ui.app import create_app


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return finished_run(tmp_path_factory.mktemp("ui-review"))


@pytest.fixture
def client(run_dir: Path, tmp_path: Path) -> TestClient:
    """A fresh copy of the run per test, so reviews saved by one test do not leak into another."""
    runs = tmp_path / "runs"
    shutil.copytree(run_dir, runs / run_dir.name)
    return TestClient(create_app(runs))


def _token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html)[1]


def _run(client: TestClient) -> tuple[str, Path]:
    runs = client.app.state.ui.runs_dir
    folder = next(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith("."))
    return folder.name, folder


def test_review_a_sample_example_and_see_it_saved(client):
    run_id, folder = _run(client)
    page = client.get(f"/runs/{run_id}/review")
    assert page.status_code == 200 and "review sample: examples where the arms disagree" in page.text
    sample = json.loads((folder / "results.json").read_text())["review"]["items"]
    first = sample[0]["id"]
    assert f'name="example_id" value="{first}"' in page.text and 'id="review-arms"' in page.text
    form = {"example_id": first, "position": "0", "reviewer": "ann", "verdict_0": "right", "verdict_1": "wrong",
            "reference_wrong": "on", "corrected_reference": "tech", "note": "headline says chip", "go": "next"}
    assert client.post(f"/runs/{run_id}/review", data=form, follow_redirects=False).status_code == 403
    saved = client.post(f"/runs/{run_id}/review", data={**form, "csrf_token": _token(page.text)},
                        follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"].endswith(f"i=1&saved={first}")
    review = read_reviews(folder).latest()[first]
    assert review.verdicts == {"logreg": "right", "forest": "wrong"} and review.reference_wrong
    assert review.corrected_reference == "tech" and review.note == "headline says chip" and review.reviewer == "ann"
    assert json.loads((folder / "results.json").read_text())["human_review"]["reviewed"] == 1
    deadline = time.monotonic() + 60  # the reports follow in the background
    while 'id="human-review"' not in (folder / "report.html").read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert 'id="human-review"' in (folder / "report.html").read_text()
    assert "## Human review" in (folder / "report.md").read_text()
    again = client.get(f"/runs/{run_id}/review?i=0")
    assert "reviewed by ann" in again.text and 'id="human-review"' in again.text
    assert re.search(r'value="right" aria-label="logreg right" checked', again.text)
    nxt = client.get(saved.headers["location"])
    assert f"Saved the review of {first}" in nxt.text and 'value="ann"' in nxt.text  # reviewer remembered


def test_a_filtered_set_and_bad_reviews_are_refused_with_reasons(client):
    run_id, folder = _run(client)
    page = client.get(f"/runs/{run_id}/review?disagree=true&arm=forest&outcome=wrong")
    assert page.status_code == 200 and "matching the Predictions page" in page.text
    assert 'name="disagree" value="true"' in page.text  # the filters travel with the form
    token = _token(page.text)
    base = {"csrf_token": token, "position": "0", "reviewer": "ann"}
    example = re.search(r'name="example_id" value="([^"]+)"', page.text)[1]
    for form, words in [({"example_id": "nope"}, "is not a test example"),
                        ({"example_id": example, "verdict_0": "maybe"}, "neither"),
                        ({"example_id": example, "reviewer": ""}, "reviewer")]:
        response = client.post(f"/runs/{run_id}/review", data={**base, **form})
        assert response.status_code == 422 and words in response.text, response.text
    assert not (folder / "reviews.jsonl").exists()
    predictions = client.get(f"/runs/{run_id}/predictions?disagree=true")
    assert f'href="/runs/{run_id}/review?disagree=true"' in predictions.text
    assert client.get("/runs/..%2Fetc/review").status_code == 404


def test_the_events_stream_replays_a_finished_run_and_ends(client):
    run_id, folder = _run(client)
    with client.stream("GET", f"/runs/{run_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert events[0]["kind"] == "run_started" and events[-1]["kind"] == "run_completed"
    assert {e["arm"] for e in events if e["kind"] == "arm_finished"} == {"logreg", "forest"}
    size = (folder / EVENTS_FILE).stat().st_size
    with client.stream("GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": str(size)}) as response:
        later = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert [e["kind"] for e in later] == ["run_ended"]  # a reconnect resumes after what it had; no replay

    (folder / EVENTS_FILE).unlink()  # a run from before events: the manifest's status ends the stream
    with client.stream("GET", f"/runs/{run_id}/events") as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert events == [{"kind": "run_ended", "status": "completed",
                       "message": "the run is completed; it wrote no further events"}]
    page = client.get(f"/runs/{run_id}/live")
    assert page.status_code == 200 and f'data-events="/runs/{run_id}/events"' in page.text
    assert client.get("/live").status_code == 200


def test_a_run_whose_process_died_is_shown_as_gone_not_running(client):
    """A run killed with SIGKILL never writes its final status; the process it records in its manifest tells."""
    import socket
    import subprocess
    import sys

    from tunewise.store.process import process_gone, this_process
    from tunewise.store.runs import open_run

    run_id, folder = _run(client)
    assert open_run(folder).manifest["process"]["pid"] > 0  # `tunewise run` recorded its process
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert process_gone({"process": {"pid": dead.pid, "host": socket.gethostname()}})
    assert not process_gone({"process": this_process()})  # this test's own process is alive
    assert not process_gone({"process": {"pid": dead.pid, "host": "another-host"}})  # cannot check: not gone
    assert not process_gone({})  # a run from before the field
    open_run(folder).update(status="running", process={"pid": dead.pid, "host": socket.gethostname()})
    (folder / EVENTS_FILE).write_text("")
    live = client.get("/live").text
    assert f'href="/runs/{run_id}/live"' in live and "process gone" in live
    with client.stream("GET", f"/runs/{run_id}/events") as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert [(e["kind"], e["status"]) for e in events] == [("run_ended", "gone")]
    assert "--resume" in events[0]["message"]


def test_the_start_page_shows_problems_by_line_and_field(client, tmp_path):
    page = client.get("/start")
    token = _token(page.text)
    bad = "name: x\ndata: {path: missing.jsonl}\ntask: {type: classify}\narms:\n  - {name: a, type: classicle}\n"
    response = client.post("/start", data={"csrf_token": token, "yaml": bad})
    assert response.status_code == 200 and 'id="problems"' in response.text
    assert "<strong>line 5</strong>" in response.text and "<code>arms.0</code>" in response.text
    assert "Fix: did you mean `classical`?" in response.text
    good_arms = bad.replace("classicle", "classical")
    response = client.post("/start", data={"csrf_token": token, "yaml": good_arms})
    assert "<strong>line 2</strong>" in response.text and "<code>data.path</code>" in response.text
    assert "missing.jsonl does not exist" in response.text
    response = client.post("/start", data={"csrf_token": token, "yaml": "name: [unclosed\n"})
    assert response.status_code == 200 and "not valid YAML" in response.text
    response = client.post("/start", data={"csrf_token": token},
                           files={"file": ("e.yaml", b"\xff\xfe bad", "application/x-yaml")})
    assert response.status_code == 422 and "not UTF-8" in response.text
    assert client.post("/start", data={"yaml": bad}).status_code == 403


@pytest.mark.subprocess
def test_an_experiment_started_from_the_page_runs_in_the_background(client, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    runs = client.app.state.ui.runs_dir
    experiment = experiment_yaml(runs.parent, runs, max_test=12)  # data.jsonl beside the runs folder
    text = experiment.read_text().replace(f"runs_dir: {runs}", "runs_dir: elsewhere")
    token = _token(client.get("/start").text)
    response = client.post("/start", data={"csrf_token": token, "yaml": text}, follow_redirects=False)
    assert response.status_code == 303, response.text
    run_id = response.headers["location"].split("/")[2]
    with client.stream("GET", f"/runs/{run_id}/events") as stream:
        events = [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]
    assert events[-1]["kind"] == "run_completed", events[-3:]
    assert (runs / run_id / "results.json").is_file() and not (runs.parent / "elsewhere").exists()
    saved = next((runs / ".ui-experiments").iterdir())
    assert (saved / "experiment.yaml").read_text() == text


@pytest.mark.subprocess
def test_a_run_that_stops_before_its_folder_exists_shows_its_output(client, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "broken.jsonl"
    data.write_text('{"text": "a", "label": "x"}\n{oops\n')
    text = f"name: t\ndata: {{path: {data}}}\ntask: {{type: classify}}\narms: [{{name: c, type: classical}}]\n"
    token = _token(client.get("/start").text)
    response = client.post("/start", data={"csrf_token": token, "yaml": text}, follow_redirects=False)
    assert response.status_code == 200 and 'id="problems"' in response.text
    assert "the run did not start (exited with code 2)" in response.text and "tunewise check" in response.text
