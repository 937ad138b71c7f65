"""`check --fix`: a cleaned copy that re-checks clean, a report of every drop, the input untouched."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import chat
from test_checks import unique_chats

from tunewise.data.check_report import check_file
from tunewise.data.fix import FixError, fix_file


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fix_output_rechecks_clean_and_input_is_untouched(write, word_counter, tmp_path):
    rows = [json.dumps(r) for r in unique_chats(120)]
    rows[4] = rows[4].replace("question", "  question") + "\r"        # whitespace + CRLF: normalised
    rows[10] = '{"messages": [}'                                      # invalid JSON: dropped
    rows[11] = rows[12]                                               # duplicate: later copy dropped
    rows[20] = json.dumps(chat("mail bob.smith@example.com please", "will do right away"))
    rows[30] = json.dumps(unique_chats(1, 500)[0], ensure_ascii=False).replace("question", "quéstion")
    raw = ("\n".join(rows) + "\n").encode().replace(b"qu\xc3\xa9stion", b"qu\xe9stion")  # cp1252 byte
    source = write("in.jsonl", b"\xef\xbb\xbf" + raw)
    before = sha(source)
    report = check_file(source, counter=word_counter)
    assert report.exit_code == 2
    out = tmp_path / "clean.jsonl"
    result = fix_file(report, out, redact_pii=True)
    assert sha(source) == before
    again = check_file(out, counter=word_counter)
    assert again.exit_code == 0, [i.to_dict() for i in again.errors]
    assert not [i for i in again.issues if i.code in ("duplicate_example", "crlf_line_ending", "utf8_bom", "pii_email")]
    fix_report = json.loads(result.report_path.read_text())
    dropped = {d["line"]: d["codes"] for d in fix_report["dropped"]}
    assert dropped == {11: ["invalid_json"], 13: ["duplicate_example"]}
    assert [r["line"] for r in fix_report["repaired"]] == [31]
    assert result.kept == 118 and result.redacted == 1
    texts = out.read_text(encoding="utf-8")
    assert "quéstion" in texts and "<EMAIL_ADDRESS>" in texts and "\r" not in texts


def test_fix_keeps_the_original_shape(write, word_counter, tmp_path):
    rows = [{"text": f"story {i}", "label": "a" if i % 2 else "b", "source": "x"} for i in range(12)]
    report = check_file(write("t.jsonl", rows), counter=word_counter)
    fix_file(report, tmp_path / "o.jsonl")
    first = json.loads((tmp_path / "o.jsonl").read_text().splitlines()[0])
    assert first == {"text": "story 0", "label": "b", "source": "x"}


def test_fix_refuses_to_overwrite_its_input(write, word_counter):
    source = write("in.jsonl", unique_chats(12))
    report = check_file(source, counter=word_counter)
    with pytest.raises(FixError, match="never modifies its input"):
        fix_file(report, source)


def test_fix_failure_leaves_no_partial_output(write, word_counter, tmp_path, monkeypatch):
    report = check_file(write("in.jsonl", unique_chats(12)), counter=word_counter)
    out = tmp_path / "o.jsonl"
    out.write_text("previous contents\n")
    import tunewise.data.fix as fix_module

    def boom(value):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(fix_module, "_clean", boom)
    with pytest.raises(RuntimeError):
        fix_file(report, out)
    assert out.read_text() == "previous contents\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
