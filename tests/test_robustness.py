"""Perturbations of test inputs, and the robustness stage of `tunewise run`.

The typo rate is measured independently of the code that makes typos: the edit distance (with
transpositions) of each word to its original, summed over the text, per letter.
"""

from __future__ import annotations

import json
import random
import string

import pytest
import yaml
from rich.console import Console

from tunewise.cli.experiment_view import render_result
from tunewise.config import ConfigError, load_experiment
from tunewise.evaluate.robustness import Perturbation, perturb, strip_punctuation, truncate, typos
from tunewise.pipeline.experiment import run_experiment
from tunewise.schema import Example, Message

TEXT = ("The quick brown fox jumps over the lazy dog while the bank raises interest rates again, "
        "and the football club signs a new striker before the transfer window closes. ") * 30


def example(i: int, text: str = TEXT) -> Example:
    return Example(id=f"ex{i}", line=i, messages=(Message("system", "Classify, Carefully."), Message("user", text),
                                                   Message("assistant", "Business")))


def osa_distance(a: str, b: str) -> int:
    """Levenshtein distance where swapping two adjacent letters counts as one edit."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


@pytest.mark.parametrize("rate", [0.02, 0.1, 0.3])
def test_typos_edit_letters_at_the_stated_rate(rate):
    noisy = typos(TEXT, rate, random.Random(7))
    words, noisy_words = TEXT.split(), noisy.split()
    assert len(words) == len(noisy_words)  # typos never touch word boundaries
    edits = sum(osa_distance(a, b) for a, b in zip(words, noisy_words))
    letters = sum(c.isalpha() for c in TEXT)
    # a swap uses two letters for one edit, so the edit share sits a little under the rate
    assert rate * 0.8 <= edits / letters <= rate * 1.15, edits / letters


def test_perturbations_are_deterministic_per_seed_and_id_and_touch_only_user_turns():
    examples = [example(i, TEXT[: 200 + i]) for i in range(5)]
    damage = Perturbation("typos", rate=0.1)
    once, again = perturb(examples, damage, seed=3), perturb(list(reversed(examples)), damage, seed=3)
    assert once == list(reversed(again))  # independent of order and of the other examples
    assert perturb(examples, damage, seed=4) != once
    for clean, noisy in zip(examples, once):
        assert noisy.id == clean.id and noisy.metadata == {"perturbation": "typos-0.1"}
        assert noisy.messages[0] == clean.messages[0] and noisy.output == clean.output  # system and answer kept
        assert noisy.input != clean.input


def test_case_whitespace_punctuation_and_truncation():
    clean = example(0, "Hello, World! Rates rose 2% today.")
    assert Perturbation("case", mode="upper").apply(clean, 0).input == "HELLO, WORLD! RATES ROSE 2% TODAY."
    assert Perturbation("case", mode="lower").apply(clean, 0).input == "hello, world! rates rose 2% today."
    mixed = Perturbation("case", mode="random").apply(example(1, TEXT), 0).input
    assert mixed.lower() == TEXT.lower() and mixed not in (TEXT, TEXT.lower(), TEXT.upper())
    spaced = Perturbation("whitespace", rate=0.5).apply(example(2, TEXT), 0).input
    assert spaced.split() == TEXT.split() and spaced != TEXT and ("\n" in spaced and "  " in spaced)
    assert Perturbation("whitespace", rate=0.0).apply(clean, 0).input == clean.input
    assert strip_punctuation("Hello, World! “Rates” rose 2% — today.") == "Hello World Rates rose 2  today"
    assert not set(string.punctuation) & set(Perturbation("punctuation").apply(example(3, TEXT), 0).input)
    assert truncate("one two three four five six seven eight nine ten", 0.3) == "one two three"
    assert truncate("single", 0.1) == "single"
    assert Perturbation("truncate", keep=0.25).name == "truncate-0.25"
    with pytest.raises(ValueError, match="keep"):
        Perturbation("truncate", keep=0)


TOPICS = {"goal": "sports", "shares": "business", "software": "tech", "film": "arts"}


def write_experiment(tmp_path, tiny_model_dir, robustness: dict) -> object:
    rows = [{"text": f"story {i} about the {word} of the day, told at length", "label": label}
            for i in range(12) for word, label in TOPICS.items()]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "name": "robust", "data": {"path": "data.jsonl"}, "task": {"type": "classify"},
        "split": {"seed": 2, "max_test": 8}, "runs_dir": str(tmp_path / "runs"),
        "arms": [{"name": "tfidf", "type": "classical", "settings": {"model": "logreg", "cv": 2}},
                 {"name": "zs", "type": "zero_shot", "model": str(tiny_model_dir), "precision": "fp32",
                  "batch_size": 8},
                 {"name": "vote", "type": "ensemble", "members": ["tfidf", "zs"]}],
        "evaluation": {"robustness": robustness},
    }
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(config))
    return load_experiment(tmp_path / "e.yaml")


def test_run_writes_robustness_json_for_every_arm_and_perturbation(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    experiment = write_experiment(tmp_path, tiny_model_dir, {"max_examples": 4, "perturbations": [
        {"kind": "truncate", "keep": 0.2}, {"kind": "case", "mode": "upper", "name": "shout"}]})
    first = run_experiment(experiment, log=lambda m: None)
    assert first.failures == {}
    saved = json.loads((first.run.path / "robustness.json").read_text())
    assert saved == first.robustness
    assert set(saved) == {"tfidf", "zs", "vote"}
    for arm, per_arm in saved.items():
        assert set(per_arm) == {"truncate-0.2", "shout"}
        for cell in per_arm.values():
            assert set(cell) == {"score", "clean_score", "drop", "n"} and cell["n"] == 4
            assert cell["drop"] == pytest.approx(cell["clean_score"] - cell["score"])
            assert 0 <= cell["score"] <= 1 and 0 <= cell["clean_score"] <= 1
        assert (first.run.path / "predictions" / f"{arm}~shout.jsonl").is_file()
    # the topic word sits in the 5th word: keeping the first 20% of 11 words loses it, so TF-IDF can only guess
    assert saved["tfidf"]["truncate-0.2"]["clean_score"] == 1.0
    assert saved["tfidf"]["truncate-0.2"]["drop"] > 0
    shouted = [json.loads(line) for line in (first.run.path / "predictions" / "zs~shout.jsonl").open()]
    assert all(p["input"] == p["input"].upper() for p in shouted)
    console = Console(record=True, width=120)
    render_result(first, console)
    table = console.export_text()
    assert "Robustness: accuracy on 4 perturbed" in table and "shout" in table and "truncate-0.2" in table
    # a second run: the perturbed prompts are answered from the cache, and the figures are identical
    second = run_experiment(experiment, log=lambda m: None)
    assert second.cache_misses == 0 and second.robustness == first.robustness


def test_robustness_is_off_by_default_and_names_must_be_unique(tmp_path, tiny_model_dir):
    experiment = write_experiment(tmp_path, tiny_model_dir, {})
    assert experiment.evaluation.robustness.perturbations == []
    with pytest.raises(ConfigError, match="repeated"):
        write_experiment(tmp_path, tiny_model_dir, {"perturbations": [{"kind": "typos"}, {"kind": "typos"}]})
