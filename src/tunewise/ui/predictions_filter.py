"""Filtering and paging a run's prediction table: pure functions over the parallel lists of `PredictionTable`,
so the cost per page is one pass over the examples (milliseconds at 10,000) plus rendering one page."""

from __future__ import annotations

from dataclasses import dataclass

from tunewise.ui.run_data import PredictionTable

PAGE_SIZES = (25, 50, 100, 200)
OUTCOMES = ("", "correct", "wrong")


@dataclass(frozen=True)
class PredictionFilter:
    """What the Predictions page's form asks for; empty strings mean "any"."""

    arm: str = ""          # the arm whose correctness `outcome` refers to; also narrows the columns shown
    reference: str = ""    # exact reference label
    outcome: str = ""      # "correct" | "wrong" (of `arm`, or of any arm when no arm is chosen)
    disagree: bool = False  # only examples where the arms' answers differ
    q: str = ""            # case-insensitive text in id, input, reference or any answer


def matching(table: PredictionTable, f: PredictionFilter) -> list[int]:
    """Row indices that pass every filter, in the table's order."""
    rows: list[int] = list(range(len(table)))
    if f.reference:
        rows = [i for i in rows if table.references[i] == f.reference]
    if f.disagree:
        rows = [i for i in rows if table.disagree[i]]
    if f.outcome in ("correct", "wrong"):
        wanted = f.outcome == "correct"
        arms = [f.arm] if f.arm in table.correct else list(table.correct)
        columns = [table.correct[arm] for arm in arms]
        if wanted:
            rows = [i for i in rows if all(col[i] is True for col in columns)]
        else:
            rows = [i for i in rows if any(col[i] is False for col in columns)]
    if f.q:
        needle = f.q.lower()
        rows = [i for i in rows if needle in table.haystack[i]]
    return rows


def page_of(rows: list[int], page: int, size: int) -> tuple[list[int], int, int]:
    """(indices on the page, the page actually shown, the number of pages); a page past the end shows the last."""
    pages = max(1, -(-len(rows) // size))
    page = min(max(1, page), pages)
    start = (page - 1) * size
    return rows[start:start + size], page, pages
