"""Retrieval-augmented few-shot: for each test input, its k nearest training examples as exemplars.

Nearest by MiniLM sentence embeddings (cosine) or, without any model, by BM25. The index is built over the
training split only (the exemplar pool), and its embeddings are cached on disk by content hash. Exemplars
are ordered least to most similar, so the closest one sits right before the question.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tunewise.settings import LocalArmConfig

if TYPE_CHECKING:
    from tunewise.arms.context import ArmContext
    from tunewise.schema import Prediction


class RetrievalArm(LocalArmConfig):
    """The k training examples nearest to each test input as exemplars."""

    type: Literal["retrieval"]
    k: int = Field(4, ge=1, le=64, description="Number of retrieved exemplars.")
    retriever: Literal["embedding", "bm25"] = Field("embedding", description="MiniLM embeddings (cosine) or BM25 (no model).")
    embedder: str = Field("minilm", description="Sentence-transformers folder, or `minilm` for the bundled all-MiniLM-L6-v2.")


Config = RetrievalArm


def train_examples(arm: RetrievalArm, available: int) -> int:
    return available  # every training example is in the index; k of them reach each prompt


def arm_index(arm: RetrievalArm, texts: list[str], progress: Callable[[int, int], None] | None = None) -> Any:
    """The arm's search index over `texts`: MiniLM embeddings (cached on disk) or BM25. Serving builds the
    same one, so a served request sees the exemplars evaluation would have chosen. `progress(done, total)`
    follows the embedding, the slow part (minutes for tens of thousands of texts on 2 cores)."""
    from tunewise.assets import cache_dir, resolve_model
    from tunewise.models.index import build_index

    if arm.retriever == "embedding":
        return build_index("embedding", texts, model_path=resolve_model(arm.embedder),
                           cache_dir=cache_dir() / "embeddings", progress=progress)
    return build_index("bm25", texts)


@contextmanager
def _index_progress(arm: RetrievalArm, ctx: ArmContext, total: int) -> Iterator[Callable[[int, int], None]]:
    """The index's `progress(done, total)` as a bar of its own (the arm's bar only counts the prompts)."""
    done = 0
    with ctx.progress(f"{arm.name} (index)", total) as advance:
        def report(now: int, _total: int) -> None:
            nonlocal done
            if now > done:
                advance(now - done)
                done = now

        yield report
        if done < total:  # BM25, or an index read whole from the cache
            advance(total - done)


def run(arm: RetrievalArm, ctx: ArmContext) -> list[Prediction]:
    from tunewise.arms.exemplars import ExemplarPool
    from tunewise.arms.prompted import local_backend, run_prompted

    pool = ExemplarPool(ctx.train, ctx.test, drop_leaked=ctx.allow_leakage).examples
    with _index_progress(arm, ctx, len(pool)) as progress:
        index = arm_index(arm, [e.input for e in pool], progress)
    neighbours = index.search([e.input for e in ctx.test], arm.k)
    shots = {e.id: [pool[i] for i in reversed(found)] for e, found in zip(ctx.test, neighbours)}
    backend = local_backend(arm, ctx, ctx.max_new_tokens)
    return run_prompted(arm.name, ctx, lambda e: ctx.task.messages(e, shots[e.id], arm.prompt), backend)


def serve(arm: RetrievalArm, run: Any) -> Any:
    """The same index over the training split as in evaluation: a request sees the exemplars a test input would."""
    from tunewise.arms.exemplars import ExemplarPool

    pool = ExemplarPool(run.train, []).examples
    index = arm_index(arm, [e.input for e in pool])

    def prompt(text: str) -> list[dict[str, str]]:
        example = run.request(text)
        found = index.search([example.input], arm.k)[0]
        return run.task.messages(example, [pool[i] for i in reversed(found)], arm.prompt)

    return run.prompted(arm, prompt)
