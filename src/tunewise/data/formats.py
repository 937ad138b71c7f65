"""Read any supported data file into examples plus issues: the one entry point every stage uses.

Composes `readers` (bytes -> records, per container format) and `shapes` (records -> examples). Ids are
made unique here because uniqueness is a property of the whole file, not of one record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewise.data.readers import DEFAULT_MAX_LINE_BYTES, read_file
from tunewise.data.shapes import SHAPES, ColumnMapping, detect_shape, to_example
from tunewise.schema import Example, Issue


@dataclass(slots=True)
class Dataset:
    """A file as tunewise sees it. `raw` keeps each valid line's original object for `--fix`."""

    path: Path
    format: str
    shape: str | None
    examples: list[Example] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    raw: dict[int, Any] = field(default_factory=dict)
    lines_seen: int = 0
    mapping: ColumnMapping | None = None
    truncated_at: int | None = None

    @property
    def error_lines(self) -> set[int]:
        return {i.line for i in self.issues if i.line is not None and i.severity.value == "error"}


def read_examples(
    path: str | Path,
    *,
    fmt: str | None = None,
    shape: str | None = None,
    mapping: ColumnMapping | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Dataset:
    """Read `path`; never raises on bad content (see `Dataset.issues`)."""
    path = Path(path)
    if shape is not None and shape not in SHAPES:
        raise ValueError(f"shape {shape!r} is not one of {', '.join(SHAPES)}")
    outcome = read_file(path, fmt, max_line_bytes=max_line_bytes)
    chosen = shape if mapping is None else "mapped"
    if chosen is None:
        chosen = detect_shape(outcome.records)
    data = Dataset(path=path, format=outcome.format, shape=chosen, issues=list(outcome.issues),
                   lines_seen=outcome.lines_seen, mapping=mapping,
                   truncated_at=outcome.truncated_at)
    seen_ids: set[str] = set()
    for record in outcome.records:
        example, problems = to_example(record, None if chosen == "mapped" else chosen, mapping)
        data.issues.extend(problems)
        if example is None:
            continue
        if example.id in seen_ids:
            example = Example(id=f"{example.id}@{example.line}", messages=example.messages, line=example.line,
                              metadata=example.metadata, synthetic=example.synthetic)
        seen_ids.add(example.id)
        data.examples.append(example)
        data.raw[record.line] = record.value
    data.issues.sort(key=lambda i: i.line if i.line is not None else 0)
    return data
