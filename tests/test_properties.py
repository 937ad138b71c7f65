"""Property: whatever bytes a user hands us, `check` returns examples and issues, never an exception."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunewise.data.check_report import check_file
from tunewise.data.tokens import TokenCounter

COUNTER = TokenCounter(None, 64, "words")
SUFFIXES = st.sampled_from([".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt", ""])
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
message = st.fixed_dictionaries({}, optional={
    "role": st.sampled_from(["system", "user", "assistant", "tool", "", 3]),
    "content": st.one_of(st.text(max_size=30), st.none(), st.integers()),
    "weight": st.one_of(st.integers(-1, 2), st.booleans()),
    "extra": json_values,
})
record = st.one_of(
    json_values,
    st.fixed_dictionaries({"messages": st.lists(st.one_of(message, json_values), max_size=4)}),
    st.fixed_dictionaries({}, optional={k: st.one_of(st.text(max_size=20), json_values)
                                        for k in ("prompt", "completion", "text", "label", "instruction", "input", "output")}),
)


def _check(tmp_path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    report = check_file(path, counter=COUNTER)
    assert report.exit_code in (0, 2)
    assert all(i.code and i.hint for i in report.issues)
    report.to_json()


@SETTINGS
@given(data=st.binary(max_size=2000), suffix=SUFFIXES)
def test_any_bytes(tmp_path, data, suffix):
    _check(tmp_path, "f" + suffix, data)


@SETTINGS
@given(records=st.lists(record, max_size=15), suffix=st.sampled_from([".jsonl", ".json"]))
def test_any_json_records(tmp_path, records, suffix):
    if suffix == ".json":
        data = json.dumps(records).encode()
    else:
        data = "".join(json.dumps(r) + "\n" for r in records).encode()
    _check(tmp_path, "f" + suffix, data)


# Byte fragments that have broken JSON readers before: non-standard constants, over-long integers, BOMs,
# lone carriage returns, NULs, Rich markup.
FRAGMENTS = st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"9" * 5000, b"\xef\xbb\xbf", b"\r", b"\x00",
                             b"[/]", b'{"messages": [', b'"role": "user"', b'"content": ', b"}", b"]", b",", b'"'])


@SETTINGS
@given(lines=st.lists(st.lists(st.binary(max_size=40) | FRAGMENTS, max_size=8).map(b"".join), max_size=20),
       suffix=st.sampled_from([".jsonl", ".csv", ".json"]))
def test_any_lines(tmp_path, lines, suffix):
    _check(tmp_path, "f" + suffix, b"\n".join(lines))
