"""Server-sent events encoding of OpenAI's two streaming protocols: chat.completion.chunk and text_completion.

A protocol is a pair of functions: `frame(choice index, text piece, finish_reason)` gives one event (b"" for
none) and `usage_frame(usage)` the closing usage event. The piece is "" for a choice's opening event and None
for its closing one. `pieces` cuts a whole answer into word-sized deltas for answers that come whole.
Pure functions of their arguments: knows nothing about models, answers, the server state or HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Frame = Callable[[int, "str | None", "str | None"], bytes]
"""`frame(choice index, text piece, finish_reason)` -> one SSE event (b"" for none). The piece is "" for a
choice's opening event and None on its closing one."""

UsageFrame = Callable[[dict[str, int]], bytes]
"""`usage_frame(usage)` -> the event that carries the stream's token usage."""

DONE = b"data: [DONE]\n\n"
"""The event that ends every stream."""


def sse(body: dict[str, Any]) -> bytes:
    """One `data:` event holding `body` as JSON (non-ASCII kept as UTF-8)."""
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()


def pieces(text: str) -> list[str]:
    """The reply cut at word boundaries, spaces kept, so the joined deltas equal the text exactly."""
    found, start = [], 0
    for index in range(1, len(text)):
        if text[index] == " " and text[index - 1] != " ":
            found.append(text[start:index])
            start = index
    found.append(text[start:])
    return [p for p in found if p]


def chat_frames(model: str, ident: str, created: int, include_usage: bool) -> tuple[Frame, UsageFrame]:
    """The chat.completion.chunk protocol: an opening delta with the role, content deltas, a closing delta
    with the finish reason; with include_usage every chunk carries `usage` (null but on the last)."""
    def body(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        chunk = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": choices, "system_fingerprint": None}
        return sse(chunk | {"usage": usage} if include_usage else chunk)

    def frame(index: int, piece: str | None, finish: str | None) -> bytes:
        delta = {} if piece is None else {"role": "assistant", "content": ""} if piece == "" else {"content": piece}
        return body([{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}])

    return frame, lambda usage: body([], usage)


def completion_frames(model: str, ident: str, created: int, include_usage: bool) -> tuple[Frame, UsageFrame]:
    """The legacy text_completion stream: text pieces per choice, the last with its finish reason."""
    def body(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        chunk = {"id": ident, "object": "text_completion", "created": created, "model": model, "choices": choices}
        return sse(chunk | {"usage": usage} if include_usage else chunk)

    def frame(index: int, piece: str | None, finish: str | None) -> bytes:
        if piece == "":
            return b""  # this protocol has no opening event
        return body([{"index": index, "text": piece or "", "finish_reason": finish, "logprobs": None}])

    return frame, lambda usage: body([], usage)
