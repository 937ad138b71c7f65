"""`tunewise review export RUN OUT`: the run's examples with the references reviewers corrected.

The examples are the run's frozen split (`splits/train.jsonl`, `val.jsonl`, `test.jsonl`, in that order),
so the export is exactly what the run used. For each reviewed example whose latest review says the
reference is wrong, the new reference is the reviewer's `corrected_reference`, else the one answer every arm
the reviewer marked right agrees on. A reference marked wrong with no such answer is left out (`drop`,
the default: a known-wrong label should not train the next model) or kept as it was (`keep`).

The output format follows OUT's extension: `.jsonl` (chat records, as the splits) or `.csv` / `.tsv`
(columns id, split, input, output). OUT is written atomically; it may not be a data file the run read nor
anything inside the run folder, so no input is ever touched. Glue only: it reads the run folder and writes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from tunewise.schema import Example, Message
from tunewise.store.atomic import atomic_write_text
from tunewise.store.predictions import PredictionStore
from tunewise.store.reviews import Review, read_reviews
from tunewise.store.runs import open_run

SPLITS = ("train", "val", "test")
TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}


class ExportError(ValueError):
    """The export cannot be written; the message names the path and the fix."""


@dataclass
class ExportSummary:
    out: Path
    examples: int = 0
    corrected: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    dropped: int = 0
    problems: list[str] = field(default_factory=list)


def export_reviewed(run_dir: Path, out: Path, unresolved: Literal["drop", "keep"] = "drop") -> ExportSummary:
    """Write the run's examples with reviewed references corrected to `out`; see the module docstring."""
    run_dir, out = Path(run_dir), Path(out)
    run = open_run(run_dir)
    suffix = out.suffix.lower()
    if suffix != ".jsonl" and suffix not in TABLE_DELIMITERS:
        raise ExportError(f"{out}: unknown output format {out.suffix or '(no extension)'!r}; "
                          "name the file .jsonl, .csv or .tsv")
    _refuse_inputs(run_dir, out, run.manifest)
    found = read_reviews(run_dir)
    latest = found.latest()
    summary = ExportSummary(out=out, problems=list(found.problems))
    rows: list[tuple[str, Example]] = []
    for split in SPLITS:
        for example in _read_split(run_dir / "splits" / f"{split}.jsonl"):
            review = latest.get(example.id)
            if review is not None and review.reference_wrong:
                fixed = review.corrected_reference or _agreed_answer(run_dir, review)
                if fixed is None:
                    summary.unresolved.append(example.id)
                    if unresolved == "drop":
                        summary.dropped += 1
                        continue
                else:
                    example = _with_reference(example, fixed)
                    summary.corrected.append(example.id)
            rows.append((split, example))
    summary.examples = len(rows)
    try:
        atomic_write_text(out, _render(rows, suffix))
    except OSError as exc:
        raise ExportError(f"cannot write {exc.filename or out}: {exc.strerror or exc}; choose a writable path") from None
    return summary


def _refuse_inputs(run_dir: Path, out: Path, manifest: Mapping[str, Any]) -> None:
    target = out.resolve()
    inputs = [Path(str(f.get("path", ""))).resolve() for f in manifest.get("data_files") or [] if f.get("path")]
    if target in inputs:
        raise ExportError(f"{out} is the data file the run read; the export never overwrites its input. "
                          "Fix: give a new file name")
    if target.is_relative_to(run_dir.resolve()):
        raise ExportError(f"{out} is inside the run folder {run_dir}, which the export only reads. "
                          "Fix: write the export elsewhere")
    if out.is_dir():
        raise ExportError(f"{out} is a folder; give a file name ending in .jsonl, .csv or .tsv")


def _read_split(path: Path) -> list[Example]:
    if not path.is_file():
        if path.stem == "val":  # a run without a validation split
            return []
        raise ExportError(f"{path}: missing; this run folder has no frozen split to export. Fix: export a run "
                          "that `tunewise run` has split (its splits/ folder holds train/val/test.jsonl)")
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            messages = tuple(Message(m["role"], m["content"], m.get("weight")) for m in record["messages"])
            examples.append(Example(id=str(record["id"]), messages=messages, line=number,
                                    metadata=record.get("metadata") or {}, synthetic=bool(record.get("synthetic"))))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ExportError(f"{path}:{number}: not a chat record ({type(exc).__name__}: {exc}); the split "
                              "was changed by hand. Fix: restore it from `tunewise run --resume`") from None
    return examples


def _agreed_answer(run_dir: Path, review: Review) -> str | None:
    """The single answer every arm marked right gave for this example, or None (none marked, or they differ)."""
    answers = set()
    for arm, verdict in review.verdicts.items():
        if verdict != "right":
            continue
        path = run_dir / "predictions" / f"{arm}.jsonl"
        if "/" in arm or "\\" in arm or arm.startswith("."):  # an arm name from a hand-edited file: no other path
            return None
        prediction = PredictionStore(path).done.get(review.example_id) if path.is_file() else None
        if prediction is None or prediction.error:
            return None
        answers.add(prediction.prediction.strip())
    return answers.pop() if len(answers) == 1 else None


def _with_reference(example: Example, reference: str) -> Example:
    """The example with its last assistant turn (the reference) replaced."""
    messages = list(example.messages)
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "assistant":
            messages[index] = replace(messages[index], content=reference)
            return replace(example, messages=tuple(messages))
    return replace(example, messages=(*messages, Message("assistant", reference)))


def _render(rows: list[tuple[str, Example]], suffix: str) -> str:
    if suffix == ".jsonl":
        return "".join(json.dumps(e.to_chat_record(), ensure_ascii=False) + "\n" for _, e in rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=TABLE_DELIMITERS[suffix], lineterminator="\n")
    writer.writerow(["id", "split", "input", "output"])
    for split, example in rows:
        writer.writerow([example.id, split, example.input, example.output])
    return buffer.getvalue()
