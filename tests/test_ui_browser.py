"""The ui in a real browser: Debian's Chromium (`make test` installs it) driven by Playwright, which is pointed at
that binary and never downloads one. A user walks runs -> run -> predictions ("arms disagree") -> compare with no
console error on any page; the run page's screenshot is the README's (docs/images/ui-run.png)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ui_runs import build_run, results_of

from tunewise.ui.app import create_app

pytestmark = pytest.mark.browser
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "images"


def chromium() -> str:
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    if exe is None:
        pytest.skip("no chromium on PATH: install it (`apt-get install chromium`; `make test` does this itself)")
    return exe


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ui_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ui-browser")
    return {"root": root, "run": build_run(root, name="news-topics", test_examples=150, words=40)}


@pytest.fixture(scope="module")
def ui_url(ui_runs: dict) -> Iterator[str]:
    """The ui served by uvicorn on a free loopback port in a background thread for the module."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(ui_runs["root"]), host="127.0.0.1", port=_free_port(),
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the ui server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]' installs playwright")
    exe = chromium()
    with playwright_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        yield instance
        instance.close()


class Console:
    """Console errors, uncaught page errors and failed requests of every page a test opens."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        page.on("console", lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("requestfailed", lambda req: self.errors.append(f"request failed: {req.url}"))
        page.on("response", lambda res: self.errors.append(f"{res.status}: {res.url}") if res.status >= 400 else None)


def test_a_user_walks_runs_run_predictions_and_compare_without_console_errors(browser, ui_url, ui_runs):
    run = ui_runs["run"]
    results = results_of(run)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    console = Console(page)

    page.goto(ui_url + "/")
    assert page.locator("#runs tbody tr").count() == 1
    page.click(f"text={run.id}")
    page.wait_for_url(f"**/runs/{run.id}")
    verdict = page.locator("#verdict")
    assert verdict.is_visible() and results["verdict"]["headline"] in verdict.inner_text()
    assert page.locator("#recommended").inner_text() == results["verdict"]["recommended"]
    assert page.locator(".figure svg").count() >= 3
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "ui-run.png"))

    page.click(".subnav >> text=Predictions")
    page.wait_for_url("**/predictions")
    every = page.locator("#predictions tbody tr").count()
    page.check("input[name=disagree]")
    page.click("#prediction-filters button[type=submit]")
    page.wait_for_url("**disagree=true**")
    shown = page.locator("#predictions tbody tr")
    assert 0 < shown.count() <= every
    for row in range(shown.count()):  # every listed example has at least two different answers
        answers = shown.nth(row).locator("td.answer").all_inner_texts()
        assert len(set(answers)) > 1, answers

    page.click(".subnav >> text=Compare")
    page.wait_for_url("**/compare")
    first, second = results["pairwise"][0]["a"], results["pairwise"][0]["b"]
    page.select_option("select[name=a]", first)
    page.select_option("select[name=b]", f"{run.id}/{second}")
    page.click("#compare-form button[type=submit]")
    page.wait_for_url("**/compare?**")
    assert results["pairwise"][0]["summary"] in page.locator("#paired-test").inner_text()

    assert console.errors == []

    page.goto(ui_url + "/runs/no-such-run")  # Chromium logs the 404 itself; the page must still be the friendly one
    assert "No run" in page.locator("#error").inner_text() and page.locator("link[rel=stylesheet]").count() == 1
    page.close()
