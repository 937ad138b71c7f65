"""Free-text generation. Scored by normalised exact match here; BLEU, chrF and ROUGE-L belong to the
evaluation stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tunewise.data.textnorm import normalise
from tunewise.schema import Example
from tunewise.tasks.prompting import chat_prompt, shorten


@dataclass(frozen=True)
class GenerateTask:
    instructions: str | None = None
    max_input_words: int = 200
    exemplar_words: int | None = None
    name: str = "generate"
    labels: None = None

    def system(self, variant: str) -> str:
        return self.instructions or "Answer the request helpfully and concisely."

    def messages(self, example: Example, exemplars: Sequence[Example] = (), variant: str = "default") -> list[dict[str, str]]:
        return chat_prompt(self.system(variant), example, exemplars,
                           lambda e: shorten(e.input, self.max_input_words), lambda e: e.output.strip(),
                           lambda e: shorten(e.input, self.exemplar_words or self.max_input_words))

    def parse(self, raw: str) -> str:
        return raw.strip()

    def score(self, prediction: str, reference: str) -> float:
        return float(normalise(prediction) == normalise(reference))
