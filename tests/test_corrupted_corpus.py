"""Acceptance: 1,000 mutated lines among 10,000 valid ones, through the real CLI with the bundled tokenizer.

Every mutated line must be reported with its line number and the expected code, no valid line may be
rejected (or flagged at all), the command must not print a traceback, and it is one invocation.
"""

from __future__ import annotations

import json
import subprocess
import sys

import corrupt
import pytest

from tunewise.data.check_report import check_file


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    data, expected, valid = corrupt.build_corpus(10_000, 1_000, seed=7)
    path = tmp_path_factory.mktemp("corpus") / "mutated.jsonl"
    path.write_bytes(data)
    return path, expected, valid


def test_every_mutation_kind_is_exercised(corpus):
    _, expected, _ = corpus
    assert set(expected.values()) == {code for code, _ in corrupt.MUTATIONS.values()} | {"line_too_long"}


def test_cli_reports_every_mutated_line_and_rejects_no_valid_line(corpus, tmp_path):
    path, expected, valid = corpus
    proc = subprocess.run([sys.executable, "-m", "tunewise.cli", "check", str(path), "--json"],
                          capture_output=True, text=True, timeout=600)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.returncode == 2
    report = json.loads(proc.stdout)
    assert report["tokenizer"] != "words (no tokenizer)"
    by_line: dict[int, set[str]] = {}
    for item in report["issues"]:
        by_line.setdefault(item["line"], set()).add(item["code"])
    missed = {line: code for line, code in expected.items() if code not in by_line.get(line, set())}
    assert missed == {}
    flagged_valid = {line: by_line[line] for line in valid if line in by_line}
    assert flagged_valid == {}
    assert report["summary"]["valid_examples"] >= len(valid)


def test_fix_of_the_mutated_corpus_rechecks_clean(corpus, tmp_path, word_counter):
    path, _, valid = corpus
    report = check_file(path, counter=word_counter)
    out = tmp_path / "clean.jsonl"
    from tunewise.data.fix import fix_file

    fix_file(report, out, redact_pii=True)
    again = check_file(out, counter=word_counter)
    assert again.exit_code == 0
    assert len(again.dataset.examples) >= len(valid)
    assert not [i for i in again.issues if i.code.startswith("pii_") or i.code == "secret"]
