"""Extraction: answer with a JSON object (optionally following a schema). Scored by exact match of the
parsed objects here; field-level precision/recall belongs to the evaluation stage.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunewise.schema import Example
from tunewise.tasks.jsontext import json_objects
from tunewise.tasks.prompting import chat_prompt, shorten


def first_json_object(text: str) -> dict[str, Any] | None:
    """The first decodable {...} in the text (models often wrap JSON in prose or code fences)."""
    return next(json_objects(text), None)


@dataclass(frozen=True)
class ExtractTask:
    schema: dict[str, Any] | None = None
    instructions: str | None = None
    max_input_words: int = 200
    exemplar_words: int | None = None
    name: str = "extract"
    labels: None = None

    def system(self, variant: str) -> str:
        base = self.instructions or "Extract the requested fields from the text."
        schema = f" Follow this JSON schema: {json.dumps(self.schema)}." if self.schema else ""
        return f"{base}{schema} Answer with one JSON object only."

    def messages(self, example: Example, exemplars: Sequence[Example] = (), variant: str = "default") -> list[dict[str, str]]:
        return chat_prompt(self.system(variant), example, exemplars,
                           lambda e: shorten(e.input, self.max_input_words), lambda e: e.output.strip(),
                           lambda e: shorten(e.input, self.exemplar_words or self.max_input_words))

    def parse(self, raw: str) -> str:
        """The first JSON object in the reply, canonicalised; "" when there is none or it breaks the schema."""
        value = first_json_object(raw)
        if value is None or (self.schema and not self._valid(value)):
            return ""
        return json.dumps(value, sort_keys=True, ensure_ascii=False)

    def _valid(self, value: dict[str, Any]) -> bool:
        import jsonschema

        try:
            jsonschema.validate(value, self.schema)
        except jsonschema.ValidationError:
            return False
        return True

    def score(self, prediction: str, reference: str) -> float:
        expected = first_json_object(reference)
        return float(bool(prediction) and expected is not None and json.loads(prediction) == expected)
