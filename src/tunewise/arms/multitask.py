"""Multi-task fine-tuning: more datasets and tasks learnt by the same model, each scored on its own test split.

An extra task (arms.finetune.ExtraTask) brings a data file, a task definition and a prefix put before the input in
the user turn, so the model can tell the tasks apart. Each extra dataset gets its own frozen, seeded split in
`splits/<arm>~task-<name>/` (reloaded, never re-drawn, on resume); its training examples join the arm's
training mix (capped, and weighted by repetition), its validation examples the validation loss. Training or
validation examples whose input is one of the experiment's evaluated test inputs are dropped, since they
would leak the head-to-head's answers into training. After training, each task's test examples are answered
through the same backend as the arm's own (label scoring for classification) into
`predictions/<arm>~task-<name>.jsonl`, and scored with confidence intervals.

This module prepares examples and scores; it knows nothing about how training runs.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunewise.arms.context import ArmContext
from tunewise.schema import Example, Message, Prediction
from tunewise.tasks import Task, make_task

if TYPE_CHECKING:
    from tunewise.arms.finetune import ExtraTask, FinetuneArm

Messages = list[dict[str, str]]


class MultitaskError(ValueError):
    """An extra task's data does not fit its task definition; the message names the file, field and fix."""


@dataclass
class TaskData:
    """One extra task with its frozen split: the examples it trains, validates and is scored on."""

    config: ExtraTask
    task: Task
    train: list[Example]
    val: list[Example]
    test: list[Example]
    leaks_dropped: int


def suffix(name: str) -> str:
    """Prediction files and split folders of an extra task: `<arm>~task-<name>` (`~` is never in arm names)."""
    return f"~task-{name}"


def task_data_path(extra: ExtraTask) -> Path:
    from tunewise.pipeline.inputs import resolve_data_path

    return resolve_data_path(extra.data.path, f"tasks.{extra.name}.data.path")


def prefixed(messages: Messages, prefix: str | None) -> Messages:
    """The messages with `prefix` put before the text of the last user turn (the input being asked about)."""
    if not prefix:
        return messages
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    return [m | {"content": prefix + m["content"]} if i == last else m for i, m in enumerate(messages)]


def prompt(task: Task, variant: str, prefix: str | None) -> Callable[[Example], Messages]:
    """The prompt of one task as the multi-task model sees it, in training and in evaluation alike."""
    return lambda example: prefixed(task.messages(example, (), variant), prefix)


def chat_examples(examples: list[Example], task: Task, variant: str, prefix: str | None) -> list[Example]:
    """Each example as the conversation the model must learn: the task's prompt (with `prefix` on the user
    turn), then the reference as the assistant's reply."""
    render = prompt(task, variant, prefix)
    out = []
    for e in examples:
        # a labelled task answers with the label's name when it has one (task.labels as a mapping)
        reply = getattr(task, "option", str)(e.label) if task.labels else e.output.strip()
        messages = tuple(Message(m["role"], m["content"]) for m in render(e)) + (Message("assistant", reply),)
        out.append(Example(id=e.id, messages=messages, line=e.line, metadata=e.metadata, synthetic=e.synthetic))
    return out


def load_tasks(arm: FinetuneArm, ctx: ArmContext) -> list[TaskData]:
    """Every extra task of `arm` with its frozen split (process 0 draws and writes it; the others receive it)."""
    from tunewise.data.split import stratified_subset
    from tunewise.pipeline.inputs import frozen_split, read_data
    from tunewise.train.ranks import decided_by_main

    loaded = []
    for extra in arm.tasks or []:
        field = f"arm {arm.name!r} tasks.{extra.name}.data.path"
        split = extra.split
        assert split is not None  # the experiment fills it in when it validates
        folder = ctx.run_dir / "splits" / f"{arm.name}{suffix(extra.name)}"

        def freeze(extra: ExtraTask = extra, field: str = field, folder: Path = folder,
                   split: Any = split) -> dict[str, list[Example]]:
            data = read_data(task_data_path(extra), extra.data, field, task=extra.task.type)
            _check_fit(extra, data.examples, arm.name)
            return frozen_split(folder, data.examples, split)

        parts = decided_by_main(ctx.ranks, freeze)
        task = make_task(extra.task, parts["train"])
        labelled = bool(task.labels)
        seen = {_key(e) for e in ctx.test}
        train = [e for e in parts["train"] if _key(e) not in seen]
        val = [e for e in parts["val"] if _key(e) not in seen]
        loaded.append(TaskData(
            config=extra, task=task,
            train=stratified_subset(train, extra.max_train_examples, ctx.seed, labelled),
            val=stratified_subset(val, extra.max_val_examples, ctx.seed, labelled),
            test=stratified_subset(parts["test"], split.max_test, split.seed, labelled),
            leaks_dropped=len(parts["train"]) + len(parts["val"]) - len(train) - len(val)))
    return loaded


