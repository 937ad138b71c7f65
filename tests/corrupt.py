"""A generator of valid chat lines and mutated lines, each mutation tagged with the code `check` must report.

Shared by the corrupted-corpus test and `bench/check_throughput.py`. Valid lines are unique, PII-free,
and long enough to raise no length warnings, so any issue on a valid line is a false positive.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu amber basil cedar dune ember fern "
         "grove heath iris juniper kelp lotus moss nectar olive pine quartz reed sage thyme umber vale willow").split()


def _words_for(index: int) -> str:
    """A unique phrase per index (base-len(WORDS) digits), so no two valid lines are near duplicates."""
    digits = []
    while True:
        index, rest = divmod(index, len(WORDS))
        digits.append(WORDS[rest])
        if index == 0:
            return " ".join(digits)


def valid_record(index: int, rng: random.Random) -> dict:
    tag = _words_for(index)
    question = f"Please summarise the note about {tag} " + " ".join(rng.choices(WORDS, k=rng.randint(5, 25)))
    answer = f"The note about {tag} says " + " ".join(rng.choices(WORDS, k=rng.randint(5, 25)))
    return {"messages": [{"role": "system", "content": "You are a concise assistant."},
                         {"role": "user", "content": question},
                         {"role": "assistant", "content": answer}]}


def valid_line(index: int, rng: random.Random) -> bytes:
    return (json.dumps(valid_record(index, rng)) + "\n").encode()


def _dump(record: object) -> bytes:
    return (json.dumps(record) + "\n").encode()


def _with_message(record: dict, index: int, **changes: object) -> dict:
    message = dict(record["messages"][index])
    for key, value in changes.items():
        if value is None:
            message.pop(key, None)
        else:
            message[key] = value
    record["messages"][index] = message
    return record


Mutation = Callable[[dict, random.Random], bytes]

# name -> (code that must be reported on that line, function producing the mutated line from a valid record)
MUTATIONS: dict[str, tuple[str, Mutation]] = {
    "truncated": ("invalid_json", lambda r, g: _dump(r)[: g.randint(5, 40)] + b"\n"),
    "trailing_comma": ("invalid_json", lambda r, g: _dump(r)[:-2] + b",}\n"),
    "single_quotes": ("invalid_json", lambda r, g: _dump(r).replace(b'"', b"'")),
    "bom": ("utf8_bom", lambda r, g: b"\xef\xbb\xbf" + _dump(r)),
    "crlf": ("crlf_line_ending", lambda r, g: _dump(r)[:-1] + b"\r\n"),
    "invalid_utf8": ("invalid_utf8", lambda r, g: _dump(r).replace(b"note", b"n\xe9te", 1)),
    "array": ("data_type", lambda r, g: _dump([r])),
    "string": ("data_type", lambda r, g: _dump("just a string")),
    "number": ("data_type", lambda r, g: _dump(g.randint(0, 9))),
    "null": ("data_type", lambda r, g: b"null\n"),
    "no_messages": ("missing_messages_list", lambda r, g: _dump({"conversation": r["messages"]})),
    "messages_not_list": ("missing_messages_list", lambda r, g: _dump({"messages": "hello"})),
    "missing_role": ("message_missing_key", lambda r, g: _dump(_with_message(r, 1, role=None))),
    "missing_content_key": ("message_missing_key", lambda r, g: _dump(_with_message(r, 2, content=None))),
    "extra_key": ("message_unrecognized_key", lambda r, g: _dump(_with_message(r, 1, mood="happy"))),
    "bad_role": ("unrecognized_role", lambda r, g: _dump(_with_message(r, 2, role="bot"))),
    "empty_content": ("missing_content", lambda r, g: _dump(_with_message(r, 1, content="   "))),
    "no_assistant": ("example_missing_assistant_message", lambda r, g: _dump({"messages": r["messages"][:2]})),
    "message_not_object": ("message_not_object", lambda r, g: _dump({"messages": ["hi", r["messages"][2]]})),
    "bad_weight": ("invalid_weight", lambda r, g: _dump(_with_message(r, 2, weight=5))),
    "content_not_string": ("invalid_type", lambda r, g: _dump(_with_message(r, 1, content=["a", "b"]))),
    "deep_nesting": ("nesting_too_deep", lambda r, g: b"[" * 200_000 + b"]" * 200_000 + b"\n"),
    "blank": ("blank_line", lambda r, g: b"   \n"),
    "email": ("pii_email", lambda r, g: _dump(_with_message(r, 1, content=r["messages"][1]["content"] + " mail jane.roe@example.org"))),
    "card": ("pii_credit_card", lambda r, g: _dump(_with_message(r, 1, content=r["messages"][1]["content"] + " card 4111 1111 1111 1111"))),
    "aws_key": ("secret", lambda r, g: _dump(_with_message(r, 1, content=r["messages"][1]["content"] + " key AKIAIOSFODNN7EXAMPLE"))),
}
HUGE = ("line_too_long", lambda r, g: b'{"messages": [], "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}\n')


def build_corpus(valid: int, mutated: int, seed: int = 0, *, huge_line: bool = True) -> tuple[bytes, dict[int, str], set[int]]:
    """Return (file bytes, {mutated line number: expected code}, set of valid line numbers).

    Mutations are spread at random positions and cycle through every kind; one 10 MB line is included.
    """
    rng = random.Random(seed)
    kinds = list(MUTATIONS)
    slots = sorted(rng.sample(range(valid + mutated), mutated))
    slot_set = set(slots)
    lines: list[bytes] = []
    expected: dict[int, str] = {}
    valid_lines: set[int] = set()
    next_valid = 0
    for position in range(valid + mutated):
        number = position + 1
        if position in slot_set:
            k = len(expected)
            code, mutate = HUGE if huge_line and k == 0 else MUTATIONS[kinds[k % len(kinds)]]
            lines.append(mutate(valid_record(10_000_000 + k, rng), rng))
            expected[number] = code
        else:
            lines.append(valid_line(next_valid, rng))
            valid_lines.add(number)
            next_valid += 1
    return b"".join(lines), expected, valid_lines
