"""Fine-tuned arms: train on the frozen training split, then answer the same test examples as every other arm.

lora / full: the causal LM is trained on exactly the prompt the zero-shot arm would send (the task's own
template, variant `prompt`) with the reference as the assistant reply, so the comparison isolates what
training adds. It is then evaluated through the same backend as the prompting arms (label scoring for
classification), on the merged model. classifier: a sequence-classification head (train/classifier.py).

Completed work is never redone: a finished export in `adapters/<arm>/` is reused, an interrupted training
resumes from `checkpoints/<arm>/`. What training recorded (time, precision, loss curve, a train/validation
gap warning) goes to `training/<arm>.json` for the report. A multi-task arm (`tasks`) also trains on other
datasets behind their prefixes and scores each on its own split (arms/multitask.py). Under torchrun every
process runs this code and trains; process 0 alone decides (is the arm trained?), exports, evaluates and
records (tunewise.train.ranks). This module is glue: training lives in train/.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunewise.arms import trained_cache
from tunewise.arms.base import TrainingInterrupted
from tunewise.arms.context import ArmContext
from tunewise.schema import ARM_MARKER, Example, Prediction
from tunewise.store.atomic import atomic_write_text
from tunewise.tasks import Task

if TYPE_CHECKING:
    from tunewise.arms.finetune import FinetuneArm


def training_examples(examples: list[Example], ctx: ArmContext, variant: str, *, task: Task | None = None,
                      prefix: str | None = None) -> list[Example]:
    """The examples as conversations to learn (see multitask.chat_examples); `task` defaults to the experiment's."""
    from tunewise.arms.multitask import chat_examples

    return chat_examples(examples, task or ctx.task, variant, prefix)


def _subset(examples: list[Example], limit: int | None, ctx: ArmContext) -> list[Example]:
    from tunewise.data.split import stratified_subset

    return stratified_subset(examples, limit, ctx.seed, bool(ctx.task.labels))


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


def run(arm: FinetuneArm, ctx: ArmContext) -> list[Prediction]:
    """Train here (or pick up the finished or interrupted training in the run folder), then score the test split."""
    if arm.method == "classifier":
        return _run_classifier(arm, ctx)
    return _run_sft(arm, ctx, ctx.max_new_tokens, ctx.task_config)


def remote_examples(arm: FinetuneArm, ctx: ArmContext) -> tuple[list[Example], list[Example]]:
    """The training and validation conversations sent to a fine-tuning endpoint (provider openai)."""
    train = training_examples(_subset(ctx.train, arm.max_train_examples, ctx), ctx, arm.prompt)
    val = training_examples(_subset(ctx.val, arm.max_val_examples, ctx), ctx, arm.prompt)
    return train, val


# ------------------------------------------------------------------------------------------ causal LM


