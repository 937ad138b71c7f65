"""Uploaded training files: validated with the rules of `tunewise check`, stored atomically, described like OpenAI's.

A file is accepted only when `check_file` finds no error in it (warnings are kept in `status_details`), so a
job never starts on data that `tunewise check` would reject, and the rejection names each bad line, its field
and the fix exactly as the CLI does. Files live as `STATE/files/<id>.jsonl` beside `<id>.json` (the object);
both are written by temp file and rename, the content first, so a crash leaves no half-described file.
Knows nothing about HTTP or training.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tunewise.store.atomic import atomic_open, atomic_write_text

PURPOSES = ("fine-tune",)
FILE_ID = re.compile(r"^file-[0-9a-f]{24}$")
SHOWN_ERRORS = 5  # problems spelled out in a rejection; the count says how many more there are
MIN_TRAINING_EXAMPLES = 10  # `tunewise check`'s own minimum (CheckOptions.min_examples)
COPY_CHUNK = 1024 * 1024  # bytes per read when an upload is copied into the store


class FileRejected(ValueError):
    """The upload is not usable training data; `message` lists the problems by line and field with the fix."""

    def __init__(self, message: str, code: str = "invalid_file") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class StoredFile:
    """OpenAI's file object, plus what `tunewise check` said (examples and warnings)."""

    id: str
    bytes: int
    created_at: int
    filename: str
    purpose: str
    examples: int
    status: str = "processed"
    status_details: str | None = None
    object: str = "file"

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "examples"}


def describe_errors(filename: str, report: Any) -> str:
    """The check report's errors as one message: line, field, problem and fix for each of the first few."""
    errors = report.errors
    shown = []
    for problem in errors[:SHOWN_ERRORS]:
        where = f"line {problem.line}" if problem.line is not None else "the file"
        field = f", field {problem.field}" if problem.field else ""
        # the check names the stored copy (file-<id>.jsonl); the client knows the file by its own name
        message = problem.message.replace(str(report.path), filename).replace(Path(report.path).name, filename)
        shown.append(f"{where}{field}: {message}. Fix: {problem.hint}")
    more = f"; and {len(errors) - SHOWN_ERRORS} more error(s)" if len(errors) > SHOWN_ERRORS else ""
    return (f"{filename} is not usable training data ({len(errors)} error(s), as `tunewise check` reports them): "
            + "; ".join(shown) + more)


def check_upload(path: Path, filename: str) -> tuple[int, list[str]]:
    """Run the `tunewise check` rules on an uploaded JSONL file: (usable examples, warnings) or FileRejected.

    Lengths are counted in words: an upload is not tied to one model, and the job's own tokenizer truncates
    (and reports) over-long examples when it trains.
    """
    from tunewise.data.check_report import check_file
    from tunewise.data.checks import CheckOptions
    from tunewise.data.tokens import TokenCounter

    # the minimum count is a job's rule for its training file (MIN_TRAINING_EXAMPLES); a validation file may be small
    report = check_file(path, fmt="jsonl", counter=TokenCounter(None, None, "words"),
                        options=CheckOptions(min_examples=1))
    if report.errors:
        raise FileRejected(describe_errors(filename, report), "invalid_training_file")
    warnings = [f"line {w.line}: {w.message}" if w.line is not None else w.message for w in report.warnings]
    return len(report.dataset.examples), warnings


class FileStore:
    """The uploaded files under `root`; safe to call from the event loop's worker threads and the job worker."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {}
        for meta in sorted(self.root.glob("file-*.json")):
            try:
                record = StoredFile(**json.loads(meta.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError):
                continue  # a file object we cannot read is not offered; its data stays on disk for a person
            if (self.root / f"{record.id}.jsonl").is_file():
                self._files[record.id] = record

    def data_path(self, file_id: str) -> Path:
        return self.root / f"{file_id}.jsonl"

    def add(self, filename: str, purpose: str, content: bytes | BinaryIO) -> StoredFile:
        """Check and store an upload; raises FileRejected naming every problem.

        `content` is the bytes, or a binary file read from its current position to its end in chunks (an
        upload spooled to disk is copied, never read whole into memory)."""
        if purpose not in PURPOSES:
            raise FileRejected(f"purpose {purpose!r} is not supported here; use one of {', '.join(PURPOSES)}",
                               "invalid_purpose")
        file_id = f"file-{secrets.token_hex(12)}"
        path = self.data_path(file_id)
        with atomic_open(path, "wb") as handle:
            if isinstance(content, bytes):
                handle.write(content)
            else:
                shutil.copyfileobj(content, handle, COPY_CHUNK)
            size = handle.tell()
        try:
            examples, warnings = check_upload(path, filename)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        details = f"{len(warnings)} warning(s): " + "; ".join(warnings[:SHOWN_ERRORS]) if warnings else None
        record = StoredFile(file_id, size, int(time.time()), filename, purpose, examples,
                            status_details=details)
        atomic_write_text(self.root / f"{file_id}.json", json.dumps(asdict(record)) + "\n")
        with self._lock:
            self._files[file_id] = record
        return record

    def get(self, file_id: str) -> StoredFile | None:
        with self._lock:
            return self._files.get(file_id)

    def all(self) -> list[StoredFile]:
        """Newest first (ties by id, so pages are stable)."""
        with self._lock:
            return sorted(self._files.values(), key=lambda f: (-f.created_at, f.id))

    def delete(self, file_id: str) -> bool:
        with self._lock:
            if self._files.pop(file_id, None) is None:
                return False
        (self.root / f"{file_id}.json").unlink(missing_ok=True)  # the object first: no orphan description
        self.data_path(file_id).unlink(missing_ok=True)
        return True
