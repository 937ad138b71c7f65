"""Retrieval indexes: nearest first, exclusion, deterministic ties, clamped k, and a cache that skips the model."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tunewise.models import index as retrieval
from tunewise.models.index import BM25Index, EmbeddingIndex, RetrievalError, _rank, build_index

CORPUS = [
    "The striker scored twice as the team won the league match.",
    "The new laptop ships with a faster chip and longer battery life.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "Bake the bread in a hot oven until the crust is golden.",
    "The election campaign ended with a televised debate between the candidates.",
    "Researchers trained a robot to sort recycling with a camera.",
]


class FakeEncoder:
    """Stands in for a SentenceTransformer: hashes words into a small unit vector and counts its calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts, batch_size, normalize_embeddings, convert_to_numpy, show_progress_bar):
        self.calls.append(list(texts))
        out = np.zeros((len(texts), 16), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.sha256(word.encode()).hexdigest(), 16) % 16] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


@pytest.fixture
def fake(monkeypatch) -> FakeEncoder:
    encoder = FakeEncoder()
    monkeypatch.setattr(retrieval, "_load_model", lambda model, dtype: encoder)
    return encoder


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "fake-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


# ---------------------------------------------------------------- the real bundled embedder


@pytest.fixture(scope="module")
def minilm(tmp_path_factory) -> EmbeddingIndex:
    return EmbeddingIndex.build(CORPUS, None, tmp_path_factory.mktemp("embeddings"))


@pytest.mark.slow
def test_each_training_text_finds_itself_first(minilm) -> None:
    assert [hits[0] for hits in minilm.search(CORPUS, k=2)] == list(range(len(CORPUS)))
    assert minilm.search(["Shares dropped when the bank lifted rates."], k=1) == [[2]]


@pytest.mark.slow
def test_exclusion_clamping_and_determinism(minilm) -> None:
    excluded = minilm.search(CORPUS, k=3, exclude=[{i} for i in range(len(CORPUS))])
    assert all(i not in hits and len(hits) == 3 for i, hits in enumerate(excluded))
    assert minilm.search(CORPUS, k=100) == minilm.search(CORPUS, k=100)
    assert sorted(minilm.search(CORPUS[:1], k=100)[0]) == list(range(len(CORPUS)))
    assert minilm.search(CORPUS[:1], k=100, exclude=[{0, 1}])[0][-1] not in {0, 1}
    assert len(minilm.search(CORPUS[:1], k=100, exclude=[{0, 1}])[0]) == len(CORPUS) - 2


# Run in a fresh interpreter: builds the index from the cache with model loading forbidden, then again with no
# cache at all, and saves both matrices. argv: cache folder, output folder, the corpus as JSON.
SECOND_PROCESS = """
import json, sys
from pathlib import Path

import numpy as np

from tunewise.models import index as retrieval

cache, out, corpus = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
load = retrieval._load_model


def refuse(model, dtype):
    raise AssertionError("the model was loaded on a cache hit")


retrieval._load_model = refuse
np.save(out / "cached.npy", retrieval.EmbeddingIndex.build(corpus, None, cache).vectors)
retrieval._load_model = load
np.save(out / "fresh.npy", retrieval.EmbeddingIndex.build(corpus, None, None).vectors)
"""


