"""Fine-tuned arms in `tunewise run`, on a 2-layer random Llama: LoRA and classifier heads train on the frozen
split, beat the untrained model, export safetensors (merged equals unmerged), and are never retrained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tunewise.config import ConfigError, load_experiment
from tunewise.pipeline.experiment import run_experiment

TOPICS = {"goal": "sports", "shares": "business", "software": "tech", "film": "arts"}


def _rows() -> list[dict[str, str]]:
    return [{"text": f"note {i}: the {word} again", "label": label}
            for i in range(48) for word, label in TOPICS.items()]


@pytest.fixture
def experiment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows()))

    def make(arms: list[dict]) -> Path:
        config = {"name": "tiny-ft", "data": {"path": "data.jsonl"}, "task": {"type": "classify"},
                  "split": {"seed": 3, "max_test": 24}, "runs_dir": str(tmp_path / "runs"), "threads": 2,
                  "arms": [{"name": "zs", "type": "zero_shot", "model": str(tiny_model_dir), "precision": "fp32",
                            "prompt": "terse"}, *arms]}
        path = tmp_path / "exp.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    return make


def test_lora_and_full_arms_train_export_and_are_not_retrained(experiment, tiny_model_dir):
    common = {"type": "finetune", "model": str(tiny_model_dir), "precision": "fp32", "prompt": "terse"}
    training = {"epochs": 4, "batch_size": 16, "precision": "fp32", "max_length": 64}
    lora = {"name": "lora", "method": "lora", **common, "training": {**training, "learning_rate": 0.02, "lora_r": 8}}
    full = {"name": "full", "method": "full", **common, "training": {**training, "learning_rate": 0.005}}
    config = load_experiment(experiment([lora, full]))
    first = run_experiment(config, log=lambda m: None)
    assert first.failures == {}
    # a random 2-layer model learns the keyword -> label rule only with every weight free; LoRA's loss falls
    assert first.metrics["full"]["accuracy"] >= first.metrics["zs"]["accuracy"] + 0.3, first.metrics
    run_dir = first.run.path
    adapter = run_dir / "adapters" / "lora"
    assert (adapter / "adapter_model.safetensors").is_file() and not list(adapter.rglob("*.bin"))
    assert json.loads((adapter / "tunewise-arm.json").read_text())["prompt_variant"] == "terse"
    record = json.loads((run_dir / "training" / "lora.json").read_text())
    assert record["method"] == "lora" and record["seconds"] > 0 and record["history"]
    assert {"step", "epoch", "train_loss", "val_loss"} <= set(record["history"][0])
    losses = [p["train_loss"] for p in record["history"] if p["train_loss"] is not None]
    assert losses[-1] < losses[0] * 0.8, losses
    assert (run_dir / "adapters" / "full" / "model.safetensors").is_file()

    # resuming the finished run retrains nothing and answers from the cache
    again = run_experiment(config, resume=run_dir, log=lambda m: None)
    assert again.cache_misses == 0
    assert {k: m["accuracy"] for k, m in again.metrics.items()} == {k: m["accuracy"] for k, m in first.metrics.items()}

    # the merged model (what vLLM or plain transformers load) computes what base + adapter computes
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[1, 17, 42, 99, 7]])
    unmerged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter).eval()
    merged = AutoModelForCausalLM.from_pretrained(adapter / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, unmerged(ids).logits, atol=1e-4, rtol=1e-4)


def test_classifier_head_arm_on_a_decoder(experiment, tiny_model_dir):
    head = {"name": "head", "type": "finetune", "method": "classifier", "model": str(tiny_model_dir),
            "head": {"epochs": 4, "batch_size": 16, "learning_rate": 0.01, "precision": "fp32", "max_length": 32}}
    result = run_experiment(load_experiment(experiment([head])), log=lambda m: None)
    assert result.failures == {}
    assert result.metrics["head"]["accuracy"] >= 0.6, result.metrics
    record = json.loads((result.run.path / "training" / "head.json").read_text())
    assert record["method"] == "classifier" and record["history"][0]["val_loss"] is not None


@pytest.mark.parametrize("arm, message", [
    ({"method": "lora", "head": {"epochs": 5}}, "`head` configures method classifier"),
    ({"method": "classifier", "training": {"epochs": 3}}, "a classifier arm takes `head`"),
    ({"method": "full", "training": {"method": "lora"}}, "contradicts method"),
    ({"method": "lora", "training": {"lora_r": 0}}, "lora_r"),
    ({"method": "lora", "training": {"epochz": 1}}, "epochz"),
])
def test_bad_finetune_settings_name_the_field(experiment, arm, message):
    path = experiment([{"name": "ft", "type": "finetune", **arm}])
    with pytest.raises(ConfigError, match=message):
        load_experiment(path)


def _lora(tiny_model_dir, **extra) -> dict:
    return {"name": "lora", "type": "finetune", "method": "lora", "model": str(tiny_model_dir), "precision": "fp32",
            "prompt": "terse", "training": {"epochs": 2, "batch_size": 16, "precision": "fp32", "max_length": 64,
                                            "learning_rate": 0.02, "lora_r": 4}, **extra}


def test_search_picks_the_best_trial_and_the_learning_curve_scores_each_share(experiment, tiny_model_dir):
    arm = _lora(tiny_model_dir, search={"trials": 2, "epochs": [1], "lora_r": [4, 8], "learning_rate": [0.001, 0.05],
                                        "prune": False}, learning_curve=[0.5])
    result = run_experiment(load_experiment(experiment([arm])), log=lambda m: None)
    assert result.failures == {}
    record = json.loads((result.run.path / "training" / "lora.json").read_text())
    trials = record["search"]["trials"]
    assert len(trials) == 2 and all(t["state"] == "complete" for t in trials)
    assert record["search"]["best_value"] == min(t["value"] for t in trials)
    exported = json.loads((result.run.path / "adapters" / "lora" / "tunewise-arm.json").read_text())
    assert exported["settings"]["lora_r"] == record["search"]["best_params"]["lora_r"]  # the winner is what shipped
    curve = record["learning_curve"]
    assert [p["fraction"] for p in curve] == [0.5, 1.0]
    assert curve[0]["train_examples"] < curve[1]["train_examples"]
    assert curve[1]["value"] == result.metrics["lora"]["accuracy"]
    assert (result.run.path / "predictions" / "lora~lc50.jsonl").is_file()


def test_init_from_continues_training_an_earlier_adapter(experiment, tiny_model_dir, tmp_path):
    first = run_experiment(load_experiment(experiment([_lora(tiny_model_dir)])), log=lambda m: None)
    adapter = first.run.path / "adapters" / "lora"
    continued = run_experiment(load_experiment(experiment([_lora(tiny_model_dir, init_from=str(adapter))])),
                               log=lambda m: None)
    assert continued.failures == {}

    def first_loss(result) -> float:
        history = json.loads((result.run.path / "training" / "lora.json").read_text())["history"]
        return next(p["train_loss"] for p in history if p["train_loss"] is not None)

    # training picks up where the earlier adapter left off, not from fresh (zero-effect) adapters
    assert first_loss(continued) < first_loss(first) * 0.8


def test_progressive_stages_train_in_order_and_each_is_scored(experiment, tiny_model_dir, tmp_path):
    general = tmp_path / "general.jsonl"
    general.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Say hello number {i}"},
                                                        {"role": "assistant", "content": f"Hello {i}!"}]}) + "\n"
                               for i in range(16)))
    arm = _lora(tiny_model_dir, stages=[{"name": "general", "data": str(general), "format": "chat", "epochs": 1},
                                        {"name": "company"}])
    result = run_experiment(load_experiment(experiment([arm])), log=lambda m: None)
    assert result.failures == {}
    run_dir = result.run.path
    record = json.loads((run_dir / "training" / "lora.json").read_text())
    assert [s["stage"] for s in record["stages"]] == ["general", "company"]
    assert record["stages"][0]["examples"] == 16 and record["stages"][0]["format"] == "chat"
    assert record["seconds"] == pytest.approx(sum(s["seconds"] for s in record["stages"]))
    for name in ("lora~stage-general", "lora~stage-company", "lora"):
        assert (run_dir / "predictions" / f"{name}.jsonl").is_file()
    # the arm is the last stage's model, and that stage started from the first stage's adapter
    assert record["stages"][1]["value"] == result.metrics["lora"]["accuracy"]
    assert json.loads((run_dir / "adapters" / "lora" / "tunewise-arm.json").read_text())["arm"] == "lora"


def test_a_saved_manifest_config_validates_again(experiment, tiny_model_dir):
    """`--resume` and `tunewise serve` re-validate the resolved config a run folder holds."""
    from tunewise.config import Experiment

    head = {"name": "head", "type": "finetune", "method": "classifier", "model": str(tiny_model_dir)}
    config = load_experiment(experiment([_lora(tiny_model_dir, learning_curve=[0.5]), head]))
    dumped = config.model_dump(mode="json")
    assert Experiment.model_validate(dumped).model_dump(mode="json") == dumped


def test_augmentation_marks_copies_synthetic_and_is_deterministic():
    from tunewise.schema import Example, Message
    from tunewise.train.augment import augment
    from tunewise.train.settings import AugmentConfig

    originals = [Example(id=f"e{i}", line=i + 1, messages=(Message("system", "Label it."),
                                                             Message("user", f"the quick brown fox number {i} jumps"),
                                                             Message("assistant", "animals"))) for i in range(20)]
    config = AugmentConfig(copies=2, typo_rate=0.3, random_case=True)
    copies = augment(originals, config, seed=5)
    assert len(copies) == 40 and all(c.synthetic for c in copies)
    assert {c.id for c in copies} == {f"e{i}~aug{k}" for i in range(20) for k in range(2)}
    assert sum(c.input != o.input for c, o in zip(copies, originals * 2)) >= 30  # noise really lands
    assert all(c.output == "animals" and c.messages[0].content == "Label it." for c in copies)  # never the answer
    assert copies == augment(originals, config, seed=5)
    assert not any(o.synthetic for o in originals)


def test_augmented_and_replayed_rows_enter_training_only_and_forgetting_is_probed(experiment, tiny_model_dir, tmp_path):
    general = tmp_path / "general.jsonl"
    general.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Count to {i}"},
                                                        {"role": "assistant", "content": " ".join(map(str, range(i)))}]})
                               + "\n" for i in range(2, 62)))
    arm = _lora(tiny_model_dir, augment={"copies": 1, "typo_rate": 0.1, "templates": ["terse", "default"]},
                replay={"data": str(general), "fraction": 0.25}, forgetting_probe=2)
    result = run_experiment(load_experiment(experiment([arm])), log=lambda m: None)
    assert result.failures == {}
    record = json.loads((result.run.path / "training" / "lora.json").read_text())
    n = record["data"]["train_examples"]
    assert record["data"] == {"train_examples": n, "synthetic": n, "replay": round(0.25 * n)}
    assert record["train_examples"] == 2 * n + round(0.25 * n)  # what the trainer saw
    test_ids = {p["id"] for p in map(json.loads, (result.run.path / "predictions" / "lora.jsonl").read_text().splitlines())}
    assert not any("~aug" in i for i in test_ids)
    forgetting = record["forgetting"]
    assert 0 < forgetting["retention"] <= 1 and forgetting["perplexity_before"] > 0
    assert "General capability retained" in (result.run.path / "report.html").read_text()


def test_a_run_that_changes_only_costs_reuses_the_trained_models(experiment, tiny_model_dir, monkeypatch):
    """A new run (not a resume) with other cost settings takes the LoRA adapter and the classifier head from the
    trained-model cache, records where from and the original training seconds; a changed setting retrains."""
    lora = {"name": "lora", "type": "finetune", "method": "lora", "model": str(tiny_model_dir), "precision": "fp32",
            "prompt": "terse", "training": {"epochs": 1, "batch_size": 16, "precision": "fp32", "max_length": 64}}
    head = {"name": "head", "type": "finetune", "method": "classifier", "model": str(tiny_model_dir),
            "head": {"epochs": 1, "batch_size": 16, "precision": "fp32", "max_length": 32}}
    path = experiment([lora, head])
    first = run_experiment(load_experiment(path), log=lambda m: None)
    trained = {n: json.loads((first.run.path / "training" / f"{n}.json").read_text()) for n in ("lora", "head")}

    def no_training(*args, **kwargs):
        raise AssertionError("an identical training ran again")

    import tunewise.train.classifier
    import tunewise.train.sft
    monkeypatch.setattr(tunewise.train.sft, "train_sft", no_training)
    monkeypatch.setattr(tunewise.train.classifier, "train_classifier", no_training)
    said: list[str] = []
    second = run_experiment(load_experiment(path, ["cost.hardware_usd_per_hour=3.5"]), log=said.append)
    assert second.failures == {} and second.run.path != first.run.path
    for name in ("lora", "head"):
        record = json.loads((second.run.path / "training" / f"{name}.json").read_text())
        assert record["reused_from"] and record["seconds"] == trained[name]["seconds"]
        assert any(line.startswith(f"{name}: reused the identical training") for line in said)
        assert second.metrics[name]["accuracy"] == first.metrics[name]["accuracy"]
    assert (second.run.path / "adapters" / "lora" / "adapter_model.safetensors").is_file()
    results = json.loads((second.run.path / "results.json").read_text())
    assert results["arms"]["lora"]["cost"]["training"]["usd"] == pytest.approx(trained["lora"]["seconds"] * 3.5 / 3600)

    third = run_experiment(load_experiment(path, ["arms.1.training.learning_rate=0.001"]), log=lambda m: None)
    assert "an identical training ran again" in third.failures["lora"]  # a changed setting is a miss: it trains
    assert "head" not in third.failures
