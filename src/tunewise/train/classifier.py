"""Fine-tune a sequence-classification head (and the encoder under it) on labelled examples.

The cheapest fine-tuning that often pays for classification: one forward pass per example at prediction
time, no generation, and calibrated-ish probabilities for every label. Training is transformers' `Trainer`
configured against the known pitfalls: texts tokenized once, batches grouped by length and padded only to
their longest member, bf16 autocast where the hardware multiplies bf16 natively, weight decay, warmup,
gradient clipping, evaluation every epoch on the validation split with macro-F1, early stopping, and the
best epoch (not the last) kept. The per-epoch train and validation losses are returned so a later stage can
warn about a train/validation gap.

The batch order, checkpoint sealing, SIGTERM handling, clock, progress and history come from the shared
Trainer scaffold (`scaffold.py`); what is the classifier's own is the model head, its metrics, its settings
and the saved format. This module knows nothing about run folders, arms or reports: it takes examples and a
folder for checkpoints and returns a model that can predict, save and load itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunewise.models.precision import Precision, choose_precision, resolve_device
from tunewise.schema import Example
from tunewise.store.atomic import atomic_dir
from tunewise.train import checkpoints
from tunewise.train.scaffold import ProgressCallback, fit, fold_log, trainer_base, training_arguments
from tunewise.train.settings import ClassifierConfig
from tunewise.train.sft_data import LengthGroupedBatches

MARKER = "tunewise-classifier.json"
FORMAT_VERSION = 1


class ClassifierError(ValueError):
    """The examples or the folder cannot be used for a classifier; the message names every problem and the fix."""


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """One epoch's losses and validation metrics: the raw material for a train/validation gap warning."""

    epoch: int
    train_loss: float | None
    val_loss: float | None
    val_macro_f1: float | None
    val_accuracy: float | None


@dataclass(frozen=True, slots=True)
class TrainingInfo:
    """What happened during training, stored beside the saved model and in run manifests."""

    seconds: float
    precision: str
    precision_reason: str
    epochs_run: int
    best_epoch: int
    best_metric: float
    metric: str
    stopped_early: bool
    train_size: int
    val_size: int
    history: list[EpochRecord] = field(default_factory=list)
    interrupted: bool = False  # SIGTERM arrived: a checkpoint was written, training did not finish

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingInfo:
        return cls(**{**data, "history": [EpochRecord(**record) for record in data.get("history", [])]})


def _label_problems(train: Sequence[Example], val: Sequence[Example]) -> list[str]:
    """Every reason these splits cannot train a classifier, so the user fixes them all in one go."""
    problems = []
    train_labels = {e.label for e in train}
    if not train:
        problems.append("the training split is empty")
    elif len(train_labels) < 2:
        problems.append(f"the training split has only one label ({sorted(train_labels)[0]!r}); a classifier needs "
                        "at least two. Fix: add examples of the other labels, or use a non-classification task")
    if not val:
        problems.append("the validation split is empty; it drives early stopping and the choice of best epoch. "
                        "Fix: hold out some training examples for validation")
    for kind, examples in (("training", train), ("validation", val)):
        for e in examples:
            if not e.label:
                problems.append(f"{kind} example {e.id!r} (line {e.line}) has an empty label")
    unseen: dict[str, list[Example]] = {}
    for e in val:
        if e.label and e.label not in train_labels:
            unseen.setdefault(e.label, []).append(e)
    for label, examples in sorted(unseen.items()):
        where = ", ".join(f"{e.id!r} (line {e.line})" for e in examples[:3])
        more = f" and {len(examples) - 3} more" if len(examples) > 3 else ""
        problems.append(f"validation label {label!r} never occurs in training (examples {where}{more}). "
                        "Fix: re-split so every label appears in training, or drop the label")
    return problems


class _Encoded(torch.utils.data.Dataset):
    """Texts tokenized once, up front; the collator pads each batch to its own longest member."""

    def __init__(self, tokenizer: Any, examples: Sequence[Example], label2id: dict[str, int] | None,
                 max_length: int) -> None:
        encoded = tokenizer([e.input for e in examples], truncation=True, max_length=max_length)
        self.rows = [{key: encoded[key][i] for key in encoded} for i in range(len(examples))]
        if label2id is not None:
            for row, example in zip(self.rows, examples, strict=True):
                row["labels"] = label2id[example.label]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]


