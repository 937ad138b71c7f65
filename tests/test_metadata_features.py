"""Metadata columns on the drug-review shape (issue 18, item 4): kept on every example, used by the classical arm
as categorical / numeric features, available to evaluation.slice_by, and written on every prediction."""

from __future__ import annotations

import json
import random
from pathlib import Path

import owndata_files as files
import yaml
from test_cli import invoke


def drug_reviews_where_the_drug_decides(folder: Path, n: int = 160) -> Path:
    """The review words say nothing about the rating; the drug (a metadata column) does."""
    rng = random.Random(3)
    rows = []
    for i in range(n):
        drug, condition = files.DRUGS[i % 4]
        rating = 9 if drug in ("Lipitor", "Advil") else 2
        words = rng.choice(["I took it for a while", "my doctor suggested it", "used it daily", "tried it once"])
        rows.append((i, drug, condition, f"{words} (entry {i})", rating, f"2020-01-{1 + i % 28:02d}",
                     rng.randint(0, 50)))
    header = ["", "drugName", "condition", "review", "rating", "date", "usefulCount"]
    return files.write_csv(folder / "drugs.tsv", header, rows, delimiter="\t")


def last_run() -> Path:
    return sorted(p for p in Path("runs").iterdir() if p.is_dir())[-1]


def test_metadata_features_slices_and_predictions_on_the_drug_review_shape(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = drug_reviews_where_the_drug_decides(tmp_path)
    code, _, err = invoke("init", "--from", data, "--arms", "classical", "experiment.yaml")
    assert code == 0, err
    config = yaml.safe_load(Path("experiment.yaml").read_text())
    assert config["arms"][0]["settings"] == {"numeric_features": ["usefulCount"],
                                             "categorical_features": ["drugName", "condition"]}
    assert config["evaluation"]["slice_by"] == ["drugName", "condition"]
    code, _, err = invoke("run", "experiment.yaml", "--set", "split.by=null")
    assert code == 0, err
    run = last_run()
    results = json.loads((run / "results.json").read_text())
    with_features = results["arms"]["classical"]["metrics"]["accuracy"]["value"]
    assert with_features == 1.0
    assert set(results["slices"]["fields"]["drugName"]) == {"Lipitor", "Zoloft", "Advil", "Prozac"}
    first = json.loads((run / "predictions" / "classical.jsonl").read_text().splitlines()[0])
    assert set(first["metadata"]) == {"drugName", "condition", "date", "usefulCount"}

    code, _, err = invoke("run", "experiment.yaml", "--set", "split.by=null", "--set",
                          "arms.0.settings={}")
    assert code == 0, err
    text_only = json.loads((last_run() / "results.json").read_text())["arms"]["classical"]["metrics"]
    assert text_only["accuracy"]["value"] < 0.8  # the words alone cannot tell the ratings apart
