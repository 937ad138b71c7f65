"""Prediction files survive interruption; the answer cache keys on everything that changes an answer."""

from __future__ import annotations

from tunewise.schema import Prediction
from tunewise.store.answer_cache import PredictionCache, cache_key
from tunewise.store.predictions import PredictionStore


def pred(i: int, arm: str = "a") -> Prediction:
    return Prediction(id=f"id{i}", arm=arm, input=f"text {i}", reference="x", prediction="x", raw="x", latency_s=0.1)


def test_store_round_trip_and_resume(tmp_path):
    path = tmp_path / "predictions" / "a.jsonl"
    store = PredictionStore(path)
    store.append([pred(0), pred(1)])
    again = PredictionStore(path)
    assert set(again.done) == {"id0", "id1"}
    assert [p.id for p in again.ordered(["id1", "id9", "id0"])] == ["id1", "id0"]


def test_torn_last_line_is_ignored_and_overwritten(tmp_path):
    path = tmp_path / "a.jsonl"
    PredictionStore(path).append([pred(0), pred(1)])
    with open(path, "ab") as handle:
        handle.write(b'{"id": "id2", "arm": "a", "inp')  # the process died mid-write
    store = PredictionStore(path)
    assert set(store.done) == {"id0", "id1"}
    store.append([pred(2)])
    assert set(PredictionStore(path).done) == {"id0", "id1", "id2"}
    assert all(line.startswith("{") and line.endswith("}") for line in path.read_text().splitlines())


def test_cache_key_changes_with_every_part():
    base = cache_key(backend={"model": "m", "precision": "bf16"}, messages=[{"role": "user", "content": "hi"}])
    assert base == cache_key(messages=[{"role": "user", "content": "hi"}], backend={"precision": "bf16", "model": "m"})
    assert base != cache_key(backend={"model": "m2", "precision": "bf16"}, messages=[{"role": "user", "content": "hi"}])
    assert base != cache_key(backend={"model": "m", "precision": "fp32"}, messages=[{"role": "user", "content": "hi"}])
    assert base != cache_key(backend={"model": "m", "precision": "bf16"}, messages=[{"role": "user", "content": "hi!"}])


def test_cache_persists_across_instances_and_counts(tmp_path):
    cache = PredictionCache(tmp_path / "c.sqlite")
    assert cache.get_many(["k1", "k2"]) == {}
    cache.put_many({"k1": {"raw": "tech", "scores": {"tech": -0.1}}})
    cache.close()
    again = PredictionCache(tmp_path / "c.sqlite")
    assert again.get_many(["k1", "k2"]) == {"k1": {"raw": "tech", "scores": {"tech": -0.1}}}
    assert (again.hits, again.misses) == (1, 1)
    disabled = PredictionCache(None)
    disabled.put_many({"k1": {}})
    assert disabled.get_many(["k1"]) == {}
