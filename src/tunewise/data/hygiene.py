"""Text hygiene: what scraped and exported text carries that a model should not learn, found and repaired.

HTML entities (`&#039;`, `&rsquo;`) and markup (`<br />`) from web dumps, control characters from copy-paste
and binary junk, mojibake (UTF-8 read with the wrong codec: `Ã©`, `â€™`, judged by ftfy, the maintained
library for exactly this), junk values in metadata columns (`N/A` in a column of numbers) and dates that
cannot be read in a column of dates. Each finding is
a warning on the example's line with a count and the first values, so a person can see the pattern; `--fix`
repairs text with `clean_text`. Knows nothing about files: it works on examples and strings.
"""

from __future__ import annotations

import html
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence

from tunewise.data.codes import issue
from tunewise.data.values import PLACEHOLDERS, parse_date, parse_number
from tunewise.schema import Example, Issue

ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
# Known HTML tags only: "a <b> c" style comparisons in plain text must not read as markup.
MARKUP = re.compile(r"</?(?:br|p|div|span|b|i|u|em|strong|a|li|ul|ol|h[1-6]|font|img|hr|table|tr|td|th|"
                    r"blockquote|pre|code|sup|sub|small)\b[^<>]{0,200}?/?>", re.IGNORECASE)
BREAK = re.compile(r"<(?:br|/p|p|/div|div|/li)\b[^<>]{0,200}?/?>", re.IGNORECASE)
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# What an ASCII text needs for any finding: an & (entity), a < (markup) or an ASCII control character; mojibake
# needs a non-ASCII character (every pattern of ftfy's badness regex includes one). Most text has none, and
# `str.isascii` plus one character class is ~100x cheaper than the four scans.
_ASCII_HINT = re.compile(r"[&<\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SHOWN = 3


def _shown(values: Sequence[str]) -> str:
    counts = Counter(values)
    listed = ", ".join(repr(v) for v, _ in counts.most_common(SHOWN))
    return listed + (" …" if len(counts) > SHOWN else "")


def _entities(text: str) -> list[str]:
    return [m.group() for m in ENTITY.finditer(text) if html.unescape(m.group()) != m.group()]


def _is_mojibake(text: str) -> bool:
    from ftfy.badness import is_bad

    return is_bad(text)


def text_findings(text: str) -> list[tuple[str, str]]:
    """(code, message) for each kind of problem in one text."""
    if text.isascii() and not _ASCII_HINT.search(text):
        return []
    found = []
    entities = _entities(text)
    if entities:
        found.append(("html_entities", f"{len(entities)} HTML entit{'y' if len(entities) == 1 else 'ies'}: "
                                       f"{_shown(entities)}"))
    tags = MARKUP.findall(text)
    if tags:
        found.append(("html_markup", f"{len(tags)} HTML tag(s): {_shown(tags)}"))
    controls = CONTROL.findall(text)
    if controls:
        found.append(("control_characters", f"{len(controls)} control character(s): "
                                            f"{_shown([f'U+{ord(c):04X}' for c in controls])}"))
    if _is_mojibake(text):
        found.append(("mojibake", "looks decoded with the wrong codec (e.g. Ã© for é, â€™ for ’)"))
    return found


def hygiene_checks(examples: Sequence[Example], field_of: Callable[[Example, int], str],
                   texts: Iterable[str]) -> list[Issue]:
    """One warning per example, message and code; `field_of(example, index)` names the field in the file.
    `texts` are the distinct message texts (`TextViews.texts`): a system prompt is scanned once."""
    flagged = {text: findings for text in texts if (findings := text_findings(text))}
    found: list[Issue] = []
    for e in examples if flagged else ():  # most files have none: no second pass
        for index, message in enumerate(e.messages):
            for code, text in flagged.get(message.content, ()):
                found.append(issue(code, text, line=e.line, field=field_of(e, index)))
    return found + metadata_checks(examples)


def _number(text: str) -> bool:
    return parse_number(text) is not None


def metadata_checks(examples: Sequence[Example]) -> list[Issue]:
    """Placeholders (`N/A`, `null`, `#VALUE!`) anywhere, and words in a column that is otherwise numbers: a
    classical model or a slice report would take them for real values."""
    by_key: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for e in examples:
        for key, value in e.metadata.items():
            if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
                by_key[key].append((e.line, str(value).strip()))
    found: list[Issue] = []
    for key, values in by_key.items():
        numeric = sum(_number(v) for _, v in values) >= 0.8 * len(values)
        if not numeric:
            found += _date_checks(key, values)
        for line, value in values:
            if value.lower() in PLACEHOLDERS:
                found.append(issue("metadata_junk", f"metadata {key!r} is the placeholder {value!r}", line=line,
                                   field=key))
            elif numeric and not _number(value):
                found.append(issue("metadata_junk", f"metadata {key!r} is {value[:40]!r} in a column of numbers",
                                   line=line, field=key))
    return found


def _date_checks(key: str, values: list[tuple[int, str]]) -> list[Issue]:
    """In a column of dates (most of a sample parses), the values that do not: `split.by` cannot place them."""
    sample = values[:200]
    if sum(parse_date(v) is not None for _, v in sample) < 0.8 * len(sample):
        return []
    return [issue("unparseable_date", f"metadata {key!r} is {value[:40]!r}, not a date", line=line, field=key)
            for line, value in values if value.lower() not in PLACEHOLDERS and parse_date(value) is None]


def clean_text(text: str, *, unescape_html: bool = False) -> str:
    """Repair what `text_findings` flags: mojibake (ftfy), control characters, and with `unescape_html` the
    entities (decoded) and markup (line breaks for <br>/<p>, other tags dropped)."""
    if _is_mojibake(text):
        from ftfy import fix_encoding

        text = fix_encoding(text)
    if unescape_html:
        text = BREAK.sub("\n", text)
        text = MARKUP.sub("", text)
        text = html.unescape(text)
        text = re.sub(r"\n{3,}", "\n\n", text)
    return CONTROL.sub("", text)
