"""Acceptance of issue 18: files shaped like real ones check cleanly (or with the intended warnings) with the
inferred mapping printed, and run through `tunewise init --from` + `tunewise run` with no hand-written YAML.
Only the classical arm runs (seconds on a CPU); no language model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import owndata_files as files
import pytest
import yaml
from test_cli import invoke

CASES = {
    "tweets_csv": (files.tweets_csv, set()),
    "drug_review_tsv": (files.drug_tsv, set()),
    "windows_1252_csv": (files.cp1252_csv, {"legacy_encoding"}),
    "utf16_bom_csv": (files.utf16_csv, {"legacy_encoding"}),
    "html_entities_tsv": (lambda folder: files.drug_tsv(folder, entities=True), {"html_entities", "html_markup"}),
    "xlsx": (files.xlsx_file, set()),
}


def init_and_run(data: Path, *extra: str) -> tuple[dict, dict]:
    code, out, err = invoke("init", "--from", data, "--arms", "classical", "experiment.yaml", *extra)
    assert code == 0, err
    assert "inferred columns" in out
    config = yaml.safe_load(Path("experiment.yaml").read_text())
    code, out, err = invoke("run", "experiment.yaml")
    assert code == 0, err + out
    run = sorted(p for p in Path("runs").iterdir() if p.is_dir())[-1]
    return config, json.loads((run / "results.json").read_text())


@pytest.mark.parametrize("case", list(CASES))
def test_check_then_init_from_then_run(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build, warnings = CASES[case]
    data = build(tmp_path)
    code, out, _ = invoke("check", data, "--json", "--no-pii")
    report = json.loads(out)
    assert code == 0 and report["inferred"]["mapping"] is not None
    assert {i["code"] for i in report["issues"]} <= warnings | {"few_examples"}
    assert warnings <= {i["code"] for i in report["issues"]}
    config, results = init_and_run(data)
    assert config["data"]["mapping"] == report["inferred"]["mapping"]
    assert [arm["name"] for arm in config["arms"]] == ["classical"]
    assert results["test_examples"] > 0 and "classical" in results["arms"]


def test_init_from_comments_every_choice_and_sizes_for_a_cpu(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = files.drug_tsv(tmp_path, n=1200)
    assert invoke("init", "--from", data, "experiment.yaml")[0] == 0
    text = Path("experiment.yaml").read_text()
    config = yaml.safe_load(text)
    assert [a["type"] for a in config["arms"]] == ["zero_shot", "few_shot", "retrieval", "classical"]
    assert config["split"]["max_test"] == 200 and "2-core CPU" in text
    assert config["task"]["labels"] == ["1", "2", "3", "8", "9", "10"]
    assert config["arms"][3]["settings"] == {"numeric_features": ["usefulCount"],
                                             "categorical_features": ["drugName", "condition"]}
    assert config["evaluation"]["slice_by"] == ["drugName", "condition"]
    assert "max_train_examples: 400" in text  # the commented fine-tuning arm, capped for a CPU
    for line in text.splitlines():
        if ":" in line and not line.lstrip().startswith("#") and line.strip() not in ("data:", "task:", "split:",
                                                                                       "evaluation:", "arms:"):
            assert "#" in line or line.lstrip().startswith(("- name", "name:", "type: few_shot", "type: retrieval",
                                                            "seed:", "k:", "mapping:", "type: finetune")), line


def test_init_from_an_uninferable_table_names_the_columns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "codes.csv"
    path.write_text("a,b\n" + "".join(f"x{i},y{i}\n" for i in range(30)))
    code, _, err = invoke("init", "--from", path, "experiment.yaml")
    assert code == 2 and "--map input=a --map output=b" in err and not Path("experiment.yaml").exists()


def test_train_test_pair_with_a_leaked_row_is_refused_then_allowed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train, test = files.train_test_pair(tmp_path)
    for path in (train, test):
        code, out, _ = invoke("check", path, "--json", "--no-pii")
        assert code == 0 and json.loads(out)["inferred"]["mapping"]["input"] == "text"
    code, out, _ = invoke("init", "--from", train, "--test", test, "--arms", "classical", "experiment.yaml")
    assert code == 0 and "1 input(s) of test.csv also appear in train.csv: line 61 (near of line 9)" in out
    config = yaml.safe_load(Path("experiment.yaml").read_text())
    assert config["data"]["test"] == "test.csv" and config["data"]["allow_leakage"] is False
    code, _, err = invoke("run", "experiment.yaml")
    assert code == 2 and "data.test (test.csv) line 61 ≈ data.path (train.csv) line 9 (near duplicate)" in err
    assert "data.allow_leakage: true" in err
    code, out, err = invoke("run", "experiment.yaml", "--set", "data.allow_leakage=true")
    assert code == 0, err
    run = sorted(p for p in Path("runs").iterdir() if p.is_dir())[-1]
    split = json.loads((run / "splits" / "split.json").read_text())
    assert split["counts"] == {"train": 162, "val": 18, "test": 60}


def test_dated_csv_warns_of_unreadable_dates_and_tests_on_the_newest_rows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = files.dated_csv(tmp_path)
    code, out, _ = invoke("check", data, "--json", "--no-pii")
    report = json.loads(out)
    bad = [i for i in report["issues"] if i["code"] == "unparseable_date"]
    assert code == 0 and len(bad) == 2 and bad[0]["field"] == "date" and "'sometime'" in bad[0]["message"]
    config, results = init_and_run(data)
    assert config["split"]["by"] == "date" and results["test_examples"] == 30
    run = sorted(p for p in Path("runs").iterdir() if p.is_dir())[-1]
    from tunewise.data.formats import read_examples
    from tunewise.data.timesplit import parse_date

    parts = {name: read_examples(run / "splits" / f"{name}.jsonl").examples for name in ("train", "val", "test")}
    newest_train = max(parse_date(e.metadata["date"]) for e in parts["train"])
    assert min(parse_date(e.metadata["date"]) for e in parts["val"]) >= newest_train
    assert min(parse_date(e.metadata["date"]) for e in parts["test"]) >= max(
        parse_date(e.metadata["date"]) for e in parts["val"])
    assert sum(map(len, parts.values())) == 148  # the two undated rows are in no split


def test_init_from_a_standard_shape_never_uses_the_label_as_a_feature(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [{"text": f"message {i} about {['billing', 'bugs'][i % 2]}", "label": ["billing", "bug"][i % 2],
             "region": ["eu", "us"][i % 3 % 2]} for i in range(60)]
    path = tmp_path / "tickets.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert invoke("init", "--from", path, "--arms", "classical", "experiment.yaml")[0] == 0
    config = yaml.safe_load(Path("experiment.yaml").read_text())
    assert config["arms"][0]["settings"] == {"categorical_features": ["region"]}
    assert config["evaluation"]["slice_by"] == ["region"] and "mapping" not in config["data"]


def test_a_column_that_names_the_label_is_not_a_feature(tmp_path, monkeypatch):
    """Hugging Face exports carry `label` codes and a `label_text` column: using it as a feature reads the
    answer off the row (accuracy 1.0, the wrong arm recommended)."""
    monkeypatch.chdir(tmp_path)
    names = ["world", "sports", "business", "tech"]
    words = ["the market", "a match", "shares", "a phone", "the minister", "a goal", "profits", "software"]
    rows = [("text", "label", "label_text")] + [
        (f"story {i} about {words[(i * 7) % len(words)]} and {words[(i * 3) % len(words)]} today", str(i % 4),
         names[i % 4]) for i in range(160)]
    (tmp_path / "hf.csv").write_text("".join(",".join(r) + "\n" for r in rows))
    code, out, err = invoke("init", "--from", tmp_path / "hf.csv", "--arms", "classical", "experiment.yaml")
    assert code == 0, err
    text = Path("experiment.yaml").read_text()
    assert "label_text" in out + text and "give the answer away" in out + text
    config = yaml.safe_load(text)
    settings = config["arms"][0].get("settings") or {}
    assert "label_text" not in (settings.get("categorical_features") or []) + (settings.get("numeric_features") or [])
    assert "label_text" not in (config.get("evaluation") or {}).get("slice_by", [])


def test_a_small_test_file_is_read_with_the_training_files_columns(tmp_path, monkeypatch):
    """A 20-row test file must not have its columns guessed anew (there `condition` can look like the label)."""
    monkeypatch.chdir(tmp_path)
    def table(n: int, start: int) -> str:
        # ten ratings: a label in 200 rows, but in 20 rows nearly one value per row, while the two conditions
        # look like the label there
        lines = ["review,rating,condition"]
        for i in range(start, start + n):
            rating = i % 10 + 1
            lines.append(f'"review {i}: this medicine rates {rating} word{rating} for me, long text here",{rating},'
                         f'{["pain", "acne"][i % 2]}')
        return "\n".join(lines) + "\n"

    (tmp_path / "train.csv").write_text(table(200, 0))
    (tmp_path / "test.csv").write_text(table(20, 1000))
    config = {"name": "held", "data": {"path": "train.csv", "test": "test.csv"}, "task": {"type": "classify"},
              "arms": [{"name": "classical", "type": "classical", "settings": {"cv": 2}}]}
    Path("experiment.yaml").write_text(yaml.safe_dump(config))
    code, out, err = invoke("run", "experiment.yaml")
    assert code == 0, err + out
    run = sorted(p for p in Path("runs").iterdir() if p.is_dir())[-1]
    results = json.loads((run / "results.json").read_text())
    assert results["arms"]["classical"]["metrics"]["accuracy"]["value"] > 0.9
    assert "lacks" not in out + err and results["test_examples"] == 20
