"""Seeded perturbations of test inputs: typos, casing, whitespace noise, stripped punctuation, truncation.

A model that scores well on clean test inputs may still fall apart on what users really type. Each
perturbation here is a pure function Example -> Example: the same id, only the user turns before the
reference answer changed (never the system prompt, never the reference), and `metadata["perturbation"]`
naming what was done. The random choices come from a generator seeded by (seed, perturbation, example id),
so a perturbed copy is the same whichever other examples are perturbed with it and in whatever order:
predictions on it can be cached and resumed like any others.

This module knows nothing about models, arms or run folders.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, replace
from typing import Literal

from tunewise.schema import Example

Kind = Literal["typos", "case", "whitespace", "punctuation", "truncate"]
KINDS: tuple[str, ...] = ("typos", "case", "whitespace", "punctuation", "truncate")

# QWERTY neighbours: a slipped finger lands on an adjacent key, which is what real typos mostly are.
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS: dict[str, str] = {}
for _r, _row in enumerate(_ROWS):
    for _c, _key in enumerate(_row):
        near = [_row[j] for j in (_c - 1, _c + 1) if 0 <= j < len(_row)]
        for _other in (_r - 1, _r + 1):
            if 0 <= _other < len(_ROWS):
                near += [_ROWS[_other][j] for j in (_c - 1, _c, _c + 1) if 0 <= j < len(_ROWS[_other])]
        _NEIGHBOURS[_key] = "".join(near)

_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}\u2018\u2019\u201c\u201d\u2013\u2014\u2026]")


def typos(text: str, rate: float, rng: random.Random) -> str:
    """Each letter is, with probability `rate`, swapped with the next letter, dropped, followed by a random
    inserted letter, or replaced by a keyboard neighbour (one edit each, chosen uniformly; a swap without a
    distinct next letter, or a drop of a one-letter word, becomes a neighbour slip).

    Only letters are touched and only letters are inserted, so word boundaries stay where they were.
    """
    out: list[str] = []
    chars = list(text)
    i = 0
    while i < len(chars):
        char = chars[i]
        if not char.isalpha() or rng.random() >= rate:
            out.append(char)
            i += 1
            continue
        edit = rng.randrange(4)
        if edit == 0 and i + 1 < len(chars) and chars[i + 1].isalpha() and chars[i + 1] != char:
            out += [chars[i + 1], char]  # swap: both letters used up by one edit
            i += 2
            continue
        alone = not (i > 0 and chars[i - 1].isalpha()) and not (i + 1 < len(chars) and chars[i + 1].isalpha())
        if edit == 1 and not alone:
            pass  # drop (never a word's only letter: that would delete a word, not misspell it)
        elif edit == 2:
            out += [char, _same_case(rng.choice(string.ascii_lowercase), char)]
        else:  # keyboard neighbour (also the fallback for a swap with no distinct next letter)
            near = _NEIGHBOURS.get(char.lower())
            out.append(_same_case(rng.choice(near), char) if near else _other_letter(char, rng))
        i += 1
    return "".join(out)


def _same_case(letter: str, like: str) -> str:
    return letter.upper() if like.isupper() else letter


def _other_letter(char: str, rng: random.Random) -> str:
    """A different letter for characters off the QWERTY map (accented, non-Latin)."""
    return _same_case(rng.choice([c for c in string.ascii_lowercase if c != char.lower()]), char)


def casing(text: str, mode: str, rng: random.Random) -> str:
    """All upper, all lower, or each letter's case chosen at random."""
    if mode == "upper":
        return text.upper()
    if mode == "lower":
        return text.lower()
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)


def whitespace(text: str, rate: float, rng: random.Random) -> str:
    """Each gap between words becomes, with probability `rate`, a run of 2-4 spaces, a newline, or a blank
    line; leading and trailing whitespace are added with the same probability."""
    parts = text.split()
    noisy = [rng.choice(("  ", "   ", "    ", "\n", "\n\n", " \n ")) if rng.random() < rate else " "
             for _ in range(max(len(parts) - 1, 0))]
    body = "".join(word + gap for word, gap in zip(parts, noisy + [""]))
    lead = "  " if rng.random() < rate else ""
    trail = "\n" if rng.random() < rate else ""
    return lead + body + trail


def strip_punctuation(text: str) -> str:
    return _PUNCTUATION.sub("", text)


def truncate(text: str, keep: float) -> str:
    """The first `keep` share of the words (at least one), joined by single spaces."""
    words = text.split()
    return " ".join(words[:max(1, round(len(words) * keep))]) if words else text


@dataclass(frozen=True)
class Perturbation:
    """One perturbation with its parameters. `rate` is for typos and whitespace, `mode` for case, `keep` for
    truncate; `label` overrides the derived name (used in file names and tables)."""

    kind: Kind
    rate: float = 0.05
    mode: Literal["upper", "lower", "random"] = "random"
    keep: float = 0.5
    label: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"perturbation kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not 0 <= self.rate <= 1 or not 0 < self.keep <= 1:
            raise ValueError(f"perturbation {self.kind}: rate must be in [0, 1] and keep in (0, 1]; "
                             f"got rate={self.rate}, keep={self.keep}")

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        if self.kind in ("typos", "whitespace"):
            return f"{self.kind}-{self.rate:g}"
        if self.kind == "case":
            return f"case-{self.mode}"
        if self.kind == "truncate":
            return f"truncate-{self.keep:g}"
        return "no-punctuation"

    def text(self, text: str, rng: random.Random) -> str:
        if self.kind == "typos":
            return typos(text, self.rate, rng)
        if self.kind == "case":
            return casing(text, self.mode, rng)
        if self.kind == "whitespace":
            return whitespace(text, self.rate, rng)
        if self.kind == "punctuation":
            return strip_punctuation(text)
        return truncate(text, self.keep)

    def apply(self, example: Example, seed: int) -> Example:
        """The example with its prompt's user turns perturbed; deterministic per (seed, name, example id)."""
        rng = random.Random(f"{seed}:{self.name}:{example.id}")
        cut = len(example.prompt_messages)
        messages = tuple(replace(m, content=self.text(m.content, rng)) if i < cut and m.role == "user" else m
                         for i, m in enumerate(example.messages))
        return replace(example, messages=messages, metadata={**example.metadata, "perturbation": self.name})


def perturb(examples: list[Example], perturbation: Perturbation, seed: int) -> list[Example]:
    return [perturbation.apply(e, seed) for e in examples]
