"""The ui's pages over run folders written by the project's own writers (tests/ui_runs.py): what each page shows
is checked against results.json and the predictions files, not against the page's own code."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from ui_runs import ARMS, build_run, frozen_test_split, results_of

from tunewise.ui.app import create_app


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ui-runs")
    first = build_run(root, name="news-a")
    same_split = build_run(root, name="news-b", seed=11, test=frozen_test_split(first))
    other_split = build_run(root, name="other", test_examples=60, seed=3)
    return {"root": root, "first": first, "same": same_split, "other": other_split}


@pytest.fixture(scope="module")
def client(runs: dict) -> TestClient:
    return TestClient(create_app(runs["root"]))


def rows_of(page: str, table_id: str) -> list[list[str]]:
    """Cell texts of the rows of `<table id=...>`'s body (tags dropped, entities decoded)."""
    body = re.search(rf'<table[^>]*id="{table_id}".*?<tbody>(.*?)</tbody>', page, re.S)
    assert body, f"no table {table_id}"
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S)
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row,
                                                                                       re.S)] for row in rows]


def predictions_of(run, arm: str) -> dict[str, dict]:
    lines = (run.path / "predictions" / f"{arm}.jsonl").read_text(encoding="utf-8").splitlines()
    return {row["id"]: row for row in map(json.loads, lines)}


def test_runs_page_lists_every_run_newest_first_with_task_size_recommendation_and_headline(client, runs):
    page = client.get("/").text
    rows = rows_of(page, "runs")
    assert [r[0] for r in rows] == [runs[k].id for k in ("other", "same", "first")]
    results = results_of(runs["first"])
    first = rows[2]
    assert first[2] == "completed" and first[3] == "news-a" and first[4] == "classify"
    assert first[5] == str(results["test_examples"]) and first[6] == results["verdict"]["recommended"]
    assert first[7] == results["verdict"]["headline"]


def test_runs_page_filters_by_experiment_name_and_status(client, runs):
    assert [r[0] for r in rows_of(client.get("/?experiment=NEWS").text, "runs")] == [runs["same"].id, runs["first"].id]
    assert [r[0] for r in rows_of(client.get("/?status=completed&experiment=other").text, "runs")] == [runs["other"].id]
    assert "No run matches these filters" in client.get("/?status=failed").text


def test_run_page_shows_the_verdict_arms_plots_tests_training_robustness_and_files(client, runs):
    run = runs["first"]
    results = results_of(run)
    page = client.get(f"/runs/{run.id}").text
    assert html.escape(results["verdict"]["headline"], quote=True) in page
    assert f'<strong id="recommended">{results["verdict"]["recommended"]}</strong>' in page
    arms = rows_of(page, "arms")
    assert {r[0] for r in arms} == {name for name, *_ in ARMS}
    best = results["arms"][arms[0][0]]["metrics"]["accuracy"]
    assert arms[0][2].startswith(f"{best['value']:.3f} [{best['low']:.3f}, {best['high']:.3f}]")
    assert page.count('<div class="figure"') >= 3 and "<svg" in page
    pairs = rows_of(page, "pairwise")
    assert len(pairs) == len(results["pairwise"]) and pairs[0][7] == results["pairwise"][0]["summary"]
    assert rows_of(page, "training")[0][0] == "classical" and rows_of(page, "robustness")[0][1] == "typos-0.05"
    assert rows_of(page, "roi") and 'id="evidence-labels"' in page
    for name in ("results.json", "report.html", "splits/test.jsonl", "predictions/classical.jsonl"):
        assert f'href="/runs/{run.id}/files/{name}"' in page


