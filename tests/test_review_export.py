"""`tunewise review export RUN OUT`: the run's split with reviewed references corrected, as JSONL or CSV; the
input data file and the run folder are never written; unresolved references are dropped or kept."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from reviewed_run import finished_run
from test_cli import invoke

from tunewise.store.reviews import make_review, save_review


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = finished_run(tmp_path_factory.mktemp("export"))
    test = [json.loads(line) for line in (run_dir / "splits" / "test.jsonl").read_text().splitlines()]
    predictions = {json.loads(line)["id"]: json.loads(line)
                   for line in (run_dir / "predictions" / "logreg.jsonl").read_text().splitlines()}
    first, second, third = (t["id"] for t in test[:3])
    save_review(run_dir, make_review({"example_id": first, "reviewer": "ann", "reference_wrong": True,
                                      "corrected_reference": "tech"}))
    # no correction typed, but logreg was marked right: its answer becomes the reference
    save_review(run_dir, make_review({"example_id": second, "reviewer": "ann", "reference_wrong": True,
                                      "verdicts": {"logreg": "right", "forest": "wrong"}}))
    save_review(run_dir, make_review({"example_id": third, "reviewer": "ann", "reference_wrong": True}))
    return run_dir, first, second, third, predictions[second]["prediction"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_jsonl_export_corrects_references_and_drops_unresolved(reviewed, tmp_path):
    run_dir, first, second, third, logreg_answer = reviewed
    data = run_dir.parent.parent / "data.jsonl"
    before = _digest(data)
    code, out, err = invoke("review", "export", str(run_dir), str(tmp_path / "fixed.jsonl"))
    assert code == 0, out + err
    text = " ".join(out.split())
    assert "2 references corrected" in text and "1 marked wrong without a correction, left out" in text
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "fixed.jsonl").read_text().splitlines())}
    splits = sum(len((run_dir / "splits" / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "val", "test"))
    assert len(records) == splits - 1 and third not in records
    assert records[first]["messages"][-1] == {"role": "assistant", "content": "tech"}
    assert records[second]["messages"][-1]["content"] == logreg_answer
    assert _digest(data) == before


def test_csv_export_keeps_unresolved_when_asked(reviewed, tmp_path):
    run_dir, first, _, third, _ = reviewed
    code, out, err = invoke("review", "export", str(run_dir), str(tmp_path / "fixed.csv"), "--unresolved", "keep")
    assert code == 0, out + err
    with (tmp_path / "fixed.csv").open(newline="") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    assert rows[first]["output"] == "tech" and rows[first]["split"] == "test" and third in rows
    assert set(next(iter(rows.values()))) == {"id", "split", "input", "output"}


def test_the_export_refuses_inputs_run_folders_and_unknown_formats(reviewed, tmp_path):
    run_dir = reviewed[0]
    data = run_dir.parent.parent / "data.jsonl"
    before = _digest(data)
    for target, words in [(data, "never overwrites its input"), (run_dir / "splits" / "test.jsonl", "inside the run folder"),
                          (tmp_path / "out.parquet", "name the file .jsonl, .csv or .tsv"),
                          (tmp_path / "nowhere", "unknown output format")]:
        code, out, err = invoke("review", "export", str(run_dir), str(target))
        assert code == 2 and words in " ".join((out + err).split()), (target, out + err)
    assert _digest(data) == before
    code, out, err = invoke("review", "export", str(tmp_path / "missing"), str(tmp_path / "x.jsonl"))
    assert code == 2 and "not a folder" in out + err
