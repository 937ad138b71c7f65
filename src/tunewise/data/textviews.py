"""The distinct message texts of a dataset, and what several checks derive from each, computed once.

The statistics need each text's words, near-duplicate detection its normalised form, and the token counter,
the privacy scan and the hygiene scan each look at every distinct text once (a system prompt repeats on every
line). Found separately, the distinct texts took five passes over all messages and the words two splits: on
100k lines a fifth of `tunewise check`. Knows nothing about files or issues.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

from tunewise.data.textnorm import normalise_from_words, words_of
from tunewise.schema import Example


class TextViews:
    def __init__(self, examples: Sequence[Example]) -> None:
        # dict.fromkeys keeps first-seen order, so anything derived from it is deterministic
        self.texts: dict[str, None] = dict.fromkeys(m.content for e in examples for m in e.messages)

    @cached_property
    def words(self) -> dict[str, list[str]]:
        """Each text's lower-cased words (`textnorm.words_of`)."""
        return {text: words_of(text) for text in self.texts}

    @cached_property
    def norms(self) -> dict[str, str]:
        """Each text's near-duplicate key (`textnorm.normalise`), from its words where that is the same thing."""
        words = self.words
        return {text: normalise_from_words(text, words[text]) for text in self.texts}
