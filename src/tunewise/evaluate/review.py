"""The review sheet: a seeded sample of test examples where the arms disagree, side by side, for a person.

Metrics say how often arms differ; reading the disagreements says how (is the reference wrong? is one
answer better than the reference?). Knows nothing about models or files.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from tunewise.schema import Prediction

MAX_INPUT_CHARS = 800


def review_sheet(ids: Sequence[str], predictions: Mapping[str, Sequence[Prediction]], size: int, seed: int,
                 score: Any) -> dict[str, Any]:
    """Up to `size` examples (in test order) whose answers are not all the same across arms."""
    arms = list(predictions)
    disagree = [i for i in range(len(ids)) if len({predictions[a][i].prediction for a in arms}) > 1]
    chosen = sorted(random.Random(seed).sample(disagree, min(size, len(disagree))))
    items = []
    for i in chosen:
        first = predictions[arms[0]][i]
        text = first.input if len(first.input) <= MAX_INPUT_CHARS else first.input[:MAX_INPUT_CHARS] + " …"
        items.append({"id": ids[i], "input": text, "reference": first.reference,
                      "answers": {a: {"prediction": predictions[a][i].prediction, "error": predictions[a][i].error,
                                      "correct": bool(score(predictions[a][i].prediction, first.reference))}
                                  for a in arms}})
    return {"seed": seed, "disagreements": len(disagree), "size": len(items), "arms": arms, "items": items}
