"""Split: determinism, fractions, stratification, groups never crossing splits, leakage, errors, writing."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunewise.data.split import Split, SplitError, find_leakage, group_examples, split_examples, write_splits
from tunewise.data.textnorm import normalise
from tunewise.schema import Example, Message


def make(i: int, text: str, label: str, **metadata: object) -> Example:
    return Example(
        id=f"ex-{i}",
        messages=(Message("system", "Classify."), Message("user", text), Message("assistant", label)),
        line=i + 1,
        metadata=dict(metadata),
    )


def dataset(n: int = 200, labels: tuple[str, ...] = ("a", "b", "c")) -> list[Example]:
    return [make(i, f"ticket number {i} about thing {i * 7}", labels[i % len(labels)]) for i in range(n)]


def ids(examples: tuple[Example, ...]) -> list[str]:
    return [e.id for e in examples]


def assert_no_group_crosses(split: Split) -> None:
    where: dict[str, str] = {}
    for name, part in split.parts.items():
        for example in part:
            for key in (normalise(example.input), example.metadata.get("group")):
                if key is None:
                    continue
                assert where.setdefault(str(key), name) == name, f"{key!r} in {where[str(key)]} and {name}"


def test_same_seed_same_split_different_seed_different() -> None:
    data = dataset()
    first, again = split_examples(data, seed=1), split_examples(data, seed=1)
    assert first == again
    other = split_examples(data, seed=2)
    assert ids(first.test) != ids(other.test)


def test_every_example_lands_exactly_once_in_input_order() -> None:
    data = dataset(101)
    split = split_examples(data, seed=5)
    all_ids = ids(split.train) + ids(split.val) + ids(split.test)
    assert sorted(all_ids) == sorted(e.id for e in data)
    for part in split.parts.values():
        lines = [e.line for e in part]
        assert lines == sorted(lines)


@pytest.mark.parametrize(("n", "val", "test"), [(200, 0.1, 0.2), (97, 0.15, 0.15), (1000, 0.05, 0.3), (50, 0.0, 0.2)])
def test_fractions_respected_within_rounding(n: int, val: float, test: float) -> None:
    split = split_examples(dataset(n), seed=3, val_fraction=val, test_fraction=test)
    assert abs(len(split.val) - n * val) <= 1
    assert abs(len(split.test) - n * test) <= 1
    assert len(split.train) + len(split.val) + len(split.test) == n
    if val == 0:
        assert split.val == () and split.val_groups == 0


def test_label_proportions_stratified_on_imbalanced_set() -> None:
    labels = ["common"] * 700 + ["rare"] * 60 + ["tiny"] * 20
    data = [make(i, f"text {i}", label) for i, label in enumerate(labels)]
    whole = Counter(labels)
    for seed in range(5):
        split = split_examples(data, seed=seed, val_fraction=0.1, test_fraction=0.2)
        for name, fraction in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
            counts = Counter(e.label for e in split.parts[name])
            for label, total in whole.items():
                assert abs(counts[label] - total * fraction) <= 2, (seed, name, label, counts)


def test_unstratified_still_groups_and_hits_fractions() -> None:
    split = split_examples(dataset(300), seed=4, stratify=False)
    assert (abs(len(split.val) - 30) <= 1) and (abs(len(split.test) - 60) <= 1)
    assert_no_group_crosses(split)


def test_free_text_labels_split_depends_on_seed() -> None:
    data = [make(i, f"question {i}", f"a long unique answer {i}") for i in range(60)]
    one, two = split_examples(data, seed=1), split_examples(data, seed=2)
    assert abs(len(one.test) - 12) <= 1
    assert ids(one.test) != ids(two.test)


def _variant(text: str, how: int) -> str:
    return [text, text.upper(), f"  {text}!!", text.replace(" ", "\t  "), f"{text.title()}?"][how]


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 14), st.integers(0, 4), st.sampled_from("xyz")), min_size=12, max_size=60
    ),
    seed=st.integers(0, 10_000),
)
def test_duplicates_and_near_duplicates_never_cross_splits(rows: list[tuple[int, int, str]], seed: int) -> None:
    data = [make(i, _variant(f"the base text number {base}", how), label) for i, (base, how, label) in enumerate(rows)]
    if len(group_examples(data)) < 3:
        with pytest.raises(SplitError):
            split_examples(data, seed=seed)
        return
    split = split_examples(data, seed=seed)
    assert_no_group_crosses(split)
    assert split.train and split.val and split.test
    assert find_leakage(split.train, split.test) == []
    assert find_leakage(split.train, split.val) == []
    assert find_leakage(split.val, split.test) == []


def test_conflicting_labels_for_same_input_form_one_group() -> None:
    data = dataset(40) + [make(100, "Refund please", "a"), make(101, "refund, please.", "b")]
    groups = group_examples(data)
    assert (40, 41) in groups
    for seed in range(10):
        assert_no_group_crosses(split_examples(data, seed=seed))


def test_metadata_groups_respected_and_chain_with_inputs() -> None:
    data = [make(i, f"message {i}", "ab"[i % 2], group=f"customer-{i // 5}") for i in range(100)]
    # Same input as example 0 but another customer: chains customer-0 and customer-19 into one group.
    data.append(make(100, "MESSAGE 0", "a", group="customer-19"))
    groups = group_examples(data)
    assert len(groups) == 19
    for seed in range(8):
        split = split_examples(data, seed=seed)
        assert_no_group_crosses(split)
        assert split.train_groups + split.val_groups + split.test_groups == 19


def test_metadata_group_values_compare_as_strings() -> None:
    data = [make(0, "one", "a", group=7), make(1, "two", "a", group="7"), make(2, "three", "a")]
    assert group_examples(data) == [(0, 1), (2,)]


def test_tiny_lumpy_data_still_fills_every_requested_split() -> None:
    data = [make(i, "same prompt", "a", group="big") for i in range(20)]
    data += [make(20 + i, f"x{i}", "a") for i in range(2)]
    for seed in range(10):
        split = split_examples(data, seed=seed)
        assert split.train and split.val and split.test
        assert_no_group_crosses(split)


def test_find_leakage_exact_and_near() -> None:
    a = [make(0, "Where is my order?", "x"), make(1, "Cancel my plan", "y")]
    b = [make(10, "Where is my order?", "x"), make(11, "cancel   MY plan!!", "y"), make(12, "something else", "z")]
    leaks = find_leakage(a, b)
    assert [(leak.kind, leak.a_id, leak.a_line, leak.b_id, leak.b_line) for leak in leaks] == [
        ("exact", "ex-0", 1, "ex-10", 11),
        ("near", "ex-1", 2, "ex-11", 12),
    ]
    assert leaks[0].to_dict()["kind"] == "exact"


def test_find_leakage_reports_every_pair_and_none_for_disjoint() -> None:
    a = [make(0, "hello there", "x"), make(1, "Hello there.", "y")]
    b = [make(2, "hello there", "x")]
    assert [(leak.kind, leak.a_id) for leak in find_leakage(a, b)] == [("exact", "ex-0"), ("near", "ex-1")]
    assert find_leakage(dataset(30)[:15], dataset(30)[15:]) == []


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"val_fraction": -0.1}, "val_fraction must be in [0, 1)"),
        ({"test_fraction": 1.0}, "test_fraction must be in [0, 1)"),
        ({"val_fraction": float("nan")}, "val_fraction must be a number"),
        ({"val_fraction": True}, "val_fraction must be a number"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction + test_fraction must be < 1"),
        ({"seed": "13"}, "seed must be an integer"),
    ],
)
def test_bad_parameters_raise_clear_errors(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(SplitError) as info:
        split_examples(dataset(50), **kwargs)  # type: ignore[arg-type]
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


def test_too_few_groups_names_the_fix() -> None:
    data = [make(0, "Same", "a"), make(1, "same!", "b"), make(2, "other", "a")]
    with pytest.raises(SplitError, match=r"at least 3 distinct groups.*got 2 from 3 examples.*val_fraction=0"):
        split_examples(data)
    split = split_examples(data, val_fraction=0.0)
    assert len(split.test) in (1, 2) and split.val == ()
    with pytest.raises(SplitError, match="got 0 from 0 examples"):
        split_examples([])


def test_write_splits_round_trip_and_atomic(tmp_path: Path) -> None:
    data = dataset(60) + [make(60, "Ünïcödé – ticket ✓", "a", source="web")]
    split = split_examples(data, seed=9)
    out = tmp_path / "splits"
    summary = write_splits(split, out)

    assert sorted(p.name for p in out.iterdir()) == ["split.json", "test.jsonl", "train.jsonl", "val.jsonl"]
    assert json.loads((out / "split.json").read_text(encoding="utf-8")) == summary
    for name, part in split.parts.items():
        raw = (out / f"{name}.jsonl").read_bytes()
        records = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
        assert records == [e.to_chat_record() for e in part]
        assert summary["counts"][name] == len(part)
        assert summary["label_counts"][name] == dict(sorted(Counter(e.label for e in part).items()))
        assert summary["sha256"][f"{name}.jsonl"] == hashlib.sha256(raw).hexdigest()
    assert "✓".encode() in (out / "train.jsonl").read_bytes() + (out / "val.jsonl").read_bytes() + (
        out / "test.jsonl"
    ).read_bytes()
    assert summary["seed"] == 9 and summary["fractions"]["val"] == 0.1
    assert summary["groups"] == split.group_counts


def test_write_splits_failure_leaves_no_temp_files(tmp_path: Path) -> None:
    bad = [make(i, f"t{i}", "a", when=object()) for i in range(10)]
    with pytest.raises(SplitError, match=r"example 'ex-\d' \(line \d+\) cannot be written as JSON"):
        write_splits(split_examples(bad), tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert not (tmp_path / "split.json").exists()


def test_summary_drops_label_counts_for_free_text(tmp_path: Path) -> None:
    data = [make(i, f"q{i}", f"answer {i}") for i in range(150)]
    summary = write_splits(split_examples(data), tmp_path)
    assert summary["label_counts"] is None and summary["distinct_labels"] == 150