def test_predictions_page_filters_by_arm_outcome_reference_disagreement_and_text(client, runs):
    run = runs["first"]
    preds = {arm: predictions_of(run, arm) for arm, *_ in ARMS}
    base = f"/runs/{run.id}/predictions"

    def shown(query: str) -> tuple[int, list[list[str]]]:
        page = client.get(base + query).text
        count = int(re.search(r'id="match-count">(\d+) of', page).group(1))
        return count, rows_of(page, "predictions") if count else []

    wrong = [e for e, p in preds["classical"].items() if p["prediction"] != p["reference"]]
    count, rows = shown("?arm=classical&outcome=wrong&size=200")
    assert count == len(wrong) and [r[0] for r in rows] == wrong and all(r[2] != r[3] for r in rows)
    disagree = [e for e in preds["classical"] if len({preds[a][e]["prediction"] for a in preds}) > 1]
    count, rows = shown("?disagree=true&size=200")
    assert count == len(disagree) and [r[0] for r in rows] == disagree and len(rows[0]) == 3 + len(ARMS)
    count, rows = shown("?reference=sports&size=200")
    assert count == sum(p["reference"] == "sports" for p in preds["classical"].values())
    assert {r[2] for r in rows} == {"sports"}
    needle = next(iter(preds["classical"].values()))["input"].split(":")[0]  # "Story 0" matches Story 0, 00..
    count, rows = shown(f"?q={needle.lower()}&size=200")
    assert count == sum(needle.lower() in p["input"].lower() for p in preds["classical"].values()) and count >= 1
    everyone_right = [e for e in preds["classical"] if all(preds[a][e]["prediction"] == preds[a][e]["reference"]
                                                           for a in preds)]
    assert shown("?outcome=correct&size=200")[0] == len(everyone_right)


def test_predictions_page_paginates_on_the_server(client, runs):
    run = runs["first"]
    ids = list(predictions_of(run, "classical"))
    base = f"/runs/{run.id}/predictions?size=25"
    pages = [[r[0] for r in rows_of(client.get(f"{base}&page={n}").text, "predictions")] for n in range(1, 6)]
    assert sum(pages, []) == ids  # 120 examples: 25, 25, 25, 25, 20
    assert "page 5 of 5" in client.get(f"{base}&page=99").text  # past the end shows the last page
    assert 'rel="next"' in client.get(base).text and 'rel="next"' not in client.get(f"{base}&page=5").text


def test_compare_two_arms_gives_the_evaluations_own_paired_test(client, runs):
    run = runs["first"]
    expected = results_of(run)["pairwise"][0]
    page = client.get(f"/runs/{run.id}/compare?a={expected['a']}&b={run.id}/{expected['b']}").text
    assert html.escape(expected["summary"], quote=True) in page
    assert f"{expected['p_value']:.3g}" in page and f"{expected['delta']:+.3f}" in page
    counts = [int(c) for c in rows_of(page, "agreement")[0]]
    assert sum(counts) == results_of(run)["test_examples"]


def test_compare_the_same_arm_in_two_runs_only_on_the_same_frozen_split(client, runs):
    first, same, other = runs["first"], runs["same"], runs["other"]
    page = client.get(f"/runs/{first.id}/compare?a=classical&b={same.id}/classical").text
    assert f"classical ({first.id})" in page and f"classical ({same.id})" in page and 'id="paired-test"' in page
    assert f'value="{same.id}/classical"' in page and f'value="{other.id}/classical"' not in page
    refused = client.get(f"/runs/{first.id}/compare?a=classical&b={other.id}/classical").text
    assert "different test splits" in refused and 'id="paired-test"' not in refused


def test_an_unknown_run_gets_a_friendly_404_page(client):
    response = client.get("/runs/20991231-000000-abcdef")
    assert response.status_code == 404 and "No run" in response.text and "Traceback" not in response.text
    assert client.get("/no/such/page").status_code == 404


