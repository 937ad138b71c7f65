"""The optimized-prompt arm on a 2-layer random Llama: the search never scores a test example, records its
trajectory and winner, is not repeated on resume, serves the winner exactly as evaluated, takes proposals from an
OpenAI-compatible endpoint, and refuses an unknown answer format by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from openai_loopback import MODEL, ServerStats, serve

from tunewise.arms import prompt_search, prompted
from tunewise.config import ConfigError, load_experiment
from tunewise.pipeline.experiment import run_experiment
from tunewise.store.predictions import PredictionStore

TOPICS = {"goal": "sports", "shares": "business", "software": "tech", "film": "arts"}


def _config(tmp_path: Path, tiny_model_dir: Path, **search) -> Path:
    rows = [{"text": f"note {i}: the {word} again", "label": label} for i in range(30) for word, label in TOPICS.items()]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    arm = {"name": "search", "type": "prompt_search", "model": str(tiny_model_dir), "precision": "fp32",
           "retriever": "bm25", "shots": [0, 2], "instructions": ["Pick the topic of the note."],
           "candidates": 6, "val_examples": 12, "eta": 2, **search}
    config = {"name": "tiny-search", "data": {"path": "data.jsonl"}, "task": {"type": "classify"},
              "split": {"seed": 3, "max_test": 12}, "runs_dir": str(tmp_path / "runs"), "threads": 2,
              "evaluation": {"latency_probe": 0}, "arms": [arm]}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_search_never_scores_a_test_example_and_records_its_trajectory(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    seen: list[list[str]] = []  # every user turn of every prompt the model answered, in order
    phase = {"test": False, "search_prompts": 0}
    answer, run_prompted = prompted.LabelScoring.answer, prompted.run_prompted

    def spy_answer(self, prompts, advance):
        if not phase["test"]:
            seen.extend([m["content"] for m in p if m["role"] == "user"] for p in prompts)
        return answer(self, prompts, advance)

    def spy_run(name, ctx, prompts, backend, chunk=64):
        phase["test"], phase["test_inputs"] = True, [e.input for e in ctx.test]
        return run_prompted(name, ctx, prompts, backend, chunk)

    monkeypatch.setattr(prompted.LabelScoring, "answer", spy_answer)
    monkeypatch.setattr(prompt_search, "run_prompted", spy_run, raising=False)
    monkeypatch.setattr(prompted, "run_prompted", spy_run)
    result = run_experiment(load_experiment(_config(tmp_path, tiny_model_dir)), log=lambda m: None)
    assert result.failures == {} and phase["test"] and seen
    test_inputs = set(phase["test_inputs"])
    assert not any(turn in test_inputs for prompt in seen for turn in prompt)  # neither as query nor as exemplar
    record = json.loads((result.run.path / "training" / "search.json").read_text())
    assert record["method"] == "prompt_search" and record["val_source"] == "validation split"
    assert record["candidates"] == len(record["trajectory"]) == 6 and record["seconds"] > 0
    first = record["trajectory"][0]
    assert first["candidate"]["instruction"] is None and first["candidate"]["k"] == 0  # the task's own prompt
    rounds = [len(row["rounds"]) for row in record["trajectory"]]
    assert max(rounds) > min(rounds)  # halving dropped some candidates early
    assert {r["examples"] for row in record["trajectory"] for r in row["rounds"]} <= {8, 12}
    winner = json.loads((result.run.path / "models" / "search" / "prompt.json").read_text())
    assert winner == record["winner"]
    assert len(PredictionStore(result.run.path / "predictions" / "search.jsonl").done) == 12
    results = json.loads((result.run.path / "results.json").read_text())
    assert results["arms"]["search"]["needs_training"]  # the search's seconds are its training cost
    assert results["arms"]["search"]["cost"]["training"]["seconds"] == pytest.approx(record["seconds"])
    report = (result.run.path / "report.html").read_text()
    assert "prompt search over 6 candidates" in report and "Search trajectory (6 candidates)" in report

    def no_search(*args, **kwargs):
        raise AssertionError("searched again")

    monkeypatch.setattr(prompt_search, "_search_and_record", no_search)
    again = run_experiment(load_experiment(_config(tmp_path, tiny_model_dir)), resume=result.run.path,
                           log=lambda m: None)
    assert again.failures == {} and again.metrics["search"]["accuracy"] == result.metrics["search"]["accuracy"]


class _Run:
    """What an arm's serve() reads from a run folder, with `prompted` returning the prompt function itself."""

    def __init__(self, run_dir: Path, task, train, seed: int) -> None:
        self.run_dir, self.task, self.train, self.seed = run_dir, task, train, seed

    @staticmethod
    def request(text: str):
        from tunewise.serve.models import request_example

        return request_example(text)

    def prompted(self, arm, prompt):
        return prompt


