"""Token streaming: a request's tokens travel from the batcher thread to its HTTP response as they are made.

The batcher thread runs one `generate` for many requests; a streamed request's payload carries a `TokenSink`,
and the batch's per-row callback pushes that row's new ids into it. The sink hands them to the event loop
(`call_soon_threadsafe` into an asyncio queue), so the model thread never waits on a client. A sink whose
client has gone is cancelled: its tokens are dropped there and the rest of the batch runs on untouched.

`TextDeltas` turns the growing id list into text pieces that never split a character (a byte-level token can
end inside a UTF-8 sequence: the decoded text then ends in U+FFFD, and it is held back until the next token
completes it) and never show a stop sequence (the tail that could still become one is held back too). The
final piece is cut from the final text, so the joined pieces equal the non-streamed answer exactly.

Knows nothing about models or routes: it sees ids, a decode function and a queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any


class TokenSink:
    """One streamed request's end of the hand-off; `push` and `close` run on the batcher thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.cancelled = False

    def _send(self, item: tuple[str, Any]) -> None:
        if self.cancelled:
            return
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the server stopped and nobody is listening
            self.cancelled = True

    def push(self, ids: list[int], finished: bool) -> None:
        self._send(("tokens", (ids, finished)))

    def follow(self, future: Future) -> None:
        """Queue the batch's outcome after the tokens (the loop runs hand-offs in the order they were made)."""
        future.add_done_callback(lambda done: self._send(("done", done)))


@dataclass
class Streamed:
    """A generate payload whose tokens go to `sink` as well as into the batch's result."""

    prompt: Any
    sink: TokenSink


def row_router(payloads: list[Any]) -> tuple[list[Any], Callable[[int, list[int], bool], None] | None]:
    """The plain prompts of a batch, and the per-row callback for its streamed rows (None when none is)."""
    sinks = {i: p.sink for i, p in enumerate(payloads) if isinstance(p, Streamed)}
    prompts = [p.prompt if isinstance(p, Streamed) else p for p in payloads]
    if not sinks:
        return prompts, None

    def route(index: int, ids: list[int], finished: bool) -> None:
        if index in sinks:
            sinks[index].push(ids, finished)

    return prompts, route


class TextDeltas:
    """The text of a growing completion, handed out in safe pieces (see the module docstring)."""

    def __init__(self, decode: Callable[[list[int]], str], stops: list[str]) -> None:
        self.decode = decode
        self.stops = stops
        self.ids: list[int] = []
        self.sent = ""
        self.stopped = False

    def add(self, ids: list[int]) -> str:
        """The new piece after `ids` (possibly empty)."""
        self.ids += ids
        if self.stopped:
            return ""
        text = self.decode(self.ids)
        cuts = [text.find(s) for s in self.stops if s in text]
        if cuts:
            self.stopped = True
            text = text[:min(cuts)]
        else:
            text = text.rstrip("\ufffd")
            hold = max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
            text = text[:len(text) - hold]
        return self._advance(text)

    def finish(self, final: str) -> str:
        """The rest of the final (stop-cut) text."""
        return self._advance(final)

    def _advance(self, text: str) -> str:
        # decoding a prefix of the ids gives a prefix of the text for byte-level tokenizers; if a tokenizer's
        # clean-up ever rewrote earlier text, nothing is sent until the text agrees with what was sent again
        if not text.startswith(self.sent):
            return ""
        piece, self.sent = text[len(self.sent):], text
        return piece
