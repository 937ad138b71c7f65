"""Task definitions: each owns its prompt rendering, output parser and scorer.

A task turns an Example (plus exemplars) into chat messages, turns a model's raw text back into a
prediction, and scores a prediction against the reference. Tasks know nothing about models or files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from tunewise.schema import Example


class Task(Protocol):
    name: str
    labels: list[str] | None

    def messages(self, example: Example, exemplars: Sequence[Example] = (), variant: str = "default") -> list[dict[str, str]]:
        ...

    def parse(self, raw: str) -> str:
        ...

    def score(self, prediction: str, reference: str) -> float:
        ...


def make_task(config: Any, train: Sequence[Example]) -> Task:
    """Build the configured task; classification labels default to the training split's, sorted."""
    from tunewise.tasks.classify import ClassifyTask
    from tunewise.tasks.extract import ExtractTask
    from tunewise.tasks.generate import GenerateTask

    if config.type == "classify":
        names = config.labels if isinstance(config.labels, dict) else None
        labels = list(config.labels or sorted({e.label for e in train}))
        return ClassifyTask(labels=labels, instructions=config.instructions, max_input_words=config.max_input_words,
                            exemplar_words=config.exemplar_words, names=names)
    if config.type == "extract":
        return ExtractTask(schema=config.json_schema, instructions=config.instructions,
                           max_input_words=config.max_input_words, exemplar_words=config.exemplar_words)
    return GenerateTask(instructions=config.instructions, max_input_words=config.max_input_words,
                        exemplar_words=config.exemplar_words)
