"""The single-request probe: a warm-up call is not counted, a slow tail shows in p95, a failing probe never fails
its arm, a recorded probe is not redone, and without a probe the latency figures say they are a batch split."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tunewise.arms.latency_probe import measure, probe_path, run_probe
from tunewise.evaluate.cost import latency_profile
from tunewise.schema import Example, Message, Prediction


def _examples(n: int) -> list[Example]:
    return [Example(id=f"e{i}", messages=(Message("user", f"text {i}"), Message("assistant", "a")), line=i + 1)
            for i in range(n)]


def test_the_warm_up_is_not_timed_and_a_slow_tail_shows_in_p95() -> None:
    calls: list[str] = []

    def one(example: Example) -> None:
        calls.append(example.id)
        time.sleep(0.2 if len(calls) == 1 else 0.05 if example.id in ("e8", "e9") else 0.001)  # warm-up is slow

    record = measure(one, _examples(10))
    assert calls == ["e0"] + [f"e{i}" for i in range(10)] and record["requests"] == 10
    assert record["p50_s"] < 0.02 and record["p95_s"] > 0.03 and record["max_s"] < 0.15
    assert record["batch_size"] == 1 and record["cpus"] and record["load_before"] >= 0


def test_a_failing_probe_is_logged_and_a_recorded_one_is_kept(tmp_path: Path) -> None:
    said: list[str] = []

    def broken(example: Example) -> None:
        raise ConnectionError("endpoint went away")

    assert run_probe(tmp_path, "remote", broken, _examples(3), 3, said.append) is None
    assert not probe_path(tmp_path, "remote").exists() and "latency probe failed (ConnectionError" in said[0]
    assert run_probe(tmp_path, "fast", lambda e: None, _examples(3), 0, said.append) is None  # off
    first = run_probe(tmp_path, "fast", lambda e: None, _examples(3), 3, said.append)
    assert first is not None and json.loads(probe_path(tmp_path, "fast").read_text())["requests"] == 3
    assert run_probe(tmp_path, "fast", lambda e: None, _examples(3), 3, said.append) is None  # already there


def test_without_a_probe_the_figures_are_the_batch_split_and_say_so() -> None:
    predictions = [Prediction(id=str(i), arm="a", input="x", reference="a", prediction="a", raw="a", latency_s=0.25)
                   for i in range(8)]
    batch = latency_profile(predictions)
    assert batch["source"] == "batch" and batch["latency_p50_s"] == batch["latency_p95_s"] == 0.25
    assert batch["compute_s_per_1k"] == pytest.approx(250.0)
    probed = latency_profile(predictions, {"requests": 5, "p50_s": 0.4, "p95_s": 0.9, "load_before": 1.5, "cpus": 2})
    assert (probed["source"], probed["latency_p50_s"], probed["latency_p95_s"]) == ("probe", 0.4, 0.9)
    assert probed["batched_p50_s"] == 0.25 and probed["compute_s_per_1k"] == pytest.approx(250.0)


def test_a_time_budget_stops_a_slow_probe_after_the_minimum() -> None:
    record = measure(lambda e: time.sleep(0.02), _examples(30), budget_s=0.01)
    assert record["requests"] == 5  # the budget was spent by the first request; five are always timed
    assert measure(lambda e: None, _examples(30), budget_s=10)["requests"] == 30
