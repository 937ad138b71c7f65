"""The run's events file (store/events.py): `tunewise run` appends what it is doing, one JSON line at a time,
ending in run_completed or run_failed; progress is throttled; readers get complete lines only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tunewise.config import load_experiment
from tunewise.pipeline.experiment import ExperimentError, run_experiment
from tunewise.store.events import EVENTS_FILE, EventLog, read_events

TOPICS = {"goal": "sports", "shares": "business", "software": "tech", "film": "arts"}


@pytest.fixture
def experiment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    rows = [{"text": f"story {i} about the {w} today", "label": lab} for i in range(30) for w, lab in TOPICS.items()]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def make(arms: list[dict], **task: object) -> Path:
        config = {"name": "events", "data": {"path": "data.jsonl"}, "task": {"type": "classify", **task},
                  "split": {"seed": 1, "max_test": 20}, "runs_dir": str(tmp_path / "runs"),
                  "evaluation": {"latency_probe": 0}, "arms": arms}
        path = tmp_path / "exp.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    return make


CLASSICAL = {"name": "tfidf", "type": "classical", "settings": {"model": "logreg", "cv": 2}}


def _events(run_dir: Path) -> list[dict]:
    lines = (run_dir / EVENTS_FILE).read_text().splitlines()
    return [json.loads(line) for line in lines]  # every line is a whole JSON object


def test_a_tiny_run_writes_events_ending_in_run_completed(experiment):
    result = run_experiment(load_experiment(experiment([CLASSICAL])), log=lambda m: None)
    events = _events(result.run.path)
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "run_started" and events[0]["arms"] == ["tfidf"] and events[0]["run_id"] == result.run.id
    assert kinds[-1] == "run_completed" and events[-1]["status"] == "completed"
    assert kinds.index("arm_started") < kinds.index("progress") < kinds.index("arm_finished")
    finished = next(e for e in events if e["kind"] == "arm_finished")
    assert finished == finished | {"arm": "tfidf", "status": "completed"}
    answering = [e for e in events if e["kind"] == "progress" and e["stage"] == "tfidf"]
    assert answering[-1]["done"] == answering[-1]["total"] == 20 and answering[-1]["arm"] == "tfidf"
    times = [e["time"] for e in events]
    assert times == sorted(times)


def test_a_failing_arm_and_a_failing_run_end_in_run_failed(experiment, tmp_path):
    (tmp_path / "not-a-model").mkdir()
    down = {"name": "down", "type": "zero_shot", "model": str(tmp_path / "not-a-model"), "precision": "fp32"}
    result = run_experiment(load_experiment(experiment([CLASSICAL, down])), log=lambda m: None)
    events = _events(result.run.path)
    assert events[-1]["kind"] == "run_failed" and "arm down failed" in events[-1]["error"]
    failed = [e for e in events if e["kind"] == "arm_finished" and e["arm"] == "down"]
    assert failed[0]["status"] == "failed" and failed[0]["error"]

    # labels the data does not have: the run folder exists, then the run stops with an error
    with pytest.raises(ExperimentError):
        run_experiment(load_experiment(experiment([CLASSICAL], labels={"alpha": "a", "beta": "b"})), log=lambda m: None)
    runs = sorted((result.run.path.parent).iterdir(), key=lambda p: p.stat().st_mtime)
    last = _events([p for p in runs if p.is_dir() and p != result.run.path][-1])
    assert last[-1]["kind"] == "run_failed" and last[-1]["status"] == "failed" and "alpha" in last[-1]["error"]


def test_progress_is_throttled_per_stage_and_keeps_first_and_last(tmp_path):
    now = [100.0]
    log = EventLog(tmp_path / EVENTS_FILE, clock=lambda: now[0], interval=0.5)
    from tunewise.arms.context import no_progress

    with log.arm_running("a"), log.progress(no_progress)("a", 10) as advance:
        for _ in range(10):
            now[0] += 0.2  # ten steps over two seconds: at most one event every 0.5 s
            advance(1)
    progress = [e for e in read_events(tmp_path / EVENTS_FILE).events if e["kind"] == "progress"]
    assert progress[0]["done"] == 0 and progress[-1]["done"] == 10
    assert 4 <= len(progress) <= 6, progress
    assert all(e["arm"] == "a" for e in progress)


def test_readers_get_complete_lines_and_line_numbers_for_bad_ones(tmp_path):
    path = tmp_path / EVENTS_FILE
    path.write_text('{"time": 1, "kind": "run_started"}\nnot json\n{"time": 2, "kind": "arm_')
    first = read_events(path)
    assert [e["kind"] for e in first.events] == ["run_started"]
    assert first.problems == [f"{path}:2: not an event (a JSON object with a 'kind'); line skipped"]
    with path.open("a") as handle:  # the writer finishes its line
        handle.write('started", "arm": "x"}\n')
    second = read_events(path, first.offset)
    assert [e["kind"] for e in second.events] == ["arm_started"] and second.problems == []
    with path.open("a") as handle:
        handle.write('oops\n{"time": 3, "kind": "run_completed"}\n')
    third = read_events(path, second.offset)
    assert [e["kind"] for e in third.events] == ["run_completed"]
    assert third.problems == [f"{path}:4: not an event (a JSON object with a 'kind'); line skipped"]
    assert read_events(tmp_path / "missing.jsonl").events == []


def test_a_training_arm_reports_its_losses(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    rows = [{"text": f"note {i}: the {w} again", "label": lab} for i in range(24) for w, lab in TOPICS.items()]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lora = {"name": "lora", "type": "finetune", "method": "lora", "model": str(tiny_model_dir), "precision": "fp32",
            "prompt": "terse", "training": {"epochs": 1, "batch_size": 16, "precision": "fp32", "max_length": 64,
                                            "lora_r": 4}}
    config = {"name": "loss", "data": {"path": "data.jsonl"}, "task": {"type": "classify"},
              "split": {"seed": 3, "max_test": 8}, "runs_dir": str(tmp_path / "runs"), "threads": 2,
              "evaluation": {"latency_probe": 0}, "arms": [lora]}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    result = run_experiment(load_experiment(tmp_path / "exp.yaml"), log=lambda m: None)
    losses = [e for e in _events(result.run.path) if e["kind"] == "train_loss"]
    assert losses and all(e["arm"] == "lora" and e["loss"] > 0 for e in losses)
    assert [e["step"] for e in losses] == sorted(e["step"] for e in losses)
