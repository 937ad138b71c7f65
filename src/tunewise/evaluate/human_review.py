"""The human review: what people who read test examples one by one found, as the "human_review" section of
results.json and the report.

Metrics trust the reference; a reviewer does not. On the reviewed examples this says how often the
reference itself was wrong and how often each arm was right in the reviewer's eyes (an arm is right when the
reviewer marked it right), each with a Wilson interval: few examples are reviewed, and a Wilson interval
stays inside [0, 1] and honest at 0 or n successes where a bootstrap of a handful of examples would not.

`refresh_human_review` recomputes just this section of a finished run and re-renders the report from
results.json (no model work, no other figure recomputed); the web UI calls it after every saved review.
Knows nothing about HTTP or models.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tunewise.store.reviews import Review, append_review, read_reviews, reviews_lock


class HumanReviewError(ValueError):
    """The run folder cannot take a human-review section (no results.json yet, or an unreadable one)."""


def wilson(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """The Wilson score interval of `successes` out of `n` (scipy's binomial test)."""
    from scipy.stats import binomtest

    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def _share(successes: int, n: int, confidence: float) -> dict[str, Any]:
    if n == 0:
        return {"count": 0, "n": 0, "rate": None, "low": None, "high": None}
    low, high = wilson(successes, n, confidence)
    return {"count": successes, "n": n, "rate": successes / n, "low": low, "high": high}


def human_review_summary(reviews: Mapping[str, Review], arms: Sequence[str], confidence: float,
                         problems: Sequence[str] = ()) -> dict[str, Any] | None:
    """The section for the latest review of each example (`ReviewFile.latest()`); None when nobody reviewed.

    Per arm, only the reviews that judged that arm count (a reviewer may leave an arm unmarked)."""
    if not reviews and not problems:
        return None
    items = list(reviews.values())
    per_arm: dict[str, Any] = {}
    for arm in arms:
        judged = [r.verdicts[arm] for r in items if arm in r.verdicts]
        share = _share(sum(v == "right" for v in judged), len(judged), confidence)
        per_arm[arm] = {"reviewed": share["n"], "right": share["count"], "accuracy": share["rate"],
                        "low": share["low"], "high": share["high"]}
    wrong_refs = sorted(r.example_id for r in items if r.reference_wrong)
    return {
        "reviewed": len(items), "confidence": confidence,
        "reviewers": sorted({r.reviewer for r in items}),
        "reference_errors": _share(len(wrong_refs), len(items), confidence),
        "reference_error_ids": wrong_refs,
        "corrected": sum(1 for r in items if r.corrected_reference is not None),
        "arms": per_arm,
        "last_review": max((r.time for r in items), default=None),
        "problems": list(problems),
    }


def human_review_for_run(run_dir: Path, arms: Sequence[str], confidence: float) -> dict[str, Any] | None:
    """The section from the run folder's reviews.jsonl (None when there is none)."""
    found = read_reviews(run_dir)
    return human_review_summary(found.latest(), arms, confidence, found.problems)


def refresh_human_review(run_dir: Path, render: bool = True) -> dict[str, Any] | None:
    """Recompute the "human_review" section of the run's results.json from reviews.jsonl, write results.json
    atomically, and (with `render`) re-render report.md and report.html from it. Returns the section.

    Rendering redraws the report's plots, seconds on a large run; the web UI passes `render=False` and
    re-renders in the background (ui/report_refresh.py) so a save answers at once."""
    from tunewise.report import write_results

    path = Path(run_dir) / "results.json"
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HumanReviewError(f"{path}: not written yet; the run has not finished. Review it once "
                               "`tunewise run` has completed (or `tunewise report RUN` has written it)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise HumanReviewError(f"{path}: cannot read it ({exc}); rewrite it with `tunewise report {run_dir}`") from None
    confidence = float(results.get("confidence") or 0.95)
    results["human_review"] = human_review_for_run(run_dir, list(results.get("arms") or {}), confidence)
    write_results(Path(run_dir), results, render=render)
    return results["human_review"]


def record_review(run_dir: Path, review: Review, render: bool = True) -> dict[str, Any] | None:
    """Save one review and refresh the run's human-review section, both under the run's review lock, so two
    reviewers saving at once leave results.json matching reviews.jsonl."""
    with reviews_lock(run_dir):
        append_review(run_dir, review)
        return refresh_human_review(run_dir, render=render)
