"""`tunewise init --from` on tables as they are really written (issue 18, second round): dates written
"May 20, 2012", question/answer tables, numbers with thousands separators and N/A, the `--fix` advice for a
mapped table, held-out files read with --format/--sheet. Only the classical arm runs; no language model loads."""

from __future__ import annotations

import json
import random
from pathlib import Path

import owndata_files as files
import pytest
import yaml
from test_cli import invoke

from tunewise.data.formats import read_examples
from tunewise.data.infer import infer_columns, profile_columns
from tunewise.data.readers import read_file
from tunewise.data.records import RawRecord
from tunewise.data.values import is_missing, looks_like_date, parse_number
from tunewise.pipeline.inputs import ExperimentError, read_data
from tunewise.settings import DataConfig

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


def _init(data: Path, *extra: str) -> tuple[str, dict]:
    code, out, err = invoke("init", "--from", data, "--arms", "classical", "experiment.yaml", *extra)
    assert code == 0, err + out
    return out, yaml.safe_load(Path("experiment.yaml").read_text())


@pytest.mark.parametrize("value", ["May 20, 2012", "Sunday, May 20, 2012", "Dec. 3, 2019", "20 May 2012",
                                   "2012-05-20", "05/20/2012", "May 20th, 2012 10:30"])
def test_written_dates_look_like_dates(value):
    assert looks_like_date(value)


@pytest.mark.parametrize("value", ["May", "monday", "2012", "12345", "flight 20 to Boston, 2012 was late"])
def test_words_and_numbers_are_not_dates(value):
    assert not looks_like_date(value)


