"""The path every prompted arm shares: build a prompt per test example, ask a backend (local label scoring,
local generation, or a remote endpoint) for what is not cached or already done, and append predictions.

Work goes in chunks so an interrupted run keeps everything up to the last finished chunk. The cache key
covers the backend's identity (model weights or endpoint, precision, decoding parameters) and the exact
messages, so any change to the prompt or the model is a miss and nothing stale is served.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tunewise.arms.context import ArmContext
from tunewise.schema import Example, Prediction
from tunewise.store.answer_cache import cache_key

Messages = list[dict[str, str]]


class Backend(Protocol):
    batch_size: int

    def identity(self) -> dict[str, Any]:
        ...

    def answer(self, prompts: Sequence[Messages], advance: Callable[[int], None]) -> list[dict[str, Any]]:
        """One dict per prompt: raw, scores, prompt_tokens, completion_tokens, latency_s, error."""
        ...


@dataclass
class LabelScoring:
    """Classification by the log-likelihood of each label as the assistant's reply (no free generation).

    The model is loaded lazily: an arm whose answers are all cached never loads it.
    """

    load: Callable[[], Any]
    model_id: str
    dtype: str
    labels: list[str]
    batch_size: int = 8
    # The data's codes when `labels` are their names (task.labels as a mapping): scores are keyed by code.
    codes: list[str] | None = None

    @property
    def lm(self) -> Any:
        return self.load()

    def identity(self) -> dict[str, Any]:
        return {"kind": "label_scoring", "model": self.model_id, "precision": self.dtype,
                "labels": self.labels, "normalize": "sum"}

    def answer(self, prompts: Sequence[Messages], advance: Callable[[int], None]) -> list[dict[str, Any]]:
        start = time.perf_counter()
        scores = self.lm.score_options(prompts, self.labels, batch_size=self.batch_size, progress=advance)
        each = (time.perf_counter() - start) / max(len(prompts), 1)
        answers = []
        for prompt, row in zip(prompts, scores):
            best = max(range(len(self.labels)), key=lambda i: (row[i], -i))
            answers.append({"raw": self.labels[best], "scores": dict(zip(self.codes or self.labels, row)),
                            "prompt_tokens": len(self.lm.render(prompt)), "completion_tokens": 0, "latency_s": each})
        return answers


@dataclass
class LocalGeneration:
    load: Callable[[], Any]
    model_id: str
    dtype: str
    max_new_tokens: int
    batch_size: int = 8

    @property
    def lm(self) -> Any:
        return self.load()

    def identity(self) -> dict[str, Any]:
        return {"kind": "generate", "model": self.model_id, "precision": self.dtype,
                "max_new_tokens": self.max_new_tokens, "temperature": 0.0}

    def answer(self, prompts: Sequence[Messages], advance: Callable[[int], None]) -> list[dict[str, Any]]:
        outputs = self.lm.generate(prompts, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                                   progress=advance)
        return [{"raw": g.text, "prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
                 "latency_s": g.latency_s} for g in outputs]


@dataclass
class SchemaGeneration(LocalGeneration):
    """Extraction: generation constrained to the task's JSON schema (xgrammar when installed, else repaired)."""

    schema: dict[str, Any] | None = None

    def identity(self) -> dict[str, Any]:
        from tunewise.models import constrained

        return super().identity() | {"kind": "generate_json", "schema": self.schema,
                                     "json_backend": constrained.backend()}

    def answer(self, prompts: Sequence[Messages], advance: Callable[[int], None]) -> list[dict[str, Any]]:
        outputs = self.lm.generate_json(prompts, self.schema or {"type": "object"}, max_new_tokens=self.max_new_tokens,
                                        batch_size=self.batch_size, progress=advance)
        return [{"raw": g.text, "prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
                 "latency_s": g.latency_s} for g in outputs]


def local_backend(arm: Any, ctx: ArmContext, max_new_tokens: int) -> Backend:
    """Label scoring for classification, schema-constrained generation for extraction, batched generation
    otherwise, on the arm's local model."""
    return model_backend(arm.model, arm.precision, arm.batch_size, ctx, max_new_tokens)


def model_backend(model: str, precision: str, batch_size: int, ctx: ArmContext, max_new_tokens: int) -> Backend:
    """The backend for any local model (a bundled alias, a folder such as a fine-tuned arm's merged model)."""
    from tunewise.models.local import choose_precision

    dtype = str(choose_precision("auto", precision).dtype)
    load = lambda: ctx.local_model(model, precision)  # noqa: E731
    if ctx.task.labels:
        options = list(getattr(ctx.task, "options", ctx.task.labels))
        codes = list(ctx.task.labels) if options != list(ctx.task.labels) else None
        return LabelScoring(load, ctx.model_id(model), dtype, options, batch_size, codes)
    if ctx.task.name == "extract":
        return SchemaGeneration(load, ctx.model_id(model), dtype, max_new_tokens, batch_size,
                                schema=getattr(ctx.task, "schema", None))
    return LocalGeneration(load, ctx.model_id(model), dtype, max_new_tokens, batch_size)


def run_prompted(name: str, ctx: ArmContext, prompts: Callable[[Example], Messages], backend: Backend,
                 chunk: int = 64) -> list[Prediction]:
    store = ctx.store(name)
    pending = [e for e in ctx.test if e.id not in store.done]
    identity = backend.identity()
    with ctx.progress(name, len(ctx.test)) as advance:
        advance(len(ctx.test) - len(pending))
        for start in range(0, len(pending), chunk):
            batch = pending[start:start + chunk]
            answers, hits = answer_cached(ctx, backend, identity, [prompts(e) for e in batch], advance)
            store.append(_prediction(name, e, a, ctx, hit) for e, a, hit in zip(batch, answers, hits))
    ctx.probe(name, lambda e: backend.answer([prompts(e)], lambda n: None))  # uncached, one request at a time
    return store.ordered(e.id for e in ctx.test)


def answer_cached(ctx: ArmContext, backend: Backend, identity: dict[str, Any], messages: Sequence[Messages],
                  advance: Callable[[int], None]) -> tuple[list[dict[str, Any]], list[bool]]:
    """One answer per prompt, in order, and whether it came from the cache: cached ones are looked up, the rest
    asked of the backend in one call and stored (failed answers are not, so a re-run retries them)."""
    keys = [cache_key(backend=identity, messages=m) for m in messages]
    cached = ctx.cache.get_many(keys)
    advance(sum(k in cached for k in keys))
    missing = [i for i, k in enumerate(keys) if k not in cached]
    fresh = backend.answer([messages[i] for i in missing], advance) if missing else []
    ctx.cache.put_many({keys[i]: answer for i, answer in zip(missing, fresh) if not answer.get("error")})
    answers = {keys[i]: answer for i, answer in zip(missing, fresh)} | cached
    return [answers[k] for k in keys], [k in cached for k in keys]


def _prediction(name: str, example: Example, answer: dict[str, Any], ctx: ArmContext, cached: bool) -> Prediction:
    raw = answer.get("raw", "")
    error = answer.get("error")
    return Prediction(
        id=example.id, arm=name, input=example.input, reference=example.output.strip(),
        # a cached answer keeps the latency measured when it was computed, so re-runs report the same figures
        prediction="" if error else ctx.task.parse(raw), raw=raw, latency_s=answer.get("latency_s", 0.0),
        prompt_tokens=answer.get("prompt_tokens", 0), completion_tokens=answer.get("completion_tokens", 0),
        scores=answer.get("scores"), cached=cached, error=error,
    )
