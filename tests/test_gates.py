"""Gates (evaluation.gates): an arm over a limit is out of the verdict with the figure, the limit and the field
("lora is out: p95 latency 1.9 s is above the gate evaluation.gates.max_p95_latency_s = 0.5 s"), never
worded as a failure; an unknown figure fails its gate with that reason; gates that cannot apply are refused
when the experiment is loaded."""

from __future__ import annotations

import json

import pytest
from evidence_cases import ROBUSTNESS, classify_run, examples, experiment

from tunewise.config import ConfigError, load_experiment
from tunewise.evaluate.evidence import build_results
from tunewise.evaluate.gates import check_gates
from tunewise.evaluate.verdict import Candidate, decide
from tunewise.report import write_report
from tunewise.schema import Prediction
from tunewise.tasks import make_task


def arm(p95: float = 0.1, cost: float | None = 0.01, retention: float | None = None, drops: dict | None = None,
        json_valid: float | None = None, source: str = "probe") -> dict:
    """One arm's results.json figures, only those the gates read."""
    return {"latency": {"latency_p95_s": p95, "source": source}, "cost": {"amortised_per_1k_usd": cost},
            "training": {"forgetting": {"retention": retention}} if retention is not None else None,
            "robustness": {k: {"drop": v} for k, v in (drops or {}).items()},
            "metrics": {"json_valid": {"value": json_valid}} if json_valid is not None else {},
            "summary": {"n": 100}}


def test_each_gate_names_the_figure_the_limit_and_the_field():
    limits = {"min_retention": 0.9, "max_robustness_drop": 0.05, "max_invalid_rate": 0.02, "max_p95_latency_s": 0.5,
              "max_cost_per_1k_usd": 0.5}
    arms = {"ok": arm(retention=0.95, drops={"typos": 0.01}, json_valid=1.0),
            "lora": arm(p95=1.9, retention=0.82, drops={"typos": 0.12, "case": 0.02}, json_valid=0.92, cost=2.0)}
    gates = check_gates(limits, arms)
    assert gates["arms"]["ok"]["passed"] and "ok" not in gates["out"]
    why = gates["out"]["lora"]
    assert "p95 latency 1.9 s (single-request probe) is above the gate evaluation.gates.max_p95_latency_s = 0.5 s" in why
    assert "retention 82.0% (forgetting probe) is below the gate evaluation.gates.min_retention = 90%" in why
    assert "robustness drop 0.12 (on typos) is above the gate evaluation.gates.max_robustness_drop = 0.05" in why
    assert "invalid-output rate 8.0% (8 of 100 answers are not a JSON object) is above" in why
    assert "cost per 1,000 requests $2.00 (training amortised) is above the gate evaluation.gates." \
           "max_cost_per_1k_usd = $0.50" in why
    assert [c["gate"] for c in gates["arms"]["lora"]["checks"]] == list(limits)


def test_unknown_figures_fail_their_gate_and_unprobed_arms_pass_retention():
    gates = check_gates({"max_cost_per_1k_usd": 1.0, "min_retention": 0.9, "max_robustness_drop": 0.1},
                        {"remote": arm(cost=None, drops={"typos": 0.0}), "zs": arm(drops={})})
    assert gates["out"]["remote"] == ("its cost per 1,000 requests is unknown (no price given), so the gate "
                                      "evaluation.gates.max_cost_per_1k_usd = $1.00 cannot be checked")
    assert "no robustness figures" in gates["out"]["zs"]
    retention = gates["arms"]["remote"]["checks"][0]
    assert retention["gate"] == "min_retention" and retention["passed"] and retention["value"] is None
    assert check_gates({"max_p95_latency_s": None}, {"zs": arm()}) is None  # nothing set: nothing checked


