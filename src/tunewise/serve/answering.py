"""Answering one input: model lookup, the answer caches, context checks, and the batched model call.

`answer` is the whole path for chat and completion inputs: the exact (then semantic) cache, the arm's own
prompt, then a label scored or text generated through the micro-batcher; it returns an `Answer`, or with
`stream` a `LiveAnswer` whose tokens are still coming. `classified` is the same for /v1/classify. `run_batch`
is the other side: what the batcher thread runs for one batch of payloads.

Failures a client caused are raised as `APIError` (404 unknown model, 400 context too long, 429 queue full,
504 timeout). Knows nothing about routes, request bodies or response formats (JSON or SSE).
"""

from __future__ import annotations

import asyncio
import random
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunewise.serve.batching import DecodeSpeed, QueueFull, Stopping
from tunewise.serve.cache import cache_key, cacheable
from tunewise.serve.errors import APIError
from tunewise.serve.models import ServedModel, request_example, softmax
from tunewise.serve.streaming import Streamed, TokenSink, row_router

if TYPE_CHECKING:
    from tunewise.serve.state import ServerState


# ---------------------------------------------------------------- model calls (batcher thread)


def run_batch(models: dict[str, ServedModel], key: Hashable, payloads: list[Any],
              stop: threading.Event | None = None, speed: DecodeSpeed | None = None) -> list[Any]:
    """One batched call: `key` says which model and what kind of call; one result per payload.

    A generation checks `stop` between decoding steps (and ends with `Stopping` once it is set) and records its
    seconds per step in `speed`."""
    kind, name = key[0], key[1]  # type: ignore[index]
    if kind == "call":  # engine changes (attaching a new adapter) run here, between batches
        return [call() for call in payloads]
    served = models[name]
    if kind == "classical":
        return served.classical.predict_scores([request_example(text) for text in payloads])
    assert served.engine is not None
    with served.engine.active(served.adapter) as lm:
        if kind == "score":
            labels = list(key[2])  # type: ignore[index]
            rows = lm.score_options(payloads, labels, batch_size=len(payloads))
            return [dict(zip(labels, softmax(row))) for row in rows]
        if kind == "generate_json":
            return lm.generate_json(payloads, served.json_schema or {"type": "object"}, max_new_tokens=key[2],
                                    batch_size=len(payloads))
        _, _, max_tokens, temperature, seeded = key  # type: ignore[misc]
        # greedy ignores the seed; unseeded sampling draws a fresh one per batch
        seed = seeded[1] if seeded else (random.randrange(2**31) if temperature > 0 else 0)
        prompts, on_tokens = row_router(payloads)
        started = time.perf_counter()
        results = lm.generate(prompts, max_new_tokens=max_tokens, temperature=temperature, seed=seed,
                              batch_size=len(payloads), on_tokens=_stoppable(on_tokens, stop))
        if speed is not None:
            speed.record(time.perf_counter() - started, max(r.completion_tokens for r in results))
        return results


def _stoppable(on_tokens: Any, stop: threading.Event | None) -> Any:
    """The per-step token callback, raising `Stopping` (which ends `generate`) once `stop` is set."""
    if stop is None:
        return on_tokens

    def step(index: int, ids: list[int], finished: bool) -> None:
        if stop.is_set():
            raise Stopping("the server stopped this generation before it finished")
        if on_tokens is not None:
            on_tokens(index, ids, finished)

    return step


# ---------------------------------------------------------------- what an answer is


@dataclass
class Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    cached: str | None = None  # "exact" or "semantic"
    probabilities: dict[str, float] | None = None


@dataclass
class LiveAnswer:
    """A streamed generation under way: its row's tokens arrive in `sink`, the batch's outcome in `future`;
    `remember` files the finished answer (metrics, caches) once the stream has delivered it."""

    sink: TokenSink
    future: Future
    prompt_tokens: int
    max_tokens: int
    stops: list[str]
    decode: Callable[[list[int]], str]
    remember: Callable[[Answer], Awaitable[None]] | None = None


def usage(answers: list[Answer]) -> dict[str, int]:
    """OpenAI's `usage` object over one or more answers."""
    prompt = sum(a.prompt_tokens for a in answers)
    completion = sum(a.completion_tokens for a in answers)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """`text` up to the first stop sequence, and whether one was found."""
    cuts = [text.find(s) for s in stops if s in text]
    return (text[:min(cuts)], True) if cuts else (text, False)


# ---------------------------------------------------------------- lookups and admission


def lookup(state: ServerState, name: str) -> ServedModel:
    """The served model called `name`, or a 404 that lists the served ones."""
    served = state.models.get(name)
    if served is None:
        raise APIError(404, f"The model {name!r} does not exist here. Served: {', '.join(sorted(state.models))} "
                            "(GET /v1/models).", param="model", code="model_not_found")
    return served


