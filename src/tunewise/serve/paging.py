"""OpenAI's list envelope with cursor paging, for the files, jobs, events and checkpoints lists.

As OpenAI documents it: `limit` from 1 to 10,000 (each list has its own default), `after` the id of the last
item of the previous page (an empty `after` means from the start), and for lists that take it `order` (`asc`
or `desc` by creation time; items come newest first). Knows nothing about what is listed: items are dicts with
an `id`, newest first.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from tunewise.serve.errors import APIError
from tunewise.serve.jobs import page

MAX_LIMIT = 10_000

LIMIT = ("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "Items per page (1 to 10,000).")
AFTER = ("after", {"type": "string"}, "The id of the last item of the previous page; empty or absent: the start.")
ORDER = ("order", {"type": "string", "enum": ["asc", "desc"]}, "By creation time; default desc (newest first).")


def _limit(request: Request, default: int) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise APIError(400, f"limit must be a whole number from 1 to {MAX_LIMIT:,} (got {raw!r})", param="limit",
                       code="invalid_value")
    return int(raw)


def _ordered(items: list[dict[str, Any]], request: Request) -> list[dict[str, Any]]:
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise APIError(400, f"order must be asc or desc (got {order!r})", param="order", code="invalid_value")
    return items[::-1] if order == "asc" else items


def paged(items: list[dict[str, Any]], request: Request, *, default_limit: int = 20,
          orderable: bool = False) -> dict[str, Any]:
    """The page of `items` (newest first) that the request's `limit`, `after` (and `order`) ask for, as
    OpenAI's list object."""
    after = request.query_params.get("after") or None
    limit = _limit(request, default_limit)
    if orderable:
        items = _ordered(items, request)
    try:
        data, more = page(items, after, limit)
    except KeyError:
        raise APIError(400, f"after {after!r} is not the id of an item in this list", param="after",
                       code="invalid_value") from None
    return {"object": "list", "data": data, "has_more": more,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}
