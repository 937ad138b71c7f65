"""The OpenAI-compatible app: routes, admission, caching and answers; composed from the serve/ modules.

Request path: the gate (auth, drain, metrics) -> parse the body ourselves (size limit, JSON, strict schema:
every failure is a 4xx envelope naming the parameter) -> look up the served model -> exact (then semantic)
cache -> context-length check -> the micro-batcher -> the answer, as JSON or as server-sent events.

Streaming sends the OpenAI chunk protocol as the tokens are made: a streamed request still joins a batched
`generate` with the others, and its row's tokens are routed to its response step by step (see streaming.py).
Answers that come whole (the cache, label scoring, JSON replies) are streamed in word pieces.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunewise.serve.auth import KeyChecker
from tunewise.serve.batching import MicroBatcher, QueueFull
from tunewise.serve.cache import LRUCache, SemanticCache, cache_key, cacheable
from tunewise.serve.capture import Capture
from tunewise.serve.config import ServeConfig
from tunewise.serve.errors import APIError, envelope, error_response, from_validation
from tunewise.serve.files import FileStore
from tunewise.serve.finetuner import FineTuner
from tunewise.serve.jobs import JobStore
from tunewise.serve.metrics import ServeMetrics
from tunewise.serve.models import ServedModel, request_example, softmax
from tunewise.serve.schemas import ChatRequest, ClassifyRequest, CompletionRequest
from tunewise.serve.streaming import Streamed, TextDeltas, TokenSink, row_router

log = logging.getLogger("tunewise.serve")
ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/classify", "/health", "/ready", "/metrics")
_PREFIXES = ("/v1/models", "/v1/files", "/v1/fine_tuning/jobs")  # metrics label an id-bearing path by its prefix
_OPEN = ("/health", "/ready")


@dataclass
class FineTuning:
    """The fine-tuning API's stores and its training worker."""

    files: FileStore
    jobs: JobStore
    tuner: FineTuner


@dataclass
class ServerState:
    """Everything the routes share. `draining` flips once, on SIGTERM; `in_flight` counts model routes."""

    config: ServeConfig
    models: dict[str, ServedModel]
    keys: KeyChecker
    batcher: MicroBatcher
    metrics: ServeMetrics
    cache: LRUCache
    semantic: SemanticCache | None = None
    capture: Capture | None = None
    finetune: FineTuning | None = None  # /v1/files and /v1/fine_tuning, when the server has a state folder
    draining: bool = False
    in_flight: int = 0
    started: float = field(default_factory=time.time)

    def close(self) -> None:
        if self.finetune is not None:
            self.finetune.tuner.close()  # training pauses with a checkpoint before the engines stop
        self.batcher.close()
        if self.capture is not None:
            self.capture.close()


# ---------------------------------------------------------------- model calls (batcher thread)


def _run_batch(models: dict[str, ServedModel], key: Hashable, payloads: list[Any]) -> list[Any]:
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
        return lm.generate(prompts, max_new_tokens=max_tokens, temperature=temperature, seed=seed,
                           batch_size=len(payloads), on_tokens=on_tokens)


# ---------------------------------------------------------------- request reading


