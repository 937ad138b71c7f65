"""Multi-task fine-tuning on a 2-layer random Llama: one model learns the experiment's task and two more (a
classification and a generation task, each with its own data file and prefix); each extra task gets its own
frozen split and is scored on its own test examples; the prefixes are in the trained tokens; a resumed run
redoes nothing; bad task settings are refused naming the field and the fix."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from tunewise.config import ConfigError, Experiment, load_experiment
from tunewise.pipeline.experiment import run_experiment

TOPICS = {"goal": "sports", "shares": "business", "software": "tech", "film": "arts"}
MOODS = {"lovely": "positive", "awful": "negative"}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def experiment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    _write(tmp_path / "topics.jsonl", [{"text": f"note {i}: the {w} again", "label": label}
                                       for i in range(12) for w, label in TOPICS.items()])
    _write(tmp_path / "moods.jsonl", [{"text": f"review {i}: a {w} day", "label": label}
                                      for i in range(24) for w, label in MOODS.items()])
    _write(tmp_path / "echo.jsonl", [{"input": f"say {w}", "output": w} for w in
                                     ("red", "blue", "green", "amber", "teal", "gold", "plum", "rose", "navy", "jade",
                                      "mint", "sand", "rust", "lime", "pink", "gray", "snow", "coal", "wine", "sky")])

    def make(**arm_fields) -> Path:
        arm = {"name": "mt", "type": "finetune", "method": "full", "model": str(tiny_model_dir), "precision": "fp32",
               "prompt": "terse", "prefix": "[topic] ",
               "training": {"epochs": 4, "batch_size": 16, "precision": "fp32", "max_length": 64,
                            "learning_rate": 0.005},
               "tasks": [{"name": "mood", "data": {"path": "moods.jsonl"}, "task": {"type": "classify"},
                          "prefix": "[mood] ", "weight": 1.5},
                         {"name": "echo", "data": {"path": "echo.jsonl"},
                          "task": {"type": "generate", "max_new_tokens": 4}, "prefix": "[echo] ",
                          "max_train_examples": 10}]}
        arm = {k: v for k, v in (arm | arm_fields).items() if v is not None}  # None removes a field
        config = {"name": "multi", "data": {"path": "topics.jsonl"}, "task": {"type": "classify"},
                  "split": {"seed": 3, "max_test": 16}, "runs_dir": str(tmp_path / "runs"), "threads": 2,
                  "arms": [{"name": "zs", "type": "zero_shot", "model": str(tiny_model_dir), "precision": "fp32",
                            "prompt": "terse"}, arm]}
        path = tmp_path / "exp.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    return make


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_one_model_learns_every_task_and_each_is_scored_on_its_own_split(experiment):
    config = load_experiment(experiment())
    first = run_experiment(config, log=lambda m: None)
    assert first.failures == {}
    run_dir = first.run.path
    # the head-to-head is unchanged: the arm's own task in predictions/mt.jsonl, ranked with the others
    assert set(first.metrics) == {"zs", "mt"} and first.metrics["mt"]["n"] == first.metrics["zs"]["n"]
    record = json.loads((run_dir / "training" / "mt.json").read_text())
    rows = {row["name"]: row for row in record["tasks"]}
    assert list(rows) == ["(experiment task)", "mood", "echo"]
    assert rows["(experiment task)"]["value"] == first.metrics["mt"]["accuracy"]
    for name, row in [("mood", rows["mood"]), ("echo", rows["echo"])]:
        split = json.loads((run_dir / "splits" / f"mt~task-{name}" / "split.json").read_text())
        predictions = [json.loads(line) for line in (run_dir / row["predictions"]).read_text().splitlines()]
        test_ids = {json.loads(line)["id"] for line in
                    (run_dir / "splits" / f"mt~task-{name}" / "test.jsonl").read_text().splitlines()}
        assert len(predictions) == row["n"] == split["counts"]["test"] and {p["id"] for p in predictions} == test_ids
        assert row["low"] <= row["value"] <= row["high"]
    mood = [json.loads(line) for line in (run_dir / "predictions" / "mt~task-mood.jsonl").read_text().splitlines()]
    assert rows["mood"]["value"] == sum(p["prediction"] == p["reference"] for p in mood) / len(mood)
    assert rows["mood"]["value"] >= 0.75, rows["mood"]  # the keyword rule, learnt behind its prefix
    # the mix: 1.5 x the mood training split, at most 10 echo examples, and every topic example
    data = record["data"]["tasks"]
    assert data["echo"]["train_examples"] == 10
    mood_rows = data["mood"]["train_examples"] + round(0.5 * data["mood"]["train_examples"])  # each once + half
    assert record["train_examples"] == record["data"]["train_examples"] + mood_rows + 10
    assert record["val_examples"] > 0
    html = (run_dir / "report.html").read_text()
    assert "Multi-task" in html and "[mood]" in html and "mt~task-echo.jsonl" in html
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {Path(f["path"]).name for f in manifest["data_files"]} == {"topics.jsonl", "moods.jsonl", "echo.jsonl"}

    # a resumed run reloads every frozen split, retrains nothing and answers from the cache
    before = {p: _sha(p) for p in (run_dir / "splits").rglob("*.jsonl")}
    weights = _sha(run_dir / "adapters" / "mt" / "model.safetensors")
    again = run_experiment(config, resume=run_dir, log=lambda m: None)
    assert again.cache_misses == 0 and again.failures == {}
    assert {p: _sha(p) for p in (run_dir / "splits").rglob("*.jsonl")} == before
    assert _sha(run_dir / "adapters" / "mt" / "model.safetensors") == weights
    assert json.loads((run_dir / "training" / "mt.json").read_text()) == record


def test_prefixes_are_in_the_trained_tokens_and_outside_the_loss(tiny_model_dir):
    from transformers import AutoTokenizer

    from tunewise.arms.finetune import ExtraTask
    from tunewise.arms.multitask import TaskData, prompt, training_mix
    from tunewise.schema import Example, Message
    from tunewise.tasks import make_task
    from tunewise.train.sft_data import IGNORE_INDEX, tokenize_examples

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = [Example(id=f"r{i}", line=i + 1, messages=(Message("user", f"a {w} day"), Message("assistant", label)))
                for i, (w, label) in enumerate([("lovely", "positive"), ("awful", "negative")] * 3)]
    config = ExtraTask.model_validate({"name": "mood", "data": {"path": "x.jsonl"}, "task": {"type": "classify"},
                                       "prefix": "[mood] ", "weight": 2})
    task = make_task(config.task, examples)
    data = TaskData(config, task, train=examples, val=examples[:2], test=examples, leaks_dropped=0)
    train, val = training_mix([data], seed=0, variant="default")
    assert len(train) == 12 and len(val) == 2 and len({e.id for e in train}) == 12
    marker = tokenizer("[mood] ", add_special_tokens=False)["input_ids"][:-1] or tokenizer("[mood]")["input_ids"]
    items, dropped, _ = tokenize_examples(train, tokenizer, 128)
    assert not dropped
    for item in items:
        ids, labels = list(item.input_ids), list(item.labels)
        starts = [i for i in range(len(ids)) if ids[i:i + len(marker)] == marker]
        assert len(starts) == 1, tokenizer.decode(ids)  # once, in the user turn
        assert all(labels[i] == IGNORE_INDEX for i in range(starts[0], starts[0] + len(marker)))
        assert any(label != IGNORE_INDEX for label in labels)  # the reply is still trained
    # evaluation renders the same prefixed prompt that training put before the reply
    rendered = tokenizer.apply_chat_template(prompt(task, "default", "[mood] ")(examples[0]), tokenize=False)
    assert "[mood] a lovely day" in rendered


def test_a_saved_manifest_with_tasks_validates_again(experiment):
    config = load_experiment(experiment())
    dumped = config.model_dump(mode="json")
    assert dumped["arms"][1]["tasks"][0]["split"]["seed"] == 3  # the experiment's split, spelled out
    assert Experiment.model_validate(dumped).model_dump(mode="json") == dumped


@pytest.mark.parametrize("fields, message", [
    ({"tasks": [{"name": "mood", "data": {"path": "nope.jsonl"}, "task": {"type": "classify"}, "prefix": "[m] "}]},
     r"arms\.1\.tasks\.0\.data\.path: .*nope\.jsonl: no such file\. Fix"),
    ({"tasks": [{"name": "m", "data": {"path": "moods.jsonl"}, "task": {"type": "classify"}, "prefix": "[m] "},
                {"name": "m", "data": {"path": "echo.jsonl"}, "task": {"type": "generate"}, "prefix": "[e] "}]},
     r"repeated name\(s\) \['m'\]"),
    ({"tasks": [{"name": "m", "data": {"path": "moods.jsonl"}, "task": {"type": "classify"}, "prefix": "[topic] "}]},
     r"prefix\(es\) \['\[topic\] '\] used twice"),
    ({"tasks": None}, "prefix marks the experiment's task among several; it needs `tasks`"),
    ({"tasks": [{"name": "m", "data": {"path": "moods.jsonl"}, "task": {"type": "classify"}, "prefix": "  "}]},
     "only whitespace"),
    ({"method": "classifier", "training": None, "tasks": [{"name": "m", "data": {"path": "moods.jsonl"},
                                                           "task": {"type": "classify"}, "prefix": "[m] "}]},
     "tasks, prefix: only lora/full arms take these"),
    ({"learning_curve": [0.5]}, "tasks do not combine with learning_curve"),
    ({"tasks": [{"name": "m", "data": {"path": "moods.jsonl"}, "task": {"type": "classify"}, "prefix": "[m] ",
                 "colour": "red"}]}, r"arms\.1\.tasks\.0\.colour: Extra inputs"),
])
def test_bad_task_settings_name_the_field_and_the_fix(experiment, fields, message):
    path = experiment(**fields)
    with pytest.raises(ConfigError, match=message):
        load_experiment(path)


@pytest.mark.parametrize("task, message", [
    ({"type": "classify"}, "free text, not labels. Fix: set task.type to generate"),
    ({"type": "extract"}, "needs a JSON object as every output"),
])
def test_data_that_does_not_fit_the_task_type_fails_the_arm_clearly(experiment, tmp_path, task, message):
    _write(tmp_path / "free.jsonl", [{"input": f"describe {i}", "output": f"a long answer number {i}"}
                                     for i in range(40)])
    path = experiment(tasks=[{"name": "free", "data": {"path": "free.jsonl"}, "task": task, "prefix": "[f] "}])
    result = run_experiment(load_experiment(path), log=lambda m: None)
    assert "mt" in result.failures and message in result.failures["mt"], result.failures
    assert "task 'free'" in result.failures["mt"]


def test_the_commented_multitask_block_of_the_bbc_example_loads_when_uncommented(tmp_path):
    import shutil

    root = Path(__file__).resolve().parents[1] / "examples"
    lines = (root / "bbc-news.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("# prefix:"))
    block = [line.replace("# ", "", 1) for line in lines[start:start + 7]]
    assert block[0].strip().startswith("prefix:") and block[-1].strip().startswith("weight:")
    (tmp_path / "data").mkdir()
    shutil.copy(root / "data" / "support-urgency.jsonl", tmp_path / "data")
    (tmp_path / "bbc.yaml").write_text("\n".join(lines[:start] + block + lines[start + 7:]) + "\n")
    arm = next(a for a in load_experiment(tmp_path / "bbc.yaml").arms if a.name == "lora")
    assert arm.prefix == "[topic] " and [t.name for t in arm.tasks] == ["urgency"] and arm.tasks[0].weight == 2