def _single_input(served: ServedModel, messages: list[dict[str, str]]) -> str:
    """An arm answers one input, as in evaluation: its own system prompt and exemplars surround it."""
    if len(messages) != 1 or messages[0]["role"] != "user":
        raise APIError(400, f"model {served.name!r} is a tunewise {served.owned_by} that answers one input at a time "
                            "with its own instructions and exemplars; send exactly one user message",
                       param="messages", code="invalid_value")
    return messages[0]["content"]


def stopped() -> APIError:
    """The envelope for a request the server gave up on while stopping (the drain limit passed)."""
    return APIError(503, "the server stopped before this request finished (its --drain-timeout passed); send it "
                         "again, to another replica", code="shutting_down", headers={"Retry-After": "1"})


def _submit(state: ServerState, key: Hashable, payload: Any) -> Future:
    try:
        return state.batcher.submit(key, payload)
    except Stopping:
        raise stopped() from None
    except QueueFull:
        retry = max(1, round(state.config.max_wait_ms / 1000 + 1))
        raise APIError(429, f"the server is at capacity ({state.config.max_queue} requests admitted); retry after "
                            f"{retry} s", code="queue_full", headers={"Retry-After": str(retry)}) from None


async def _await(state: ServerState, key: Hashable, payload: Any) -> Any:
    future = _submit(state, key, payload)
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), state.config.timeout_s)
    except TimeoutError:
        raise APIError(504, f"no answer within {state.config.timeout_s:g} s", code="timeout") from None
    except Stopping:
        raise stopped() from None
    except ValueError as err:  # a model-side refusal of this input (e.g. a classical model missing features)
        raise APIError(400, str(err), code="invalid_value") from None


# ---------------------------------------------------------------- labels and generations


async def _label(state: ServerState, served: ServedModel, text: str, labels: list[str] | None,
                 prompt: list[dict[str, str]] | None = None, param: str = "input") -> Answer:
    if served.kind == "classical":
        probabilities = await _await(state, ("classical", served.name), text)
        return Answer(max(probabilities, key=probabilities.get), 0, 0, "stop", probabilities=probabilities)
    labels = labels or served.labels
    assert labels is not None and served.engine is not None
    if prompt is None:
        prompt = await asyncio.to_thread(served.prompt, text) if served.prompt else _plain_classify(labels, text)
    lm = served.engine.lm
    prompt_tokens = len(await asyncio.to_thread(lm.render, prompt))
    longest = max(len(lm.tokenizer(label, add_special_tokens=False)["input_ids"]) for label in labels)
    if prompt_tokens + longest + 2 > served.engine.context_length:
        raise APIError(400, f"This model's context is {served.engine.context_length} tokens; the prompt for this "
                            f"input has {prompt_tokens} plus up to {longest + 2} for a label. Shorten the input.",
                       param=param, code="context_length_exceeded")
    probabilities = await _await(state, ("score", served.name, tuple(labels)), prompt)
    best = max(labels, key=lambda label: (probabilities[label], -labels.index(label)))
    return Answer(best, prompt_tokens, len(lm.tokenizer(best, add_special_tokens=False)["input_ids"]), "stop",
                  probabilities=probabilities)


def _plain_classify(labels: list[str], text: str) -> list[dict[str, str]]:
    from tunewise.tasks.classify import ClassifyTask

    return ClassifyTask(labels=list(labels)).messages(request_example(text))


async def _generate(state: ServerState, served: ServedModel, prompt: Any, request: Any,
                    stream: bool = False, param: str = "messages") -> Answer | LiveAnswer:
    assert served.engine is not None
    lm = served.engine.lm
    max_tokens = request.max_tokens or served.default_max_tokens or state.config.default_max_tokens
    prompt_tokens = len(await asyncio.to_thread(lm.render, prompt))
    if prompt_tokens == 0:  # an empty completion prompt: start from the start of a document, as OpenAI does
        start = lm.tokenizer.bos_token or lm.tokenizer.eos_token
        if not start:
            raise APIError(400, f"{param} is empty and this model's tokenizer has no start-of-text token to begin "
                                "from. Fix: send at least one character of text", param=param, code="invalid_value")
        prompt, prompt_tokens = start, len(await asyncio.to_thread(lm.render, start))
    if prompt_tokens + max_tokens > served.engine.context_length:
        raise APIError(400, f"This model's context is {served.engine.context_length} tokens; the prompt has "
                            f"{prompt_tokens} and max_tokens asks for {max_tokens} more. Shorten the {param} or "
                            "lower max_tokens.", param=param, code="context_length_exceeded")
    if served.json_schema is not None:
        key: tuple = ("generate_json", served.name, max_tokens)
    else:
        # Greedy and unseeded requests share batches. A seeded sample runs alone (a fresh token in its key),
        # so its seed alone decides the sample, whatever else is being served: that is what makes it cacheable.
        seeded = request.temperature > 0 and request.seed is not None
        key = ("generate", served.name, max_tokens, request.temperature,
               ("seeded", request.seed, secrets.token_hex(8)) if seeded else None)
        if stream:  # same key, same batches: only the payload says where this row's tokens go
            sink = TokenSink(asyncio.get_running_loop())
            future = _submit(state, key, Streamed(prompt, sink))
            sink.follow(future)
            return LiveAnswer(sink, future, prompt_tokens, max_tokens, request.stops(), lm.decode)
    generation = await _await(state, key, prompt)
    text, stopped = cut_at_stop(generation.text, request.stops())
    finish = "stop" if stopped or generation.completion_tokens < max_tokens else "length"
    return Answer(text, generation.prompt_tokens, generation.completion_tokens, finish)


