"""OpenAI's list envelope with cursor paging (`?limit=` 1..100, `?after=<id>`), for the files and jobs lists.

Knows nothing about what is listed: items are dicts with an `id`, in the order they are to be shown.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from tunewise.serve.errors import APIError
from tunewise.serve.jobs import page


def _limit(request: Request, default: int = 20) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise APIError(400, f"limit must be a whole number from 1 to 100 (got {raw!r})", param="limit",
                       code="invalid_value")
    return int(raw)


def paged(items: list[dict[str, Any]], request: Request) -> dict[str, Any]:
    """The page of `items` the request's `limit` and `after` ask for, as OpenAI's list object."""
    after = request.query_params.get("after")
    try:
        data, more = page(items, after, _limit(request))
    except KeyError:
        raise APIError(400, f"after {after!r} is not the id of an item in this list", param="after",
                       code="invalid_value") from None
    return {"object": "list", "data": data, "has_more": more,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}
