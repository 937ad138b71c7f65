"""Column inference on tables in no standard shape (issue 18): the input is the longest free-text column, the
label a short low-cardinality column with a label-like name; the guess is printed with its override, and a
table that cannot be guessed is one clear error listing its columns, never `missing_messages_list`."""

from __future__ import annotations

import json
import subprocess
import sys

import owndata_files as files
from test_cli import invoke

from tunewise.data.formats import read_examples
from tunewise.data.infer import infer_columns
from tunewise.data.records import RawRecord


def test_tweets_csv_maps_text_and_sentiment_and_keeps_confidence_as_metadata(tmp_path):
    data = read_examples(files.tweets_csv(tmp_path))
    assert data.inferred is not None and data.inferred.confidence == "high"
    assert (data.mapping.input, data.mapping.output) == ("text", "sentiment")
    assert len(data.examples) == 240 and not data.issues
    assert set(data.examples[0].metadata) == {"confidence"}
    assert data.examples[0].label in {"positive", "negative", "neutral"}


def test_drug_review_tsv_unnamed_index_becomes_the_id_and_the_rest_metadata(tmp_path):
    data = read_examples(files.drug_tsv(tmp_path))
    mapping = data.mapping
    assert (mapping.input, mapping.output, mapping.id) == ("review", "rating", "unnamed_1")
    first = data.examples[0]
    assert first.id == "1000" and first.label in {"8", "9", "10"}
    assert set(first.metadata) == {"drugName", "condition", "date", "usefulCount"}
    assert not [i for i in data.issues if i.severity.value == "error"]


def test_generation_columns_are_found_by_answer_like_names():
    records = [RawRecord(i + 2, {"question": f"how do I reset device {i} after the update?", "answer":
                                 f"hold the button for {i % 7 + 3} seconds, then wait"}) for i in range(40)]
    inferred = infer_columns(records, "generate")
    assert (inferred.mapping.input, inferred.mapping.output) == ("question", "answer")


def test_two_unnamed_candidate_labels_are_refused_with_the_columns():
    records = [RawRecord(i + 2, {"body": f"message number {i} about things", "p": "ab"[i % 2], "q": "cd"[i % 2]})
               for i in range(40)]
    inferred = infer_columns(records)
    assert inferred.mapping is None and "'p', 'q'" in inferred.problem
    assert "--map input=body" in inferred.map_args()


def test_json_records_are_inferred_too(tmp_path):
    rows = [{"comment": f"the parcel arrived {'late' if i % 2 else 'early'} on day {i}", "topic": "ab"[i % 2]}
            for i in range(30)]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows))
    data = read_examples(path)
    assert (data.mapping.input, data.mapping.output) == ("comment", "topic") and len(data.examples) == 30


def test_check_prints_the_inferred_mapping_and_its_override(tmp_path):
    path = files.tweets_csv(tmp_path)
    code, out, _ = invoke("check", path, "--no-pii")
    assert code == 0
    assert "inferred columns (high confidence): input=text, output=sentiment" in out
    assert f"tunewise check {path} --map input=text --map output=sentiment" in out
    assert "data: {mapping: {input: text, output: sentiment}}" in out
    assert "missing_messages_list" not in out


def test_check_json_carries_the_inference(tmp_path):
    code, out, _ = invoke("check", files.drug_tsv(tmp_path), "--json", "--no-pii")
    report = json.loads(out)
    assert report["inferred"]["mapping"] == {"input": "review", "output": "rating", "id": "unnamed_1"}
    assert report["task"] == "classify"


def test_uninferable_table_lists_columns_and_a_map_command_and_exits_2_without_traceback(tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text("a,b,c\n" + "".join(f"x{i},y{i},z{i}\n" for i in range(50)))
    proc = subprocess.run([sys.executable, "-m", "tunewise.cli", "check", str(path), "--no-pii"],
                          capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                             "COLUMNS": "200"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    assert "columns_not_inferred" in proc.stdout and "missing_messages_list" not in proc.stdout
    for column in ("a", "b", "c"):
        assert f"│ {column} " in proc.stdout
    assert f"tunewise check {path} --map input=a --map output=b" in proc.stdout


def test_xlsx_reads_the_first_sheet_or_the_named_one(tmp_path):
    path = files.xlsx_file(tmp_path)
    data = read_examples(path)
    assert data.format == "xlsx" and len(data.examples) == 90
    first = data.examples[0]
    assert first.line == 2 and first.id == "1" and first.metadata == {"priority": "low"}
    code, _, err = invoke("check", path, "--sheet", "nope")
    assert code == 2 and "--sheet 'nope'" in err and "'tickets', 'notes'" in err
    notes = read_examples(path, sheet="notes")
    assert [i.code for i in notes.issues] == ["empty_file"]


def test_split_of_a_mapped_table_records_the_mapping(tmp_path):
    """`tunewise split --map` crashed on `ColumnMapping.__dict__` (a slots dataclass has none)."""
    path = files.tweets_csv(tmp_path)
    code, out, err = invoke("split", path, "--runs-dir", tmp_path / "runs", "--map", "input=text",
                            "--map", "output=sentiment")
    assert code == 0, err
    manifest = json.loads(next((tmp_path / "runs").glob("*/manifest.json")).read_text())
    assert manifest["config"]["mapping"]["input"] == "text"
