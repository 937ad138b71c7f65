"""Each task's prompt, parser and scorer."""

from __future__ import annotations

import json

import pytest

from tunewise.schema import Example, Message
from tunewise.tasks import make_task
from tunewise.tasks.classify import ClassifyTask
from tunewise.tasks.extract import ExtractTask, first_json_object
from tunewise.tasks.generate import GenerateTask
from tunewise.tasks.prompting import shorten


def ex(text: str, out: str, i: int = 0) -> Example:
    return Example(id=f"e{i}", messages=(Message("user", text), Message("assistant", out)), line=i + 1)


TASK = ClassifyTask(labels=["business", "sports", "tech"])


def test_classify_prompt_lists_labels_and_puts_exemplars_as_turns():
    messages = TASK.messages(ex("Shares rose", "business"), [ex("Goal!", "sports", 1)])
    assert messages[0]["role"] == "system" and "business, sports, tech" in messages[0]["content"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == "sports" and messages[3]["content"] == "Shares rose"


@pytest.mark.parametrize("raw,label", [
    ("tech", "tech"), (" Sports.", "sports"), ("I think this is about business news", "business"),
    ("Reasoning: markets... tech firms\nAnswer: business", "business"), ("no idea", ""),
    ("SPORTS", "sports"), ("technology", ""),
])
def test_classify_parse(raw, label):
    assert TASK.parse(raw) == label


def test_classify_variants_differ_and_unknown_is_clear():
    assert TASK.system("terse") != TASK.system("default") != TASK.system("cot")
    with pytest.raises(ValueError, match="unknown prompt variant"):
        TASK.system("poetic")


def test_inputs_are_shortened_in_prompts():
    long = " ".join(f"w{i}" for i in range(500))
    content = ClassifyTask(labels=["a"], max_input_words=10).messages(ex(long, "a"))[-1]["content"]
    assert content.endswith("…") and len(content.split()) == 11
    assert shorten("a b", 10) == "a b"


@pytest.mark.parametrize("task_type", ["classify", "extract", "generate"])
def test_exemplars_can_be_cut_shorter_than_the_query(task_type):
    from tunewise.settings import TaskConfig

    long = " ".join(f"w{i}" for i in range(500))
    config = TaskConfig(type=task_type, max_input_words=40, exemplar_words=8)
    task = make_task(config, [ex(long, "a")])
    messages = task.messages(ex(long, "a"), [ex(long, "a", 1)])
    assert len(messages[1]["content"].split()) == 9 and len(messages[-1]["content"].split()) == 41
    default = make_task(TaskConfig(type=task_type, max_input_words=40), [ex(long, "a")])
    assert len(default.messages(ex(long, "a"), [ex(long, "a", 1)])[1]["content"].split()) == 41


def test_extract_parses_json_in_prose_and_scores_by_value():
    task = ExtractTask(schema={"type": "object"})
    assert first_json_object('Sure! ```json\n{"total": 12, "currency": "EUR"}\n```') == {"total": 12, "currency": "EUR"}
    parsed = task.parse('answer: {"b": 2, "a": 1}')
    assert json.loads(parsed) == {"a": 1, "b": 2}
    assert task.score(parsed, '{"a": 1, "b": 2}') == 1.0
    assert task.score("", '{"a": 1}') == 0.0
    assert "JSON schema" in task.messages(ex("x", "{}"))[0]["content"]


def test_generate_scores_normalised_exact_match():
    task = GenerateTask()
    assert task.score("Paris.", "paris") == 1.0 and task.score("Lyon", "Paris") == 0.0


def test_make_task_takes_labels_from_training_data():
    from tunewise.settings import TaskConfig

    task = make_task(TaskConfig(type="classify"), [ex("a", "tech"), ex("b", "arts", 1)])
    assert task.labels == ["arts", "tech"]
