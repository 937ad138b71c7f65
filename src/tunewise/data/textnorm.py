"""Text normalisation for near-duplicate detection, shared by `check` and `split`.

Two examples are near duplicates when their normalised texts are equal: same words after Unicode NFKC,
case folding, dropping punctuation and collapsing whitespace. Knows nothing about files or examples.
"""

from __future__ import annotations

import re
import unicodedata

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NON_WORD.sub(" ", folded).split())
