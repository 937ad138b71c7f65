"""Fine-tuned arms: train on the frozen training split, then answer the same test examples as every other arm.

lora / full: the causal LM is trained on exactly the prompt the zero-shot arm would send (the task's own
template, variant `prompt`) with the reference as the assistant reply, so the comparison isolates what
training adds. It is then evaluated through the same backend as the prompting arms (label scoring for
classification), on the merged model. classifier: a sequence-classification head (train/classifier.py).

Completed work is never redone: a finished export in `adapters/<arm>/` is reused, an interrupted training
resumes from `checkpoints/<arm>/`. What training recorded (time, precision, loss curve, a train/validation
gap warning) goes to `training/<arm>.json` for the report. This module is glue: training lives in train/.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunewise.arms.context import ArmContext
from tunewise.atomic import atomic_write_text
from tunewise.config import FinetuneArm
from tunewise.schema import Example, Message, Prediction


class TrainingInterrupted(RuntimeError):
    """SIGTERM arrived during training; a checkpoint was written and `--resume` continues from it."""

    run_path: Path | None = None


def training_examples(examples: list[Example], ctx: ArmContext, variant: str) -> list[Example]:
    """Each example as the conversation the model must learn: the task's prompt, then the reference reply."""
    out = []
    for e in examples:
        prompt = ctx.task.messages(e, (), variant)
        reply = e.label if ctx.task.labels else e.output.strip()
        messages = tuple(Message(m["role"], m["content"]) for m in prompt) + (Message("assistant", reply),)
        out.append(Example(id=e.id, messages=messages, line=e.line, metadata=e.metadata, synthetic=e.synthetic))
    return out


def _subset(examples: list[Example], limit: int | None, ctx: ArmContext) -> list[Example]:
    from tunewise.experiment import evaluation_subset

    return evaluation_subset(examples, limit, ctx.seed, bool(ctx.task.labels))


@contextmanager
def _step_progress(ctx: ArmContext, description: str, total: int) -> Iterator[Callable[[int, int], None]]:
    """Adapt the trainers' `progress(done, total)` to the run's advance-by-n progress bars."""
    done = 0
    with ctx.progress(description, total) as advance:
        def report(step: int, _total: int) -> None:
            nonlocal done
            if step > done:
                advance(step - done)
                done = step

        yield report


def _write_training(ctx: ArmContext, arm: FinetuneArm, record: dict[str, Any]) -> None:
    atomic_write_text(ctx.run_dir / "training" / f"{arm.name}.json", json.dumps(record, indent=2) + "\n")


def run(arm: FinetuneArm, ctx: ArmContext, max_new_tokens: int, task_config: dict[str, Any]) -> list[Prediction]:
    if arm.method == "classifier":
        return _run_classifier(arm, ctx)
    return _run_sft(arm, ctx, max_new_tokens, task_config)


# ------------------------------------------------------------------------------------------ causal LM


