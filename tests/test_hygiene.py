"""Text hygiene and CSV fidelity (issue 18): HTML entities and markup, control characters, mojibake and junk
metadata are warnings with counts and lines; `--fix --unescape-html` repairs the text, a table can be written
back as UTF-8 CSV, and `--fix` says how much of each label it dropped."""

from __future__ import annotations

import csv
import json

import owndata_files as files
from test_cli import invoke

from tunewise.data.check_report import check_file
from tunewise.data.fix import fix_file
from tunewise.data.hygiene import clean_text, text_findings


def test_each_kind_of_dirty_text_is_named_with_a_count():
    codes = dict(text_findings("it&#039;s fine &amp; good<br /><br />ok\x07 caf\u00c3\u00a9"))
    assert codes["html_entities"].startswith("2 HTML entities") and "'&#039;'" in codes["html_entities"]
    assert codes["html_markup"].startswith("2 HTML tag(s)")
    assert codes["control_characters"].startswith("1 control character(s): 'U+0007'")
    assert "mojibake" in codes
    assert text_findings("plain text, a < b > c, AT&T; fine") == []


def test_clean_text_unescapes_entities_and_markup_only_when_asked():
    dirty = "it&#039;s great<br /><br />really &rsquo;"
    assert clean_text(dirty) == dirty
    assert clean_text(dirty, unescape_html=True) == "it's great\n\nreally \u2019"
    assert clean_text("caf\u00c3\u00a9 \x00ok") == "caf\u00e9 ok"


def test_drug_reviews_with_entities_warn_and_fix_unescape_html_cleans_them(tmp_path, word_counter):
    path = files.drug_tsv(tmp_path, entities=True)
    report = check_file(path, counter=word_counter)
    counts = report.counts_by_code()
    assert counts["html_entities"] == 200 and counts["html_markup"] == 200 and report.exit_code == 0
    first = next(i for i in report.issues if i.code == "html_entities")
    assert first.line == 2 and first.field == "input"
    out = tmp_path / "clean.jsonl"
    fix_file(report, out, unescape_html=True)
    again = check_file(out, counter=word_counter)
    assert not {"html_entities", "html_markup"} & set(again.counts_by_code())
    record = json.loads(out.read_text().splitlines()[0])
    content = record["messages"][0]["content"]
    assert "&amp;" not in content and "I\u2019m glad\n" in content and "<br" not in content
    assert record["metadata"]["drugName"] == "Lipitor"


def test_junk_metadata_values_are_flagged(tmp_path, word_counter):
    rows = [("1", "Lipitor", f"review number {i} was fine", "ab"[i % 2], "N/A" if i == 3 else str(i))
            for i in range(30)]
    path = files.write_csv(tmp_path / "m.csv", ["id", "drug", "text", "label", "usefulCount"], rows)
    report = check_file(path, counter=word_counter)
    (junk,) = [i for i in report.issues if i.code == "metadata_junk"]
    assert junk.line == 5 and junk.field == "usefulCount" and "'N/A'" in junk.message


def test_fix_reports_the_label_distribution_of_what_it_dropped(tmp_path):
    rows = [("negative", "0.5", f"bad flight number {i}") for i in range(20)]
    rows += [("positive", "0.5", f"good flight number {i}") for i in range(10)]
    rows[0] = rows[1] = ("negative", "0.5", "")  # missing text: both dropped
    path = files.write_csv(tmp_path / "t.csv", ["sentiment", "confidence", "text"], rows)
    out = tmp_path / "clean.jsonl"
    code, text, _ = invoke("check", path, "--fix", out, "--no-pii")
    assert "dropped by label: 10% of 'negative' (2 of 20)" in text
    report = json.loads((tmp_path / "clean.jsonl.fix-report.json").read_text())
    assert report["dropped_labels"]["negative"] == {"dropped": 2, "of": 20}


def test_fix_re_encodes_a_windows_1252_csv_as_a_utf8_csv(tmp_path):
    path = files.cp1252_csv(tmp_path)
    out = tmp_path / "utf8.csv"
    code, text, _ = invoke("check", path, "--fix", out, "--no-pii")
    assert code == 0 and "repaired 40" in text
    with open(out, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 120 and "caf\u00e9" in rows[0]["text"]
    assert invoke("check", out, "--json", "--no-pii")[0] == 0
    assert path.read_bytes().count(b"\xe9") > 0  # the input is untouched