# ---------------------------------------------------------------- the cached paths


async def answer(state: ServerState, served: ServedModel, endpoint: str, messages: list[dict[str, str]] | str,
                 request: Any, stream: bool = False, param: str = "messages") -> Answer | LiveAnswer:
    """Cache lookup, then the model. `messages` is what the caller sent (a chat, or a completion prompt), and
    `param` its name in errors ("messages", "prompt", "prompt.2").

    With `stream`, a generation is returned live (its tokens still coming); anything else comes whole."""
    if request.max_tokens is not None and request.max_tokens > state.config.max_tokens_limit:
        raise APIError(400, f"max_tokens is {request.max_tokens}; this server allows at most "
                            f"{state.config.max_tokens_limit}", param="max_tokens", code="invalid_value")
    sampling = {"max_tokens": request.max_tokens, "temperature": request.temperature, "seed": request.seed,
                "stop": request.stops()}
    deterministic = served.labels is not None or cacheable(request.temperature, request.seed)
    key = cache_key(endpoint=endpoint, model=served.name, identity=served.identity, messages=messages,
                    sampling=sampling)
    semantic_scope = semantic_text = None
    if deterministic:
        if (hit := state.cache.get(key)) is not None:
            state.metrics.cache_hits.labels("exact").inc()
            return Answer(**{**hit, "cached": "exact"})
        if state.semantic is not None and isinstance(messages, list) and messages[-1]["role"] == "user":
            semantic_scope = cache_key(endpoint=endpoint, model=served.name, identity=served.identity,
                                       earlier=messages[:-1], sampling=sampling)
            semantic_text = messages[-1]["content"]
            found = await asyncio.to_thread(state.semantic.get, semantic_scope, semantic_text)
            if found is not None:
                state.metrics.cache_hits.labels("semantic").inc()
                return Answer(**{**found[0], "cached": "semantic"})
        state.metrics.cache_misses.inc()
    if isinstance(messages, str):  # a completion prompt: the arm's input, or raw text for a plain model
        text = messages
        prompt: Any = messages
    else:
        text = _single_input(served, messages) if (served.prompt or served.kind == "classical") else ""
        prompt = messages
    if served.prompt is not None:
        prompt = await asyncio.to_thread(served.prompt, text)
    if served.labels is not None:
        result = await _label(state, served, text, None, prompt if served.prompt else None, param)
    else:
        result = await _generate(state, served, prompt, request, stream, param)
    if isinstance(result, LiveAnswer):
        result.remember = lambda done: _remember(state, served, done, key if deterministic else None,
                                                 semantic_scope, semantic_text)
        return result
    await _remember(state, served, result, key if deterministic else None, semantic_scope, semantic_text)
    return result


async def _remember(state: ServerState, served: ServedModel, answer: Answer, key: str | None,
                    semantic_scope: str | None, semantic_text: str | None) -> None:
    """Count the answer's tokens and, when it is deterministic (a `key`), cache it."""
    state.metrics.tokens.labels(served.name, "prompt").inc(answer.prompt_tokens)
    state.metrics.tokens.labels(served.name, "completion").inc(answer.completion_tokens)
    if key is not None:
        stored = {k: v for k, v in answer.__dict__.items() if k != "cached"}
        state.cache.put(key, stored)
        if semantic_scope is not None and semantic_text is not None:
            await asyncio.to_thread(state.semantic.put, semantic_scope, semantic_text, stored)  # type: ignore[union-attr]


async def classified(state: ServerState, served: ServedModel, text: str, labels: list[str] | None) -> Answer:
    """The label of one /v1/classify input, from the exact cache or the model (always deterministic)."""
    key = cache_key(endpoint="classify", model=served.name, identity=served.identity, input=text, labels=labels)
    if (hit := state.cache.get(key)) is not None:
        state.metrics.cache_hits.labels("exact").inc()
        return Answer(**{**hit, "cached": "exact"})
    state.metrics.cache_misses.inc()
    result = await _label(state, served, text, labels)
    state.metrics.tokens.labels(served.name, "prompt").inc(result.prompt_tokens)
    state.cache.put(key, {k: v for k, v in result.__dict__.items() if k != "cached"})
    return result