def _run_sft(arm: FinetuneArm, ctx: ArmContext, max_new_tokens: int, task_config: dict[str, Any]) -> list[Prediction]:
    from tunewise.arms.prompted import model_backend, run_prompted
    from tunewise.train.sft import ARM_MARKER, train_sft

    folder = ctx.run_dir / "adapters" / arm.name
    if not (folder / ARM_MARKER).is_file():
        train = training_examples(_subset(ctx.train, arm.max_train_examples, ctx), ctx, arm.prompt)
        val = training_examples(_subset(ctx.val, arm.max_val_examples, ctx), ctx, arm.prompt)
        settings = arm.training
        batches = -(-len(train) // settings.batch_size)
        steps = settings.max_steps or settings.epochs * -(-batches // settings.gradient_accumulation)
        with _step_progress(ctx, f"{arm.name} (train)", steps) as progress:
            result = train_sft(train, val, settings, arm.model or "smollm2", ctx.run_dir / "checkpoints" / arm.name,
                               progress=progress, log=ctx.log)
        if result.info.interrupted:
            raise TrainingInterrupted(f"{arm.name}: stopped by SIGTERM at step {result.info.steps}; checkpoint saved")
        result.export(folder, extra={"arm": arm.name, "type": "finetune", "task": task_config,
                                     "labels": list(ctx.task.labels) if ctx.task.labels else None,
                                     "prompt_variant": arm.prompt})
        info = result.info.to_dict()
        _write_training(ctx, arm, info | {"train_tokens_per_s": round(info["tokens"] * max(info["epochs_run"], 1)
                                                                       / max(info["seconds"], 1e-9), 1)})
        ctx.log(f"{arm.name}: {settings.method} trained {result.info.steps} steps in {result.info.seconds:.0f} s "
                f"({result.info.precision}); best validation loss {result.info.best_val_loss}"
                + (f"; warning: {result.info.gap_warning}" if result.info.gap_warning else ""))
    evaluated = folder / "merged" if (folder / "merged").is_dir() else folder
    backend = model_backend(str(evaluated), arm.precision, arm.batch_size, ctx, max_new_tokens)
    return run_prompted(arm.name, ctx, lambda e: ctx.task.messages(e, (), arm.prompt), backend)


# ------------------------------------------------------------------------------------------ classifier head


def _run_classifier(arm: FinetuneArm, ctx: ArmContext) -> list[Prediction]:
    from tunewise.train.classifier import MARKER, ClassifierModel, train_classifier
    from tunewise.train.sft import LossPoint, gap_warning

    folder = ctx.run_dir / "adapters" / arm.name
    reused = (folder / MARKER).is_file()
    if reused:
        model = ClassifierModel.load(folder, precision=arm.precision)
    else:
        train = _subset(ctx.train, arm.max_train_examples, ctx)
        val = _subset(ctx.val, arm.max_val_examples, ctx)
        steps = arm.head.epochs * -(-len(train) // arm.head.batch_size)
        with _step_progress(ctx, f"{arm.name} (train)", steps) as progress:
            model = train_classifier(train, val, arm.head, ctx.run_dir / "checkpoints" / arm.name, progress=progress)
        model.save(folder)
        info = model.info  # train_classifier always records it
        history = [LossPoint(step=0, epoch=r.epoch, train_loss=r.train_loss, val_loss=r.val_loss) for r in info.history]
        _write_training(ctx, arm, {
            "method": "classifier", "model": arm.model, "seconds": info.seconds, "precision": info.precision,
            "precision_reason": info.precision_reason, "train_examples": info.train_size,
            "val_examples": info.val_size, "epochs_run": info.epochs_run, "best_epoch": info.best_epoch,
            "stopped_early": info.stopped_early,
            "history": [{"epoch": p.epoch, "step": None, "train_loss": p.train_loss, "val_loss": p.val_loss}
                        for p in history],
            "gap_warning": gap_warning(history)})
        ctx.log(f"{arm.name}: classifier head on {arm.model} trained {info.epochs_run} epoch(s) in "
                f"{info.seconds:.0f} s ({info.precision}); best epoch {info.best_epoch}")
    store = ctx.store(arm.name)
    with ctx.progress(arm.name, len(ctx.test)) as advance:
        start = time.perf_counter()
        scores = model.predict_scores(ctx.test, batch_size=arm.batch_size)
        each = (time.perf_counter() - start) / max(len(ctx.test), 1)
        predictions = [Prediction(id=e.id, arm=arm.name, input=e.input, reference=e.output.strip(),
                                  prediction=max(row, key=row.__getitem__), raw="", latency_s=each, scores=row,
                                  cached=reused) for e, row in zip(ctx.test, scores)]
        store.path.unlink(missing_ok=True)  # cheap to recompute from the saved model; never stale
        ctx.store(arm.name).append(predictions)
        advance(len(ctx.test))
    return predictions

