"""Experiment files: every shipped one loads; mistakes are reported with their YAML line and a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunewise.arms.ensemble import EnsembleArm
from tunewise.config import ConfigError, apply_override, load_experiment

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "examples").glob("*.yaml")) + [ROOT / "src/tunewise/templates/experiment.yaml"]

MINIMAL = """name: t
data:
  path: d.jsonl
task:
  type: classify
arms:
  - name: zs
    type: zero_shot
"""


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_config_loads(path):
    experiment = load_experiment(path)
    assert experiment.arms and experiment.name


def test_bbc_example_expands_prompt_variants():
    experiment = load_experiment(ROOT / "examples/bbc-news.yaml")
    names = [a.name for a in experiment.arms]
    assert names[:2] == ["zero-shot@default", "zero-shot@terse"]
    assert [a.prompt for a in experiment.arms[:2]] == ["default", "terse"]
    assert str(experiment.data.path) == "bundled:bbc-news"


def test_relative_data_path_is_relative_to_the_yaml(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "e.yaml"
    path.write_text(MINIMAL)
    assert load_experiment(path).data.path == tmp_path / "sub" / "d.jsonl"


def test_errors_name_the_line_the_field_and_the_value(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(MINIMAL + "  - name: fs\n    type: few_shot\n    k: -1\n    colour: red\n")
    with pytest.raises(ConfigError) as caught:
        load_experiment(path)
    text = str(caught.value)
    assert "2 problem(s)" in text
    assert f"{path}:11: arms.1.k: Input should be greater than or equal to 1 (got -1)" in text
    assert f"{path}:12: arms.1.colour: Extra inputs are not permitted" in text


def test_unknown_arm_type_and_yaml_syntax(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(MINIMAL.replace("zero_shot", "psychic"))
    with pytest.raises(ConfigError, match=r"e.yaml:8: arms.0"):
        load_experiment(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"e.yaml:2:1: not valid YAML"):
        load_experiment(path)


@pytest.mark.parametrize("extra,message", [
    ("  - name: zs\n    type: zero_shot\n", "arm names must be unique; repeated: zs"),
    ("  - name: v\n    type: ensemble\n    members: [zs, nope]\n", "ensemble 'v' names unknown arms ['nope']"),
])
def test_cross_field_checks(tmp_path, extra, message):
    path = tmp_path / "e.yaml"
    path.write_text(MINIMAL + extra)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_experiment(path)


def test_classical_needs_classification(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(MINIMAL.replace("classify", "generate") + "  - name: c\n    type: classical\n")
    with pytest.raises(ConfigError, match="needs task.type classify"):
        load_experiment(path)


def test_split_fractions_must_leave_training_data(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(MINIMAL + "split:\n  val_fraction: 0.5\n  test_fraction: 0.5\n")
    with pytest.raises(ConfigError, match="val_fraction \\+ test_fraction"):
        load_experiment(path)


def test_dotted_overrides(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(MINIMAL + "  - name: fs\n    type: few_shot\n  - name: v\n    type: ensemble\n    members: [zs, fs]\n")
    experiment = load_experiment(path, ["arms.1.k=7", "split.max_test=50", "task.labels=[a, b]"])
    assert experiment.arms[1].k == 7 and experiment.split.max_test == 50 and experiment.task.labels == ["a", "b"]
    assert isinstance(experiment.arms[2], EnsembleArm)


@pytest.mark.parametrize("assignment,message", [
    ("arms.9.k=1", "not an index"), ("novalue", "DOTTED.PATH=VALUE"), ("name.x=1", "is not a mapping"),
])
def test_bad_overrides(assignment, message):
    raw = {"name": "t", "arms": [{"k": 1}]}
    with pytest.raises(ConfigError, match=message):
        apply_override(raw, assignment)


def test_init_writes_the_template_and_it_loads(tmp_path):
    from test_cli import invoke

    target = tmp_path / "exp.yaml"
    assert invoke("init", target)[0] == 0
    assert load_experiment(target).arms
    assert invoke("init", target)[0] == 2
    code, out, _ = invoke("init", "--explain")
    assert code == 0 and "max_input_words" in out


def test_primary_metric_defaults_by_task_and_is_checked(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(MINIMAL)
    assert load_experiment(path).evaluation.primary_metric == "accuracy"
    path.write_text(MINIMAL.replace("classify", "generate"))
    assert load_experiment(path).evaluation.primary_metric == "score"
    path.write_text(MINIMAL.replace("classify", "generate") + "evaluation: {primary_metric: macro_f1}\n")
    with pytest.raises(ConfigError, match="needs task.type classify, and task.type is generate. Fix: use `score`, "
                                          "`rouge_l`, `chrf`, `bleu`"):
        load_experiment(path)
    path.write_text(MINIMAL.replace("classify", "generate") + "evaluation: {primary_metric: rouge_l}\n")
    assert load_experiment(path).evaluation.primary_metric == "rouge_l"
    path.write_text(MINIMAL + "evaluation: {primary_metric: chrf}\n")
    with pytest.raises(ConfigError, match="needs task.type generate, and task.type is classify. Fix: use `score`, "
                                          "`accuracy`, `macro_f1`"):
        load_experiment(path)
    path.write_text(MINIMAL.replace("classify", "extract") + "evaluation: {primary_metric: rouge_l}\n")
    with pytest.raises(ConfigError, match="Fix: use `score`, `field_f1`"):
        load_experiment(path)


def test_cost_per_1k_requests():
    from tunewise.evaluate.cost import cost_per_1k_requests
    from tunewise.schema import Prediction
    from tunewise.settings import RemotePrice

    preds = [Prediction(id=str(i), arm="a", input="", reference="", prediction="", raw="", latency_s=0.36,
                        prompt_tokens=1000, completion_tokens=10) for i in range(4)]
    assert cost_per_1k_requests(preds, hourly_usd=2.0) == pytest.approx(0.2)  # 360 s per 1k at $2/h
    price = RemotePrice(input_per_million=0.15, output_per_million=0.6, as_of="2026-11-01")
    assert cost_per_1k_requests(preds, price=price) == pytest.approx(0.156)


def test_evidence_fields_load_and_a_wrong_baseline_is_named(tmp_path):
    base = ("name: t\ndata: {path: d.jsonl}\ntask: {type: classify}\narms: [{name: zs, type: zero_shot}]\n"
            "cost: {requests_per_day: 5000, horizon_days: 90}\n")
    (tmp_path / "ok.yaml").write_text(base + "evaluation: {alpha: 0.01, bootstrap_resamples: 500, quality_bar: 0.8, "
                                             "baseline_arm: zs, slice_by: [region], review_size: 5}\n")
    experiment = load_experiment(tmp_path / "ok.yaml")
    assert experiment.evaluation.alpha == 0.01 and experiment.evaluation.slice_by == ["region"]
    assert experiment.cost.requests_per_day == 5000 and experiment.cost.horizon_days == 90
    (tmp_path / "bad.yaml").write_text(base + "evaluation: {baseline_arm: zero-shot, quality_bar: 1.5}\n")
    with pytest.raises(ConfigError) as error:
        load_experiment(tmp_path / "bad.yaml")
    assert "evaluation.quality_bar" in str(error.value)
    (tmp_path / "bad.yaml").write_text(base + "evaluation: {baseline_arm: zero-shot}\n")
    with pytest.raises(ConfigError, match="baseline_arm 'zero-shot' is not an arm; known: \\['zs'\\]"):
        load_experiment(tmp_path / "bad.yaml")
