"""Reviews (store/reviews.py) and the human-review section (evaluate/human_review.py): saved whole under a
lock, the latest per example counts, bad lines reported by line number, and results.json plus both reports
gain a "Human review" section with Wilson intervals that `tunewise report` keeps."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest
from reviewed_run import finished_run

from tunewise.evaluate.human_review import (
    HumanReviewError,
    human_review_summary,
    record_review,
    refresh_human_review,
)
from tunewise.store.reviews import REVIEWS_FILE, ReviewError, make_review, read_reviews, save_review


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return finished_run(tmp_path_factory.mktemp("reviewed"))


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The textbook Wilson score interval, written out independently of the code under test."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_bad_reviews_are_refused_naming_the_field():
    with pytest.raises(ReviewError, match=r"verdicts\.a:.*'right' or 'wrong'"):
        make_review({"example_id": "x", "reviewer": "ann", "verdicts": {"a": "maybe"}})
    with pytest.raises(ReviewError, match="reviewer"):
        make_review({"example_id": "x", "reviewer": ""})
    with pytest.raises(ReviewError, match="score: Extra inputs"):
        make_review({"example_id": "x", "reviewer": "ann", "score": 3})


def test_latest_review_wins_and_bad_lines_are_reported_and_kept(tmp_path):
    save_review(tmp_path, make_review({"example_id": "a", "reviewer": "ann", "verdicts": {"m": "wrong"}}))
    with (tmp_path / REVIEWS_FILE).open("a") as handle:
        handle.write("{not json\n")
        handle.write('{"example_id": "b", "reviewer": "bob", "verdicts": {"m": "perhaps"}}\n')
    save_review(tmp_path, make_review({"example_id": "a", "reviewer": "ann", "verdicts": {"m": "right"},
                                       "note": "changed my mind"}))
    found = read_reviews(tmp_path)
    assert [r.verdicts["m"] for r in found.reviews] == ["wrong", "right"]
    assert found.latest()["a"].note == "changed my mind" and list(found.latest()) == ["a"]
    path = tmp_path / REVIEWS_FILE
    assert found.problems[0].startswith(f"{path}:2: not JSON")
    assert found.problems[1].startswith(f"{path}:3: field verdicts.m:")
    assert len(path.read_text().splitlines()) == 4  # the save kept the lines it could not read


def test_concurrent_saves_lose_nothing(tmp_path):
    def save(who: str) -> None:
        for i in range(15):
            save_review(tmp_path, make_review({"example_id": f"{who}{i}", "reviewer": who}))

    threads = [threading.Thread(target=save, args=(who,)) for who in ("ann", "bob", "cy")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = read_reviews(tmp_path)
    assert found.problems == [] and len(found.latest()) == 45


def test_the_summary_counts_latest_reviews_with_wilson_intervals():
    reviews = {f"e{i}": make_review({"example_id": f"e{i}", "reviewer": "ann" if i % 2 else "bob",
                                     "verdicts": {"a": "right" if i < 7 else "wrong", **({"b": "right"} if i < 4 else {})},
                                     "reference_wrong": i < 2}) for i in range(10)}
    summary = human_review_summary(reviews, ["a", "b", "c"], 0.95)
    assert summary["reviewed"] == 10 and summary["reviewers"] == ["ann", "bob"]
    refs = summary["reference_errors"]
    assert (refs["count"], refs["n"], refs["rate"]) == (2, 10, 0.2)
    assert (refs["low"], refs["high"]) == pytest.approx(_wilson(2, 10))
    assert summary["reference_error_ids"] == ["e0", "e1"]
    a, b, c = (summary["arms"][k] for k in "abc")
    assert (a["reviewed"], a["right"], a["accuracy"]) == (10, 7, 0.7) and (a["low"], a["high"]) == pytest.approx(_wilson(7, 10))
    assert (b["reviewed"], b["right"], b["accuracy"]) == (4, 4, 1.0) and b["high"] == pytest.approx(1.0)
    assert b["low"] == pytest.approx(_wilson(4, 4)[0])
    assert c == {"reviewed": 0, "right": 0, "accuracy": None, "low": None, "high": None}
    assert human_review_summary({}, ["a"], 0.95) is None


def test_a_saved_review_refreshes_results_and_both_reports(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    assert results["human_review"] is None
    example = results["review"]["items"][0]
    arms = results["review"]["arms"]
    section = record_review(run_dir, make_review({
        "example_id": example["id"], "reviewer": "ann", "verdicts": {arms[0]: "right", arms[1]: "wrong"},
        "reference_wrong": True, "corrected_reference": "tech", "note": "the headline is about a chip"}))
    results = json.loads((run_dir / "results.json").read_text())
    assert results["human_review"] == section
    assert section["reviewed"] == 1 and section["reference_errors"]["count"] == 1 and section["corrected"] == 1
    assert section["arms"][arms[0]]["right"] == 1 and section["arms"][arms[1]]["right"] == 0
    html = (run_dir / "report.html").read_text()
    assert 'id="human-review"' in html and "reviewed by ann" in html
    assert "## Human review" in (run_dir / "report.md").read_text()
    # everything else in results.json is as the run wrote it
    assert results["verdict"] and results["arms"][arms[0]]["metrics"]

    # `tunewise report RUN` recomputes the evidence from the folder and keeps the section
    from test_cli import invoke

    code, out, err = invoke("report", str(run_dir))
    assert code == 0, out + err
    assert json.loads((run_dir / "results.json").read_text())["human_review"]["reviewed"] == 1


def test_refreshing_a_run_without_results_says_what_to_do(tmp_path):
    with pytest.raises(HumanReviewError, match="has not finished"):
        refresh_human_review(tmp_path)
