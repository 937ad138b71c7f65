"""Text normalisation for near-duplicate detection, shared by `check` and `split`.

Two examples are near duplicates when their normalised texts are equal: same words after Unicode NFKC,
case folding, dropping punctuation and collapsing whitespace. Knows nothing about files or examples.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NON_WORD.sub(" ", folded).split())


def fingerprint(text: str) -> str:
    """A short stable key for a normalised text (16 hex chars of SHA-256)."""
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()[:16]
