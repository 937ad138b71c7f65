"""Guess which columns of a table are the input and the answer when no standard shape matches.

A CSV export rarely says `text,label`: a tweets file says `sentiment,confidence,text`, a review dump says
`drugName,condition,review,rating,date,usefulCount`. Telling such a user to add a `messages` list is the wrong
advice; the right one is a column mapping, and most tables make it plain: the input is the longest free-text
column, a classification label is a short column with few distinct values and (usually) a label-like name.
The guess comes with a confidence and its reasons, is printed with the exact `--map` and YAML lines that
override it, and is refused (with every column's type and examples) when two columns are equally likely.

Knows nothing about files or examples: it looks at raw records (dicts) and returns a `ColumnMapping`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunewise.data.records import RawRecord
from tunewise.data.shapes import ColumnMapping
from tunewise.data.values import is_missing, looks_like_date, parse_number

SAMPLE = 5000
# Label-like names, best first; a column matches when one of its words (split on case, _ - and space) is one.
LABEL_NAMES = ("label", "labels", "category", "class", "sentiment", "intent", "topic", "target", "rating",
               "polarity", "emotion", "stance", "tag", "genre", "y")
OUTPUT_NAMES = ("output", "answer", "response", "completion", "reply", "summary", "target", "solution")
ID_NAMES = ("id", "uid", "uuid", "key", "index")
MAX_LABELS = 50
MAX_LABEL_CHARS = 64
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


@dataclass(frozen=True, slots=True)
class ColumnProfile:
    """What one column holds, from a sample of rows: enough to choose it, or for a person to."""

    name: str
    kind: str  # text | number | date | empty
    filled: int
    distinct: int
    mean_chars: float
    examples: tuple[str, ...]

    def describe(self) -> str:
        shown = ", ".join(repr(e[:40] + ("…" if len(e) > 40 else "")) for e in self.examples)
        return (f"{self.name or '(unnamed)'}: {self.kind}, {self.distinct:,} distinct of {self.filled:,}, "
                f"{self.mean_chars:.0f} chars on average; e.g. {shown}")


@dataclass(frozen=True, slots=True)
class Inference:
    """The guessed mapping (None when unsure), how sure, why, and every column's profile."""

    mapping: ColumnMapping | None
    confidence: str  # high | medium | low
    reasons: tuple[str, ...]
    profiles: tuple[ColumnProfile, ...]
    problem: str | None = None

    def map_args(self) -> str:
        """The `--map` options that reproduce (or, edited, override) this mapping."""
        mapping = self.mapping or suggested_mapping(self.profiles)
        return " ".join(f"--map {role}={_quoted(column)}" for role, column in mapping_items(mapping))

    def yaml_line(self) -> str:
        mapping = self.mapping or suggested_mapping(self.profiles)
        inner = ", ".join(f"{role}: {_yaml_key(column)}" for role, column in mapping_items(mapping))
        return f"data: {{mapping: {{{inner}}}}}"

    def to_json(self) -> dict[str, Any]:
        return {"mapping": dict(mapping_items(self.mapping)) if self.mapping else None,
                "confidence": self.confidence, "reasons": list(self.reasons), "problem": self.problem,
                "columns": [{"name": p.name, "type": p.kind, "filled": p.filled, "distinct": p.distinct,
                             "mean_chars": round(p.mean_chars, 1), "examples": list(p.examples)}
                            for p in self.profiles]}


def mapping_items(mapping: ColumnMapping | None) -> list[tuple[str, str]]:
    if mapping is None:
        return []
    roles = ("input", "output", "system", "instruction", "id")
    return [(role, getattr(mapping, role)) for role in roles if getattr(mapping, role)]


def _quoted(column: str) -> str:
    return column if re.fullmatch(r"[\w.-]+", column) else "'" + column.replace("'", "'\\''") + "'"


def _yaml_key(column: str) -> str:
    return column if re.fullmatch(r"[A-Za-z_][\w.-]*", column) else '"' + column.replace('"', '\\"') + '"'


def _text(value: Any) -> str:
    return "" if value is None else value.strip() if isinstance(value, str) else str(value)


def profile_columns(records: Sequence[RawRecord], sample: int = SAMPLE) -> list[ColumnProfile]:
    """One profile per column, in the order columns first appear."""
    columns: dict[str, list[str]] = {}
    rows = [r.value for r in records[:sample] if isinstance(r.value, dict)]
    for row in rows:
        for key in row:
            columns.setdefault(key, [])
    for row in rows:
        for key, values in columns.items():
            text = _text(row.get(key))
            if text:
                values.append(text)
    profiles = []
    for name, values in columns.items():
        if not values:
            profiles.append(ColumnProfile(name, "empty", 0, 0, 0.0, ()))
            continue
        present = [v for v in values if not is_missing(v)]  # "N/A" in a column of numbers: missing, imputed
        if present and sum(parse_number(v) is not None for v in present) >= 0.95 * len(present):
            kind = "number"
        elif sum(map(looks_like_date, values[:500])) >= 0.9 * min(len(values), 500):
            kind = "date"
        else:
            kind = "text"
        distinct = list(dict.fromkeys(values))
        profiles.append(ColumnProfile(name, kind, len(values), len(distinct), sum(map(len, values)) / len(values),
                                      tuple(distinct[:3])))
    return profiles


def _words(name: str) -> set[str]:
    return {w.lower() for w in _WORDS.findall(name)}