def _run_sft(arm: FinetuneArm, ctx: ArmContext, max_new_tokens: int, task_config: dict[str, Any]) -> list[Prediction]:
    from tunewise.arms import multitask
    from tunewise.train.ranks import decided_by_main
    folder = ctx.run_dir / "adapters" / arm.name
    record_path = ctx.run_dir / "training" / f"{arm.name}.json"
    tasks = multitask.load_tasks(arm, ctx) if arm.tasks and not ctx.store_suffix else []
    extra = {"arm": arm.name, "type": "finetune", "task": task_config,
             "labels": list(ctx.task.labels) if ctx.task.labels else None, "prompt_variant": arm.prompt,
             "prefix": arm.prefix,
             "tasks": [t.config.model_dump(mode="json") | {"labels": t.task.labels} for t in tasks] or None}
    originals, distilled = _students_examples(arm, ctx)
    train = training_examples(originals, ctx, arm.prompt, prefix=arm.prefix)
    val = training_examples(_subset(ctx.val, arm.max_val_examples, ctx), ctx, arm.prompt, prefix=arm.prefix)
    # reuse an identical training from an earlier run (not for staged, multi-task or launched training)
    key = None
    if not (arm.stages or tasks or ctx.ranks.distributed or ctx.store_suffix or (folder / ARM_MARKER).is_file()):
        key = trained_cache.training_key("sft", arm, train, val, ctx.model_id(_base(arm)), ctx.seed)
        if trained_cache.restore(key, folder, record_path, ctx.log, arm.name):
            key = None
    # one decision for every process: under torchrun they must all train, or none
    if not decided_by_main(ctx.ranks, (folder / ARM_MARKER).is_file):
        record: dict[str, Any] = {"distillation": distilled} if distilled else {}
        extra_rows, record["data"] = _extra_training(arm, ctx, originals)
        task_train, task_val = multitask.training_mix(tasks, ctx.seed, arm.prompt)
        if tasks:
            record["data"]["tasks"] = {t.config.name: {"train_examples": len(t.train), "val_examples": len(t.val),
                                                       "weight": t.config.weight, "leaks_dropped": t.leaks_dropped}
                                       for t in tasks}
        train, val = train + extra_rows + task_train, val + task_val
        if arm.stages:
            last, record["stages"] = _progressive(arm, ctx, val, max_new_tokens, extra)
            info = _adopt(last, folder, extra)
            info["seconds"] = sum(stage["seconds"] for stage in record["stages"])  # training cost = every stage
            _write_training(ctx, arm, record | info)
            return _evaluate(arm, ctx, arm.name, folder, max_new_tokens)
        if arm.search is not None:
            from tunewise.train.search import search_sft

            with ctx.progress(f"{arm.name} (search)", arm.search.trials) as advance:
                found = search_sft(train, val, arm.training, _base(arm), ctx.run_dir / "checkpoints" / arm.name / "search",
                                   arm.search, log=ctx.log, on_trial=lambda: advance(1), init_from=arm.init_from)
            result, record["search"] = found.best, found.to_dict()
            ctx.log(f"{arm.name}: best of {len(found.trials)} trial(s): {found.best_params} "
                    f"(validation loss {found.best_value:.4f})")
        else:
            result = _train(arm, ctx, train, val, arm.training, arm.name, arm.init_from)
        if not ctx.ranks.main:
            return []  # process 0 exports, evaluates and records; this process's part was the training
        result.export(folder, extra=extra)
        info = result.info.to_dict()
        record |= info | {"train_tokens_per_s": round(info["tokens"] * max(info["epochs_run"], 1)
                                                      / max(info["seconds"], 1e-9), 1)}
        _write_training(ctx, arm, record)
        if key is not None:
            trained_cache.save(key, folder, record_path)
        ctx.log(f"{arm.name}: {result.settings.method} trained {result.info.steps} steps in {result.info.seconds:.0f} s "
                f"({result.info.precision}); best validation loss {result.info.best_val_loss}"
                + (f"; warning: {result.info.gap_warning}" if result.info.gap_warning else ""))
    if not ctx.ranks.main:
        return []
    predictions = _evaluate(arm, ctx, arm.name, folder, max_new_tokens)
    if tasks:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        scored = multitask.evaluate_tasks(arm, ctx, tasks, _evaluated(folder), predictions)
        if record.get("tasks") != scored:
            _write_training(ctx, arm, record | {"tasks": scored})
    if arm.forgetting_probe:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if "forgetting" not in record:
            record["forgetting"] = _forgetting(arm, ctx, folder)
            _write_training(ctx, arm, record)
    if arm.learning_curve:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if "learning_curve" not in record:
            record["learning_curve"] = _learning_curve(arm, ctx, train, val, predictions, max_new_tokens, extra)
            _write_training(ctx, arm, record)
    return predictions


