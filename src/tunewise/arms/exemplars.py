"""Choosing exemplars for few-shot prompts — only ever from the training split.

`ExemplarPool` is built from the training examples and is the only source of exemplars any arm uses, so
the leakage guard is structural: nothing from the test split can be chosen. It also refuses, on
construction, a pool that shares an input with the test set (which a group-aware split never produces,
but a hand-made split might).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from tunewise.data.textnorm import normalise
from tunewise.schema import Example


class LeakageError(ValueError):
    """An exemplar candidate also appears in the test set."""


class ExemplarPool:
    def __init__(self, train: Sequence[Example], test: Sequence[Example], drop_leaked: bool = False) -> None:
        """`drop_leaked` (the user allowed leakage between their files): the shared examples are left out of the
        pool instead of refused, so an exemplar still never shows a test input's answer."""
        test_inputs = {normalise(e.input) for e in test}
        leaked = [e for e in train if normalise(e.input) in test_inputs]
        if drop_leaked:
            train = [e for e in train if normalise(e.input) not in test_inputs]
        elif leaked:
            raise LeakageError(f"{len(leaked)} training example(s) share an input with the test set "
                               f"(first: id {leaked[0].id!r}, line {leaked[0].line}); re-split with `tunewise split`")
        self.examples = list(train)

    def balanced(self, k: int, seed: int, labelled: bool) -> list[Example]:
        """k exemplars, round-robin over labels (sorted) when `labelled`, each label's order seeded."""
        rng = random.Random(seed)
        if not labelled:
            return rng.sample(self.examples, min(k, len(self.examples)))
        by_label: dict[str, list[Example]] = defaultdict(list)
        for example in self.examples:
            by_label[example.label].append(example)
        queues = {label: rng.sample(items, len(items)) for label, items in sorted(by_label.items())}
        chosen: list[Example] = []
        while len(chosen) < min(k, len(self.examples)):
            for label in list(queues):
                if queues[label] and len(chosen) < k:
                    chosen.append(queues[label].pop())
        # interleaved labels, but not always in alphabetical order (models copy the last label's position)
        rng.shuffle(chosen)
        return chosen
