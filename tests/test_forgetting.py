"""The forgetting probe: perplexity on shipped general English plus rule-checked instruction following,
before and after a change to the weights, on a tiny random Llama (and a LoRA adapter of it)."""

from __future__ import annotations

import json

import pytest

from tunewise.evaluate.forgetting import (
    ProbeError,
    ProbeResult,
    general_text,
    instruction_items,
    passes,
    probe,
    retention,
)


def test_shipped_probe_data_is_there_and_valid():
    paragraphs = general_text()
    assert 30 <= len(paragraphs) <= 50 and all(20 <= len(p.split()) <= 80 for p in paragraphs)
    items = instruction_items()
    assert len(items) >= 20 and {c["check"] for item in items for c in item["checks"]} >= {
        "one_word", "uppercase", "items", "number", "include"}


@pytest.mark.parametrize("reply,check,expected", [
    ("Blue.", {"check": "one_word"}, True),
    ("It is blue", {"check": "one_word"}, False),
    ("HELLO TEAM!", {"check": "uppercase"}, True),
    ("Hello TEAM", {"check": "uppercase"}, False),
    ("123", {"check": "uppercase"}, False),
    ("paris", {"check": "lowercase"}, True),
    ("- apple\n- pear\n- plum", {"check": "items", "value": 3}, True),
    ("1. apple\n2. pear", {"check": "items", "value": 3}, False),
    (" 42 ", {"check": "number", "value": 42}, True),
    ("42 days", {"check": "number"}, False),
    ("7", {"check": "number", "value": 8}, False),
    ("The sea is full of salt.", {"check": "include", "value": "salt"}, True),
    ("The sea is salty.", {"check": "include", "value": "salt"}, False),
    ("Sunny and warm", {"check": "exclude", "value": "rain"}, True),
    ("A small furry pet.", {"check": "max_words", "value": 5}, True),
    ("A small furry pet that purrs.", {"check": "max_words", "value": 5}, False),
    ("Certainly! A violin.", {"check": "starts_with", "value": "certainly"}, True),
    ("Yes.", {"check": "yes_no"}, True),
    ("Yes, it is.", {"check": "yes_no"}, False),
    ('Here: {"name": "Ana", "age": 30}', {"check": "json_object"}, True),
    ("name: Ana", {"check": "json_object"}, False),
])
def test_rules(reply, check, expected):
    assert passes(reply, check) is expected


def test_model_against_itself_retains_everything(tiny_model_dir):
    before = probe(tiny_model_dir, max_items=4, precision="fp32", max_new_tokens=8)
    from tunewise.models.local import LocalLM

    again = probe(LocalLM(tiny_model_dir, precision="fp32"), max_items=4, max_new_tokens=8)  # as the lead holds it
    assert again.details["model"].startswith("LocalLM")
    assert [i["reply"] for i in again.details["items"]] == [i["reply"] for i in before.details["items"]]
    assert before.details["paragraphs"] == 4 and before.details["instructions"] == 4 and before.details["tokens"] > 100
    assert before.perplexity > 1 and 0 <= before.instruction_score <= 1
    assert again.perplexity == pytest.approx(before.perplexity, rel=1e-6)
    kept = retention(before, again)
    assert kept["retention"] == pytest.approx(1.0) and kept["alarm"] is False and kept["reasons"] == []
    json.dumps(kept)  # reportable as is


def test_perturbed_weights_lose_retention_and_raise_the_alarm(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    before = probe(model, max_items=4, tokenizer=tokenizer, max_new_tokens=8)
    with torch.no_grad():
        torch.manual_seed(1)
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
        model.model.norm.weight.mul_(4.0)  # sharper, wrong logits: plain English becomes far less likely
    after = probe(model, max_items=4, tokenizer=tokenizer, max_new_tokens=8)
    kept = retention(before, after)
    assert after.perplexity > before.perplexity
    assert kept["perplexity_ratio"] < 0.9 and kept["alarm"] is True and "perplexity" in kept["reasons"][0]


def test_instruction_loss_alone_raises_the_alarm():
    before = ProbeResult(10.0, 0.8)
    kept = retention(before, ProbeResult(9.5, 0.4))
    assert kept["instruction_ratio"] == pytest.approx(0.5) and kept["retention"] == pytest.approx(0.5)
    assert kept["alarm"] and "instruction" in kept["reasons"][0]
    assert retention(ProbeResult(10.0, 0.0), ProbeResult(10.0, 0.0))["instruction_ratio"] is None


def test_lora_adapter_folder_loads_on_its_base(tiny_model_dir, tmp_path):
    """A freshly initialised LoRA adapter (B = 0) changes nothing: same perplexity as the base model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    adapted = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    adapted.save_pretrained(tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
    plain = probe(tiny_model_dir, max_items=3, precision="fp32", max_new_tokens=4)
    with_adapter = probe(tmp_path / "adapter", max_items=3, precision="fp32", max_new_tokens=4)
    assert "adapter" in with_adapter.details["model"]
    assert with_adapter.perplexity == pytest.approx(plain.perplexity, rel=1e-5)


def test_a_folder_that_is_no_model_is_refused(tmp_path):
    with pytest.raises(ProbeError, match="neither a model folder"):
        probe(tmp_path)