def _students_examples(arm: FinetuneArm, ctx: ArmContext) -> tuple[list[Example], dict[str, Any] | None]:
    """The training examples: the stratified subset of the training split, or, with a teacher, the pool of
    training inputs labelled by the teacher (arms/distill.py) and what the labelling did."""
    if arm.teacher is None:
        return _subset(ctx.train, arm.max_train_examples, ctx), None
    from tunewise.arms.distill import teacher_labelled

    return teacher_labelled(arm, ctx, arm.max_train_examples)


def _extra_training(arm: FinetuneArm, ctx: ArmContext, originals: list[Example]) -> tuple[list[Example], dict]:
    """Synthetic copies (training split only) and replayed general data, with counts for the record."""
    rows: list[Example] = []
    counts = {"train_examples": len(originals), "synthetic": 0, "replay": 0}
    if arm.augment is not None:
        from tunewise.train.augment import augment

        lm = ctx.local_model(_base(arm), arm.precision) if arm.augment.paraphrase else None
        copies = augment(originals, arm.augment, ctx.seed, paraphraser=lm)
        templates = arm.augment.templates or [arm.prompt]
        for k, template in enumerate(templates):
            rows += training_examples([c for i, c in enumerate(copies) if i % len(templates) == k], ctx, template,
                                      prefix=arm.prefix)
        counts["synthetic"] = len(copies)
    if arm.replay is not None:
        import random

        from tunewise.data.formats import read_examples

        data = read_examples(arm.replay.data)
        if data.error_lines or not data.examples:
            raise ValueError(f"replay: {arm.replay.data} has {len(data.error_lines)} line(s) with errors and "
                             f"{len(data.examples)} usable example(s); run `tunewise check {arm.replay.data}`")
        want = min(len(data.examples), max(1, round(arm.replay.fraction * len(originals))))
        rows += random.Random(ctx.seed).sample(data.examples, want)
        counts["replay"] = want
    if rows:
        ctx.log(f"{arm.name}: {counts['train_examples']} training examples + {counts['synthetic']} synthetic + "
                f"{counts['replay']} replayed")
    return rows, counts


def _stage_examples(stage: Any, ctx: ArmContext, variant: str) -> list[Example]:
    if stage.data is None:
        examples = ctx.train
    else:
        from tunewise.data.formats import read_examples

        data = read_examples(stage.data)
        if data.error_lines or not data.examples:
            raise ValueError(f"stage {stage.name!r}: {stage.data} has {len(data.error_lines)} line(s) with errors and "
                             f"{len(data.examples)} usable example(s); run `tunewise check {stage.data}` and fix it")
        examples = data.examples
    examples = _subset(examples, stage.max_train_examples, ctx) if stage.format == "task" else \
        examples[:stage.max_train_examples]
    return training_examples(examples, ctx, variant) if stage.format == "task" else examples


def _progressive(arm: FinetuneArm, ctx: ArmContext, val: list[Example], max_new_tokens: int,
                 extra: dict[str, Any]) -> tuple[Path, list[dict[str, Any]]]:
    """Train the stages in order, each from the previous stage's model; score every stage on the test split.

    Each stage has its own checkpoints and export (`<arm>~stage-<name>`), so an interrupted run resumes inside
    the stage it was in and never redoes a finished one. The last stage's model is the arm's model.
    """
    previous: Path | None = arm.init_from
    records = []
    for stage in arm.stages or []:
        name = f"{arm.name}~stage-{stage.name}"
        folder = ctx.run_dir / "adapters" / name
        examples = _stage_examples(stage, ctx, arm.prompt)
        settings = arm.training.model_copy(update={k: v for k, v in (("epochs", stage.epochs),
                                                                        ("learning_rate", stage.learning_rate)) if v})
        if (folder / ARM_MARKER).is_file():
            info = json.loads((folder / ARM_MARKER).read_text(encoding="utf-8"))["training"]
        else:
            result = _train(arm, ctx, examples, val, settings, name, previous)
            result.export(folder, extra=extra | {"arm": name, "stage": stage.name})
            info = result.info.to_dict()
        predictions = _evaluate(arm, ctx, name, folder, max_new_tokens)
        records.append({"stage": stage.name, "format": stage.format, "examples": len(examples),
                        "seconds": info["seconds"], "best_val_loss": info["best_val_loss"],
                        "metric": "accuracy" if ctx.task.labels else "score", "value": _mean_score(ctx, predictions)})
        ctx.log(f"{name}: {len(examples)} examples, test {records[-1]['metric']} {records[-1]['value']:.3f}")
        previous = folder
    assert previous is not None  # the config requires at least one stage
    return previous, records


