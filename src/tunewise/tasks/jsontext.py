"""Finding JSON objects inside model output, which often wraps them in prose or code fences.

Shared by the extraction task's parser and the constrained-decoding fallback. Knows nothing about tasks
or models.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


def json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Every decodable {...} object in `text`, in order of where it starts."""
    decoder = json.JSONDecoder()
    for start in (i for i, ch in enumerate(text) if ch == "{"):
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value
