"""Dataset-level checks: the problems you only see when you look at all examples together.

Duplicates, near duplicates, conflicting labels, context overflow, output-length outliers, label coverage
and balance, text hygiene (HTML, control characters, mojibake, junk metadata), personal data and secrets. Structural problems of single records are found earlier, by
`shapes`. Everything here works on `Example`s and token counts; it knows nothing about file formats.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tunewise.data import privacy
from tunewise.data.codes import issue
from tunewise.data.hygiene import hygiene_checks
from tunewise.data.textnorm import normalise
from tunewise.data.textviews import TextViews
from tunewise.data.tokens import Lengths
from tunewise.schema import Example, Issue

TASKS = ("classify", "extract", "generate")


@dataclass(frozen=True, slots=True)
class CheckOptions:
    """Thresholds; the defaults follow common fine-tuning guidance (10 examples minimum, 100+ advised)."""

    min_examples: int = 10
    recommended_examples: int = 100
    rare_label_min: int = 5
    rare_label_fraction: float = 0.01
    imbalance_ratio: float = 10.0
    short_output_tokens: int = 2
    long_output_factor: float = 5.0
    long_output_floor: int = 512
    scan_pii: bool = True


def infer_task(examples: Sequence[Example], shape: str | None) -> str:
    """text/label data, or a small closed set of short outputs, is classification; JSON outputs, extraction."""
    if shape == "text_label":
        return "classify"
    outputs = [e.output.strip() for e in examples]
    if not outputs:
        return "generate"
    distinct = set(outputs)
    if len(distinct) <= 50 and len(distinct) <= max(2, 0.2 * len(outputs)) and max(map(len, distinct)) <= 64:
        return "classify"
    allowed_misses = len(outputs) - 0.9 * len(outputs)  # extraction when at least 90% parse as objects
    misses = 0
    for output in outputs:
        misses += not _is_json_object(output)
        if misses > allowed_misses:  # prose outputs decide on the first few lines, not after parsing them all
            return "generate"
    return "extract"


def _is_json_object(text: str) -> bool:
    if not text.lstrip().startswith("{"):  # no object can parse: skip the parser's exception (most outputs)
        return False
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


def output_field(shape: str | None, example: Example) -> str:
    """Where the reference output lives in the user's file, for issue messages."""
    fields = {"prompt_completion": "completion", "input_output": "output", "alpaca": "output", "text_label": "label"}
    if shape in fields:
        return fields[shape]
    if shape == "mapped":
        return "output"
    last = max(i for i, m in enumerate(example.messages) if m.role == "assistant")
    return f"messages[{last}].content"


def content_field(shape: str | None, example: Example, index: int) -> str:
    if shape == "chat" or shape is None:
        return f"messages[{index}].content"
    if example.messages[index].role == "assistant":
        return output_field(shape, example)
    names = {"prompt_completion": "prompt", "input_output": "input", "alpaca": "instruction", "text_label": "text"}
    return names.get(shape, "system" if example.messages[index].role == "system" else "input")


def run_checks(examples: Sequence[Example], shape: str | None, task: str, lengths: Lengths | Callable[[], Lengths],
               context_length: int | None, options: CheckOptions = CheckOptions(),
               views: TextViews | None = None) -> list[Issue]:
    """Every check on parsed examples. `lengths` may be a callable (a pending tokenization): it is asked for
    last, so the tokenizer can run in another thread while the checks that need no token counts run. `views`
    shares each distinct text's derived forms with the statistics (built here when not given)."""
    views = views or TextViews(examples)
    before = _count_checks(len(examples), options) + _duplicate_checks(examples, shape, views.norms)
    after: list[Issue] = []
    if task == "classify":
        after += _label_checks(examples, options)
    if task == "extract":
        after += [issue("output_not_json", "the answer does not parse as a JSON object", line=e.line,
                        field=output_field(shape, e)) for e in examples if not _is_json_object(e.output)]
    after += hygiene_checks(examples, lambda e, index: content_field(shape, e, index), views.texts)
    if options.scan_pii:
        after += _privacy_checks(examples, shape, views.texts)
    counted = lengths() if callable(lengths) else lengths
    return before + _length_checks(examples, shape, task, counted, context_length, options) + after


def _count_checks(n: int, options: CheckOptions) -> list[Issue]:
    if n < options.min_examples:
        return [issue("too_few_examples", f"{n} valid examples; at least {options.min_examples} are needed")]
    if n < options.recommended_examples:
        return [issue("few_examples", f"{n} valid examples; {options.recommended_examples}+ are recommended")]
    return []


