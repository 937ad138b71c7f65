"""`reviews.jsonl`: a person's judgements of test examples, kept in the run folder beside the predictions.

One review per line: which arms answered right or wrong, whether the reference itself is wrong (and what it
should be), a note, who and when. The file keeps every review ever saved; the latest one per example is
the one that counts (`latest`), so changing one's mind is a new line, not an edit.

Saving rewrites the whole file through a temp file and a rename under a lock (`reviews.jsonl.lock`): a
crash leaves the old file or the new one, never half a line, and two saves at once cannot lose each other's
line. A line that is not a review (edited by hand, from a newer version) is kept verbatim and reported with
its line number, never raised. It records; it knows nothing about arms, metrics or HTTP.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunewise.store.atomic import atomic_write_text

REVIEWS_FILE = "reviews.jsonl"

Verdict = Literal["right", "wrong"]


class ReviewError(ValueError):
    """A review that cannot be saved; the message names the field and the fix."""


class Review(BaseModel):
    """One person's judgement of one test example."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    example_id: str = Field(min_length=1, max_length=500)
    reviewer: str = Field(min_length=1, max_length=100)
    time: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    verdicts: dict[str, Verdict] = Field(default_factory=dict)
    reference_wrong: bool = False
    corrected_reference: str | None = Field(default=None, max_length=20_000)
    note: str = Field(default="", max_length=5_000)


@dataclass(frozen=True)
class ReviewFile:
    """Every readable review in file order, and a sentence per line that is not one."""

    reviews: list[Review]
    problems: list[str]

    def latest(self) -> dict[str, Review]:
        """The review that counts for each example: the last one saved."""
        return {review.example_id: review for review in self.reviews}


def make_review(fields: Mapping[str, Any]) -> Review:
    """A `Review` from untrusted input, or `ReviewError` naming each bad field and the fix."""
    try:
        return Review.model_validate(dict(fields))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "review"
            problems.append(f"{where}: {error['msg']}")
        raise ReviewError("; ".join(problems) + ". Fix: example_id and reviewer are required; each verdict is "
                          "'right' or 'wrong'") from None


def reviews_path(run_dir: Path) -> Path:
    return Path(run_dir) / REVIEWS_FILE


def read_reviews(run_dir: Path) -> ReviewFile:
    """The run's reviews (none if the file does not exist); bad lines become problems with line numbers."""
    path = reviews_path(run_dir)
    if not path.is_file():
        return ReviewFile([], [])
    reviews: list[Review] = []
    problems: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            reviews.append(Review.model_validate(json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{number}: not JSON ({exc.msg}); line skipped, fix or delete it")
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "line"
            problems.append(f"{path}:{number}: field {field}: {first['msg']}; line skipped, fix or delete it")
    return ReviewFile(reviews, problems)


@contextmanager
def reviews_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run's review lock: one save (and whatever it refreshes) at a time, across processes."""
    lock = Path(run_dir) / f"{REVIEWS_FILE}.lock"
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def append_review(run_dir: Path, review: Review) -> None:
    """Add `review` as the file's last line: the whole file is rewritten atomically, under the caller's lock
    (`reviews_lock`); existing lines, readable or not, are kept as they are."""
    path = reviews_path(run_dir)
    old = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    atomic_write_text(path, old + json.dumps(review.model_dump(), ensure_ascii=False) + "\n")


def save_review(run_dir: Path, review: Review) -> None:
    """Lock, append, unlock: for callers that refresh nothing else."""
    with reviews_lock(run_dir):
        append_review(run_dir, review)
