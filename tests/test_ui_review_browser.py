"""`tunewise ui` in headless Chromium (Playwright driving the system browser; nothing is downloaded): the review
walk from the runs list to a saved keyboard review and a comparison, and an experiment started from the Start
page followed to "completed" on the Live page. No page may log a console error. The walk also writes the
README's screenshot of the Review page (docs/images/ui-review.png)."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from reviewed_run import experiment_yaml, finished_run

pytestmark = pytest.mark.browser
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "images" / "ui-review.png"


def _chromium() -> str:
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if exe is None:
        pytest.skip("no chromium on PATH: install it (`apt-get install chromium`; `make test` does this itself)")
    return exe


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A finished run and the UI over its runs folder, served by uvicorn on a free loopback port."""
    import os

    import uvicorn

    from tunewise.ui.app import create_app

    folder = tmp_path_factory.mktemp("browser")
    previous = os.environ.get("TUNEWISE_CACHE")
    os.environ["TUNEWISE_CACHE"] = str(folder / "cache")  # the Start page's run inherits it
    run_dir = finished_run(folder)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(run_dir.parent), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", run_dir
    finally:
        server.should_exit = True
        thread.join(10)
        if previous is None:
            os.environ.pop("TUNEWISE_CACHE", None)
        else:
            os.environ["TUNEWISE_CACHE"] = previous


@pytest.fixture
def page(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        tab.on("console", lambda m: errors.append(f"{tab.url}: {m.text}") if m.type == "error" else None)
        tab.on("pageerror", lambda e: errors.append(f"{tab.url}: {e}"))
        tab.errors = errors
        yield tab
        browser.close()


def test_review_walk_from_the_runs_list_to_a_comparison(served, page):
    base, run_dir = served
    page.goto(base + "/")
    page.click(f"a[href='/runs/{run_dir.name}']")
    assert page.locator("#verdict").is_visible()
    page.click("nav.subnav >> text=Predictions")
    page.check("input[name=disagree]")
    page.click("#prediction-filters button[type=submit]")
    assert "disagree=true" in page.url
    page.click("#review-these")
    page.wait_for_selector("#review-form")
    page.fill("#reviewer", "ann")
    page.locator("#reviewer").press("Escape")  # leave the text field so the keys reach the page
    first = page.input_value("input[name=example_id]")
    before = page.locator("input[name=verdict_0]:checked").get_attribute("value")
    page.keyboard.press("r")  # the reference is wrong
    page.keyboard.press("1")  # toggle arm 1
    expected_first = "wrong" if before == "right" else "right"
    assert page.locator("input[name=verdict_0]:checked").get_attribute("value") == expected_first
    page.keyboard.press("s")  # save and go to the next
    page.wait_for_selector("#saved")
    second = page.input_value("input[name=example_id]")
    assert second != first and page.input_value("#reviewer") == "ann"
    before = page.locator("input[name=verdict_1]:checked").get_attribute("value")
    page.keyboard.press("2")
    expected_second = "wrong" if before == "right" else "right"
    page.fill("#note", "both answers fit the text")
    page.locator("#note").press("Escape")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.keyboard.press("s")
    page.wait_for_selector(f"#saved:has-text('{second}')")
    page.keyboard.press("k")  # back to the second example, then reload: the review is there
    page.wait_for_url("**i=1**")
    page.reload()
    assert page.input_value("input[name=example_id]") == second
    assert page.locator("#example-id .chip").inner_text().startswith("reviewed by ann")
    assert page.locator("input[name=verdict_1]:checked").get_attribute("value") == expected_second
    page.keyboard.press("k")
    page.wait_for_url("**i=0**")
    assert page.input_value("input[name=example_id]") == first and page.is_checked("#reference-wrong")
    assert page.locator("input[name=verdict_0]:checked").get_attribute("value") == expected_first
    human = json.loads((run_dir / "results.json").read_text())["human_review"]
    assert human["reviewed"] == 2 and human["reference_errors"]["count"] == 1
    page.click("nav.subnav >> text=Compare")
    page.select_option("select[name=a]", "logreg")
    page.select_option("select[name=b]", f"{run_dir.name}/forest")
    page.click("#compare-form button[type=submit]")
    assert page.locator("#paired-test").is_visible()
    assert page.errors == []


@pytest.mark.subprocess
def test_an_experiment_started_from_the_start_page_completes_on_the_live_page(served, page, tmp_path):
    base, run_dir = served
    runs = run_dir.parent
    experiment = experiment_yaml(tmp_path, runs, max_test=12)
    text = experiment.read_text().replace("data.jsonl", str(tmp_path / "data.jsonl"))
    page.goto(base + "/start")
    page.fill("#yaml", "name: broken\narms: 3\n")
    page.click("#start")
    assert page.locator("#problems").is_visible()
    page.fill("#yaml", text)
    page.click("#start")
    page.wait_for_url("**/live", timeout=60_000)
    page.wait_for_selector("#run-status:has-text('completed')", timeout=60_000)
    assert page.locator(".arm-progress[data-arm=logreg][data-status=completed]").count() == 1
    assert page.locator("#live-done").is_visible()
    assert page.errors == []


def test_the_live_page_draws_progress_and_a_loss_sparkline(served, page):
    """A run folder whose events file holds a training arm's losses (written by the same EventLog `tunewise run`
    uses): the page draws one point per loss and the bar at the last progress."""
    from tunewise.store.events import EVENTS_FILE, EventLog

    base, run_dir = served
    copy = run_dir.parent / (run_dir.name + "-trained")
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns(EVENTS_FILE))
    log = EventLog(copy / EVENTS_FILE)
    log.emit("run_started", run_id=copy.name, arms=["lora"])
    with log.arm_running("lora"):
        for step, loss in enumerate([2.0, 1.4, 1.1, 0.9, 0.8], start=1):
            log.emit("train_loss", arm="lora", step=step, loss=loss)
    log.emit("progress", arm="other", stage="other", done=3, total=4)
    log.emit("run_failed", status="failed", error="arm other failed: RuntimeError: out of memory")
    log.close()
    page.goto(f"{base}/runs/{copy.name}/live")
    page.wait_for_selector("#run-status:has-text('failed')")
    points = page.locator(".arm-progress[data-arm=lora] polyline").get_attribute("points").split()
    assert len(points) == 5 and points[0].startswith("0.0,") and points[-1].startswith("100.0,")
    assert page.locator(".arm-progress[data-arm=lora]").get_attribute("data-status") == "completed"
    assert page.locator(".arm-progress[data-arm=other] .bar > span").get_attribute("style") == "width: 75%;"
    assert page.locator(".arm-progress[data-arm=other] .arm-state").inner_text() == "other: 3/4"
    assert "out of memory" in page.locator("#live-error").inner_text()
    assert page.errors == []
