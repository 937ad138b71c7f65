"""Leakage guard: exemplars come from the training split only, for every arm that uses them."""

from __future__ import annotations

import pytest

from tunewise.arms.exemplars import ExemplarPool, LeakageError
from tunewise.data.split import split_examples, stratified_subset
from tunewise.schema import Example, Message


def ex(i: int, label: str) -> Example:
    return Example(id=f"e{i}", messages=(Message("user", f"article number {i} about {label}"),
                                         Message("assistant", label)), line=i + 1)


DATA = [ex(i, ["business", "sports", "tech", "arts"][i % 4]) for i in range(200)]


def test_no_exemplar_ever_comes_from_the_test_split():
    for seed in range(5):
        split = split_examples(DATA, seed=seed)
        pool = ExemplarPool(split.train, split.test)
        test_ids = {e.id for e in split.test}
        for k in (1, 4, 16):
            for labelled in (True, False):
                chosen = pool.balanced(k, seed, labelled)
                assert len(chosen) == k and not {e.id for e in chosen} & test_ids


def test_retrieval_draws_only_from_the_pool():
    from tunewise.models.index import build_index

    split = split_examples(DATA, seed=3)
    pool = ExemplarPool(split.train, split.test).examples
    index = build_index("bm25", [e.input for e in pool])
    found = index.search([e.input for e in split.test], 4)
    test_ids = {e.id for e in split.test}
    assert all(pool[i].id not in test_ids for row in found for i in row)


def test_a_pool_sharing_inputs_with_the_test_set_is_refused():
    train, test = DATA[:100], DATA[90:120]
    with pytest.raises(LeakageError, match="share an input with the test set"):
        ExemplarPool(train, test)


def test_allowed_leakage_leaves_the_shared_examples_out_of_the_pool():
    """data.allow_leakage lets the run go on, but an exemplar still never shows a test input's answer."""
    train, test = DATA[:100], DATA[90:120]
    pool = ExemplarPool(train, test, drop_leaked=True)
    assert [e.id for e in pool.examples] == [e.id for e in DATA[:90]]
    assert not {e.id for e in pool.balanced(16, 0, True)} & {e.id for e in test}


def test_balanced_exemplars_cover_labels_and_are_deterministic():
    pool = ExemplarPool(DATA[:100], DATA[100:])
    chosen = pool.balanced(4, seed=1, labelled=True)
    assert sorted(e.label for e in chosen) == ["arts", "business", "sports", "tech"]
    assert chosen == pool.balanced(4, seed=1, labelled=True)
    assert chosen != pool.balanced(4, seed=2, labelled=True)


def test_stratified_subset_is_stratified_seeded_and_ordered():
    subset = stratified_subset(DATA, 40, seed=0, labelled=True)
    assert len(subset) == 40 and subset == stratified_subset(DATA, 40, seed=0, labelled=True)
    assert sorted({e.label for e in subset}) == ["arts", "business", "sports", "tech"]
    assert [e.line for e in subset] == sorted(e.line for e in subset)
    assert stratified_subset(DATA, None, 0, True) == DATA