def _metrics(prediction: Any) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    predicted = np.asarray(logits).argmax(axis=-1)
    gold = np.asarray(prediction.label_ids)
    return {"macro_f1": float(f1_score(gold, predicted, average="macro", zero_division=0)),
            "accuracy": float(accuracy_score(gold, predicted))}


_LOGGED = {"loss": "train_loss", "eval_loss": "val_loss", "eval_macro_f1": "val_macro_f1",
           "eval_accuracy": "val_accuracy"}


def _history(log_history: list[dict[str, Any]]) -> list[EpochRecord]:
    """Fold the Trainer's log lines (one train line and one eval line per epoch) into one record per epoch."""
    rows = fold_log(log_history, by="epoch", fields=_LOGGED)
    return [EpochRecord(row.at, row.values.get("train_loss"), row.values.get("val_loss"),
                        row.values.get("val_macro_f1"), row.values.get("val_accuracy")) for row in rows if row.at > 0]


def _best_epoch(history: list[EpochRecord], metric: str) -> tuple[int, float]:
    """The epoch `load_best_model_at_end` restored: the first one reaching the best value (0, nan when no
    epoch was evaluated: training was stopped inside the first)."""
    key = "val_macro_f1" if metric == "macro_f1" else "val_loss"
    scored = [(r.epoch, getattr(r, key)) for r in history if getattr(r, key) is not None]
    sign = 1 if metric == "macro_f1" else -1
    return max(scored, key=lambda pair: (sign * pair[1], -pair[0]), default=(0, float("nan")))