@pytest.mark.slow
def test_another_process_loads_the_cache_and_never_the_model(minilm, tmp_path) -> None:
    """The cache key must not depend on anything of the process that wrote it (hash seeds, object ids, the
    clock), and what the cache hands back must be what a fresh encode gives: both are checked in a second
    interpreter, which an in-process rebuild could never catch."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    env.pop("PYTHONHASHSEED", None)  # its own random str hashes, unlike this process's
    done = subprocess.run([sys.executable, "-c", SECOND_PROCESS, str(minilm.cache_dir), str(tmp_path),
                           json.dumps(CORPUS)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    cached, fresh = np.load(tmp_path / "cached.npy"), np.load(tmp_path / "fresh.npy")
    np.testing.assert_array_equal(cached, minilm.vectors)
    assert np.allclose(np.linalg.norm(cached, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(fresh, minilm.vectors, rtol=0, atol=1e-5)


# ---------------------------------------------------------------- cache keys and progress (fake encoder)


def test_cache_is_keyed_by_texts_and_model_files(fake, model_dir, tmp_path) -> None:
    cache = tmp_path / "cache"
    seen: list[tuple[int, int]] = []
    first = EmbeddingIndex.build(CORPUS, model_dir, cache, batch_size=1,
                                 progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (6, 6) and len(seen) == 1  # 6 texts fit in one chunk of 8 batches
    assert len(fake.calls) == 1 and len(list(cache.glob("*.npy"))) == 1

    second = EmbeddingIndex.build(CORPUS, model_dir, cache)
    assert len(fake.calls) == 1  # hit: nothing encoded
    np.testing.assert_array_equal(first.vectors, second.vectors)

    EmbeddingIndex.build(CORPUS[:-1] + ["something else"], model_dir, cache)
    assert len(fake.calls) == 2  # one text changed: miss
    (model_dir / "config.json").write_text('{"changed": true}')
    changed = EmbeddingIndex.build(CORPUS, model_dir, cache)
    assert len(fake.calls) == 3  # the model's files changed: miss
    other = "fp32" if changed.precision == "bf16" else "bf16"
    assert EmbeddingIndex.build(CORPUS, model_dir, cache, precision=other).precision == other
    assert len(fake.calls) == 4  # another precision: miss


def test_damaged_cache_file_is_recomputed(fake, model_dir, tmp_path) -> None:
    cache = tmp_path / "cache"
    first = EmbeddingIndex.build(CORPUS, model_dir, cache)
    (npy,) = cache.glob("*.npy")
    npy.write_bytes(b"not numpy")
    again = EmbeddingIndex.build(CORPUS, model_dir, cache)
    assert len(fake.calls) == 2
    np.testing.assert_array_equal(first.vectors, again.vectors)


def test_progress_reports_each_chunk(fake, model_dir) -> None:
    seen: list[tuple[int, int]] = []
    texts = [f"{text} {n}" for n in range(3) for text in CORPUS]  # 18 distinct texts
    EmbeddingIndex.build(texts, model_dir, None, batch_size=1, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(8, 18), (16, 18), (18, 18)]


def test_each_distinct_text_is_embedded_once_longest_first(fake, model_dir) -> None:
    texts = ["a cat", "a much longer sentence about dogs", "a cat", "mid length text", "a cat"]
    index = EmbeddingIndex.build(texts, model_dir, None, batch_size=2)
    assert fake.calls == [["a much longer sentence about dogs", "mid length text", "a cat"]]
    np.testing.assert_array_equal(index.vectors[0], index.vectors[2])
    np.testing.assert_allclose(index.vectors[1], fake.encode([texts[1]], 1, False, True, False)[0], atol=1e-6)
    assert index.search(["a cat"], k=3) == [[0, 2, 4]]


def test_blocked_ranking_equals_ranking_all_queries_at_once(fake, model_dir, monkeypatch) -> None:
    import tunewise.models.index as index_module

    corpus = [f"word{i % 7} word{i % 5} thing{i % 3}" for i in range(40)]
    queries = [f"word{i % 4} thing{i % 2}" for i in range(9)]
    index = EmbeddingIndex.build(corpus, model_dir, None)
    whole = index.search(queries, k=5, exclude=[{i} for i in range(9)])
    monkeypatch.setattr(index_module, "QUERY_BLOCK", 2)
    assert index.search(queries, k=5, exclude=[{i} for i in range(9)]) == whole
    assert whole == _rank(index.embed(queries) @ index.vectors.T, 5, [{i} for i in range(9)])


def test_duplicate_texts_tie_break_by_index(fake, model_dir) -> None:
    index = EmbeddingIndex.build(["red apple", "blue sky", "red apple", "red apple"], model_dir)
    assert index.search(["red apple"], k=3) == [[0, 2, 3]]
    assert index.search(["red apple"], k=2, exclude=[{0}]) == [[2, 3]]


# ---------------------------------------------------------------- ranking and errors


def test_rank_is_stable_clamped_and_checked() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.9], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    assert _rank(scores, 3, None) == [[1, 3, 0], [0, 1, 2]]
    assert _rank(scores, 10, [{3}, set()]) == [[1, 0, 2], [0, 1, 2, 3]]
    assert _rank(scores, 0, None) == [[], []]
    with pytest.raises(RetrievalError, match="k must be 0 or more"):
        _rank(scores, -1, None)
    with pytest.raises(RetrievalError, match="one set per query"):
        _rank(scores, 2, [set()])


@pytest.mark.parametrize("kind", ["embedding", "bm25"])
def test_empty_corpus_is_a_clear_error(kind) -> None:
    with pytest.raises(RetrievalError, match="empty corpus"):
        build_index(kind, [])


def test_unknown_kind_is_an_error() -> None:
    with pytest.raises(RetrievalError, match="unknown retriever 'tfidf'"):
        build_index("tfidf", CORPUS)  # type: ignore[arg-type]


# ---------------------------------------------------------------- BM25


def test_bm25_ranks_the_obvious_document_first() -> None:
    index = build_index("bm25", CORPUS)
    assert isinstance(index, BM25Index) and len(index) == len(CORPUS)
    hits = index.search(["interest rates and the stock market", "oven baked bread", "robot camera"], k=2)
    assert [h[0] for h in hits] == [2, 3, 5]
    assert index.search(CORPUS, k=1) == [[i] for i in range(len(CORPUS))]
    assert index.search(CORPUS, k=1, exclude=[{i} for i in range(len(CORPUS))])[2] != [2]
    assert index.search(["bread"], k=50) == index.search(["bread"], k=50)
    assert len(index.search(["bread"], k=50)[0]) == len(CORPUS)


def test_bm25_query_with_no_known_word_does_not_favour_empty_documents() -> None:
    index = BM25Index.build(["football match report", "", "chip maker profits"])
    assert index.search(["zebra quantum", ""], k=3) == [[0, 1, 2], [0, 1, 2]]


def test_bm25_corpus_without_words_is_an_error() -> None:
    with pytest.raises(RetrievalError, match="no searchable words"):
        BM25Index.build(["the", "and of", ""])


def test_the_retrieval_arm_shows_its_index_build_as_a_bar_that_ends_full() -> None:
    """Issue 17 item 7: the index (minutes on tens of thousands of texts) has a bar of its own, fed by the
    embedding's progress(done, total); an index with no steps (BM25, a cache hit) still ends full."""
    from contextlib import contextmanager
    from types import SimpleNamespace

    from tunewise.arms.retrieval import RetrievalArm, _index_progress

    bars: list[tuple[str, int, list[int]]] = []

    @contextmanager
    def progress(description: str, total: int):
        steps: list[int] = []
        bars.append((description, total, steps))
        yield steps.append

    arm = RetrievalArm(name="rag", type="retrieval", retriever="bm25")
    ctx = SimpleNamespace(progress=progress)
    with _index_progress(arm, ctx, 10) as report:
        report(4, 10)
        report(4, 10)
        report(8, 10)
    with _index_progress(arm, ctx, 3):
        pass
    assert bars == [("rag (index)", 10, [4, 4, 2]), ("rag (index)", 3, [3])]
