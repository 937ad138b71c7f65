"""More training examples from few: noisy copies, other prompt templates, and (optionally) model paraphrases.

Small datasets overfit; copies of each training example with realistic noise (typos, random casing),
rendered with several of the task's prompt templates, teach the model the label rather than the surface
form. Every copy is marked `synthetic=True` with an id `<original>~aug<k>`, and augmentation is only ever
applied to the training split (the fine-tuning arm calls it on nothing else), so no synthetic row can reach
validation or test. This module knows nothing about run folders; paraphrasing takes any object with the
`LocalLM.generate` interface.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tunewise.evaluate.robustness import Perturbation
from tunewise.schema import Example
from tunewise.train.settings import AugmentConfig

PARAPHRASE_PROMPT = ("Rewrite the following text in different words. Keep every fact and the meaning; reply with "
                     "the rewritten text only.\n\n{text}")


def augment(examples: list[Example], config: AugmentConfig, seed: int, paraphraser: Any | None = None) -> list[Example]:
    """`config.copies` synthetic copies of every example (the originals are not included)."""
    noise = [Perturbation("typos", rate=config.typo_rate, label="aug-typos")] if config.typo_rate else []
    if config.random_case:
        noise.append(Perturbation("case", mode="random", label="aug-case"))
    copies = []
    for k in range(config.copies):
        for example in examples:
            copy = replace(example, id=f"{example.id}~aug{k}", synthetic=True,
                           metadata={**example.metadata, "augmented_from": example.id, "augment_copy": k})
            for perturbation in noise:
                copy = perturbation.apply(copy, seed + k)
            copies.append(copy)
    if config.paraphrase and paraphraser is not None and copies:
        copies = _paraphrase(copies, paraphraser, config.paraphrase_max_tokens)
    return copies


def _last_user(example: Example) -> int | None:
    return max((i for i, m in enumerate(example.prompt_messages) if m.role == "user"), default=None)


def _paraphrase(examples: list[Example], lm: Any, max_new_tokens: int) -> list[Example]:
    """Replace each example's last user turn with the model's rewrite (kept as is when the model says nothing)."""
    turns = [_last_user(e) for e in examples]
    todo = [i for i, turn in enumerate(turns) if turn is not None]
    prompts = [[{"role": "user", "content": PARAPHRASE_PROMPT.format(text=examples[i].messages[turns[i]].content)}]
               for i in todo]
    outputs = dict(zip(todo, lm.generate(prompts, max_new_tokens=max_new_tokens), strict=True))
    rewritten = []
    for i, example in enumerate(examples):
        text = outputs[i].text.strip() if i in outputs else ""
        if not text:
            rewritten.append(example)
            continue
        messages = tuple(replace(m, content=text) if j == turns[i] else m for j, m in enumerate(example.messages))
        rewritten.append(replace(example, messages=messages, metadata={**example.metadata, "paraphrased": True}))
    return rewritten