def test_the_served_prompt_is_the_evaluated_one(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    rendered: dict[str, list] = {}
    answer = prompted.LabelScoring.answer

    def keep(self, prompts, advance):
        for p in prompts:
            rendered[p[-1]["content"]] = p
        return answer(self, prompts, advance)

    monkeypatch.setattr(prompted.LabelScoring, "answer", keep)
    config = load_experiment(_config(tmp_path, tiny_model_dir, shots=[2], exemplars=["retrieval"], formats=["terse"]))
    result = run_experiment(config, log=lambda m: None)
    from tunewise.data.formats import read_examples
    from tunewise.tasks import make_task

    train = read_examples(result.run.path / "splits" / "train.jsonl").examples
    test = read_examples(result.run.path / "splits" / "test.jsonl").examples
    served = prompt_search.serve(config.arms[0], _Run(result.run.path, make_task(config.task, train), train, 3))
    text = next(e.input for e in test if e.input in rendered)
    assert served(text) == rendered[text]


def test_proposals_come_from_an_endpoint_with_the_errors_shown(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    stats = ServerStats()
    with serve(lambda messages: "Name the topic of the note: sports, business, tech or arts.", stats=stats) as url:
        proposer = {"base_url": url, "model": MODEL, "api_key_env": None, "n": 2}
        result = run_experiment(load_experiment(_config(tmp_path, tiny_model_dir, proposer=proposer, candidates=40)),
                                log=lambda m: None)
    assert result.failures == {} and stats.requests == 2
    asked = stats.bodies[0]["messages"][-1]["content"]
    assert "Current instruction:" in asked and "Examples of inputs and correct answers:" in asked
    record = json.loads((result.run.path / "training" / "search.json").read_text())
    assert record["proposals"] == ["Name the topic of the note: sports, business, tech or arts."]
    assert any(row["candidate"]["instruction"] == record["proposals"][0] for row in record["trajectory"])


def test_an_unknown_format_is_refused_by_name(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match=r"arm 'search': formats: unknown prompt variant 'fancy'.*Fix"):
        load_experiment(_config(tmp_path, tiny_model_dir, formats=["default", "fancy"]))


@pytest.mark.parametrize(("kind", "metric"), [("generate", "rouge_l"), ("generate", "chrf"), ("generate", "bleu"),
                                              ("extract", "field_f1")])
def test_candidates_are_ranked_by_the_primary_metric_as_the_evidence_computes_it(kind, metric):
    from tunewise.arms.prompt_search import candidate_metric
    from tunewise.evaluate.metrics import families, point_values
    from tunewise.schema import Prediction
    from tunewise.settings import TaskConfig
    from tunewise.tasks import make_task

    if kind == "generate":
        references = ["Bank raises rates again", "Champions win the cup final", "New phone sells out fast"]
        predicted = ["Bank raises its rates", "Cup final won by champions", "Phone sold out"]
    else:
        references = ['{"city": "Paris", "year": 2004}', '{"city": "Rome", "year": 1999}', '{"city": "Oslo"}']
        raw = ['{"city": "Paris", "year": 2005}', 'It is {"year": 1999, "city": "Rome"}', 'no JSON here']
    task = make_task(TaskConfig(type=kind), [])
    if kind == "extract":
        predicted = [task.parse(answer) for answer in raw]  # canonical JSON, or "" without any, as arms record
    rows = [Prediction(id=str(i), arm="a", input="", prediction=p, reference=r, raw=p, latency_s=0.0)
            for i, (p, r) in enumerate(zip(predicted, references))]
    expected = point_values(families(rows, task))[metric]
    assert candidate_metric(task, metric, predicted, references) == pytest.approx(expected)
    assert 0 < expected < 1  # the fixture discriminates: neither all right nor all wrong
