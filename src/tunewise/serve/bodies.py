"""Reading a JSON request body ourselves: size limit, nesting limit, strict JSON, valid Unicode, strict schema,
each failure a 4xx envelope naming the parameter.

FastAPI's own body handling is not used for the JSON endpoints: it would read an unbounded body, accept NaN
and answer schema errors in its own shape. Here the declared and the streamed size are both checked against
the limit, the nesting depth is checked on the raw bytes before `json.loads` recurses (100,000 `[` would
otherwise end in a RecursionError, a 500), `NaN`/`Infinity` are refused, a lone UTF-16 surrogate (`"\\ud800"`,
valid JSON but no Unicode character: it cannot be encoded, tokenized or hashed) is refused with the field
named, and a pydantic failure becomes one 400 naming the parameter.
Knows nothing about models, routes or the server state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, TypeVar

import numpy as np
from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from tunewise.serve.errors import APIError, from_validation

Schema = TypeVar("Schema", bound=BaseModel)

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects a body may have. The deepest body an endpoint here reads is about 6
levels (a message's content parts, a job's method.supervised.hyperparameters); 64 leaves room for metadata
while keeping every recursive step after it (json.loads, pydantic, the cache key) far from Python's limit."""

_DIGITS = re.compile(r"[0-9]{1,20}")
# A JSON string, or an unterminated one up to the end. Possessive quantifiers never backtrack, and an unterminated
# string is taken whole, so blanking is linear (a regex that backtracked made a 100 KB body of \" pairs take 20 s).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.|\\\Z)*+(?P<end>"|\Z)', re.DOTALL)
_KEY_BEFORE = re.compile(rb'"((?:[^"\\]|\\.)*)"\s*:\s*$', re.DOTALL)
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_OPENING, _CLOSING = b"[{", b"]}"


def declared_length(request: Request) -> int | None:
    """The Content-Length header as a number (None without one), or a 400 naming the header."""
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not _DIGITS.fullmatch(declared):
        raise APIError(400, f"Content-Length {declared!r} is not a whole number of bytes; send the body's size "
                            "or no Content-Length", param="Content-Length", code="invalid_request")
    return int(declared)


def _blank_strings(raw: bytes) -> bytes:
    """`raw` with every JSON string's inside blanked (same length), so brackets in text are not counted."""
    def blanked(match: re.Match[bytes]) -> bytes:
        closed = match.group("end") == b'"'
        return b'"' + b" " * (len(match.group()) - (2 if closed else 1)) + (b'"' if closed else b"")

    return _STRING.sub(blanked, raw)


def check_depth(raw: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse a body nesting arrays/objects deeper than `limit`, naming the top-level field it is in.

    Counted on the raw bytes (numpy, not a Python loop: a 1 MB body takes a few ms), strings blanked first."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return  # cannot be deeper than the number of brackets
    blank = _blank_strings(raw)
    codes = np.frombuffer(blank, dtype=np.uint8)
    step = np.zeros(len(codes), dtype=np.int64)
    for char in _OPENING:
        step[codes == char] = 1
    for char in _CLOSING:
        step[codes == char] = -1
    depth = np.cumsum(step)
    if len(depth) == 0 or depth.max() <= limit:
        return
    where = int(np.argmax(depth > limit))
    # the field: the key before the bracket that opened depth 2 on the way down to `where`
    opened = np.flatnonzero((depth[:where] == 2) & (step[:where] == 1))
    start = int(opened[-1]) if len(opened) else 0
    key = _KEY_BEFORE.search(raw[max(0, start - 1024):start]) if len(opened) else None
    param = key.group(1).decode("utf-8", "replace") if key else None
    raise APIError(400, f"{param or 'the body'} nests arrays/objects more than {limit} levels deep (at byte "
                        f"{where:,}); this server reads at most {limit} levels. Fix: flatten the value",
                   param=param, code="invalid_json")


def _strings(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """Every string in a parsed body (keys included) with the path to it."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield path, key
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, str(index)))


def check_unicode(raw: bytes, body: Any) -> None:
    """Refuse a lone UTF-16 surrogate (only a `\\uD800`-style escape can make one: UTF-8 bytes cannot)."""
    if not _ESCAPED_SURROGATE.search(raw):
        return
    for path, text in _strings(body):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            param = ".".join(path) or None
            bad = text[err.start]
            raise APIError(400, f"{param or 'the body'} holds a lone UTF-16 surrogate (\\u{ord(bad):04x} at "
                                f"character {err.start}), which is not a Unicode character. Fix: send valid "
                                "Unicode (a surrogate pair, or U+FFFD for an unknown character)",
                           param=param, code="invalid_value") from None


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, or APIError 400 (unreadable) / 413 (over `limit` bytes)."""
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise APIError(413, f"the body has {declared:,} bytes; the limit is {limit:,}", code="request_too_large")
    raw = bytearray()
    try:
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limit:
                raise APIError(413, f"the body exceeds the limit of {limit:,} bytes", code="request_too_large")
    except ClientDisconnect:
        raise APIError(400, "the client closed the connection before the whole body arrived",
                       code="client_disconnected") from None
    if not raw:
        raise APIError(400, "the body is empty; send a JSON object", code="invalid_json")
    data = bytes(raw)
    check_depth(data)

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        body = json.loads(data.decode("utf-8"), parse_constant=no_constants)
    except UnicodeDecodeError as err:
        raise APIError(400, f"the body is not UTF-8 ({err})", code="invalid_json") from None
    except (ValueError, RecursionError) as err:
        raise APIError(400, f"the body is not valid JSON: {err}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, f"the body must be a JSON object, not {type(body).__name__}", code="invalid_json")
    check_unicode(data, body)
    return body


def parse(schema: type[Schema], body: dict[str, Any]) -> Schema:
    """`body` validated by `schema`, or one APIError 400 naming the first bad parameter."""
    try:
        return schema.model_validate(body)
    except ValidationError as err:
        raise from_validation(list(err.errors())) from None


async def read_body(request: Request, schema: type[Schema], limit: int) -> Schema:
    """`read_json` then `parse`: what every JSON endpoint does first."""
    return parse(schema, await read_json(request, limit))
