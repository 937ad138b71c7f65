"""What a table cell means beyond its text: a number, a missing value or a date.

One reading shared by everything that interprets cells: column inference (`init --from` proposes numeric features
and a date column from it), the classical arm (builds those features), hygiene (flags junk) and the time split.
When inference and training read "1,986" or "N/A" differently, `init --from` proposes a feature the run then
refuses; with one function for each, what init proposes runs. Knows nothing about files, columns or examples.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

# Values spreadsheets and exports write for "no value": missing, not a category or a number.
PLACEHOLDERS = frozenset({"n/a", "na", "#n/a", "null", "none", "nan", "-", "--", "?", "undefined", "missing",
                          "unknown", "#value!", "#ref!", "#div/0!"})
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
EPOCH_MIN, EPOCH_MAX = 1e8, 1e11  # plausible epoch seconds: 1973 to 5138
_NUMERIC_DATE = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-]\d{2,4}\b")
# What a written date looks like before dateutil (which reads "May" or "monday" alone as dates) is asked:
# 2012-05-20, 20/05/2012, 20 May 2012, May 20, 2012, Sunday, May 20th 2012; optionally a time after.
_DATE_SHAPE = re.compile(r"^(?:[A-Za-z]{3,9},?\s+)?(?:\d{1,4}[-/. ]\w{1,9}[-/. ,]+\d{1,4}"
                         r"|[A-Za-z]{3,9}\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{2,4})([ T]\d{1,2}:\d{2}.*)?$")


def is_missing(value: Any) -> bool:
    """None, blank, or a placeholder such as N/A, null or #VALUE!."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return isinstance(value, str) and (not value.strip() or value.strip().lower() in PLACEHOLDERS)


def parse_number(value: Any) -> float | None:
    """A finite float from a number or numeric text ("1,986" has a thousands separator); None when the value is
    missing (see `is_missing`) or not a number. Booleans are not numbers."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
        return number if math.isfinite(number) else None
    text = str(value).strip()
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def day_first(values: Sequence[Any]) -> bool:
    """Whether a column writes numeric dates day first (31/12/2020): decided once for the column, from a value
    whose first field cannot be a month, since dateutil alone reads each value month first when it can."""
    fields = [m.groups() for v in values if (m := _NUMERIC_DATE.match(str(v).strip()))]
    return any(int(a) > 12 for a, _ in fields) and not any(int(b) > 12 for _, b in fields)


def parse_date(value: Any, dayfirst: bool = False) -> datetime | None:
    """A point in time from a date-like value, naive UTC; None when it is not one. Numbers are epoch seconds or
    milliseconds, or YYYYMMDD; `dayfirst` reads 01/02/2020 as 1 February."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if EPOCH_MIN <= number <= EPOCH_MAX:
        return datetime.fromtimestamp(number, tz=UTC).replace(tzinfo=None)
    if EPOCH_MAX * 10 <= number <= EPOCH_MAX * 1000:  # epoch milliseconds
        return datetime.fromtimestamp(number / 1000, tz=UTC).replace(tzinfo=None)
    if len(text) == 8 and text.isdigit() and text[:2] in ("19", "20"):
        try:
            return datetime.strptime(text, "%Y%m%d")
        except ValueError:
            return None
    if not math.isnan(number) and not (1000 <= number <= 9999):  # a bare year is a date; other numbers are not
        return None
    from dateutil import parser

    try:
        moment = parser.parse(text, default=datetime(2000, 1, 1), dayfirst=dayfirst)
    except (ValueError, OverflowError):
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def looks_like_date(text: str) -> bool:
    """A written date (not a bare number): shaped like one and read by `parse_date`."""
    return _DATE_SHAPE.match(text.strip()) is not None and parse_date(text) is not None