def _adopt(stage_folder: Path, folder: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """The last stage's export becomes the arm's (copied atomically, its marker naming the arm)."""
    from tunewise.store.atomic import atomic_dir
    meta = json.loads((stage_folder / ARM_MARKER).read_text(encoding="utf-8")) | extra
    with atomic_dir(folder) as tmp:
        shutil.copytree(stage_folder, tmp, dirs_exist_ok=True)
        for marker in tmp.rglob(ARM_MARKER):
            marker.write_text(json.dumps(meta | {"merged": marker.parent != tmp}, indent=2) + "\n", encoding="utf-8")
    return meta["training"]


def _forgetting(arm: FinetuneArm, ctx: ArmContext, folder: Path) -> dict[str, Any]:
    """General capability of the base model and of the fine-tuned one, on the same probe items."""
    from tunewise.assets import resolve_model
    from tunewise.evaluate.forgetting import probe, retention

    merged = folder / "merged" if (folder / "merged").is_dir() else folder
    with ctx.progress(f"{arm.name} (forgetting)", 2) as advance:
        before = probe(resolve_model(_base(arm)), arm.forgetting_probe, precision=arm.precision)
        advance(1)
        after = probe(str(merged), arm.forgetting_probe, precision=arm.precision)
        advance(1)
    kept = retention(before, after)
    ctx.log(f"{arm.name}: general capability retained {kept['retention']:.0%}"
            + (f" - ALARM: {'; '.join(kept['reasons'])}" if kept["alarm"] else ""))
    return kept


def _base(arm: FinetuneArm) -> str:
    """The model training starts from: the arm's model, or the base recorded beside an adapter to continue."""
    if arm.init_from is not None and (arm.init_from / ARM_MARKER).is_file():
        meta = json.loads((arm.init_from / ARM_MARKER).read_text(encoding="utf-8"))
        if (arm.init_from / "adapter_config.json").is_file():
            return str(meta.get("base_model") or arm.model)
    return arm.model or "smollm2"


def _train(arm: FinetuneArm, ctx: ArmContext, train: list[Example], val: list[Example], settings: Any,
           name: str, init_from: Path | None) -> Any:
    from tunewise.train.sft import train_sft

    batches = math.ceil(len(train) / (settings.batch_size * ctx.ranks.world))  # each process takes its share
    steps = settings.max_steps or settings.epochs * math.ceil(batches / settings.gradient_accumulation)
    with _step_progress(ctx, f"{name} (train)", steps) as progress:
        result = train_sft(train, val, settings, _base(arm), ctx.run_dir / "checkpoints" / name, progress=progress,
                           log=ctx.log, init_from=init_from)
    if result.info.interrupted:
        raise TrainingInterrupted(f"{name}: stopped by SIGTERM at step {result.info.steps}; checkpoint saved")
    return result


def _evaluate(arm: FinetuneArm, ctx: ArmContext, name: str, folder: Path, max_new_tokens: int) -> list[Prediction]:
    """Score the trained model exactly as the prompting arms score theirs (label scoring for classification)."""
    from tunewise.arms.multitask import prompt
    from tunewise.arms.prompted import model_backend, run_prompted

    backend = model_backend(str(_evaluated(folder)), arm.precision, arm.batch_size, ctx, max_new_tokens)
    return run_prompted(name, ctx, prompt(ctx.task, arm.prompt, arm.prefix), backend)


def _evaluated(folder: Path) -> Path:
    """The weights to evaluate: a LoRA export's merged model, else the export itself."""
    return folder / "merged" if (folder / "merged").is_dir() else folder


def _learning_curve(arm: FinetuneArm, ctx: ArmContext, train: list[Example], val: list[Example],
                    full: list[Prediction], max_new_tokens: int, extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Train on growing shares of the same training examples with the arm's settings; score each on the test
    split. Points live under `<arm>~lc<percent>` so each is resumable and cached like any arm."""
    from tunewise.train.settings import SFTSettings
    meta = json.loads((ctx.run_dir / "adapters" / arm.name / ARM_MARKER).read_text(encoding="utf-8"))
    settings = SFTSettings(**meta["settings"])  # the arm's own, or the best trial's after a search
    metric = "accuracy" if ctx.task.labels else "score"
    points = []
    for fraction in sorted(set(arm.learning_curve or [])):
        name = f"{arm.name}~lc{round(fraction * 100)}"
        size = max(2, round(fraction * len(train)))
        subset = _subset(train, size, ctx)
        folder = ctx.run_dir / "adapters" / name
        if not (folder / ARM_MARKER).is_file():
            _train(arm, ctx, subset, val, settings, name, arm.init_from).export(folder, extra=extra | {"arm": name})
        predictions = _evaluate(arm, ctx, name, folder, max_new_tokens)
        points.append({"fraction": fraction, "train_examples": len(subset), "metric": metric,
                       "value": _mean_score(ctx, predictions)})
    points.append({"fraction": 1.0, "train_examples": len(train), "metric": metric, "value": _mean_score(ctx, full)})
    ctx.log(f"{arm.name} learning curve: " + ", ".join(f"{p['train_examples']} ex -> {p['value']:.3f}" for p in points))
    return points


def _mean_score(ctx: ArmContext, predictions: list[Prediction]) -> float:
    return sum(ctx.task.score(p.prediction, p.reference) for p in predictions) / max(len(predictions), 1)


# ------------------------------------------------------------------------------------------ classifier head


def _run_classifier(arm: FinetuneArm, ctx: ArmContext) -> list[Prediction]:
    from tunewise.train.classifier import MARKER, ClassifierModel, train_classifier
    from tunewise.train.sft import LossPoint, gap_warning

    folder = ctx.run_dir / "adapters" / arm.name
    record_path = ctx.run_dir / "training" / f"{arm.name}.json"
    train, distilled = _students_examples(arm, ctx) if not (folder / MARKER).is_file() else ([], None)
    val = _subset(ctx.val, arm.max_val_examples, ctx)
    key = None if (folder / MARKER).is_file() or ctx.store_suffix else \
        trained_cache.training_key("classifier", arm, train, val, ctx.model_id(arm.head.model), ctx.seed)
    if key is not None and trained_cache.restore(key, folder, record_path, ctx.log, arm.name):
        key = None
    reused = (folder / MARKER).is_file()
    if reused:
        model = ClassifierModel.load(folder, precision=arm.precision)
    else:
        steps = arm.head.epochs * math.ceil(len(train) / arm.head.batch_size)
        with _step_progress(ctx, f"{arm.name} (train)", steps) as progress:
            model = train_classifier(train, val, arm.head, ctx.run_dir / "checkpoints" / arm.name, progress=progress)
        if model.info is not None and model.info.interrupted:
            raise TrainingInterrupted(f"{arm.name}: stopped by SIGTERM; checkpoint saved")
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
            "gap_warning": gap_warning(history), **({"distillation": distilled} if distilled else {})})
        if key is not None:
            trained_cache.save(key, folder, record_path)
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
    ctx.probe(arm.name, lambda e: model.predict_scores([e], batch_size=1))
    return predictions