def test_a_corrupt_results_json_is_explained_on_the_run_page(runs, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(runs["first"].path, root / runs["first"].id)
    (root / runs["first"].id / "results.json").write_text('{"arms": {', encoding="utf-8")
    client = TestClient(create_app(root))
    page = client.get(f"/runs/{runs['first'].id}").text
    assert "results.json line 1 column" in page and "invalid JSON" in page and 'id="files"' in page
    assert "results.json line 1" in client.get("/").text  # the list still lists it, with the reason
    response = client.get(f"/runs/{runs['first'].id}/predictions")
    assert response.status_code == 422 and "invalid JSON" in response.text


def test_run_files_are_served_inert(client, runs):
    run = runs["first"]
    response = client.get(f"/runs/{run.id}/files/results.json")
    assert response.headers["content-type"].startswith("text/plain") and "sandbox" in response.headers[
        "content-security-policy"]
    assert json.loads(response.text)["run_id"] == run.id
    report = client.get(f"/runs/{run.id}/files/report.html")
    assert report.headers["content-type"].startswith("text/html") and "sandbox" in report.headers[
        "content-security-policy"]


def test_user_text_is_escaped(tmp_path):
    run = build_run(tmp_path, test_examples=12, name="<script>alert(1)</script>")
    page = TestClient(create_app(tmp_path)).get("/").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert run.id in page


def test_every_page_has_one_stylesheet_served_from_the_package(client, runs):
    page = client.get(f"/runs/{runs['first'].id}").text
    assert re.findall(r'<link rel="stylesheet" href="([^"]+)"', page) == ["/static/ui.css"]
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert client.get("/static/ui.css").status_code == 200


def test_predictions_being_written_and_damaged_lines(runs, tmp_path):
    """A run still writing answers shows the finished lines; a damaged line is named by its number."""
    root = tmp_path / "runs"
    run_id = runs["first"].id
    shutil.copytree(runs["first"].path, root / run_id)
    path = root / run_id / "predictions" / "classical.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:20], encoding="utf-8")  # the last answer half written
    client = TestClient(create_app(root))
    page = client.get(f"/runs/{run_id}/predictions?arm=classical&size=200").text
    last_id = json.loads(lines[-1])["id"]
    assert f"<td class=\"mono nowrap\">{last_id}</td>" in page and "–" in rows_of(page, "predictions")[-1][3]
    path.write_text("".join(lines[:3]) + "\n  \n" + "".join(lines[3:]), encoding="utf-8")  # blank lines are skipped
    page = client.get(f"/runs/{run_id}/predictions?arm=classical&size=200").text
    assert len(rows_of(page, "predictions")) == len(lines)
    path.write_text("".join(lines[:4]) + "{not json\n" + "".join(lines[5:]), encoding="utf-8")
    response = client.get(f"/runs/{run_id}/predictions")
    assert response.status_code == 422 and "predictions/classical.jsonl line 5: invalid JSON" in response.text


def test_a_run_without_results_yet_is_listed_and_its_page_explains(tmp_path):
    from tunewise.store.runs import create_run

    run = create_run(tmp_path, command="tunewise run x.yaml", config={"name": "pending"})
    run.update(status="running")
    client = TestClient(create_app(tmp_path))
    row = rows_of(client.get("/").text, "runs")[0]
    assert row[0] == run.id and row[2] == "running" and row[7] == "no results yet"
    page = client.get(f"/runs/{run.id}").text
    assert "results.json is missing" in page and f'href="/runs/{run.id}/files/manifest.json"' in page


@pytest.mark.subprocess
def test_tunewise_ui_serves_the_runs_from_the_command_line(runs):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    env.pop("TUNEWISE_API_KEYS", None)
    process = subprocess.Popen([sys.executable, "-m", "tunewise.cli", "ui", "--runs-dir", str(runs["root"]),
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line
        for _ in range(100):  # the address is printed just before uvicorn starts listening
            try:
                with urllib.request.urlopen(url.group(0), timeout=5) as response:
                    page = response.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert runs["first"].id in page and "news-a" in page
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_text_task_run_is_scored_by_its_task_and_compared_by_the_paired_bootstrap(tmp_path):
    arms = [("zero-shot", "zero_shot", 0.5, 0.2), ("retrieval", "retrieval", 0.8, 0.3), ("few-shot", "few_shot", 0.75, 1.0)]
    run = build_run(tmp_path, task="generate", test_examples=60, name="replies", arms=arms)
    results = results_of(run)
    client = TestClient(create_app(tmp_path))
    preds = predictions_of(run, "zero-shot")
    page = client.get(f"/runs/{run.id}/predictions?arm=zero-shot&outcome=wrong&size=200").text
    wrong = [e for e, p in preds.items() if p["prediction"] != p["reference"]]
    assert int(re.search(r'id="match-count">(\d+) of', page).group(1)) == len(wrong) > 0
    expected = results["pairwise"][0]
    assert expected["test"] == "paired bootstrap"
    page = client.get(f"/runs/{run.id}/compare?a={expected['a']}&b={run.id}/{expected['b']}").text
    assert "paired bootstrap" in page and html.escape(expected["summary"], quote=True) in page


def test_a_rewritten_predictions_file_is_read_again(runs, tmp_path):
    """The table is cached by the files' mtime and size: an arm re-run (or extended) shows at once."""
    root = tmp_path / "runs"
    run_id = runs["first"].id
    shutil.copytree(runs["first"].path, root / run_id)
    client = TestClient(create_app(root))
    url = f"/runs/{run_id}/predictions?arm=classical&outcome=wrong"

    def wrong() -> int:
        return int(re.search(r'id="match-count">(\d+) of', client.get(url).text).group(1))

    before = wrong()
    path = root / run_id / "predictions" / "classical.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for row in rows:
        row["prediction"] = row["reference"]  # a perfect re-run
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert before > 0 and wrong() == 0