def test_init_from_splits_by_a_date_column_written_month_day_year(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [(text, label, f"{MONTHS[i % 12]} {1 + i % 28}, {2010 + i % 5}")
            for i, (label, _, text) in enumerate(files.tweets_rows(150, seed=11))]
    data = files.write_csv(tmp_path / "reviews.csv", ["text", "sentiment", "date"], rows)
    assert {p.name: p.kind for p in profile_columns(read_file(data).records)}["date"] == "date"
    _, config = _init(data)
    assert config["split"]["by"] == "date"
    code, out, err = invoke("run", "experiment.yaml")
    assert code == 0, err + out
    assert "split.by date: train 2010-" in out + err


def _qa_rows(n: int = 60) -> list[tuple[str, str]]:
    return [(f"How do I reset device {i}?", f"Hold the power button for {i % 7 + 3} seconds, wait for the light to "
                                            f"blink twice, then release it (model {i}).") for i in range(n)]


def test_a_question_answer_table_is_a_generation_task_mapped_question_to_answer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = files.write_csv(tmp_path / "faq.csv", ["question", "answer"], _qa_rows())
    code, out, _ = invoke("check", data, "--no-pii")
    assert code == 0 and "input=question, output=answer" in out
    assert f"tunewise check {data} --map input=question --map output=answer" in out
    code, printed, err = invoke("init", "--from", data, "experiment.yaml")
    assert code == 0, err
    assert "--map input=question --map output=answer" in printed
    config = yaml.safe_load(Path("experiment.yaml").read_text())
    assert config["data"]["mapping"] == {"input": "question", "output": "answer"}
    assert config["task"]["type"] == "generate" and "classical" not in [a["type"] for a in config["arms"]]
    code, _, err = invoke("init", "--from", data, "--arms", "classical", "other.yaml")
    assert code == 2 and "a classical model predicts labels, and this is a generate task" in err
    assert "Traceback" not in err and not Path("other.yaml").exists()


def test_the_suggested_map_for_a_question_answer_table_is_not_backwards():
    records = [RawRecord(i + 2, {"question": q, "answer": a}) for i, (q, a) in enumerate(_qa_rows(40))]
    refused = infer_columns(records, "classify")  # no label column: refused, with a --map to start from
    assert refused.mapping is None
    assert refused.map_args() == "--map input=question --map output=answer"


def test_a_lone_response_column_is_still_the_input_to_classify():
    records = [RawRecord(i + 2, {"response": f"the survey answer number {i} says things", "category": "ab"[i % 2]})
               for i in range(40)]
    inferred = infer_columns(records)
    assert (inferred.mapping.input, inferred.mapping.output) == ("response", "category")


@pytest.mark.parametrize(("value", "number"), [("1,986", 1986.0), ("12,345.5", 12345.5), (" 42 ", 42.0),
                                               (7, 7.0), ("-3.5", -3.5)])
def test_numbers_parse_with_thousands_separators(value, number):
    assert parse_number(value) == number


@pytest.mark.parametrize("value", ["N/A", "", "  ", None, "null", "#VALUE!"])
def test_placeholders_are_missing_not_numbers(value):
    assert is_missing(value) and parse_number(value) is None


def test_what_init_proposes_from_numbers_with_separators_and_na_runs(tmp_path, monkeypatch):
    """"1,986" and "N/A" in a count column: init proposed it as a numeric feature, the classical arm refused it."""
    monkeypatch.chdir(tmp_path)
    rng = random.Random(5)
    rows = []
    for i, (label, _, text) in enumerate(files.tweets_rows(180, seed=12)):
        count = "N/A" if i % 30 == 0 else f"{rng.randint(1, 3000):,}"
        rows.append((text, label, count))
    data = files.write_csv(tmp_path / "counts.csv", ["text", "sentiment", "helpful_votes"], rows)
    assert any("," in r[2] for r in rows)
    _, config = _init(data)
    assert config["arms"][0]["settings"]["numeric_features"] == ["helpful_votes"]
    code, out, err = invoke("run", "experiment.yaml")
    assert code == 0, err + out
    run = sorted(p for p in Path("runs").iterdir() if p.is_dir())[-1]
    assert "classical" in json.loads((run / "results.json").read_text())["arms"]


def _broken_csv(folder: Path, name: str = "tickets.csv", delimiter: str = ",") -> Path:
    rows = [(text, label) for label, _, text in files.tweets_rows(120, seed=13)]
    path = files.write_csv(folder / name, ["body", "category"], rows, delimiter=delimiter)
    path.write_text(path.read_text() + "a row with too many fields" + delimiter * 3 + "x\n")
    return path


def test_fix_advice_for_a_mapped_table_is_a_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _broken_csv(tmp_path)
    printed, _ = _init(data)
    assert f"tunewise check {data} --fix clean.csv` and point data.path at clean.csv" in printed
    assert "clean.jsonl" not in printed
    with pytest.raises(ExperimentError, match=r"add `--fix clean\.csv` to drop them"):
        read_data(data, DataConfig(path=data))
    tsv = _broken_csv(tmp_path, "tickets.tsv", "\t")
    with pytest.raises(ExperimentError, match=r"--fix clean\.tsv"):
        read_data(tsv, DataConfig(path=tsv))
    # the advice works: the cleaned table reads with the same inferred mapping and no errors
    code, _, _ = invoke("check", data, "--no-pii", "--fix", tmp_path / "clean.csv")
    cleaned = read_examples(tmp_path / "clean.csv")
    assert (cleaned.mapping.input, cleaned.mapping.output) == ("body", "category") and not cleaned.error_lines
    assert len(cleaned.examples) == 120


def _workbook(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = "readme"
    book.active.append(["this sheet explains the data"])
    sheet = book.create_sheet("tickets")
    sheet.append(["category", "confidence", "body"])
    for row in rows:
        sheet.append(list(row))
    book.save(path)
    return path


def test_init_reads_the_test_file_with_the_given_sheet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = files.tweets_rows(240, seed=14)
    train = _workbook(tmp_path / "train.xlsx", rows[:180])
    test = _workbook(tmp_path / "test.xlsx", rows[180:])
    _, config = _init(train, "--sheet", "tickets", "--test", test)
    assert config["data"]["sheet"] == "tickets" and config["data"]["test"] == "test.xlsx"
    assert "data.test holds 60 examples" in Path("experiment.yaml").read_text()
