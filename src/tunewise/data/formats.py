"""Read any supported data file into examples plus issues: the one entry point every stage uses.

Composes `readers` (bytes -> records, per container format), `infer` (which columns of a table are the input
and the answer, when no standard shape matches) and `shapes` (records -> examples). Ids are made unique here,
and a mapping's columns are checked against the file here, because both are properties of the whole file,
not of one record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewise.data.bulk import collector_paused
from tunewise.data.codes import issue
from tunewise.data.infer import Inference, infer_columns
from tunewise.data.readers import read_file
from tunewise.data.records import DEFAULT_MAX_LINE_BYTES, TABULAR, RawRecord
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
    # Set when the mapping was guessed from the columns (see infer.py), to be printed with its override.
    inferred: Inference | None = None
    encoding: str | None = None
    columns: list[str] = field(default_factory=list)
    # The label (mapped output) of every record that had one, valid or not: `--fix` reports what it drops.
    labels_by_line: dict[int, str] = field(default_factory=dict)
    # CSV rows an unbalanced quote merged into one field: first line -> last line.
    merged: dict[int, int] = field(default_factory=dict)

    @property
    def error_lines(self) -> set[int]:
        return {i.line for i in self.issues if i.line is not None and i.severity.value == "error"}


@collector_paused()
def read_examples(
    path: str | Path,
    *,
    fmt: str | None = None,
    shape: str | None = None,
    mapping: ColumnMapping | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    encoding: str | None = None,
    sheet: str | None = None,
    task: str | None = None,
) -> Dataset:
    """Read `path`; never raises on bad content (see `Dataset.issues`). A table in no standard shape and with no
    mapping gets one inferred for `task` (classification when None and a label column exists)."""
    path = Path(path)
    if shape is not None and shape not in SHAPES:
        raise ValueError(f"shape {shape!r} is not one of {', '.join(SHAPES)}")
    outcome = read_file(path, fmt, max_line_bytes=max_line_bytes, encoding=encoding, sheet=sheet)
    chosen = shape if mapping is None else "mapped"
    if chosen is None:
        chosen = detect_shape(outcome.records)
    data = Dataset(path=path, format=outcome.format, shape=chosen, issues=list(outcome.issues),
                   lines_seen=outcome.lines_seen, mapping=mapping, truncated_at=outcome.truncated_at,
                   encoding=outcome.encoding, columns=_columns(outcome.records), merged=outcome.merged)
    tabular = outcome.format in TABULAR and (outcome.format not in ("json", "jsonl") or _flat(outcome.records))
    if chosen is None and tabular and outcome.records:
        data.inferred = infer_columns(outcome.records, task)
        if data.inferred.mapping is None:
            data.issues.append(_not_inferred(path, data.inferred))
            return data
        data.mapping, data.shape = data.inferred.mapping, "mapped"
    # A table's columns are its header: one error says it all, not one per row (a JSONL record stands alone).
    if (data.mapping is not None and outcome.records and _unknown_columns(data, data.mapping) and tabular
            and outcome.format != "jsonl"):
        return data
    _convert(outcome.records, data)
    data.issues.sort(key=lambda i: i.line if i.line is not None else 0)
    return data


def _convert(records: list[RawRecord], data: Dataset) -> None:
    seen_ids: set[str] = set()
    output_key = data.mapping.output if data.mapping else {"text_label": "label"}.get(data.shape or "", "output")
    for record in records:
        if isinstance(record.value, dict) and isinstance(record.value.get(output_key), (str, int, float)):
            data.labels_by_line[record.line] = str(record.value[output_key]).strip()
        example, problems = to_example(record, None if data.shape == "mapped" else data.shape, data.mapping)
        data.issues.extend(problems)
        if example is None:
            continue
        if example.id in seen_ids:
            example = Example(id=f"{example.id}@{example.line}", messages=example.messages, line=example.line,
                              metadata=example.metadata, synthetic=example.synthetic)
        seen_ids.add(example.id)
        data.examples.append(example)
        data.raw[record.line] = record.value


def _columns(records: list[RawRecord]) -> list[str]:
    names: dict[str, None] = {}
    for record in records[:1000]:
        if isinstance(record.value, dict):
            names.update(dict.fromkeys(record.value))
    return list(names)


def _flat(records: list[RawRecord]) -> bool:
    """JSON records that are rows of a table (`{"review": "...", "sentiment": "pos"}`), not chat transcripts or
    nested documents: such rows get their columns inferred as a CSV's would, instead of `missing_messages_list`.
    A list of scalars (tags) is still a cell; a list of objects is a transcript in another schema."""
    sample = [r.value for r in records[:200]]
    return bool(sample) and all(isinstance(v, dict) and "messages" not in v and all(_cell(x) for x in v.values())
                                for v in sample)


def _cell(value: Any) -> bool:
    return not isinstance(value, dict) and not (isinstance(value, list) and any(isinstance(x, (dict, list))
                                                                             for x in value))


def _not_inferred(path: Path, inference: Inference) -> Issue:
    listing = ", ".join(f"{p.name} ({p.kind})" for p in inference.profiles)
    return issue("columns_not_inferred", f"{inference.problem}; the columns of {path.name} are {listing}",
                 hint=f"Name the columns, e.g.: tunewise check {path} {inference.map_args()} (edit the column names; "
                      f"in the experiment YAML: {inference.yaml_line()})")


def _unknown_columns(data: Dataset, mapping: ColumnMapping) -> bool:
    """A mapped column no record has is one error naming the file's columns, not one error per line."""
    missing = sorted(c for c in mapping.used() if c not in data.columns)
    if not missing:
        return False
    shown = ", ".join(repr(c) for c in data.columns)
    for column in missing:
        role = next(r for r in ("input", "output", "system", "instruction", "id") if getattr(mapping, r) == column)
        data.issues.append(issue("unknown_column", f"{role}={column!r}: {column!r} is not a column of "
                                 f"{data.path.name}; its columns are {shown}", field=role,
                                 hint=f"Map {role} to one of {shown} (--map {role}=COLUMN, or data.mapping.{role} "
                                      "in the experiment YAML)."))
    return True
