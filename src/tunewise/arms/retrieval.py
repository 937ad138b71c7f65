"""Retrieval-augmented few-shot: for each test input, its k nearest training examples as exemplars.

Nearest by MiniLM sentence embeddings (cosine) or, without any model, by BM25. The index is built over the
training split only (the exemplar pool), and its embeddings are cached on disk by content hash. Exemplars
are ordered least to most similar, so the closest one sits right before the question.
"""

from __future__ import annotations

from typing import Any

from tunewise.arms.context import ArmContext
from tunewise.arms.exemplars import ExemplarPool
from tunewise.arms.prompted import local_backend, run_prompted
from tunewise.config import RetrievalArm
from tunewise.schema import Prediction


def arm_index(arm: RetrievalArm, texts: list[str]) -> Any:
    """The arm's search index over `texts`: MiniLM embeddings (cached on disk) or BM25. Serving builds the
    same one, so a served request sees the exemplars evaluation would have chosen."""
    from tunewise.assets import cache_dir, resolve_model
    from tunewise.models.index import build_index

    if arm.retriever == "embedding":
        return build_index("embedding", texts, model_path=resolve_model(arm.embedder),
                           cache_dir=cache_dir() / "embeddings")
    return build_index("bm25", texts)


def run(arm: RetrievalArm, ctx: ArmContext, max_new_tokens: int) -> list[Prediction]:
    pool = ExemplarPool(ctx.train, ctx.test).examples
    index = arm_index(arm, [e.input for e in pool])
    neighbours = index.search([e.input for e in ctx.test], arm.k)
    shots = {e.id: [pool[i] for i in reversed(found)] for e, found in zip(ctx.test, neighbours)}
    backend = local_backend(arm, ctx, max_new_tokens)
    return run_prompted(arm.name, ctx, lambda e: ctx.task.messages(e, shots[e.id], arm.prompt), backend)
