"""Text normalisation for near-duplicate detection, shared by `check`, `split` and `leakage`.

Two examples are near duplicates when their normalised texts are equal: same words after HTML entities are
decoded and markup dropped (a web dump's "don&#039;t<br />" is the "don't" of a clean copy), Unicode NFKC,
case folding, dropping punctuation and collapsing whitespace. Knows nothing about files or examples.
"""

from __future__ import annotations

import html
import re
import unicodedata

from tunewise.data.hygiene import MARKUP

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    if "<" in text:
        text = MARKUP.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
        if "<" in text:  # "&lt;br&gt;" is markup once decoded
            text = MARKUP.sub(" ", text)
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NON_WORD.sub(" ", folded).split())
