"""The report: every figure comes from results.json, the HTML is self-contained and loads in headless Chromium
without console errors, `tunewise report` re-renders a run folder, and `tunewise run` writes it all."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml
from evidence_cases import ROBUSTNESS, TRAINING, classify_run, examples, experiment

from tunewise.evaluate.evidence import build_results, metrics_summary
from tunewise.report import write_report
from tunewise.report.html import num, pvalue, usd
from tunewise.schema import Prediction
from tunewise.tasks import make_task


def chromium() -> str | None:
    """The Chromium binary (`make test` installs Debian's `chromium` when it is missing)."""
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def load_in_chromium(path, tmp_path) -> tuple[str, list[str]]:
    """(the DOM after load, console messages) from headless Chromium."""
    exe = chromium()
    if exe is None:
        pytest.skip("no chromium on PATH: install it (`apt-get install chromium`; `make test` does this itself)")
    env = {**os.environ, "HOME": str(tmp_path)}  # its profile and crash dumps stay in the test's folder
    proc = subprocess.run([exe, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
                           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", path.as_uri()],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture
def rendered(tmp_path):
    exp, task, test, done = classify_run(tmp_path, training=TRAINING, robustness=ROBUSTNESS)
    results = build_results(exp, tmp_path, "run-1", task, test, done, {"remote": "APIConnectionError: <refused>"})
    paths = write_report(tmp_path, results, metrics_summary(results, {}))
    return results, paths


def test_html_shows_the_figures_of_results_json(rendered):
    results, paths = rendered
    page = paths["report.html"].read_text()
    assert json.loads(paths["results.json"].read_text()) == results
    assert html.escape(results["verdict"]["headline"]) in page
    for reason in results["verdict"]["reasons"]:
        assert html.escape(reason) in page
    text = re.sub(r"<svg.*?</svg>", "", page, flags=re.S)  # figures from tables and text, not the plots' ticks
    for name, arm in results["arms"].items():
        row = re.search(rf"<tr[^>]*><td>{re.escape(name)}</td>.*?</tr>", text, flags=re.S).group(0)
        for metric in arm["metrics"].values():
            if metric is arm["metrics"].get("score"):
                continue  # for classification `score` is accuracy again and is not shown twice
            assert f"{num(metric['value'])} <span class=\"ci\">[{num(metric['low'])}, {num(metric['high'])}]" in row
        assert usd(arm["cost"]["amortised_per_1k_usd"]) in row
    for test in results["pairwise"]:
        assert f"<td>{pvalue(test['p_value'])}</td>" in text
    assert results["slices"]["flagged"]["summary"] in text
    assert TRAINING["gap_warning"] in text and "typos" in text
    for item in results["review"]["items"]:
        assert html.escape(item["input"]) in text
    markdown = paths["report.md"].read_text()
    assert results["verdict"]["headline"] in markdown and num(results["arms"]["clf"]["metrics"]["accuracy"]["low"]) in markdown


def test_the_report_shows_the_verdicts_comparisons_with_raw_and_holm_adjusted_p_and_its_confidence(rendered):
    results, paths = rendered
    page, markdown = paths["report.html"].read_text(), paths["report.md"].read_text()
    verdict = results["verdict"]
    assert html.escape(verdict["confidence"]["summary"]) in page and verdict["confidence"]["summary"] in markdown
    table = re.search(r'<table id="comparisons">.*?</table>', page, flags=re.S).group(0)
    for c in verdict["comparisons"]:
        row = re.search(rf"<tr><td>{re.escape(c['arm'])}</td>.*?</tr>", table, flags=re.S).group(0)
        assert f"<td>{pvalue(c['p_value'])}</td><td>{pvalue(c['p_adjusted'])}</td>" in row
        if c["status"] == "inconclusive":
            assert num(c["power"]["detectable_difference"]) in row and f"{c['power']['examples_for_margin']:,}" in row
            assert f"| {pvalue(c['p_value'])} | {pvalue(c['p_adjusted'])} | inconclusive |" in markdown
    assert {c["status"] for c in verdict["comparisons"]} == {"worse", "inconclusive"}
    for t in results["pairwise"]:  # the all-pairs table: raw and Holm-adjusted (the family the verdict used)
        assert t["p_adjusted"] >= t["p_value"]
        assert f"<td>{pvalue(t['p_value'])}</td>\n<td>{pvalue(t['p_adjusted'])}</td>" in page
    assert "indistinguishable" not in page


def test_html_is_self_contained_with_text_in_its_figures(rendered):
    _, paths = rendered
    page = paths["report.html"].read_text()
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page) and "url(http" not in page
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) == 7  # metric, cost/quality, latency, confusion, learning curve, loss, robustness
    assert all("<text" in svg for svg in svgs)  # svg.fonttype none: labels are text, not paths
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # figures share one page: no clashing ids
    assert "&lt;b&gt;about&lt;/b&gt;" in page and "&lt;refused&gt;" in page  # user text is escaped


@pytest.mark.browser
def test_report_loads_in_headless_chromium_without_console_errors(rendered, tmp_path):
    results, paths = rendered
    dom, console = load_in_chromium(paths["report.html"], tmp_path)
    assert console == []
    assert html.escape(results["verdict"]["headline"]) in dom and 'id="recommended"' in dom
    # the console check itself can fail: a page with a script error is caught
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><script>missingFunction();</script></body></html>")
    assert any("missingFunction" in line for line in load_in_chromium(broken, tmp_path)[1])


@pytest.mark.parametrize("task", ["extract", "generate"])
def test_text_tasks_report_their_own_metrics(tmp_path, task):
    test = examples(30)
    refs = [json.dumps({"n": i}) if task == "extract" else f"reply number {i} is here" for i in range(30)]
    answers = {"zs": [r if i % 3 else "" for i, r in enumerate(refs)], "few": [r for r in refs]}
    exp = experiment([{"name": "zs", "type": "zero_shot"}, {"name": "few", "type": "few_shot"}], task=task)
    done = {arm: [Prediction(id=e.id, arm=arm, input=e.input, reference=refs[i], prediction=a[i], raw=a[i],
                             latency_s=0.1) for i, e in enumerate(test)] for arm, a in answers.items()}
    results = build_results(exp, tmp_path, "r", make_task(exp.task, test), test, done, {})
    expected = {"extract": {"json_valid", "field_f1", "exact_match"}, "generate": {"bleu", "chrf", "rouge_l"}}[task]
    assert expected <= set(results["arms"]["few"]["metrics"])
    assert results["pairwise"][0]["test"] == "paired bootstrap" and results["review"]["size"] == 10
    page = write_report(tmp_path, results, metrics_summary(results, {}))["report.html"].read_text()
    assert all(f"<th>{m}</th>" in page for m in expected)


def test_tunewise_run_writes_the_evidence_and_tunewise_report_rerenders_it(tmp_path, monkeypatch, tiny_model_dir):
    from test_cli import invoke

    from tunewise.config import load_experiment
    from tunewise.pipeline.experiment import run_experiment

    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    topics = {"goal": "sports", "shares": "business", "software": "tech"}
    rows = [{"text": f"story {i} about the {w} today", "label": lab, "source": "wire" if i % 2 else "blog"}
            for i in range(30) for w, lab in topics.items()]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {"name": "tiny", "data": {"path": "data.jsonl"}, "task": {"type": "classify"},
              "runs_dir": str(tmp_path / "runs"), "split": {"seed": 3, "max_test": 18},
              "evaluation": {"slice_by": ["source"], "bootstrap_resamples": 200},
              "arms": [{"name": "zs", "type": "zero_shot", "model": str(tiny_model_dir), "precision": "fp32"},
                       {"name": "tfidf", "type": "classical", "settings": {"model": "logreg", "cv": 2}}]}
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(config))
    result = run_experiment(load_experiment(tmp_path / "e.yaml"), log=lambda m: None)
    run = result.run.path
    results = json.loads((run / "results.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["arms"]) == {"zs", "tfidf"} and "macro_f1" in metrics["arms"]["tfidf"]
    assert metrics["arms"]["tfidf"]["accuracy"] == results["arms"]["tfidf"]["metrics"]["accuracy"]["value"]
    assert result.verdict == results["verdict"] and results["baseline"] == "zs"
    assert set(results["slices"]["fields"]["source"]) == {"wire", "blog"}
    page = (run / "report.html").read_text()
    assert html.escape(results["verdict"]["headline"]) in page and (run / "report.md").is_file()

    # `tunewise report` rebuilds the same evidence from the folder alone, and picks up a later record
    (run / "report.html").unlink()
    (run / "robustness.json").write_text(json.dumps({"tfidf": {"typos": {"score": 0.5, "drop": 0.2}}}))
    code, out, err = invoke("report", run)
    assert code == 0, out + err
    again = json.loads((run / "results.json").read_text())
    assert again["robustness"] == {"tfidf": {"typos": {"score": 0.5, "drop": 0.2}}}
    for key in ("verdict", "pairwise", "roi", "review", "slices", "test_examples"):
        assert again[key] == results[key], key
    assert all(again["arms"][a]["metrics"] == results["arms"][a]["metrics"] for a in results["arms"])
    assert "Robustness" in (run / "report.html").read_text()
    assert results["verdict"]["headline"].split(":")[0] in " ".join(out.split())
    code, _, err = invoke("report", tmp_path / "nope")
    assert code == 2 and "run folder" in " ".join(err.split())