async def _read_json(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise APIError(400, f"Content-Length {declared!r} is not a number", code="invalid_request")
        if int(declared) > limit:
            raise APIError(413, f"the body has {int(declared):,} bytes; the limit is {limit:,}",
                           code="request_too_large")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise APIError(413, f"the body exceeds the limit of {limit:,} bytes", code="request_too_large")
    if not raw:
        raise APIError(400, "the body is empty; send a JSON object", code="invalid_json")

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        body = json.loads(bytes(raw).decode("utf-8"), parse_constant=no_constants)
    except UnicodeDecodeError as err:
        raise APIError(400, f"the body is not UTF-8 ({err})", code="invalid_json") from None
    except ValueError as err:
        raise APIError(400, f"the body is not valid JSON: {err}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, f"the body must be a JSON object, not {type(body).__name__}", code="invalid_json")
    return body


def _parse(schema: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        return schema.model_validate(body)
    except ValidationError as err:
        raise from_validation(err.errors()) from None


def _lookup(state: ServerState, name: str) -> ServedModel:
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


# ---------------------------------------------------------------- answering


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


def _submit(state: ServerState, key: Hashable, payload: Any) -> Future:
    try:
        return state.batcher.submit(key, payload)
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
    except ValueError as err:  # a model-side refusal of this input (e.g. a classical model missing features)
        raise APIError(400, str(err), code="invalid_value") from None


def _cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    cuts = [text.find(s) for s in stops if s in text]
    return (text[:min(cuts)], True) if cuts else (text, False)


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
                    stream: bool = False) -> Answer | LiveAnswer:
    assert served.engine is not None
    lm = served.engine.lm
    max_tokens = request.max_tokens or served.default_max_tokens or state.config.default_max_tokens
    prompt_tokens = len(await asyncio.to_thread(lm.render, prompt))
    if prompt_tokens + max_tokens > served.engine.context_length:
        raise APIError(400, f"This model's context is {served.engine.context_length} tokens; the prompt has "
                            f"{prompt_tokens} and max_tokens asks for {max_tokens} more. Shorten the messages or "
                            "lower max_tokens.", param="messages", code="context_length_exceeded")
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
    text, stopped = _cut_at_stop(generation.text, request.stops())
    finish = "stop" if stopped or generation.completion_tokens < max_tokens else "length"
    return Answer(text, generation.prompt_tokens, generation.completion_tokens, finish)


async def _answer(state: ServerState, served: ServedModel, endpoint: str, messages: list[dict[str, str]] | str,
                  request: Any, stream: bool = False) -> Answer | LiveAnswer:
    """Cache lookup, then the model. `messages` is what the caller sent (a chat, or a completion prompt).

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
        answer = await _label(state, served, text, None, prompt if served.prompt else None,
                              "prompt" if isinstance(messages, str) else "messages")
    else:
        answer = await _generate(state, served, prompt, request, stream)
    if isinstance(answer, LiveAnswer):
        answer.remember = lambda done: _remember(state, served, done, key if deterministic else None,
                                                 semantic_scope, semantic_text)
        return answer
    await _remember(state, served, answer, key if deterministic else None, semantic_scope, semantic_text)
    return answer


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


# ---------------------------------------------------------------- responses


def _usage(answers: list[Answer]) -> dict[str, int]:
    prompt = sum(a.prompt_tokens for a in answers)
    completion = sum(a.completion_tokens for a in answers)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _chat_body(model: str, answer: Answer, ident: str, created: int) -> dict[str, Any]:
    return {"id": ident, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                         "finish_reason": answer.finish_reason, "logprobs": None}],
            "usage": _usage([answer]), "system_fingerprint": None,
            **({"tunewise": {"cached": answer.cached}} if answer.cached else {})}


def _pieces(text: str) -> list[str]:
    """The reply cut at word boundaries, spaces kept, so the joined deltas equal the text exactly."""
    pieces, start = [], 0
    for index in range(1, len(text)):
        if text[index] == " " and text[index - 1] != " ":
            pieces.append(text[start:index])
            start = index
    pieces.append(text[start:])
    return [p for p in pieces if p]


Frame = Callable[[int, "str | None", "str | None"], bytes]
"""`frame(choice index, text piece, finish_reason)` -> one SSE event (b"" for none). The piece is "" for a
choice's opening event and None on its closing one."""


def _sse(body: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()


def _chat_frames(model: str, ident: str, created: int, include_usage: bool) -> tuple[Frame, Callable[[dict], bytes]]:
    """The chat.completion.chunk protocol: an opening delta with the role, content deltas, a closing delta
    with the finish reason; with include_usage every chunk carries `usage` (null but on the last)."""
    def body(choices: list[dict[str, Any]], usage: dict | None = None) -> bytes:
        chunk = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": choices, "system_fingerprint": None}
        return _sse(chunk | {"usage": usage} if include_usage else chunk)

    def frame(index: int, piece: str | None, finish: str | None) -> bytes:
        delta = {} if piece is None else {"role": "assistant", "content": ""} if piece == "" else {"content": piece}
        return body([{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}])

    return frame, lambda usage: body([], usage)


def _completion_frames(model: str, ident: str, created: int,
                       include_usage: bool) -> tuple[Frame, Callable[[dict], bytes]]:
    """The legacy text_completion stream: text pieces per choice, the last with its finish reason."""
    def body(choices: list[dict[str, Any]], usage: dict | None = None) -> bytes:
        chunk = {"id": ident, "object": "text_completion", "created": created, "model": model, "choices": choices}
        return _sse(chunk | {"usage": usage} if include_usage else chunk)

    def frame(index: int, piece: str | None, finish: str | None) -> bytes:
        if piece == "":
            return b""  # this protocol has no opening event
        return body([{"index": index, "text": piece or "", "finish_reason": finish, "logprobs": None}])

    return frame, lambda usage: body([], usage)


async def _pieces_of(state: ServerState, answer: Answer | LiveAnswer) -> AsyncIterator[str | Answer]:
    """A reply as text pieces, then the finished Answer. A whole answer (cached, a label, a JSON reply) is cut
    at word boundaries; a live one is sent as its row's tokens come and ends when its row ends, not when the
    whole batch does."""
    if isinstance(answer, Answer):
        for piece in _pieces(answer.text):
            yield piece
        yield answer
        return
    live = answer
    deltas = TextDeltas(live.decode, live.stops)
    deadline = time.monotonic() + state.config.timeout_s  # the wait for tokens, not the client's reading
    while True:
        kind, value = await asyncio.wait_for(live.sink.queue.get(), deadline - time.monotonic())
        if kind == "tokens":
            ids, finished = value
            if piece := deltas.add(ids):
                yield piece
            if finished:
                final = Answer(live.decode(deltas.ids), live.prompt_tokens, len(deltas.ids), "")
                break
        else:  # the batch ended before this row did: it failed
            error = value.exception()
            raise error if error is not None else RuntimeError("the batch ended without this row")
    final.text, stopped = _cut_at_stop(final.text, live.stops)
    final.finish_reason = "stop" if stopped or final.completion_tokens < live.max_tokens else "length"
    if piece := deltas.finish(final.text):
        yield piece
    yield final


async def _event_stream(state: ServerState, answers: list[Answer | LiveAnswer], frame: Frame,
                        usage_frame: Callable[[dict], bytes] | None,
                        after: Callable[[int, Answer], Awaitable[None]]) -> AsyncIterator[bytes]:
    """Server-sent events for one or more choices, interleaved as their pieces come, then the usage (when
    asked) and `[DONE]`; `after(index, answer)` files each live choice once the stream has delivered it.

    A client that goes away cancels the generator here: each live row's sink is cancelled (its batch drops
    the row's tokens and runs on for the others) and `tunewise_stream_disconnects` counts it. An error after
    the status line was sent goes into the stream as an OpenAI error envelope."""
    events: asyncio.Queue[tuple[int, str | Answer | BaseException]] = asyncio.Queue()

    async def pump(index: int, answer: Answer | LiveAnswer) -> None:
        try:
            async for item in _pieces_of(state, answer):
                await events.put((index, item))
        except Exception as error:  # noqa: BLE001 - handed to the stream, which reports it
            await events.put((index, error))

    pumps = [asyncio.create_task(pump(i, a)) for i, a in enumerate(answers)]
    delivered = False
    try:
        for index in range(len(answers)):
            if opening := frame(index, "", None):
                yield opening
        finals: list[Answer | None] = [None] * len(answers)
        while any(f is None for f in finals):
            index, item = await events.get()
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, Answer):
                finals[index] = item
                yield frame(index, None, item.finish_reason)
            else:
                yield frame(index, item, None)
        done = [f for f in finals if f is not None]
        if usage_frame is not None:
            yield usage_frame(_usage(done))
        yield b"data: [DONE]\n\n"
        delivered = True
        for index, (answer, final) in enumerate(zip(answers, done)):
            if isinstance(answer, LiveAnswer):
                await after(index, final)
    except Exception as error:  # noqa: BLE001 - the status line is sent: the error goes in the stream
        delivered = True
        problem = (APIError(504, f"no answer within {state.config.timeout_s:g} s", code="timeout")
                   if isinstance(error, TimeoutError) else
                   APIError(400, str(error), code="invalid_value") if isinstance(error, ValueError) else
                   APIError(500, f"internal error: {type(error).__name__}", code="internal_error"))
        if problem.status == 500:
            log.error("streamed generation failed", exc_info=error)
        state.metrics.errors.labels(str(problem.status), problem.code or "").inc()
        yield _sse(envelope(problem))
    finally:
        for task in pumps:
            task.cancel()
        if not delivered:  # the client went away mid-stream
            for answer in answers:
                if isinstance(answer, LiveAnswer):
                    answer.sink.cancelled = True
                    answer.future.cancel()  # only takes effect while the request still waits for its batch
            state.metrics.stream_disconnects.inc()


# ---------------------------------------------------------------- the gate (pure ASGI: sees streamed bodies end)


class Gate:
    """Auth, drain and metrics around every request; streamed responses count until their last byte."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state
        self.open = set(_OPEN) | ({"/metrics"} if state.config.public_metrics else set())

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in ROUTES else next((p for p in _PREFIXES if path.startswith(p + "/")), "other")
        started = time.perf_counter()
        status = [500]

        async def watched(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        state = self.state
        tracked = path not in ("/health", "/ready", "/metrics")
        if tracked:
            state.in_flight += 1
        try:
            rejection = self._reject(scope, path)
            if rejection is not None:
                state.metrics.errors.labels(str(rejection.status), rejection.code or "").inc()
                await error_response(rejection)(scope, receive, watched)
            else:
                await self.app(scope, receive, watched)
        finally:
            if tracked:
                state.in_flight -= 1
            state.metrics.requests.labels(route, str(status[0])).inc()
            state.metrics.latency.labels(route).observe(time.perf_counter() - started)

    def _reject(self, scope: dict, path: str) -> APIError | None:
        if path not in self.open:
            headers = dict(scope.get("headers") or [])
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            if not self.state.keys.allows(authorization):
                return APIError(401, "Missing or incorrect API key. Send `Authorization: Bearer <key>`.",
                                code="invalid_api_key")
        if self.state.draining and path not in ("/health", "/ready", "/metrics"):
            return APIError(503, "the server is shutting down; send this request to another replica",
                            code="shutting_down", headers={"Retry-After": "1"})
        return None


# ---------------------------------------------------------------- the app


def create_app(state: ServerState) -> Any:
    """The FastAPI app wrapped in the gate; `app.state.tunewise` is `state`."""
    app = FastAPI(title="tunewise", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.tunewise = state

    def failed(error: APIError) -> JSONResponse:
        state.metrics.errors.labels(str(error.status), error.code or "").inc()
        return error_response(error)

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        return failed(error)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        message = f"{request.method} {request.url.path}: {error.detail}"
        return failed(APIError(error.status_code, message, code=code, headers=getattr(error, "headers", None)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return failed(from_validation(list(error.errors())))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return failed(APIError(500, f"internal error: {type(error).__name__}", code="internal_error"))

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> Response:
        if state.draining:
            return JSONResponse(envelope(APIError(503, "draining: finishing in-flight requests before shutdown",
                                                  code="shutting_down")), status_code=503)
        return JSONResponse({"status": "ready", "models": sorted(state.models)})

    @app.get("/metrics")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    def card(served: ServedModel) -> dict[str, Any]:
        return {"id": served.name, "object": "model", "created": int(state.started), "owned_by": served.owned_by,
                "tunewise": {"kind": served.kind, "labels": served.labels, "description": served.description,
                             **served.extra}}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        # a copy first: the fine-tuning worker may add a model while this runs
        return {"object": "list", "data": [card(m) for m in list(state.models.values())]}

    @app.get("/v1/models/{name:path}")
    async def one_model(name: str) -> dict[str, Any]:
        return card(_lookup(state, name))

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = _parse(ChatRequest, await _read_json(request, state.config.max_body_bytes))
        served = _lookup(state, body.model)
        messages = [m.plain() for m in body.messages]
        answer = await _answer(state, served, "chat", messages, body, stream=body.stream)

        async def captured(done: Answer) -> None:
            if state.capture is not None:
                outcome = await asyncio.to_thread(state.capture.record, messages, done.text)
                state.metrics.captured.labels(outcome).inc()

        ident, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            frame, usage_frame = _chat_frames(served.name, ident, created, include_usage)

            async def after(_: int, done: Answer) -> None:
                await answer.remember(done)  # type: ignore[union-attr,misc]
                await captured(done)

            if isinstance(answer, Answer):
                await captured(answer)
            return StreamingResponse(_event_stream(state, [answer], frame, usage_frame if include_usage else None,
                                                   after),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        assert isinstance(answer, Answer)
        await captured(answer)
        return JSONResponse(_chat_body(served.name, answer, ident, created))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = _parse(CompletionRequest, await _read_json(request, state.config.max_body_bytes))
        served = _lookup(state, body.model)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        answers = await asyncio.gather(*(_answer(state, served, "completion", p, body, stream=body.stream)
                                         for p in prompts))
        ident, created = f"cmpl-{secrets.token_hex(12)}", int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            frame, usage_frame = _completion_frames(served.name, ident, created, include_usage)

            async def after(index: int, done: Answer) -> None:
                await answers[index].remember(done)  # type: ignore[union-attr,misc]

            return StreamingResponse(_event_stream(state, list(answers), frame,
                                                   usage_frame if include_usage else None, after),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        whole = [a for a in answers if isinstance(a, Answer)]
        choices = [{"index": i, "text": a.text, "finish_reason": a.finish_reason, "logprobs": None}
                   for i, a in enumerate(whole)]
        return JSONResponse({"id": ident, "object": "text_completion", "created": created, "model": served.name,
                             "choices": choices, "usage": _usage(whole)})

    @app.post("/v1/classify")
    async def classify(request: Request) -> Response:
        body = _parse(ClassifyRequest, await _read_json(request, state.config.max_body_bytes))
        served = _lookup(state, body.model)
        if body.labels is not None and served.labels is not None and body.labels != served.labels:
            raise APIError(400, f"model {served.name!r} classifies into its own labels {served.labels}; omit labels "
                                "or send exactly these", param="labels", code="invalid_value")
        if served.labels is None and body.labels is None:
            raise APIError(400, f"model {served.name!r} has no fixed labels; send the candidate labels",
                           param="labels", code="missing_required_parameter")
        texts = [body.input] if isinstance(body.input, str) else body.input
        answers = await asyncio.gather(*(_classified(state, served, text, body.labels) for text in texts))
        data = [{"object": "classification", "index": i, "label": a.text, "probabilities": a.probabilities,
                 **({"cached": a.cached} if a.cached else {})} for i, a in enumerate(answers)]
        return JSONResponse({"object": "list", "model": served.name, "data": data,
                             "usage": {"prompt_tokens": sum(a.prompt_tokens for a in answers),
                                       "total_tokens": sum(a.prompt_tokens for a in answers)}})

    _mount_finetuning(app, state)
    return Gate(app, state)


def _mount_finetuning(app: FastAPI, state: ServerState) -> None:
    """The files and fine-tuning endpoints, or (without a state folder) a 404 that says how to turn them on."""
    if state.finetune is not None:
        from tunewise.serve.finetune_api import add_finetune_routes

        add_finetune_routes(app, state.finetune.files, state.finetune.jobs, state.finetune.tuner, state.models,
                            read_json=lambda request: _read_json(request, state.config.max_body_bytes), parse=_parse,
                            max_upload_bytes=state.config.max_upload_bytes)
        return

    @app.api_route("/v1/files{rest:path}", methods=["GET", "POST", "DELETE"])
    @app.api_route("/v1/fine_tuning/{rest:path}", methods=["GET", "POST", "DELETE"])
    async def finetuning_off(rest: str) -> Response:
        raise APIError(404, "the files and fine-tuning API is off on this server. Fix: start it with "
                            "--state-dir DIR (a folder for uploads, jobs and the models they train).",
                       code="finetuning_disabled")


async def _classified(state: ServerState, served: ServedModel, text: str, labels: list[str] | None) -> Answer:
    key = cache_key(endpoint="classify", model=served.name, identity=served.identity, input=text, labels=labels)
    if (hit := state.cache.get(key)) is not None:
        state.metrics.cache_hits.labels("exact").inc()
        return Answer(**{**hit, "cached": "exact"})
    state.metrics.cache_misses.inc()
    answer = await _label(state, served, text, labels)
    state.metrics.tokens.labels(served.name, "prompt").inc(answer.prompt_tokens)
    state.cache.put(key, {k: v for k, v in answer.__dict__.items() if k != "cached"})
    return answer


def build_state(models: list[ServedModel], config: ServeConfig) -> ServerState:
    """Wire the shared pieces: keys, batcher, caches, capture, metrics."""
    from tunewise.serve.auth import load_keys
    from tunewise.serve.cache import minilm_embedder

    by_name = {m.name: m for m in models}
    holder: dict[str, ServerState] = {}
    batcher = MicroBatcher(lambda key, payloads: _run_batch(by_name, key, payloads), max_batch=config.max_batch,
                           max_wait_s=config.max_wait_ms / 1000, max_queue=config.max_queue,
                           on_batch=lambda key, n: holder["state"].metrics.batch_size.labels(key[0]).observe(n))
    metrics = ServeMetrics(queue_depth=batcher.depth, in_flight=lambda: holder["state"].in_flight)
    state = ServerState(
        config=config, models=by_name, keys=KeyChecker(load_keys(config.api_keys_env, config.api_key_file)),
        batcher=batcher, metrics=metrics, cache=LRUCache(config.cache_size),
        semantic=SemanticCache(minilm_embedder(), config.semantic_threshold) if config.semantic_cache else None,
        capture=Capture(config.capture_path, config.capture_pii) if config.capture_path else None)
    holder["state"] = state
    if config.state_dir is not None:
        state.finetune = _finetuning(config, by_name, batcher)
    return state


def _finetuning(config: ServeConfig, models: dict[str, ServedModel], batcher: MicroBatcher) -> FineTuning:
    """Open the stores under the state folder and start the training worker (which takes up unfinished jobs)."""
    def on_engine(call: Any) -> Any:
        while True:  # a full queue only delays attaching a finished model; it must not lose it
            try:
                return batcher.submit(("call", ""), call).result()
            except QueueFull:
                time.sleep(0.1)

    root = Path(config.state_dir)  # type: ignore[arg-type]
    files, jobs = FileStore(root / "files"), JobStore(root / "jobs")
    tuner = FineTuner(root, files, jobs, models, on_engine, config.precision)
    tuner.start()
    return FineTuning(files, jobs, tuner)
