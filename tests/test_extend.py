"""`tunewise run --resume RUN --extend`: alpha spending keeps false "significant" results at or below alpha
over repeated looks (simulated), and an extension scores more of the frozen test split for the arms still in
contention only, updates results.json and the report, and changes nothing when there is nothing to score."""

from __future__ import annotations

import json

import numpy as np
import oracle_arm
import pytest
import yaml
from typer.testing import CliRunner

from tunewise.arms import registry
from tunewise.cli.app import app
from tunewise.config import load_experiment
from tunewise.evaluate.sequential import look_levels, spent
from tunewise.evaluate.stats import mcnemar_p
from tunewise.pipeline.experiment import run_experiment
from tunewise.pipeline.extend import plan_extension

ALPHA = 0.05


def test_each_look_spends_a_share_and_all_looks_together_spend_alpha():
    levels = look_levels(ALPHA, [100, 200, 400, 800], 800)
    assert sum(levels) == pytest.approx(ALPHA) and all(level > 0 for level in levels)
    assert levels[0] < 1e-4 < levels[-1]  # O'Brien-Fleming: almost nothing early, nearly all at the end
    assert spent(ALPHA, 0.5) < spent(ALPHA, 0.75) < ALPHA == spent(ALPHA, 1.0)
    assert sum(look_levels(ALPHA, [100, 200], 800)) < ALPHA  # stopping early leaves alpha unspent


def test_extending_with_alpha_spending_keeps_false_significant_results_at_most_alpha():
    """Two arms equally good (80%); McNemar at each of 4 looks of a growing test set. Testing at alpha every
    time finds a false difference far more often than alpha; the spent levels keep it at or below alpha."""
    rng = np.random.default_rng(16)
    sims, sizes = 4000, [100, 200, 400, 800]
    a = rng.random((sims, sizes[-1])) < 0.8
    b = rng.random((sims, sizes[-1])) < 0.8
    levels = look_levels(ALPHA, sizes, sizes[-1])
    spending = np.zeros(sims, dtype=bool)
    naive = np.zeros(sims, dtype=bool)
    for n, level in zip(sizes, levels):
        p = mcnemar_p((a[:, :n] & ~b[:, :n]).sum(axis=1), (b[:, :n] & ~a[:, :n]).sum(axis=1))
        spending |= p < level
        naive |= p < ALPHA
    assert spending.mean() <= ALPHA
    assert naive.mean() > 1.5 * ALPHA  # what the spending prevents: every look at alpha inflates the error


@pytest.fixture
def oracle():
    registry.register(oracle_arm)
    oracle_arm.ANSWERED.clear()
    yield oracle_arm
    registry.unregister("oracle")


