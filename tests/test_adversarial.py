"""Inputs a careless or unlucky user will hand us: each gets a clear answer, never a traceback or lost data."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import Decimal

import pytest
from conftest import chat
from test_checks import unique_chats
from test_cli import invoke

from tunewise.data.check_report import check_file
from tunewise.data.fix import FixError, fix_file
from tunewise.data.formats import read_examples


def codes_at(data, line):
    return {i.code for i in data.issues if i.line == line}


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_split_never_overwrites_its_input(write, tmp_path):
    rows = [{"text": f"story {i}", "label": "ab"[i % 2]} for i in range(30)]
    folder = tmp_path / "d"
    folder.mkdir()
    source = folder / "train.jsonl"
    source.write_text(jsonl(rows))
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    code, out, err = invoke("split", source, "--out", folder)
    assert code == 2 and "would overwrite the input" in " ".join((out + err).split())
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before


def test_split_refuses_to_replace_an_earlier_split_without_force(write, tmp_path):
    path = write("d.jsonl", [{"text": f"story {i}", "label": "ab"[i % 2]} for i in range(30)])
    out = tmp_path / "s"
    assert invoke("split", path, "--out", out)[0] == 0
    assert invoke("split", path, "--out", out, "--seed", "4")[0] == 2
    assert invoke("split", path, "--out", out, "--seed", "4", "--force")[0] == 0


def test_json_syntax_error_mid_array_blocks_fix(write, word_counter, tmp_path):
    records = [json.dumps(r) for r in unique_chats(40)]
    records[15] = records[15][:-1] + ",}"
    path = write("arr.json", "[\n" + ",\n".join(records) + "\n]\n")
    report = check_file(path, counter=word_counter)
    (problem,) = [i for i in report.issues if i.code == "invalid_json"]
    assert problem.line == 17 and "cannot be read" in problem.message
    with pytest.raises(FixError, match="could not be read past line 17"):
        fix_file(report, tmp_path / "o.jsonl")


def test_csv_keeps_reading_after_an_oversized_field(write):
    rows = "text,label\n" + "".join(f"row {i},a\n" for i in range(8)) + f'"{"x" * 5000}",b\n'
    rows += "".join(f"later {i},b\n" for i in range(30))
    data = read_examples(write("big.csv", rows), max_line_bytes=1000)
    assert codes_at(data, 10) == {"line_too_long"}
    assert len(data.examples) == 38


def test_duplicate_csv_header_is_named(write):
    data = read_examples(write("d.csv", "text,label,text\na,b,c\n"))
    assert [(i.code, i.line) for i in data.issues] == [("invalid_csv", 1)]
    assert "'text'" in data.issues[0].message


@pytest.mark.parametrize("line,fragment", [
    ('{"text": "a", "label": NaN}', "NaN"),
    ('{"text": "a", "label": Infinity}', "Infinity"),
    ('{"text": "a", "n": ' + "9" * 5000 + "}", "digits"),
])
def test_non_standard_numbers_are_invalid_json(write, line, fragment):
    data = read_examples(write("n.jsonl", line + "\n"))
    (problem,) = data.issues
    assert problem.code == "invalid_json" and problem.line == 1 and fragment in problem.message


def test_non_standard_numbers_in_a_json_document(write):
    data = read_examples(write("n.json", '[{"text": "a", "label": NaN}]'))
    assert [i.code for i in data.issues] == ["invalid_json"]


@pytest.mark.parametrize("args", [["--format", "xml"], ["--max-line-bytes", "0"],
                                  ["--max-line-bytes", "99999999999999999999"], ["--redact-pii"]])
def test_bad_options_exit_2_without_traceback(write, args):
    code, out, err = invoke("check", write("ok.jsonl", unique_chats(12)), *args)
    assert code == 2 and "Traceback" not in out + err


def test_format_is_case_insensitive(write):
    assert invoke("check", write("ok.txt", jsonl(unique_chats(12))), "--format", "JSONL", "--no-pii")[0] == 0


def test_rich_markup_in_data_and_paths_prints_as_text(write, tmp_path):
    rows = [{"text": f"story {i}", "label": ["[/]", "[bold]x"][i % 2]} for i in range(20)]
    folder = tmp_path / "odd[/]name"  # the "/" makes it two folders, "odd[" and "]name"
    folder.mkdir(parents=True)
    path = folder / "train[old].jsonl"
    path.write_text(jsonl(rows) + jsonl([{"messages": [{"role": "[/]", "content": "x"}]}]))
    code, out, err = invoke("check", path, "--no-pii")
    text = "".join(out.split())  # Rich wraps long paths anywhere
    assert code == 2 and "train[old].jsonl" in text and "[bold]x" in text
    code, out, err = invoke("split", write("s.jsonl", rows), "--runs-dir", tmp_path / "runs")
    assert code == 0 and "[bold]x" in "".join(out.split())


def test_invisible_only_content_is_missing(write, word_counter, tmp_path):
    rows = unique_chats(20) + [chat("\u200b", "an answer here")]
    report = check_file(write("z.jsonl", rows), counter=word_counter)
    assert [(i.line, i.code) for i in report.errors] == [(21, "missing_content")]
    fix_file(report, tmp_path / "o.jsonl")
    assert check_file(tmp_path / "o.jsonl", counter=word_counter).exit_code == 0


def test_content_parts_of_text_are_accepted(write):
    record = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
                           {"role": "assistant", "content": "Hello"}]}
    image = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                          {"role": "assistant", "content": "Hello"}]}
    data = read_examples(write("p.jsonl", [record, image]))
    assert data.examples[0].messages[0].content == "Hi there"
    assert codes_at(data, 2) == {"invalid_type"} and "text parts" in data.issues[0].hint


def test_fix_of_mapped_columns_writes_chat_records(write, word_counter, tmp_path):
    rows = [{"body": f"story number {i}", "category": "ab"[i % 2]} for i in range(20)]
    code, out, err = invoke("check", write("m.jsonl", rows), "--map", "input=body", "--map", "output=category",
                            "--fix", tmp_path / "clean.jsonl", "--no-pii")
    assert code == 0
    assert invoke("check", tmp_path / "clean.jsonl", "--no-pii")[0] == 0
    assert "messages" in json.loads((tmp_path / "clean.jsonl").read_text().splitlines()[0])


def test_fix_warns_when_dedupe_leaves_too_few(write, tmp_path):
    rows = unique_chats(9) + unique_chats(3)
    code, out, _ = invoke("check", write("d.jsonl", rows), "--fix", tmp_path / "o.jsonl", "--no-pii")
    assert "only 9 example(s) remain" in " ".join(out.split())


@pytest.mark.parametrize("target", ["clean.csv", "folder", "afile/clean.jsonl"])
def test_fix_output_path_mistakes_are_clear(write, tmp_path, target):
    source = write("ok.jsonl", unique_chats(12))
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("x")
    code, out, err = invoke("check", source, "--fix", tmp_path / target, "--no-pii")
    text = " ".join((out + err).split())
    assert code == 2 and "error:" in text and "internal error" not in text


def test_split_into_an_unwritable_place_is_clear(write, tmp_path):
    (tmp_path / "afile").write_text("x")
    code, out, err = invoke("split", write("ok.jsonl", unique_chats(30)), "--runs-dir", tmp_path / "afile")
    assert code == 2 and "internal error" not in out + err


def test_parquet_timestamps_decimals_and_bytes(tmp_path, word_counter):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 30
    table = pa.table({"text": [f"story {i}" for i in range(n)], "label": ["ab"[i % 2] for i in range(n)],
                      "when": [datetime(2024, 1, 1 + i % 28) for i in range(n)],
                      "price": [Decimal("1.50")] * n, "blob": [b"\x00\x01"] * n})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    report = check_file(path, counter=word_counter)
    assert report.exit_code == 0
    fix_file(report, tmp_path / "o.jsonl")
    first = json.loads((tmp_path / "o.jsonl").read_text().splitlines()[0])
    assert first["when"].startswith("2024-01-01") and first["price"] == "1.50"
    assert invoke("split", path, "--runs-dir", tmp_path / "runs")[0] == 0


def test_leakage_refuses_unreadable_files(write):
    good = write("ok.jsonl", unique_chats(12))
    code, out, err = invoke("leakage", good, write("g.jsonl", "garbage\n"))
    assert code == 2 and "needs a clean file" in " ".join((out + err).split())


def test_json_wrapper_prefers_the_records_list(write):
    text = json.dumps({"labels": ["a", "b"], "tags": [], "data": [{"text": "x", "label": "a"}]})
    data = read_examples(write("w.json", text))
    assert len(data.examples) == 1 and not data.issues


def test_cr_only_line_endings_get_a_specific_hint(write):
    path = write("cr.jsonl", "\r".join(json.dumps(r) for r in unique_chats(3)) + "\r")
    (problem,) = read_examples(path).issues
    assert "CR-only" in problem.hint


def test_split_of_a_file_without_valid_examples_says_why(write, tmp_path):
    code, out, err = invoke("split", write("bad.jsonl", "nope\n[1]\n"), "--runs-dir", tmp_path / "r")
    assert code == 2 and "no valid examples" in " ".join((out + err).split())


def test_long_jsonl_line_is_not_held_in_memory(write):
    path = write("long.jsonl", b'{"a": "' + b"x" * 3_000_000 + b'"}\n' + jsonl(unique_chats(3)).encode())
    data = read_examples(path, max_line_bytes=1000)
    assert codes_at(data, 1) == {"line_too_long"} and len(data.examples) == 3
