"""One response's event stream: answers (whole or still generating) turned into interleaved SSE events.

`event_stream` drives one or more choices at once: each choice's text pieces go out as they come, framed by
the protocol it is given (sse.py), then the usage (when asked) and `[DONE]`. A client that goes away cancels
the stream: its live rows are dropped from their batch and `tunewise_stream_disconnects` counts it. An error
after the status line was sent goes into the stream as an OpenAI error envelope, followed by `[DONE]`.

Knows nothing about routes or request bodies, nor about which protocol it frames.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from tunewise.serve.answering import Answer, LiveAnswer, cut_at_stop, stopped, usage
from tunewise.serve.batching import Stopping
from tunewise.serve.errors import APIError, envelope
from tunewise.serve.sse import DONE, Frame, UsageFrame, pieces, sse
from tunewise.serve.state import ServerState
from tunewise.serve.streaming import TextDeltas

log = logging.getLogger("tunewise.serve")

After = Callable[[int, Answer], Awaitable[None]]
"""`after(choice index, finished answer)`: files a live choice once the stream has delivered it."""


async def pieces_of(answer: Answer | LiveAnswer, timeout_s: float) -> AsyncIterator[str | Answer]:
    """A reply as text pieces, then the finished Answer. A whole answer (cached, a label, a JSON reply) is cut
    at word boundaries; a live one is sent as its row's tokens come and ends when its row ends, not when the
    whole batch does. `timeout_s` bounds the wait for tokens, not the client's reading."""
    if isinstance(answer, Answer):
        for piece in pieces(answer.text):
            yield piece
        yield answer
        return
    live = answer
    deltas = TextDeltas(live.decode, live.stops)
    deadline = time.monotonic() + timeout_s
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
    final.text, stopped = cut_at_stop(final.text, live.stops)
    final.finish_reason = "stop" if stopped or final.completion_tokens < live.max_tokens else "length"
    if piece := deltas.finish(final.text):
        yield piece
    yield final


def _problem(state: ServerState, error: Exception) -> APIError:
    """The envelope for an error met after the status line went out."""
    if isinstance(error, TimeoutError):
        return APIError(504, f"no answer within {state.config.timeout_s:g} s", code="timeout")
    if isinstance(error, Stopping):
        return stopped()
    if isinstance(error, ValueError):
        return APIError(400, str(error), code="invalid_value")
    log.error("streamed generation failed", exc_info=error)
    return APIError(500, f"internal error: {type(error).__name__}", code="internal_error")


async def event_stream(state: ServerState, answers: list[Answer | LiveAnswer], frame: Frame,
                       usage_frame: UsageFrame | None, after: After) -> AsyncIterator[bytes]:
    """Server-sent events for one or more choices, interleaved as their pieces come, then the usage (when
    asked) and `[DONE]`; `after(index, answer)` files each live choice once the stream has delivered it."""
    events: asyncio.Queue[tuple[int, str | Answer | BaseException]] = asyncio.Queue()

    async def pump(index: int, answer: Answer | LiveAnswer) -> None:
        try:
            async for item in pieces_of(answer, state.config.timeout_s):
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
            yield usage_frame(usage(done))
        yield DONE
        delivered = True
        # after [DONE] nothing more may be sent: a failure to remember or capture an answer is only logged
        for index, (answer, final) in enumerate(zip(answers, done)):
            if isinstance(answer, LiveAnswer):
                try:
                    await after(index, final)
                except Exception:  # noqa: BLE001 - the client already has its whole answer
                    log.exception("filing a delivered streamed answer failed")
    except Exception as error:  # noqa: BLE001 - the status line is sent: the error goes in the stream
        delivered = True
        problem = _problem(state, error)
        state.metrics.errors.labels(str(problem.status), problem.code or "").inc()
        yield sse(envelope(problem))
        yield DONE  # the stream still ends as every stream does, so clients stop reading
    finally:
        for task in pumps:
            task.cancel()
        if not delivered:  # the client went away mid-stream
            for answer in answers:
                if isinstance(answer, LiveAnswer):
                    answer.sink.cancelled = True
                    answer.future.cancel()  # only takes effect while the request still waits for its batch
            state.metrics.stream_disconnects.inc()
