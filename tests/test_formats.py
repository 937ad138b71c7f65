"""Reading every supported container and shape into Examples, with precise issues for what is wrong."""

from __future__ import annotations

import json

import pytest
from conftest import chat

from tunewise.data.formats import read_examples
from tunewise.data.shapes import ColumnMapping, MappingError


def codes_at(data, line):
    return {i.code for i in data.issues if i.line == line}


SHAPE_CASES = [
    ("chat", chat("Capital of France?", "Paris", system="Be brief."), ("system", "user", "assistant"), "Paris"),
    ("prompt_completion", {"prompt": "2+2=", "completion": "4"}, ("user", "assistant"), "4"),
    ("input_output", {"input": "hello", "output": "bonjour"}, ("user", "assistant"), "bonjour"),
    ("alpaca", {"instruction": "Translate", "input": "hello", "output": "bonjour"}, ("user", "assistant"), "bonjour"),
    ("text_label", {"text": "great match", "label": "sport"}, ("user", "assistant"), "sport"),
]


@pytest.mark.parametrize("shape,record,roles,output", SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
def test_every_shape_becomes_an_example(write, shape, record, roles, output):
    data = read_examples(write("d.jsonl", [record, record | {"id": "second"}]))
    assert data.shape == shape
    assert not data.issues
    example = data.examples[0]
    assert tuple(m.role for m in example.messages) == roles
    assert example.output == output and example.line == 1
    assert data.examples[1].id == "second"


def test_alpaca_joins_instruction_and_input(write):
    data = read_examples(write("a.jsonl", [{"instruction": "Translate", "input": "hello", "output": "bonjour"}]))
    assert data.examples[0].messages[0].content == "Translate\n\nhello"


def test_extra_fields_become_metadata_and_ids_stay_unique(write):
    record = {"text": "a", "label": "x", "source": "web", "id": 7}
    data = read_examples(write("m.jsonl", [record, record]))
    assert data.examples[0].metadata == {"source": "web"}
    assert [e.id for e in data.examples] == ["7", "7@2"]


def test_json_array_keeps_line_numbers(write):
    text = '[\n  {"prompt": "a", "completion": "b"},\n\n  {"prompt": "c", "completion": "d"},\n  [1]\n]\n'
    data = read_examples(write("d.json", text))
    assert [e.line for e in data.examples] == [2, 4]
    assert codes_at(data, 5) == {"data_type"}


def test_json_wrapper_object(write):
    text = json.dumps({"version": 1, "data": [{"text": "a", "label": "x"}]}, indent=1)
    data = read_examples(write("w.json", text))
    assert len(data.examples) == 1 and data.examples[0].line == 4


def test_json_syntax_error_names_line_and_column(write):
    data = read_examples(write("bad.json", '[\n {"prompt": "a", "completion": "b"},\n {"prompt": "c",}\n]'))
    (problem,) = [i for i in data.issues if i.code == "invalid_json"]
    assert problem.line == 3 and problem.column == 17  # the `}` after the trailing comma


def test_jsonl_saved_as_json_is_read_as_jsonl(write):
    data = read_examples(write("x.json", json.dumps(chat("a", "b")) + "\n" + json.dumps(chat("c", "d")) + "\n"))
    assert len(data.examples) == 2
    assert any(i.code == "format_mismatch" for i in data.issues)


def test_csv_with_quoted_newlines_keeps_row_lines(write):
    text = 'text,label\n"first\nrow",a\nsecond,b\n'
    data = read_examples(write("d.csv", text))
    assert [e.line for e in data.examples] == [2, 4]
    assert data.examples[0].input == "first\nrow"


def test_csv_invalid_utf8_is_per_row(write):
    data = read_examples(write("d.csv", b"text,label\ncaf\xe9,a\nok,b\n"))
    assert codes_at(data, 2) == {"invalid_utf8"} and len(data.examples) == 1


def test_csv_wrong_field_count(write):
    data = read_examples(write("d.csv", "text,label\na,b,c\nok,b\n"))
    assert codes_at(data, 2) == {"invalid_csv"}


def test_parquet_rows_and_numeric_labels(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a", "b", None], "label": [0, 1, 1]}), path)
    data = read_examples(path)
    assert [e.output for e in data.examples] == ["0", "1"]
    assert codes_at(data, 3) == {"missing_content"}


def test_parquet_chat_shape(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "c.parquet"
    pq.write_table(pa.Table.from_pylist([chat("q", "a"), chat("q2", "a2")]), path)
    assert len(read_examples(path).examples) == 2


def test_corrupt_parquet_is_an_issue(write):
    data = read_examples(write("x.parquet", b"PAR1 not really"))
    assert [i.code for i in data.issues] == ["invalid_parquet"]


def test_column_mapping(write):
    rows = [{"body": "hello", "category": "greet", "sys": "classify"}]
    mapping = ColumnMapping.parse(["input=body", "output=category", "system=sys"])
    data = read_examples(write("d.jsonl", rows), mapping=mapping)
    assert [m.role for m in data.examples[0].messages] == ["system", "user", "assistant"]
    missing = read_examples(write("e.jsonl", [{"body": "x"}]), mapping=mapping)
    assert {(i.code, i.field) for i in missing.issues} >= {("missing_field", "category")}


@pytest.mark.parametrize("items", [["input"], ["input=body"], ["colour=body", "output=x"]])
def test_bad_mapping_is_explained(items):
    with pytest.raises(MappingError, match="--map"):
        ColumnMapping.parse(items)


def test_empty_and_blank_files(write):
    assert [i.code for i in read_examples(write("e.jsonl", b"")).issues] == ["empty_file"]
    blank = read_examples(write("b.jsonl", "\n\n"))
    assert "empty_file" in {i.code for i in blank.issues}


def test_unknown_format(write):
    data = read_examples(write("notes.txt", "hello world"))
    assert [i.code for i in data.issues] == ["unknown_format"]


def test_every_problem_in_a_record_is_reported(write):
    record = {"messages": [{"role": "bot", "content": "", "mood": 1}, {"content": "x"}]}
    data = read_examples(write("d.jsonl", [record]))
    assert {(i.code, i.field) for i in data.issues} == {
        ("unrecognized_role", "messages[0].role"),
        ("missing_content", "messages[0].content"),
        ("message_unrecognized_key", "messages[0].mood"),
        ("message_missing_key", "messages[1].role"),
    }


def test_weight_rules(write):
    ok = chat("q", "a")
    ok["messages"][1]["weight"] = 0
    bad = chat("q", "a")
    bad["messages"][0]["weight"] = 1
    data = read_examples(write("w.jsonl", [ok, bad]))
    assert data.examples[0].messages[1].weight == 0
    assert codes_at(data, 2) == {"invalid_weight"}


HASH_TEXTS = ["plain", "quote \" and back\\slash", "tab\tnew\nline \x01", "café ｆｕｌｌ 😀", "</script>", " ", "\u2028"]


@pytest.mark.parametrize("text", HASH_TEXTS)
def test_content_hash_id_is_the_json_dumps_hash(text):
    """The id of a record without one is the hash of json.dumps of its messages; the fast path that builds
    that string by hand must produce the same bytes (ids are stable across versions of tunewise)."""
    import hashlib

    from tunewise.data.records import RawRecord
    from tunewise.data.shapes import to_example
    from tunewise.schema import Message

    record = chat(f"question {text}", f"answer {text}", system=f"system {text}")
    for weighted in (False, True):
        if weighted:
            record["messages"][2]["weight"] = 1
        example, problems = to_example(RawRecord(1, record), "chat", None)
        assert not problems
        messages = [Message(m["role"], m["content"], m.get("weight")) for m in record["messages"]]
        canonical = json.dumps([m.to_dict() for m in messages], ensure_ascii=False, sort_keys=True)
        assert example.id == hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


@pytest.mark.parametrize("content", ["ok", " x ", "\x1f", " \t\n", "", "\u200b", "caf\u00e9", 5, None, ["a"]])
def test_plain_message_fast_path_agrees_with_the_full_checks(content):
    """`_message` accepts {"role", "content": ASCII text} without the full checks; every other content (empty,
    blank, invisible, non-ASCII, not a string) still goes through them and gets the same verdict as before."""
    from tunewise.data.shapes import INVISIBLE, _message

    message, problems = _message({"role": "user", "content": content}, 0, 1)
    blank = isinstance(content, str) and not content.translate(INVISIBLE).strip()
    if isinstance(content, str) and not blank:
        assert message is not None and message.content == content and not problems
    else:
        assert message is None and problems
