"""The command line end to end: exit codes, JSON output, clear one-line errors, run folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import chat
from test_checks import unique_chats
from typer.testing import CliRunner

from tunewise.cli.app import app

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "bbc-news.yaml"

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_check_clean_file_exits_0(write):
    code, out, _ = invoke("check", write("ok.jsonl", unique_chats(120)), "--no-pii")
    assert code == 0 and "no errors" in out


def test_check_errors_exit_2_and_json_is_machine_readable(write):
    path = write("bad.jsonl", "".join(json.dumps(r) + "\n" for r in unique_chats(20)) + "{oops\n")
    code, out, _ = invoke("check", path, "--json")
    assert code == 2
    report = json.loads(out)
    assert report["ok"] is False and report["summary"]["by_code"]["invalid_json"] == 1
    (item,) = [i for i in report["issues"] if i["code"] == "invalid_json"]
    assert item["line"] == 21 and item["column"] == 2 and item["hint"]


def test_check_fix_then_recheck_is_clean(write, tmp_path):
    rows = unique_chats(30) + [unique_chats(1)[0]]
    path = write("dup.jsonl", "".join(json.dumps(r) + "\n" for r in rows) + "[1]\n")
    out = tmp_path / "clean.jsonl"
    code, text, _ = invoke("check", path, "--fix", out)
    assert code == 2 and "dropped 2" in text
    assert invoke("check", out)[0] == 0


@pytest.mark.parametrize("args,message", [
    (["check", "missing.jsonl"], "no such file"),
    (["check", "{tmp}"], "is a folder"),
    (["check", "{ok}", "--task", "poem"], "--task 'poem'"),
    (["check", "{ok}", "--map", "input"], "--map 'input'"),
    (["check", "{ok}", "--fix", "{ok}"], "never modifies its input"),
    (["split", "{ok}", "--test", "1.5"], "test"),
])
def test_bad_arguments_get_one_clear_line(write, tmp_path, args, message):
    ok = write("ok.jsonl", unique_chats(12))
    filled = [a.format(tmp=tmp_path, ok=ok) for a in args]
    code, out, err = invoke(*filled)
    assert code == 2
    text = " ".join((out + err).split())  # Rich wraps at the terminal width
    assert message in text and "Traceback" not in text


def test_split_into_a_run_and_list_it(write, tmp_path):
    rows = [{"text": f"story number {i} about {'sport' if i % 2 else 'money'}", "label": "a" if i % 2 else "b"}
            for i in range(100)]
    runs_dir = tmp_path / "runs"
    code, out, _ = invoke("split", write("d.jsonl", rows), "--runs-dir", runs_dir, "--seed", "3")
    assert code == 0
    (run,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    summary = json.loads((run / "splits" / "split.json").read_text())
    assert summary["counts"] == {"train": 70, "val": 10, "test": 20}
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["config"]["seed"] == 3
    code, out, _ = invoke("runs", "--runs-dir", runs_dir)
    assert code == 0 and run.name in out


def test_split_files_have_no_leakage_and_leakage_detects_it(write, tmp_path):
    rows = [{"text": f"story {i}", "label": "a" if i % 3 else "b"} for i in range(60)]
    rows += [{"text": "Story 5!", "label": "a"}]  # near duplicate of line 6
    out = tmp_path / "splits"
    assert invoke("split", write("d.jsonl", rows), "--out", out)[0] == 0
    for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
        assert invoke("leakage", out / f"{a}.jsonl", out / f"{b}.jsonl")[0] == 0
    code, text, _ = invoke("leakage", write("a.jsonl", rows[:10]), write("b.jsonl", rows[5:]), "--json")
    assert code == 2
    kinds = sorted(leak["kind"] for leak in json.loads(text))
    assert kinds == ["exact"] * 5 + ["near"]


def test_console_script_has_no_traceback_for_bad_data(write):
    path = write("bad.csv", b"text,label\n\xff\xfe,a\n")
    proc = subprocess.run([sys.executable, "-m", "tunewise.cli", "check", str(path), "--no-pii"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "invalid_utf8" in proc.stdout


def test_check_reports_labels_for_text_label_data(write):
    rows = [{"text": f"headline {i}", "label": ["sport", "tech"][i % 2]} for i in range(40)]
    code, out, _ = invoke("check", write("l.jsonl", rows), "--json", "--no-pii")
    assert json.loads(out)["stats"]["labels"] == {"sport": 20, "tech": 20}


def test_chat_helper_builds_valid_records(write):
    code, out, _ = invoke("check", write("c.jsonl", [chat("q", "a", system="s")] * 12), "--json", "--no-pii")
    assert json.loads(out)["summary"]["by_code"]["duplicate_example"] == 11


@pytest.mark.slow
def test_demo_checks_the_bundled_data_and_runs_the_head_to_head(tmp_path):
    """The real bundled model and data end to end, shrunk to a 10-article test set (BM25 instead of
    embedding 1,558 training articles) so it fits CI; `make demo` runs the full example."""
    config = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    at = {arm["name"]: i for i, arm in enumerate(config["arms"])}  # indices of the shipped file, not hard-coded
    code, out, err = invoke("demo", "--runs-dir", tmp_path / "runs", "--set", "split.max_test=10",
                          "--set", f"arms.{at['retrieval']}.retriever=bm25", "--set", "evaluation.robustness.max_examples=5",
                          "--set", "evaluation.latency_probe=3",
                          # a two-candidate search on a few validation articles
                          "--set", f"arms.{at['prompt-search']}.candidates=2",
                          "--set", f"arms.{at['prompt-search']}.val_examples=8",
                          "--set", f"arms.{at['prompt-search']}.retriever=bm25",
                          # the fine-tuned arms train a few steps only: the pipeline, not the quality, is tested here
                          "--set", f"arms.{at['lora']}.max_train_examples=16",
                          "--set", f"arms.{at['lora']}.training.max_steps=2",
                          "--set", f"arms.{at['minilm-head']}.max_train_examples=20",
                          "--set", f"arms.{at['minilm-head']}.head.epochs=1",
                          "--set", f"arms.{at['distilled']}.max_train_examples=20",
                          "--set", f"arms.{at['distilled']}.head.epochs=1")
    text = " ".join(out.split())
    assert code == 0, out + err
    assert "valid examples=2,225" in text and "duplicate_example" in text and "no errors" in text
    assert "sports" in text and "Token lengths" in text
    for arm in ("zero-shot@default", "zero-shot@terse", "few-shot", "retrieval", "prompt-search", "classical",
                "vote", "lora", "minilm-head", "distilled"):
        assert arm in text
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_examples"] == 10 and metrics["failures"] == {}
    assert metrics["arms"]["classical"]["accuracy"] >= 0.8
    assert sum(json.loads((run / "splits" / "split.json").read_text())["counts"].values()) == 2225
    robustness = json.loads((run / "robustness.json").read_text())
    assert set(robustness) == set(metrics["arms"]) and "Robustness" in text
    assert all(cell["n"] == 5 for per_arm in robustness.values() for cell in per_arm.values())
