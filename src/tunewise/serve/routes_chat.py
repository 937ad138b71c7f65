"""POST /v1/chat/completions and POST /v1/completions: OpenAI's answers, whole (JSON) or streamed (SSE).

The route reads and checks the body, asks answering.py for each choice, and shapes the reply: a JSON object,
or an event stream in the endpoint's protocol (sse.py) driven by event_stream.py. Answered chats are recorded
for training when the server captures traffic. Knows nothing about batching, caching or models' insides.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tunewise.serve.answering import Answer, LiveAnswer, answer, lookup, usage
from tunewise.serve.bodies import read_body
from tunewise.serve.event_stream import event_stream
from tunewise.serve.openapi import answers, json_body
from tunewise.serve.responses import ChatCompletion, Completion
from tunewise.serve.schemas import ChatRequest, CompletionRequest
from tunewise.serve.sse import chat_frames, completion_frames
from tunewise.serve.state import ServerState, State

router = APIRouter()

_SSE_HEADERS = {"Cache-Control": "no-cache"}


def chat_body(model: str, done: Answer, ident: str, created: int) -> dict[str, Any]:
    """A whole chat.completion object for one answer."""
    return {"id": ident, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text, "refusal": None},
                         "finish_reason": done.finish_reason, "logprobs": None}],
            "usage": usage([done]), "system_fingerprint": None,
            **({"tunewise": {"cached": done.cached}} if done.cached else {})}


async def _capture(state: ServerState, messages: list[dict[str, str]], done: Answer) -> None:
    """Best effort: the client's answer is ready, so a capture that cannot be written (a full disk) is logged and
    counted, never turned into an error for the client."""
    if state.capture is None:
        return
    try:
        outcome = await asyncio.to_thread(state.capture.record, messages, done.text)
    except OSError as error:
        logging.getLogger("tunewise.serve").warning("capture not written: %s", error)
        outcome = "failed"
    state.metrics.captured.labels(outcome).inc()


_EVENTS = {"text/event-stream": {"schema": {  # one server-sent event (OpenAPI 3.1 reads `schema` per event)
    "type": "object", "required": ["data"],
    "properties": {"data": {"type": "string", "description": "A chunk as JSON (chat.completion.chunk or "
                                                             "text_completion), an error envelope as JSON, or "
                                                             "[DONE], the last event of every stream."},
                   "event": {"type": "string"}},
    "description": "With stream: true, the answer comes as server-sent events."}}}


@router.post("/v1/chat/completions", openapi_extra=json_body(ChatRequest),
             responses=answers(ChatCompletion, 400, 404, 413, 429, 504, media=_EVENTS))
async def chat(request: Request, state: State) -> Response:
    body = await read_body(request, ChatRequest, state.config.max_body_bytes)
    served = lookup(state, body.model)
    messages = [m.plain() for m in body.messages]
    reply = await answer(state, served, "chat", messages, body, stream=body.stream)
    ident, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
    if not body.stream:
        assert isinstance(reply, Answer)
        await _capture(state, messages, reply)
        return JSONResponse(chat_body(served.name, reply, ident, created))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    frame, usage_frame = chat_frames(served.name, ident, created, include_usage)

    async def after(_: int, done: Answer) -> None:
        await reply.remember(done)  # type: ignore[union-attr,misc]
        await _capture(state, messages, done)

    if isinstance(reply, Answer):
        await _capture(state, messages, reply)
    return StreamingResponse(event_stream(state, [reply], frame, usage_frame if include_usage else None, after),
                             media_type="text/event-stream", headers=_SSE_HEADERS)


def _all_or_none(results: list[Answer | LiveAnswer | BaseException]) -> list[Answer | LiveAnswer]:
    """Every prompt's answer, or the first prompt's error, with the rows already generating for the others
    dropped from their batches (nobody will read them)."""
    failed = [r for r in results if isinstance(r, BaseException)]
    if not failed:
        return results  # type: ignore[return-value]
    for result in results:
        if isinstance(result, LiveAnswer):
            result.sink.cancelled = True
            result.future.cancel()
    raise failed[0]


@router.post("/v1/completions", openapi_extra=json_body(CompletionRequest),
             responses=answers(Completion, 400, 404, 413, 429, 504, media=_EVENTS))
async def completions(request: Request, state: State) -> Response:
    body = await read_body(request, CompletionRequest, state.config.max_body_bytes)
    served = lookup(state, body.model)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    params = ["prompt"] if isinstance(body.prompt, str) else [f"prompt.{i}" for i in range(len(prompts))]
    answers = _all_or_none(await asyncio.gather(
        *(answer(state, served, "completion", p, body, stream=body.stream, param=param)
          for p, param in zip(prompts, params)), return_exceptions=True))
    ident, created = f"cmpl-{secrets.token_hex(12)}", int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        frame, usage_frame = completion_frames(served.name, ident, created, include_usage)

        async def after(index: int, done: Answer) -> None:
            await answers[index].remember(done)  # type: ignore[union-attr,misc]

        return StreamingResponse(event_stream(state, answers, frame, usage_frame if include_usage else None, after),
                                 media_type="text/event-stream", headers=_SSE_HEADERS)
    whole = [a for a in answers if isinstance(a, Answer)]
    choices = [{"index": i, "text": a.text, "finish_reason": a.finish_reason, "logprobs": None}
               for i, a in enumerate(whole)]
    return JSONResponse({"id": ident, "object": "text_completion", "created": created, "model": served.name,
                         "choices": choices, "usage": usage(whole)})
