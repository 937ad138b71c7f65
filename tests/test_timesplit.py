"""Time-based splits and the user's own held-out files (issue 18): dates parsed robustly, the newest rows held
out, duplicates kept on one side, unreadable dates reported; own test/val files used as they are."""

from __future__ import annotations

from datetime import datetime

import pytest

from tunewise.data.split import SplitError
from tunewise.data.timesplit import parse_date, split_around, split_by_time
from tunewise.schema import Example, Message


def example(i: int, text: str, date: str, label: str = "a") -> Example:
    return Example(str(i), (Message("user", text), Message("assistant", label)), line=i + 2, metadata={"when": date})


@pytest.mark.parametrize("value,expected", [
    ("2023-03-01", datetime(2023, 3, 1)), ("01 Mar 2023", datetime(2023, 3, 1)),
    ("March 1, 2023", datetime(2023, 3, 1)), ("2023-03-01T10:00:00+02:00", datetime(2023, 3, 1, 8)),
    ("1700000000", datetime(2023, 11, 14, 22, 13, 20)), ("2023", datetime(2023, 1, 1)),
    ("sometime", None), ("12", None), ("", None), (None, None),
])
def test_parse_date(value, expected):
    assert parse_date(value) == expected


def test_newest_rows_are_the_test_and_a_duplicate_follows_its_newest_copy():
    examples = [example(i, f"text number {i}", f"2024-01-{i + 1:02d}") for i in range(20)]
    examples.append(example(20, "TEXT number 19!", "2023-06-01"))  # an old near duplicate of the newest row
    examples.append(example(21, "no date here", "whenever"))
    timed = split_by_time(examples, "when", val_fraction=0.1, test_fraction=0.2)
    test_ids = {e.id for e in timed.split.test}
    assert {"19", "20"} <= test_ids and "0" not in test_ids
    assert timed.unparseable == [(23, "whenever")]
    assert timed.ranges["test"][1] == "2024-01-20" and timed.ranges["train"][0] == "2024-01-01"
    assert len(timed.split.train) + len(timed.split.val) + len(timed.split.test) == 21


def test_a_missing_date_column_names_the_columns():
    with pytest.raises(SplitError, match=r"split.by 'date': no example has a 'date' column; the metadata columns "
                                         r"are \['when'\]"):
        split_by_time([example(i, "x", "2024-01-01") for i in range(5)], "date", val_fraction=0.1,
                      test_fraction=0.2)


def test_own_test_file_is_kept_whole_and_validation_drawn_from_the_rest():
    train = [example(i, f"train text {i}", "2024-01-01", "ab"[i % 2]) for i in range(40)]
    test = [example(100 + i, f"test text {i}", "2024-01-01", "ab"[i % 2]) for i in range(10)]
    split = split_around(train, test, None, seed=13, val_fraction=0.1, test_fraction=0.2, stratify=True)
    assert split.test == tuple(test) and len(split.val) == 4 and len(split.train) == 36
    own_val = test[:3]
    both = split_around(train, test[3:], own_val, seed=13, val_fraction=0.1, test_fraction=0.2, stratify=True)
    assert both.val == tuple(own_val) and len(both.train) == 40


def test_dates_day_first_compact_and_epoch_milliseconds_are_read_as_meant():
    from datetime import datetime

    from tunewise.data.timesplit import day_first, parse_date

    column = ["13/02/2020", "01/02/2020", "08/12/2020"]
    assert day_first(column) and not day_first(["02/13/2020", "01/02/2020"])
    assert parse_date("01/02/2020", day_first(column)) == datetime(2020, 2, 1)
    assert parse_date("01/02/2020") == datetime(2020, 1, 2)
    assert parse_date("20201126") == datetime(2020, 11, 26)
    assert parse_date("1606348800000") == datetime(2020, 11, 26)
    assert parse_date("12345") is None
