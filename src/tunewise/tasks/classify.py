"""Classification: pick one label. Prompted models are scored over the label options (log-likelihood),
not asked to generate, so every answer is a valid label; `parse` maps free text (remote models,
chain-of-thought) back onto a label.

Labels are the codes in the data (`0`, `1`); `names` (task.labels as a mapping) give them words for prompts,
since a model cannot know what `1` means: prompts and exemplar answers use the names, and `parse` maps a
name back to its code, so references, metrics and predictions stay in the data's codes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tunewise.schema import Example
from tunewise.tasks.prompting import chat_prompt, shorten

VARIANTS = ("default", "terse", "cot")


@dataclass(frozen=True)
class ClassifyTask:
    labels: list[str]
    instructions: str | None = None
    max_input_words: int = 200
    exemplar_words: int | None = None
    name: str = "classify"
    names: dict[str, str] | None = None

    def option(self, label: str) -> str:
        """What a model reads and says for the label `label` (its name, or the label itself)."""
        return (self.names or {}).get(label, label)

    @property
    def options(self) -> list[str]:
        return [self.option(label) for label in self.labels]

    def system(self, variant: str) -> str:
        options = ", ".join(self.options)
        if variant == "terse":
            return f"Label: one of {options}."
        base = self.instructions or "Classify the text into exactly one category."
        if variant == "cot":
            return (f"{base} Categories: {options}. Think briefly step by step, then give the final answer on the "
                    "last line as `Answer: <category>`.")
        if variant != "default":
            raise ValueError(f"unknown prompt variant {variant!r} for classify; choose from {', '.join(VARIANTS)}")
        return f"{base} Categories: {options}. Answer with the category name only."

    def messages(self, example: Example, exemplars: Sequence[Example] = (), variant: str = "default") -> list[dict[str, str]]:
        return chat_prompt(self.system(variant), example, exemplars,
                           lambda e: shorten(e.input, self.max_input_words), lambda e: self.option(e.label),
                           lambda e: shorten(e.input, self.exemplar_words or self.max_input_words))

    def parse(self, raw: str) -> str:
        """The label the text commits to: an `Answer:` line, else an exact match, else the first label named."""
        text = raw.strip()
        answer = re.findall(r"answer\s*:\s*(.+)", text, flags=re.IGNORECASE)
        if answer:
            text = answer[-1]
        lowered = text.strip().strip(".!\"'`*").lower()
        said = [(option, label) for label in self.labels for option in dict.fromkeys((self.option(label), label))]
        for option, label in said:
            if lowered == option.lower():
                return label
        positions = [(m.start(), label) for option, label in said
                     for m in [re.search(rf"\b{re.escape(option.lower())}\b", text.lower())] if m]
        return min(positions)[1] if positions else ""

    def score(self, prediction: str, reference: str) -> float:
        return float(prediction == reference)