def _name_rank(name: str, names: Sequence[str]) -> int | None:
    """Position of the first of `names` that is a word of the column's name (None: not label-like)."""
    words = _words(name)
    return next((i for i, candidate in enumerate(names) if candidate in words), None)


def _is_label_like(p: ColumnProfile, rows: int) -> bool:
    """Few distinct, short values: a closed set (as checks.infer_task judges a task to be classification)."""
    return (p.kind in ("text", "number") and 2 <= p.distinct <= MAX_LABELS
            and p.distinct <= max(2, 0.2 * rows) and p.mean_chars <= MAX_LABEL_CHARS)


def _input_column(profiles: Sequence[ColumnProfile], rows: int) -> tuple[ColumnProfile | None, str, bool]:
    """The longest free-text column; `close` when a second one is nearly as long (then the guess is less sure)."""
    texts = sorted((p for p in profiles if p.kind == "text" and p.distinct > max(1, 0.2 * rows)
                    and p.mean_chars >= 2), key=lambda p: -p.mean_chars)
    if not texts:
        return None, "no column holds free text (many distinct text values)", False
    # An answer is often longer than its question: a column named like an answer is the input only when it is
    # the only free text there is (a survey's `response` column to classify).
    questions = [p for p in texts if not _answer_like(p.name)] or texts
    best = questions[0]
    close = len(questions) > 1 and questions[1].mean_chars >= 0.8 * best.mean_chars
    which = "free-text column" if best is texts[0] else "free-text column not named like an answer"
    return best, f"{best.name!r} is the longest {which} ({best.mean_chars:.0f} chars on average)", close


def _answer_like(name: str) -> bool:
    """Named like a generated answer (`answer`, `response`), not like a label (`target` is both)."""
    rank = _name_rank(name, OUTPUT_NAMES)
    return rank is not None and OUTPUT_NAMES[rank] not in LABEL_NAMES


def _label_column(profiles: Sequence[ColumnProfile], rows: int, used: str) -> tuple[ColumnProfile | None, str, str]:
    """(column, reason, confidence) for a classification label; column None with the reason when unsure."""
    candidates = [p for p in profiles if p.name != used and _is_label_like(p, rows)]
    named = sorted((p for p in candidates if _name_rank(p.name, LABEL_NAMES) is not None),
                   key=lambda p: _name_rank(p.name, LABEL_NAMES))  # type: ignore[arg-type, return-value]
    if named:
        best = named[0]
        return best, f"{best.name!r} has {best.distinct} distinct values and a label-like name", "high"
    if len(candidates) == 1:
        only = candidates[0]
        return only, f"{only.name!r} is the only column with few distinct values ({only.distinct})", "medium"
    if not candidates:
        return None, "no column has few distinct short values (a label column) and none is named like one", "low"
    names = ", ".join(repr(p.name) for p in candidates)
    return None, f"several columns could be the label ({names}) and none is named like one", "low"


def _id_column(profiles: Sequence[ColumnProfile], rows: int, used: set[str]) -> str | None:
    """A column of unique values named like an id (an unnamed first column is usually an exported index)."""
    for p in profiles:
        unnamed = p.name.startswith("unnamed_") or p.name == ""
        if p.name not in used and p.filled == rows and p.distinct == rows and p.mean_chars <= 40 and (
                unnamed or _name_rank(p.name, ID_NAMES) is not None):
            return p.name
    return None


def infer_columns(records: Sequence[RawRecord], task: str | None = None) -> Inference:
    """Guess input, output (and id) columns for `task` (None: classification if a label column exists, else
    generation from an output-like column)."""
    profiles = profile_columns(records)
    rows = min(len(records), SAMPLE)
    source, input_reason, close = _input_column(profiles, rows)
    if source is None:
        return Inference(None, "low", (), tuple(profiles), input_reason)
    reasons = [input_reason]
    output: ColumnProfile | None = None
    confidence = "low"
    problem = None
    if task in (None, "classify"):
        output, reason, confidence = _label_column(profiles, rows, source.name)
        reasons.append(reason)
        problem = None if output else reason
    if output is None and task != "classify":
        named = [p for p in profiles if p.name != source.name and p.kind == "text"
                 and _name_rank(p.name, OUTPUT_NAMES) is not None]
        if named:
            output, confidence, problem = named[0], "medium", None
            reasons.append(f"{output.name!r} is named like an answer")
        elif task is not None:
            problem = f"no column other than {source.name!r} is named like an answer ({', '.join(OUTPUT_NAMES)})"
    if output is None:
        return Inference(None, "low", tuple(reasons), tuple(profiles), problem)
    if close and confidence == "high":
        confidence = "medium"
        reasons.append("another text column is nearly as long")
    ident = _id_column(profiles, rows, {source.name, output.name})
    mapping = ColumnMapping(input=source.name, output=output.name, id=ident)
    return Inference(mapping, confidence, tuple(reasons), tuple(profiles))


def suggested_mapping(profiles: Sequence[ColumnProfile]) -> ColumnMapping:
    """A starting point for the `--map` a person edits when inference is unsure: the longest text column and
    the shortest-valued other one (placeholders when the table has nothing better)."""
    texts = sorted((p for p in profiles if p.kind == "text"), key=lambda p: (_answer_like(p.name), -p.mean_chars))
    source = texts[0].name if texts else "INPUT_COLUMN"
    others = sorted((p for p in profiles if p.name != source and p.filled),
                    key=lambda p: (not _answer_like(p.name), p.distinct, p.name))
    return ColumnMapping(input=source, output=others[0].name if others else "LABEL_COLUMN")