def test_a_gated_arm_is_out_of_the_verdict_and_not_called_failed():
    arms = [Candidate("zs", "zero_shot", 0.80, n=100, cost_per_1k_usd=0.01, latency_p50_s=0.05),
            Candidate("lora", "finetune", 0.95, n=100, cost_per_1k_usd=0.02, latency_p50_s=1.0, needs_training=True,
                      gate="p95 latency 1.9 s is above the gate evaluation.gates.max_p95_latency_s = 0.5 s")]
    verdict = decide(arms, [{"a": "zs", "b": "lora", "p_value": 1e-6, "equivalence_p": 0.9}], metric="accuracy",
                     alpha=0.05)
    assert verdict.recommended == "zs" and verdict.best == "zs"
    assert "lora is out: p95 latency 1.9 s is above the gate evaluation.gates.max_p95_latency_s = 0.5 s." \
           in verdict.reasons
    assert verdict.gated == {"lora": arms[1].gate} and "failed" not in " ".join(verdict.reasons)
    assert verdict.headline.startswith("Use zs") and "no fine-tuned arm was run" not in verdict.headline
    assert "The fine-tuned lora is out: p95 latency 1.9 s" in verdict.headline
    nothing = decide(arms[1:], [], metric="accuracy", alpha=0.05)
    assert nothing.recommended is None and nothing.headline.startswith("No verdict: no arm meets the gates")


def test_build_results_applies_the_gates_to_the_verdict_its_confidence_and_the_report(tmp_path):
    exp, task, test, done = classify_run(
        tmp_path, robustness=ROBUSTNESS,
        evaluation={"robustness": {"perturbations": [{"kind": "typos"}]}, "gates": {"max_robustness_drop": 0.1}})
    results = build_results(exp, tmp_path, "r", task, test, done, {})
    gates = results["gates"]
    assert gates["limits"] == {"max_robustness_drop": 0.1}
    assert set(gates["out"]) == {"few", "zs"}  # few drops 0.142; zs has no robustness figures
    assert "robustness drop 0.142 (on typos) is above" in gates["out"]["few"]
    verdict = results["verdict"]
    assert verdict["recommended"] == "clf" and set(verdict["gated"]) == {"few", "zs"}
    assert set(verdict["confidence"]["recommended"]) == {"clf"}
    assert any(r.startswith("few is out: the robustness drop 0.142") for r in verdict["reasons"])
    pages = write_report(tmp_path, results, {"arms": {}, "verdict": verdict["headline"]})
    text = pages["report.md"].read_text()
    assert "evaluation.gates.max_robustness_drop = 0.1" in text and "## Gates" in text


def test_extract_arms_are_gated_on_invalid_json(tmp_path):
    test = examples(20)
    refs = [json.dumps({"n": i}) for i in range(20)]
    answers = {"zs": [r if i % 4 else "" for i, r in enumerate(refs)], "few": list(refs)}
    exp = experiment([{"name": "zs", "type": "zero_shot"}, {"name": "few", "type": "few_shot"}], task="extract",
                     evaluation={"gates": {"max_invalid_rate": 0.1}})
    done = {name: [Prediction(id=e.id, arm=name, input=e.input, reference=refs[i], prediction=a[i], raw=a[i],
                              latency_s=0.1) for i, e in enumerate(test)] for name, a in answers.items()}
    results = build_results(exp, tmp_path, "r", make_task(exp.task, test), test, done, {})
    assert list(results["gates"]["out"]) == ["zs"]
    assert "invalid-output rate 25.0% (5 of 20 answers are not a JSON object)" in results["gates"]["out"]["zs"]


MINIMAL = """name: t
data:
  path: d.jsonl
task:
  type: classify
arms:
  - name: zs
    type: zero_shot
evaluation:
  gates:
"""


@pytest.mark.parametrize("gate, expected", [
    ("max_robustness_drop: 0.05", "evaluation.gates.max_robustness_drop is set but evaluation.robustness has no "
                                  "perturbations"),
    ("max_invalid_rate: 0.1", "evaluation.gates.max_invalid_rate applies to extract tasks"),
    ("max_p95_latency: 0.5", "did you mean `max_p95_latency_s`?"),
])
def test_gates_that_cannot_apply_are_refused_on_load_with_the_field_and_the_fix(tmp_path, gate, expected):
    path = tmp_path / "e.yaml"
    path.write_text(MINIMAL + f"    {gate}\n")
    with pytest.raises(ConfigError) as caught:
        load_experiment(path)
    assert expected in str(caught.value) and ("Fix" in str(caught.value) or "did you mean" in str(caught.value))
    path.write_text(MINIMAL + "    max_p95_latency_s: 0.5\n    max_cost_per_1k_usd: 1\n    min_retention: 0.9\n")
    assert load_experiment(path).evaluation.gates.max_p95_latency_s == 0.5