def _key(example: Example) -> str:
    from tunewise.data.textnorm import normalise

    return normalise(example.input)


def _check_fit(extra: ExtraTask, examples: list[Example], arm: str) -> None:
    """Refuse data that cannot be the declared task (free text as 'labels', labels outside task.labels)."""
    where = f"arm {arm!r} task {extra.name!r} ({extra.data.path})"
    if extra.task.type == "classify":
        labels = {e.label for e in examples}
        if len(labels) > 100 or (len(examples) >= 10 and len(labels) > len(examples) // 2):
            raise MultitaskError(f"{where}: task.type classify, but the data has {len(labels)} distinct outputs "
                                 f"in {len(examples)} examples: free text, not labels. Fix: set task.type to "
                                 "generate (or extract), or map the label column with data.mapping")
        unknown = sorted(labels - set(extra.task.labels)) if extra.task.labels else []
        if unknown:
            raise MultitaskError(f"{where}: outputs {unknown[:5]} are not in task.labels {extra.task.labels}. Fix: "
                                 "add them to task.labels, or remove task.labels to use the data's own")
    if extra.task.type == "extract":
        bad = [e.line for e in examples if not _is_json_object(e.output)]
        if bad:
            raise MultitaskError(f"{where}: task.type extract needs a JSON object as every output; line(s) "
                                 f"{bad[:5]} are not. Fix: set task.type to generate, or repair those outputs")


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def training_mix(tasks: list[TaskData], seed: int, variant: str) -> tuple[list[Example], list[Example]]:
    """(training rows, validation rows) of the extra tasks as chat examples with their prefixes.

    `weight` repeats a task's training examples: 2 puts each in twice, 1.5 each once and a seeded half again,
    0.5 a seeded half. Ids are prefixed with the task name, so no two rows of the mix share one.
    """
    rng = random.Random(seed)
    train: list[Example] = []
    val: list[Example] = []
    for data in tasks:
        name, weight = data.config.name, data.config.weight
        whole, part = int(weight), weight - int(weight)
        rows = [replace(e, id=f"{name}:{e.id}~{k}") for k in range(whole) for e in data.train]
        extra = rng.sample(data.train, round(part * len(data.train)))
        rows += [replace(e, id=f"{name}:{e.id}~{whole}") for e in extra]
        train += chat_examples(rows, data.task, variant, data.config.prefix)
        val += chat_examples([replace(e, id=f"{name}:{e.id}") for e in data.val], data.task, variant, data.config.prefix)
    return train, val


def evaluate_tasks(arm: FinetuneArm, ctx: ArmContext, tasks: list[TaskData], model_folder: Path,
                   own: list[Prediction]) -> list[dict[str, Any]]:
    """Answer and score every extra task's test examples with the trained model; the arm's own task first.

    Predictions are resumable like any arm's (finished examples are skipped, answers cached).
    """
    from tunewise.arms.prompted import model_backend, run_prompted

    rows = [_scored(ctx.task, own, ctx) | {"name": "(experiment task)", "type": ctx.task.name,
                                                 "prefix": arm.prefix, "train_examples": None, "leaks_dropped": 0,
                                                 "predictions": f"predictions/{arm.name}.jsonl"}]
    for data in tasks:
        name = f"{arm.name}{suffix(data.config.name)}"
        copy = replace(ctx, task=data.task, train=data.train, val=data.val, test=data.test, store_suffix="")
        backend = model_backend(str(model_folder), arm.precision, arm.batch_size, copy, data.config.task.max_new_tokens)
        predictions = run_prompted(name, copy, prompt(data.task, arm.prompt, data.config.prefix), backend)
        rows.append(_scored(data.task, predictions, ctx) | {
            "name": data.config.name, "type": data.task.name, "prefix": data.config.prefix,
            "weight": data.config.weight, "train_examples": len(data.train), "val_examples": len(data.val),
            "leaks_dropped": data.leaks_dropped, "predictions": f"predictions/{name}.jsonl"})
        ctx.log(f"{name}: {rows[-1]['metric']} {rows[-1]['value']:.3f} on {rows[-1]['n']} test examples")
    return rows


def _scored(task: Task, predictions: list[Prediction], ctx: ArmContext) -> dict[str, Any]:
    """The task's headline metric with a seeded percentile-bootstrap interval (the experiment's resamples and
    confidence, as for every arm), and its other metrics."""
    from tunewise.evaluate.metrics import arm_metrics, families
    from tunewise.evaluate.stats import intervals, resample_weights

    metric = "accuracy" if task.labels else "score"
    if not predictions:
        return {"metric": metric, "value": None, "low": None, "high": None, "n": 0, "summary": {}}
    cis = intervals(families(predictions, task), resample_weights(len(predictions), ctx.bootstrap_resamples, ctx.seed),
                    1 - ctx.alpha)
    return {"metric": metric, **cis[metric], "n": len(predictions), "summary": arm_metrics(predictions, task)}
