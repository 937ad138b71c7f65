"""Errors a newcomer makes with their own data (issue 18, item 8), each answered in their terms: the message
names the field or column and says the fix."""

from __future__ import annotations

import json
from pathlib import Path

import owndata_files as files
import pytest
from test_cli import invoke

from tunewise.arms.multitask import chat_examples
from tunewise.arms.prompted import LabelScoring, _prediction
from tunewise.config import ConfigError, load_experiment
from tunewise.data.formats import read_examples
from tunewise.schema import Example, Message
from tunewise.settings import TaskConfig
from tunewise.tasks import make_task


def experiment(folder: Path, data: str, extra: str = "", arms: str = "  - {name: c, type: classical}\n") -> Path:
    path = folder / "experiment.yaml"
    path.write_text(f"name: t\ndata:\n  path: {data}\n{extra}task: {{type: classify}}\narms:\n{arms}")
    return path


def test_a_mapping_to_a_missing_column_names_it_and_lists_the_columns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files.tweets_csv(tmp_path)
    path = experiment(tmp_path, "tweets.csv", "  mapping: {input: txt, output: sentiment}\n")
    code, _, err = invoke("run", path)
    assert code == 2
    assert "data.mapping.input: input='txt': 'txt' is not a column of tweets.csv" in err
    assert "its columns are 'sentiment', 'confidence', 'text'" in err and "line(s) with errors" not in err
    code, out, _ = invoke("check", tmp_path / "tweets.csv", "--map", "input=txt", "--map", "output=sentiment", "--json")
    (problem,) = json.loads(out)["issues"]
    assert code == 2 and problem["code"] == "unknown_column" and problem["field"] == "input"
    assert "'txt' is not a column" in problem["message"] and "--map input=COLUMN" in problem["hint"]


@pytest.mark.parametrize("content", ["", "text,label\n"])
def test_an_empty_csv_says_it_is_empty_in_csv_words(tmp_path, monkeypatch, content):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.csv").write_text(content)
    code, out, _ = invoke("check", tmp_path / "empty.csv")
    assert code == 2 and "is empty" in out and "JSON" not in out and "row" in out
    code, _, err = invoke("run", experiment(tmp_path, "empty.csv"))
    assert code == 2 and "empty.csv: data.path: " in err and "is empty" in err
    assert "0 line(s) with errors" not in err and "JSON" not in err


def test_mistyped_arm_type_and_field_get_a_did_you_mean(tmp_path):
    path = experiment(tmp_path, "d.csv", arms="  - {name: z, type: zeroshot}\n  - {name: c, type: classical, "
                                             "setings: {}}\n")
    with pytest.raises(ConfigError) as caught:
        load_experiment(path)
    text = str(caught.value)
    assert "arms.0: Input tag 'zeroshot'" in text and "did you mean `zero_shot`?" in text
    assert "arms.1.setings: Extra inputs are not permitted; did you mean `settings`?" in text


def test_a_set_typo_names_the_command_line_override_not_a_yaml_line(tmp_path):
    path = experiment(tmp_path, "d.csv")
    with pytest.raises(ConfigError) as caught:
        load_experiment(path, ["split.sed=3"])
    text = str(caught.value)
    assert "--set split.sed=3: split.sed: Extra inputs are not permitted (got 3); did you mean `seed`?" in text
    assert f"{path}:" not in text.splitlines()[1]


def test_coded_labels_get_names_prompts_use_them_and_predictions_map_back():
    config = TaskConfig.model_validate({"type": "classify", "labels": {0: "negative", 1: "positive"}})
    assert config.labels == {"0": "negative", "1": "positive"}
    task = make_task(config, [])
    example = Example("a", (Message("user", "great film"), Message("assistant", "1")), line=2)
    prompt = task.messages(example, [example])
    assert "Categories: negative, positive." in prompt[0]["content"] and prompt[2]["content"] == "positive"
    assert task.parse("Positive.") == "1" and task.parse("0") == "0"
    assert chat_examples([example], task, "default", None)[0].messages[-1].content == "positive"

    class FakeLM:
        def score_options(self, prompts, options, batch_size, progress):
            assert options == ["negative", "positive"]
            return [[-3.0, -0.5] for _ in prompts]

        def render(self, prompt):
            return [0] * 7

    scoring = LabelScoring(lambda: FakeLM(), "fake", "fp32", task.options, codes=task.labels)
    (answer,) = scoring.answer([prompt], lambda n: None)
    assert answer["raw"] == "positive" and set(answer["scores"]) == {"0", "1"}

    class Ctx:
        pass

    ctx = Ctx()
    ctx.task = task
    assert _prediction("zs", example, answer, ctx, False).prediction == "1"


def test_label_names_must_be_distinct():
    with pytest.raises(ValueError, match="label names must be distinct"):
        TaskConfig.model_validate({"type": "classify", "labels": {"0": "bad", "1": "bad"}})


def test_classical_features_is_the_documented_way_to_use_metadata_columns(tmp_path):
    from tunewise.train.classical import ClassicalError, train_classical
    from tunewise.train.settings import ClassicalConfig

    examples = read_examples(files.drug_tsv(tmp_path)).examples
    model = train_classical(examples, ClassicalConfig(model="logreg", features=["drugName", "usefulCount"]))
    assert model.config.categorical_features == ["drugName"] and model.config.numeric_features == ["usefulCount"]
    with pytest.raises(ClassicalError) as caught:
        train_classical(examples, ClassicalConfig(model="logreg", features=["drug"]))
    assert "'drug'" in str(caught.value) and "'drugName'" in str(caught.value) and "features" in str(caught.value)


def test_a_refused_mapped_csv_suggests_the_check_command_with_its_mapping(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = files.tweets_rows(40)
    rows[3] = ("positive", "0.4", "")
    files.write_csv(tmp_path / "t.csv", ["sentiment", "confidence", "text"], rows)
    path = experiment(tmp_path, "t.csv", "  mapping: {input: text, output: sentiment}\n")
    code, _, err = invoke("run", path)
    assert code == 2 and "1 line(s) with errors (first: [5])" in err
    assert f"tunewise check {tmp_path / 't.csv'} --map input=text --map output=sentiment" in err


@pytest.mark.parametrize("labels", [{"negative": "0", "positive": "1"}, {"1": "positive"}])
def test_a_reversed_or_partial_label_mapping_is_refused_naming_the_codes(labels):
    from tunewise.pipeline.inputs import ExperimentError, check_label_names

    train = [Example(id=str(i), messages=(Message("user", f"text {i}"), Message("assistant", str(i % 2))), line=i + 1)
             for i in range(6)]
    check_label_names({"0": "negative", "1": "positive"}, train)  # every code named: fine
    with pytest.raises(ExperimentError, match=r"task\.labels: .*(codes without a name|not labels of the data)") as err:
        check_label_names(labels, train)
    assert "['0', '1']" in str(err.value) and "Fix:" in str(err.value)