def write_experiment(tmp_path, budget: dict) -> object:
    labels = ["business", "sports", "tech"]
    rows = [{"text": f"story {i} about item {i % 7}", "label": labels[i % 3]} for i in range(600)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {"name": "extend", "data": {"path": "data.jsonl"}, "task": {"type": "classify"},
              "split": {"seed": 3, "test_fraction": 0.4, "val_fraction": 0.05, "max_test": 60},
              "evaluation": {"latency_probe": 0, "budget": budget}, "runs_dir": str(tmp_path / "runs"),
              "arms": [{"name": "weak", "type": "oracle", "accuracy": 0.02, "seconds": 0.001},
                       {"name": "a", "type": "oracle", "accuracy": 0.80, "seconds": 0.002},
                       {"name": "b", "type": "oracle", "accuracy": 0.83, "seconds": 0.001}]}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "exp.yaml"


def test_extend_scores_more_examples_for_the_arms_in_contention_and_updates_the_evidence(tmp_path, monkeypatch,
                                                                                          oracle):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    path = write_experiment(tmp_path, {"examples": 60})
    experiment = load_experiment(path)
    run = run_experiment(experiment, log=lambda m: None).run.path
    first = json.loads((run / "results.json").read_text())
    statuses = {c["arm"]: c["status"] for c in first["verdict"]["comparisons"]}
    assert first["test_examples"] == 60 and statuses == {"weak": "worse", "b": "inconclusive"}
    oracle.ANSWERED.clear()

    plan = plan_extension(experiment, run)
    assert plan.look == 2 and "60 more test examples (120 of 240)" in plan.message
    run_experiment(experiment, resume=run, log=lambda m: None)
    assert "weak" not in oracle.ANSWERED  # settled at look 1: far below the best even at look 1's tiny level
    assert len(oracle.ANSWERED["a"]) == len(oracle.ANSWERED["b"]) == 60
    results = json.loads((run / "results.json").read_text())
    looks = results["extension"]["looks"]
    assert results["test_examples"] == 120 and [look["test_examples"] for look in looks] == [60, 120]
    assert results["alpha"] == pytest.approx(looks[-1]["alpha"]) and looks[-1]["settled"] == ["weak"]
    assert sum(look["alpha"] for look in looks) == pytest.approx(spent(ALPHA, 0.5))
    assert "significantly worse than a at look 1" in results["verdict"]["excluded"]["weak"]
    assert results["arms"]["weak"]["summary"]["n"] == 60 and results["arms"]["a"]["summary"]["n"] == 120
    assert "Look 2 of an extended run" in " ".join(results["notes"])
    report = (run / "report.md").read_text()
    assert "120 test examples" in report and "## Looks (an extended run)" in report and "| 2 | 120 |" in report

    # a plain resume and `tunewise report` keep the extension
    run_experiment(experiment, resume=run, log=lambda m: None)
    assert json.loads((run / "results.json").read_text())["test_examples"] == 120

    # extending until the split is used up, then once more: nothing changes
    runner = CliRunner()
    outputs = [runner.invoke(app, ["run", str(path), "--resume", str(run), "--extend", "--set",
                                   "evaluation.budget.examples=500"]).output for _ in range(3)]
    assert "Look 3: 120 more test examples (240 of 240)" in outputs[0] and "--extend (within evaluation.budget" \
        in " ".join(outputs[0].split())
    final = json.loads((run / "results.json").read_text())
    assert final["test_examples"] == 240 and len(final["extension"]["looks"]) == 3
    assert sum(look["alpha"] for look in final["extension"]["looks"]) == pytest.approx(ALPHA)  # the split is used up
    before = {name: (run / name).read_bytes() for name in ("results.json", "report.md", "extend.json")}
    again = runner.invoke(app, ["run", str(path), "--resume", str(run), "--extend"])
    assert again.exit_code == 0 and "Nothing to extend: all 240 examples" in again.output
    assert {name: (run / name).read_bytes() for name in before} == before


def results_with(comparisons: list[dict], excluded: dict | None = None) -> dict:
    arms = {"best": {"latency": {"compute_s_per_1k": 1000.0}}}
    arms |= {c["arm"]: {"latency": {"compute_s_per_1k": 2000.0}} for c in comparisons}
    return {"test_examples": 100, "arms": arms,
            "verdict": {"comparisons": comparisons, "excluded": excluded or {}}}


def comparison(arm: str, p: float, equivalence_p: float = 0.5, delta: float = -0.05) -> dict:
    return {"arm": arm, "best": "best", "delta": delta, "p_adjusted": p, "equivalence_p": equivalence_p}


def test_contention_reads_a_look_at_its_own_level():
    from tunewise.evaluate.sequential import contention

    results = results_with([comparison("worse", 1e-9), comparison("close", 0.3), comparison("same", 0.9, 1e-6)])
    contenders, settled, resolved = contention(results, 1e-5, look=1)
    assert contenders == ["best", "close", "same"] and list(settled) == ["worse"] and not resolved
    assert "at look 1 (100 test examples, Holm-adjusted p=1e-09 below the look's level 1e-05)" in settled["worse"]
    # at alpha the same p-value of 0.003 is significant; at an early look's spent level it is not
    assert contention(results_with([comparison("x", 0.003)]), 0.05, 1)[2]
    assert not contention(results_with([comparison("x", 0.003)]), 1e-4, 1)[2]


def test_the_minutes_budget_caps_the_batch_at_the_contenders_measured_speed():
    from tunewise.pipeline.extend import _batch

    experiment = load_experiment_from({"budget": {"minutes": 1}})
    results = results_with([comparison("close", 0.3)])
    # 1 s + 2 s per example for the two arms: 60 s buy 20 examples, though 100 are evaluated and 500 left
    assert _batch(experiment, 100, 500, results, ["best", "close"]) == 20
    assert _batch(load_experiment_from({}), 100, 500, results, ["best", "close"]) == 100
    assert _batch(load_experiment_from({"budget": {"examples": 30}}), 100, 10, results, ["best"]) == 10


def load_experiment_from(evaluation: dict):
    from tunewise.config import Experiment

    return Experiment.model_validate({"name": "t", "data": {"path": "d.jsonl"}, "task": {"type": "classify"},
                                      "arms": [{"name": "zs", "type": "zero_shot"}], "evaluation": evaluation})
