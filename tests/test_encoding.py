"""Files that are not UTF-8 (issue 18): a Windows-1252 CSV is decoded with a warning naming the encoding and the
lines that needed it, UTF-16 with a byte-order mark just works, `--encoding` is honoured, and bytes no candidate
can decode stay errors with line and column. CSV line numbers are the file's own lines."""

from __future__ import annotations

import json

import owndata_files as files
from test_cli import invoke

from tunewise.data.encoding import decode_bytes
from tunewise.data.formats import read_examples


def test_windows_1252_csv_is_decoded_with_a_warning_per_line_naming_the_encoding(tmp_path):
    data = read_examples(files.cp1252_csv(tmp_path))
    assert data.encoding == "cp1252" and len(data.examples) == 120
    warned = [i for i in data.issues if i.code == "legacy_encoding"]
    assert [i.line for i in warned] == list(range(2, 122, 3))  # every third row, counted from the header
    assert "Windows-1252" in warned[0].message
    assert not [i for i in data.issues if i.severity.value == "error"]
    assert "caf\u00e9" in data.examples[0].input


def test_a_mixed_file_keeps_its_utf8_lines_as_utf8(tmp_path):
    raw = ("text,label\n" + "".join(f"good \u00fcber line {i},a\n" for i in range(10))).encode()
    raw += "".join(f"bad line {i} caf\u00e9 na\u00efve,b\n" for i in range(10)).encode("cp1252")
    path = tmp_path / "mixed.csv"
    path.write_bytes(raw)
    data = read_examples(path)
    assert [e.input for e in data.examples[:1]] == ["good \u00fcber line 0"]
    assert data.examples[-1].input == "bad line 9 caf\u00e9 na\u00efve"


def test_utf16_with_bom_reads_like_utf8(tmp_path):
    data = read_examples(files.utf16_csv(tmp_path))
    assert data.encoding == "utf-16" and len(data.examples) == 90
    assert data.examples[0].input.endswith("\u00fcber")
    assert [i.code for i in data.issues] == ["legacy_encoding"]


def test_explicit_encoding_is_used_and_undecodable_bytes_name_line_and_column(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\nol\u00e9 ol\u00e9,a\nplain,b\n".encode("latin-1") + b"bad \x81 byte,a\n")
    data = read_examples(path, encoding="cp1252")
    assert data.examples[0].input == "ol\u00e9 ol\u00e9"
    (bad,) = [i for i in data.issues if i.code == "invalid_utf8"]
    assert (bad.line, bad.column) == (4, 5) and "cp1252" in bad.message


def test_a_few_stray_bytes_stay_errors_and_the_hint_names_the_likely_encoding():
    decoded = decode_bytes(b"text,label\ncaf\xe9,a\nok,b\n")
    (bad,) = decoded.issues
    assert bad.code == "invalid_utf8" and (bad.line, bad.column) == (2, 4)
    assert "--encoding" in bad.hint


def test_check_names_the_encoding_and_the_json_report_carries_it(tmp_path):
    path = files.cp1252_csv(tmp_path)
    code, out, _ = invoke("check", path, "--json", "--no-pii")
    report = json.loads(out)
    assert code == 0 and report["encoding"] == "cp1252"
    assert report["summary"]["by_code"]["legacy_encoding"] == 40


def test_bad_encoding_name_is_one_clear_line(tmp_path):
    code, _, err = invoke("check", files.tweets_csv(tmp_path), "--encoding", "klingon")
    assert code == 2 and "--encoding 'klingon'" in err


def test_bare_carriage_returns_in_quoted_fields_do_not_shift_line_numbers(tmp_path):
    rows = "".join(f'"row {i}\rwith a stray CR",{"ab"[i % 2]}\n' for i in range(20)) + "\"bad,row\n"
    path = tmp_path / "cr.csv"
    path.write_text("text,label\n" + rows, newline="")
    data = read_examples(path)
    assert [e.line for e in data.examples] == list(range(2, 22))
    assert data.examples[0].input == "row 0\rwith a stray CR"
    assert data.lines_seen in (21, 22)


def test_code_pages_that_agree_on_the_sample_resolve_to_windows_1252():
    """charset-normalizer ranks cp1250 first when the bytes seen (é, ’) decode alike in both; cp1252 must win,
    or è and ï elsewhere in the file would read as č and ď."""
    rows = "".join(f"positive,the crew was great on flight {i} caf\u00e9 don\u2019t\n" for i in range(300))
    decoded = decode_bytes(("sentiment,text\n" + rows).encode("cp1252"))
    assert decoded.encoding == "cp1252" and "caf\u00e9 don\u2019t" in decoded.text