def _with_fresh_head(source: str, labels: list[str], seed: int) -> tuple[Any, Any]:
    """The model at `source` with a new, seeded classification head over `labels`, and its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed
    from transformers.utils import logging as hf_logging

    tokenizer = AutoTokenizer.from_pretrained(source)
    set_seed(seed)  # before the head is created: its initialisation is random
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report lists the fresh head as "missing", which is the point
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)})
    finally:
        hf_logging.set_verbosity(verbosity)
    if model.config.pad_token_id is None:  # decoders: the head must know where each sequence ends
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def train_classifier(train: Sequence[Example], val: Sequence[Example], config: ClassifierConfig,
                     output_dir: Path, progress: ProgressCallback | None = None,
                     resume: bool = True) -> ClassifierModel:
    """Fine-tune `config.model` with a fresh classification head; return the best epoch's model.

    Labels are the sorted set of training labels. Checkpoints go to `output_dir/checkpoints` every epoch (the
    newest `save_total_limit` complete ones and the best are kept); nothing else is written, the caller
    saves the model. With `resume` (the default) training continues from the newest complete checkpoint
    there, data order and random state included. On SIGTERM a checkpoint is written at the end of the
    current step, training stops and the returned info has `interrupted=True`: do not save that model,
    call again to finish. Raises ClassifierError listing every problem with the splits before any model is
    loaded.
    """
    if problems := _label_problems(train, val):
        raise ClassifierError("Cannot train a classifier:\n- " + "\n- ".join(problems))
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback

    from tunewise.assets import resolve_model

    labels = sorted({e.label for e in train})
    label2id = {label: i for i, label in enumerate(labels)}
    device = resolve_device("auto")
    precision = choose_precision(device, config.precision)
    model, tokenizer = _with_fresh_head(resolve_model(config.model), labels, config.seed)

    root = Path(output_dir) / "checkpoints"
    start = checkpoints.latest(root) if resume else None
    args = training_arguments(
        root, precision=precision, device=device, seed=config.seed,
        num_train_epochs=config.epochs,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size * 2,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of total steps (transformers >= 5)
        max_grad_norm=config.max_grad_norm,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",  # the train loss logged is then the epoch's mean, comparable to val loss
        load_best_model_at_end=True,
        metric_for_best_model=config.early_stopping_metric,
        greater_is_better=config.early_stopping_metric == "macro_f1",
        report_to="none",
    )
    encoded = _Encoded(tokenizer, train, label2id, config.max_length)
    fitted = fit(trainer_base(), start=start, progress=progress,
                 callbacks=[EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience)],
                 model=model, args=args, train_dataset=encoded,
                 eval_dataset=_Encoded(tokenizer, val, label2id, config.max_length),
                 data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
                 compute_metrics=_metrics,
                 batches=LengthGroupedBatches([len(row["input_ids"]) for row in encoded.rows], config.batch_size,
                                              seed=config.seed),
                 keep_last=config.save_total_limit)
    trainer, seconds, interrupted = fitted.trainer, fitted.seconds, fitted.interrupted

    history = _history(trainer.state.log_history)
    best_epoch, best_metric = _best_epoch(history, config.early_stopping_metric)
    epochs_run = max((r.epoch for r in history), default=0)
    info = TrainingInfo(
        seconds=round(seconds, 3), precision=precision.name, precision_reason=precision.reason,
        epochs_run=epochs_run, best_epoch=best_epoch, best_metric=best_metric,
        metric=config.early_stopping_metric, stopped_early=epochs_run < config.epochs,
        train_size=len(train), val_size=len(val), history=history, interrupted=interrupted)
    return ClassifierModel(trainer.model, tokenizer, labels, config, precision, info)


class ClassifierModel:
    """A fine-tuned classifier: per-label probabilities for examples, and a folder it saves to and loads from."""

    def __init__(self, model: Any, tokenizer: Any, labels: list[str], config: ClassifierConfig,
                 precision: Precision, info: TrainingInfo | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.config = config
        self.precision = precision
        self.info = info

    @torch.inference_mode()
    def predict_scores(self, examples: Sequence[Example], batch_size: int | None = None) -> list[dict[str, float]]:
        """Softmax probability of every label, one dict per example, in input order.

        Examples are batched by length (less padding) and put back in order. Weights stay fp32; on
        hardware with fast bf16 the matrix work runs under bf16 autocast, as in training.
        """
        size = batch_size or self.config.batch_size * 2
        texts = [e.input for e in examples]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        device = next(self.model.parameters()).device
        fast = self.precision.dtype == torch.bfloat16
        scores: list[dict[str, float]] = [{} for _ in texts]
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            batch = self.tokenizer([texts[i] for i in chunk], truncation=True, max_length=self.config.max_length,
                                   padding=True, return_tensors="pt").to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
                logits = self.model(**batch).logits
            probabilities = torch.softmax(logits.float(), dim=-1).tolist()
            for index, row in zip(chunk, probabilities, strict=True):
                scores[index] = dict(zip(self.labels, row, strict=True))
        return scores

    def predict(self, examples: Sequence[Example]) -> list[str]:
        """The most probable label for each example."""
        return [max(row, key=row.__getitem__) for row in self.predict_scores(examples)]

    def save(self, folder: Path) -> Path:
        """Write model (safetensors), tokenizer and `tunewise-classifier.json`; atomic: all of it or nothing."""
        folder = Path(folder)
        with atomic_dir(folder) as tmp:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            meta = {"format": "tunewise-classifier", "version": FORMAT_VERSION, "labels": self.labels,
                    "config": self.config.model_dump(), "precision": self.precision.name,
                    "precision_reason": self.precision.reason,
                    "training": self.info.to_dict() if self.info else None}
            (tmp / MARKER).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path, precision: str | None = None) -> ClassifierModel:
        """Load a folder written by `save`. Precision is re-chosen for this machine unless `precision` is given."""
        folder = Path(folder)
        marker = folder / MARKER
        if not marker.is_file():
            what = "does not exist" if not folder.exists() else f"has no {MARKER}"
            raise ClassifierError(f"{folder} is not a tunewise classifier folder: it {what}. "
                                  "Fix: pass a folder written by ClassifierModel.save.")
        try:
            meta = json.loads(marker.read_text(encoding="utf-8"))
        except ValueError as err:
            raise ClassifierError(f"{marker} is not valid JSON ({err}). Fix: save the model again.") from err
        if meta.get("format") != "tunewise-classifier" or meta.get("version") != FORMAT_VERSION:
            raise ClassifierError(f"{marker} is format {meta.get('format')!r} version {meta.get('version')!r}; "
                                  f"this tunewise reads tunewise-classifier version {FORMAT_VERSION}. "
                                  "Fix: re-train or re-save with this version.")
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        config = ClassifierConfig(**meta["config"])
        model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        labels = list(meta["labels"])
        if [model.config.id2label[i] for i in range(len(labels))] != labels:
            raise ClassifierError(f"{folder}: config.json labels {model.config.id2label} disagree with {MARKER} "
                                  f"labels {labels}. Fix: save the model again.")
        chosen = choose_precision(resolve_device("auto"), precision or config.precision)
        info = TrainingInfo.from_dict(meta["training"]) if meta.get("training") else None
        return cls(model, tokenizer, labels, config, chosen, info)