def _exact_key(example: Example) -> tuple[tuple[str, str, str], ...]:
    return tuple([(m.role, m.content, repr(m.weight)) for m in example.messages])  # what to_dict() would write


def _duplicate_checks(examples: Sequence[Example], shape: str | None, norms: dict[str, str]) -> list[Issue]:
    """Exact, near (same words) and conflicting duplicates. `norms` holds each distinct text's normalised form:
    normalising the joined messages equals joining the normalised ones (a newline ends a Unicode normalisation
    segment and is itself non-word)."""
    near: dict[str, Example] = {}  # the first example with these words
    exact: dict[tuple[tuple[str, str, str], ...], int] = {}  # filled only where words repeat: most never do
    by_input: dict[str, tuple[int, str]] = {}
    found: list[Issue] = []
    for e in examples:
        near_key = " ".join([part for part in [norms[m.content] for m in e.messages] if part])
        text_in = e.input  # a message's own text unless the prompt has several non-system turns
        input_key = norms[text_in] if text_in in norms else normalise(text_in)
        output_key = norms[e.output] if e.output in norms else ""
        first = near.get(near_key)
        if first is not None:  # an exact duplicate has the same words, so only here can one be
            exact.setdefault(_exact_key(first), first.line)
            key = _exact_key(e)
            if key in exact:
                found.append(issue("duplicate_example", f"same as line {exact[key]}", line=e.line))
            else:
                found.append(issue("near_duplicate", f"same words as line {first.line}", line=e.line))
            exact.setdefault(key, e.line)
        else:
            near[near_key] = e
            if input_key in by_input and by_input[input_key][1] != output_key:
                first_line, _ = by_input[input_key]
                found.append(issue("conflicting_labels", f"line {first_line} has the same input with a different "
                                   "output", line=e.line, field=output_field(shape, e)))
        by_input.setdefault(input_key, (e.line, output_key))
    return found


def _length_checks(examples: Sequence[Example], shape: str | None, task: str, lengths: Lengths,
                   context_length: int | None, options: CheckOptions) -> list[Issue]:
    found: list[Issue] = []
    if context_length:
        found += [issue("over_context_length", f"{total:,} tokens; the model's context is {context_length:,}", line=e.line)
                  for e, total in zip(examples, lengths.total) if total > context_length]
    if task != "generate" or not examples:
        return found
    median = statistics.median(lengths.output)
    long_limit = max(options.long_output_floor, options.long_output_factor * median)
    for e, n in zip(examples, lengths.output):
        if n < options.short_output_tokens:
            found.append(issue("very_short_output", f"output is {n} token(s)", line=e.line, field=output_field(shape, e)))
        elif n > long_limit:
            found.append(issue("very_long_output", f"output is {n:,} tokens; the median is {median:,.0f}",
                               line=e.line, field=output_field(shape, e)))
    return found


def _label_checks(examples: Sequence[Example], options: CheckOptions) -> list[Issue]:
    counts = Counter(e.label for e in examples)
    first_line = {}
    for e in examples:
        first_line.setdefault(e.label, e.line)
    rare_below = max(options.rare_label_min, options.rare_label_fraction * len(examples))
    found = [issue("rare_label", f"label {label!r} has {n} example(s)", line=first_line[label])
             for label, n in sorted(counts.items()) if n < rare_below]
    if len(counts) > 1:
        (top, most), (bottom, least) = counts.most_common(1)[0], counts.most_common()[-1]
        if most / least >= options.imbalance_ratio:
            found.append(issue("label_imbalance", f"{top!r} has {most} examples, {bottom!r} only {least} "
                                                  f"({most / least:.0f}x)"))
    return found


def _privacy_checks(examples: Sequence[Example], shape: str | None, texts: dict[str, None]) -> list[Issue]:
    flagged = {text: findings for text in texts if (findings := privacy.scan(text))}  # each distinct text once
    found: list[Issue] = []
    for e in examples if flagged else ():  # nearly every file has no finding: no second pass
        for index, message in enumerate(e.messages):
            findings = flagged.get(message.content)
            if not findings:
                continue
            by_code: dict[str, list[str]] = {}
            for finding in findings:
                by_code.setdefault(finding.code, []).append(_mask(message.content[finding.start:finding.end]))
            for code, values in by_code.items():
                what = ", ".join(values[:3]) + (f" and {len(values) - 3} more" if len(values) > 3 else "")
                found.append(issue(code, f"{len(values)} found: {what}", line=e.line,
                                   field=content_field(shape, e, index)))
    return found


def _mask(value: str) -> str:
    """Enough to find it in the file, not enough to leak it into a report."""
    return value[:3] + "…" if len(value) > 4 else "…"
