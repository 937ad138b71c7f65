"""Distillation: a teacher arm labels training inputs whose labels are withheld, and a fine-tuned student
learns from the teacher's labels instead of the gold ones.

The most common reason teams fine-tune is to replace an expensive model (an API) with a small one trained on
the large model's answers. To measure that honestly on labelled data, the training split is cut in two,
seeded: the teacher may use the first half as its labelled data (few-shot exemplars, a retrieval index), and
labels the second half, the pool, with those labels withheld; the student then trains on the pool with the
teacher's labels (its validation split keeps gold labels, for early stopping). With `teacher_min_confidence`,
pool examples whose teacher label has a lower probability (from the teacher's label scores) are left out.

Teachers are arms that do not train: zero_shot, few_shot, retrieval, prompt_search, remote (a larger local
model is a zero_shot or few_shot arm with that model). A teacher that trains (classical, finetune) would be
refit on half the split here and overwrite its own model in the run folder, so it is refused at load time.
The teacher's answers go through the answer cache like any answer, and are kept in
`predictions/<teacher>~distill-<student>.jsonl`; what labelling cost is computed in the evidence from them.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

from tunewise.schema import Example, Message, Prediction

TEACHER_TYPES = ("zero_shot", "few_shot", "retrieval", "prompt_search", "remote")


def check_teacher(arm: Any, experiment: Any) -> None:
    """The teacher exists, comes before the student, and does not train (see the module docstring)."""
    names = [a.name for a in experiment.arms]
    if arm.teacher not in names:
        raise ValueError(f"arm {arm.name!r}: teacher {arm.teacher!r} is not an arm; known: {names}")
    teacher = experiment.arms[names.index(arm.teacher)]
    if names.index(arm.teacher) > names.index(arm.name):
        raise ValueError(f"arm {arm.name!r}: its teacher {arm.teacher!r} must be listed before it (arms run in order)")
    if teacher.type not in TEACHER_TYPES:
        raise ValueError(f"arm {arm.name!r}: teacher {arm.teacher!r} is a {teacher.type} arm, which trains; a "
                         f"teacher must be one of {', '.join(TEACHER_TYPES)}. Fix: name such an arm as teacher")


def pool_name(student: str) -> str:
    return f"~distill-{student}"


def teacher_labelled(arm: Any, ctx: Any, limit: int | None) -> tuple[list[Example], dict[str, Any]]:
    """The student's training examples (pool inputs with the teacher's labels) and what happened, for the record."""
    teacher = ctx.configs[arm.teacher]
    shuffled = sorted(ctx.train, key=lambda e: e.id)
    random.Random(ctx.seed).shuffle(shuffled)
    half = math.ceil(len(shuffled) / 2)
    labelled, pool = shuffled[:half], shuffled[half:]
    if limit is not None:
        pool = pool[:limit]
    if not pool:
        raise ValueError(f"arm {arm.name!r}: the training split is too small to leave a pool for the teacher")
    teacher_ctx = dataclasses.replace(ctx, train=labelled, test=pool, store_suffix=pool_name(arm.name),
                                      allow_leakage=True, latency_probe=0)
    answers = ctx.run_arm(teacher, teacher_ctx)
    examples, kept, unparsed, unsure = [], 0, 0, 0
    by_id = {p.id: p for p in answers}
    for example in pool:
        answer = by_id.get(example.id)
        if answer is None or answer.error or not answer.prediction:
            unparsed += 1
            continue
        if arm.teacher_min_confidence is not None and _confidence(answer) < arm.teacher_min_confidence:
            unsure += 1
            continue
        examples.append(_relabelled(example, answer.prediction))
        kept += 1
    if not examples:
        raise ValueError(f"arm {arm.name!r}: the teacher {arm.teacher!r} gave no usable label for any of the "
                         f"{len(pool)} pool inputs ({unparsed} unparsed, {unsure} below the confidence bar)")
    agree = sum(by_id[e.id].prediction == e.output.strip() for e in pool if e.id in by_id) / len(pool)
    return examples, {"teacher": arm.teacher, "teacher_type": teacher.type,
                      "pool_source": "half of the training split, labels withheld",
                      "teacher_labelled_examples": len(labelled), "pool": len(pool), "kept": kept,
                      "unparsed": unparsed, "below_confidence": unsure,
                      "min_confidence": arm.teacher_min_confidence, "teacher_vs_withheld_gold": agree,
                      "labelling": _usage(answers)}


def _relabelled(example: Example, label: str) -> Example:
    """The example with its last assistant turn replaced by the teacher's answer (the gold one is dropped)."""
    messages = list(example.messages)
    last = max(i for i, m in enumerate(messages) if m.role == "assistant")
    messages[last] = Message("assistant", label)
    return dataclasses.replace(example, messages=tuple(messages))


def _confidence(answer: Prediction) -> float:
    """The teacher's probability for its label: a softmax over label scores (log-likelihoods or
    probabilities alike: probabilities are turned into logs first); 1.0 without scores."""
    scores = answer.scores or {}
    if not scores:
        return 1.0
    values = list(scores.values())
    if all(0.0 <= v <= 1.0 for v in values) and abs(sum(values) - 1.0) < 1e-3:
        return float(scores.get(answer.prediction, 0.0))
    top = max(values)
    total = sum(math.exp(v - top) for v in values)
    return math.exp(scores.get(answer.prediction, top) - top) / total


def _usage(answers: list[Prediction]) -> dict[str, Any]:
    return {"requests": len(answers), "seconds": sum(p.latency_s for p in answers),
            "prompt_tokens": sum(p.prompt_tokens for p in answers),
            "completion_tokens": sum(p.completion_tokens for p in answers),
            "cached": sum(p.cached for p in answers)}
