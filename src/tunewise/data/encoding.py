"""Turn a text file's bytes into text when they may not be UTF-8: byte-order marks, `--encoding`, and legacy code
pages found by charset-normalizer.

A CSV saved by Excel on Windows is Windows-1252; a spreadsheet export may be UTF-16 with a byte-order mark.
Rejecting every such line would leave a newcomer stuck, so lines that are not valid UTF-8 are decoded with the
encoding charset-normalizer finds for them and each is reported as a warning naming the encoding. Lines that are
valid UTF-8 stay UTF-8 (ASCII is the same in every candidate), so a file mixing both reads right too.

A handful of stray bytes cannot tell Windows-1252 from its neighbours (0xE9 is é in cp1252, й in cp1251): below
MIN_EVIDENCE_BYTES the lines stay `invalid_utf8` errors, with the likely encoding named in the hint for
`--encoding`. Bytes that the chosen encoding cannot decode either stay errors with their line and column.
Knows nothing about CSV or JSON: it returns text and issues.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from typing import Any

from tunewise.data.codes import issue
from tunewise.schema import Issue

UTF8_BOM = b"\xef\xbb\xbf"
# Longest first: the UTF-32 little-endian mark starts with the UTF-16 one.
BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"),
        (b"\xfe\xff", "utf-16"))
MIN_EVIDENCE_BYTES = 12
DETECT_SAMPLE_BYTES = 256 * 1024
# When charset-normalizer scores several code pages about the same (it often does on English text, and on a
# few thousand bytes its coherence scores differ by noise: cp775 beat cp1252 by 0.04 on French words), the one
# Windows uses for Western languages, and so the one Excel writes, is far the most likely.
PREFERRED = ("cp1252", "latin_1", "iso8859_15")
CHAOS_SLACK, COHERENCE_SLACK = 0.02, 0.1
# How much more chaos a Western code page may show than the best guess and still win, when its text reads as a
# Western language (see `_western`).
WESTERN_SLACK = 0.1
_NON_ASCII_RUN = re.compile(r"[^\W\d_a-zA-Z]{3,}")
_SYMBOL_IN_WORD = re.compile(r"(?<=[^\W\d_])[^\x00-\x7f](?=[^\W\d_])")
NAMES = {"cp1252": "Windows-1252 (cp1252)", "latin_1": "Latin-1 (ISO-8859-1)", "utf-16": "UTF-16",
         "utf-32": "UTF-32"}


class EncodingError(ValueError):
    """`--encoding` names no codec Python knows."""


@dataclass(slots=True)
class Decoded:
    """The text (undecodable bytes kept as surrogate escapes, so a parser still sees the structure), the
    encoding used where it was not UTF-8, the lines that needed it, and the lines that could not be decoded."""

    text: str
    encoding: str | None = None
    legacy_lines: list[int] = field(default_factory=list)
    bad_lines: set[int] = field(default_factory=set)
    issues: list[Issue] = field(default_factory=list)


def check_codec(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise EncodingError(f"--encoding {encoding!r} is not an encoding Python knows; use e.g. utf-8, cp1252, "
                            "latin-1 or utf-16") from None


def describe(encoding: str) -> str:
    return NAMES.get(encoding, encoding)


def decode_bytes(data: bytes, encoding: str | None = None, *, detect: bool = True) -> Decoded:
    """Decode a whole file: `encoding` when given, else by byte-order mark, else UTF-8 with legacy lines
    detected (when `detect`) or reported as errors."""
    if encoding is not None:
        return _decode_as(data, check_codec(encoding))
    for mark, name in BOMS:
        if data.startswith(mark):
            decoded = _decode_as(data, name)
            decoded.issues.insert(0, issue("legacy_encoding", f"the file is {describe(name)} (it starts with a "
                                           "byte-order mark); read as such", line=1))
            return decoded
    data = data.removeprefix(UTF8_BOM)
    try:
        return Decoded(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    lines = data.split(b"\n")
    bad = [i for i, line in enumerate(lines) if not _is_utf8(line)]
    evidence = sum(b > 127 for i in bad for b in lines[i])
    guess = _guess(b"\n".join(lines[i] for i in bad)) if detect else None
    if guess is None or evidence < MIN_EVIDENCE_BYTES:
        return _per_line(lines, bad, None, guess)
    return _per_line(lines, bad, guess, guess)


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _guess(sample: bytes) -> str | None:
    """The encoding charset-normalizer finds most plausible for the non-UTF-8 lines (cp1252 wins ties)."""
    from charset_normalizer import from_bytes

    results = [r for r in from_bytes(sample[:DETECT_SAMPLE_BYTES]) if not r.encoding.startswith("utf")]
    if not results:
        return None
    best = results[0]
    # `could_be_from_charset`: code pages that decode the sample to the same text (cp1250 and cp1252 agree on
    # é and ’ but not on è or ï): naming cp1252 then costs nothing on the sample and is right on the rest.
    tied = {name for r in results if r.chaos <= best.chaos + CHAOS_SLACK and r.coherence >= best.coherence -
            COHERENCE_SLACK for name in (r.encoding, *r.could_be_from_charset)}
    chosen = next((name for name in PREFERRED if name in tied), None)
    return chosen or _western(sample[:DETECT_SAMPLE_BYTES], results, best.chaos) or best.encoding


def _western(sample: bytes, results: list[Any], best_chaos: float) -> str | None:
    """Windows-1252 when it is nearly as plausible as the best guess and reads like a Western language.

    On a few lines of French (é è à ç œ « » €), charset-normalizer's chaos scores differ by noise well beyond
    CHAOS_SLACK and a Baltic or Celtic code page can come first (cp1257, iso8859_14). Text in those languages, or
    Cyrillic or Greek, read as Windows-1252 is runs of accented letters (Ïðèâåò); Western text has accents one or
    two at a time inside ASCII words. So the Western page wins within WESTERN_SLACK when its reading is that.
    """
    ranked = {name: r.chaos for r in results for name in (r.encoding, *r.could_be_from_charset)}
    for name in PREFERRED:
        if name not in ranked or ranked[name] > best_chaos + WESTERN_SLACK:
            continue
        try:
            text = sample.decode(name)
        except UnicodeDecodeError:
            continue
        if _reads_western(text):
            return name
    return None


def _reads_western(text: str) -> bool:
    """No C1 control characters, few runs of three or more non-ASCII letters, few symbols inside words (see
    `_western`)."""
    if any("\x80" <= c <= "\x9f" for c in text):
        return False
    accented = sum(1 for c in text if ord(c) > 127 and c.isalpha())
    runs = sum(len(m) for m in _NON_ASCII_RUN.findall(text))
    symbols = sum(not c.isalpha() and c not in "\u2018\u2019" for c in _SYMBOL_IN_WORD.findall(text))  # ż ł: "¿ó³ta"
    return accented > 0 and runs <= 0.1 * accented and symbols <= 0.02 * accented


def _per_line(lines: list[bytes], bad: list[int], encoding: str | None, guess: str | None) -> Decoded:
    """UTF-8 lines as UTF-8; the others with `encoding` (a warning each), or as errors when there is none."""
    out = Decoded("", encoding)
    texts = [line.decode("utf-8", errors="surrogateescape") for line in lines]
    hint = (f"Re-save the file as UTF-8, or pass --encoding {guess} if that is its encoding (the likely one)."
            if guess else None)
    for index in bad:
        number, raw = index + 1, lines[index]
        if encoding is not None:
            try:
                texts[index] = raw.decode(encoding)
                out.legacy_lines.append(number)
                out.issues.append(issue("legacy_encoding", f"not UTF-8; read as {describe(encoding)}", line=number))
                continue
            except UnicodeDecodeError:
                pass
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            where = f" nor {describe(encoding)}" if encoding else ""
            out.bad_lines.add(number)
            out.issues.append(issue("invalid_utf8", f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is not "
                                    f"valid UTF-8{where}", line=number, column=exc.start + 1, hint=hint))
    out.text = "\n".join(texts)
    return out


def _decode_as(data: bytes, encoding: str) -> Decoded:
    """The whole file in one stated encoding; undecodable bytes become errors with line and column."""
    if encoding.startswith(("utf-16", "utf-32")):
        try:
            return Decoded(data.decode(encoding), encoding)
        except UnicodeDecodeError as exc:
            text = data[:exc.start].decode(encoding, errors="replace")
            line = text.count("\n") + 1
            column = len(text) - (text.rfind("\n") + 1) + 1
            return Decoded("", encoding, bad_lines={line}, issues=[issue(
                "invalid_utf8", f"bytes at line {line}, column {column} are not valid {describe(encoding)}; the file "
                "cannot be read past them", line=line, column=column, hint="Re-save the file as UTF-8.")])
    out = Decoded("", None if encoding == "utf-8" else encoding)
    texts = []
    for number, raw in enumerate(data.removeprefix(UTF8_BOM).split(b"\n"), start=1):
        try:
            texts.append(raw.decode(encoding))
        except UnicodeDecodeError as exc:
            texts.append(raw.decode("utf-8", errors="surrogateescape"))
            out.bad_lines.add(number)
            out.issues.append(issue("invalid_utf8", f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1} is not "
                                    f"valid {describe(encoding)}", line=number, column=exc.start + 1,
                                    hint=f"Check --encoding {encoding} is the file's encoding, or fix the byte."))
    out.text = "\n".join(texts)
    return out
