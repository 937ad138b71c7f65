"""Answer caches: an exact-match LRU, and an optional semantic cache over the last user message.

The exact key is a SHA-256 over the canonical JSON of everything that can change an answer: the endpoint,
the model name, its identity (weights fingerprint, adapter id and the adapter's content hash), the messages
and the sampling parameters. Only deterministic requests are cached: greedy decoding, label scoring, or
sampling with a seed (which the batcher runs alone, so the seed alone decides the sample). Unseeded sampling
is meant to differ each time and is never cached.

The semantic cache is off by default: a near-identical question is not always the same question. When on, it
looks only among entries with the same model, settings and earlier turns, and needs a cosine similarity of at
least the threshold between MiniLM embeddings of the last user message. Knows nothing about HTTP.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tunewise.store.answer_cache import cache_key

__all__ = ["LRUCache", "SemanticCache", "cache_key", "cacheable"]


def cacheable(temperature: float, seed: int | None) -> bool:
    """Greedy answers and seeded samples repeat; unseeded samples must not be replayed."""
    return temperature == 0 or seed is not None


class LRUCache:
    """A thread-safe least-recently-used map with a fixed number of entries; capacity 0 stores nothing."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Any | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: str, value: Any) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


class SemanticCache:
    """Nearest cached question within a scope (same model, settings and earlier turns), by cosine similarity.

    `embed` maps texts to unit-length float32 rows. Entries are evicted oldest first beyond `capacity` per
    scope; a linear scan over at most `capacity` vectors is far cheaper than the model call it saves.
    """

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray], threshold: float, capacity: int = 1024) -> None:
        self.embed = embed
        self.threshold = threshold
        self.capacity = capacity
        self._scopes: dict[str, tuple[list[np.ndarray], list[Any]]] = {}
        self._lock = threading.Lock()

    def get(self, scope: str, text: str) -> tuple[Any, float] | None:
        """The cached value and its similarity, or None below the threshold."""
        with self._lock:
            entry = self._scopes.get(scope)
            if entry is None or not entry[0]:
                return None
            vectors, values = np.stack(entry[0]), list(entry[1])
        similarity = vectors @ self.embed([text])[0]
        best = int(np.argmax(similarity))
        return (values[best], float(similarity[best])) if similarity[best] >= self.threshold else None

    def put(self, scope: str, text: str, value: Any) -> None:
        vector = self.embed([text])[0]
        with self._lock:
            vectors, values = self._scopes.setdefault(scope, ([], []))
            vectors.append(vector)
            values.append(value)
            if len(vectors) > self.capacity:
                del vectors[0], values[0]


def minilm_embedder(model: str = "minilm") -> Callable[[Sequence[str]], np.ndarray]:
    """Unit-length MiniLM sentence embeddings (the bundled all-MiniLM-L6-v2 by default), loaded on first use."""
    from tunewise.assets import resolve_model
    from tunewise.models.index import EmbeddingIndex

    index = EmbeddingIndex(np.empty((0, 0), dtype=np.float32), resolve_model(model))
    return lambda texts: index.embed(list(texts))
