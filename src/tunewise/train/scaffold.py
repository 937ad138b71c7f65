"""The Trainer scaffold every tunewise training engine stands on (causal-LM SFT in sft.py, the classifier head
in classifier.py); each engine adds only its loss, metrics, model and export.

What it provides:
  - `trainer_base()`: a transformers `Trainer` subclass that trains over our length-grouped batches (an order
    that is a pure function of seed and epoch, so a resumed run sees the batches an uninterrupted one sees)
    and seals every checkpoint it writes (marked complete once durable, then rotated; see checkpoints.py);
  - SIGTERM turned into "checkpoint at the end of this step, then stop" (`sigterm_flag`, `stop_on_sigterm`),
    with no extra evaluation or save when that stop ends an epoch early;
  - `TrainingClock`: training seconds that add up across resumes (each checkpoint records the total so far);
  - `progress_callback`: a `progress(done_steps, total_steps)` call after every optimizer step; `loss_events`:
    each logged training loss passed to the run's events file (store/events.py), for the web UI's Live page;
  - `fold_log`: the Trainer's `log_history` folded into one row per step or per epoch, with the fields an
    engine names;
  - `training_arguments` and `fit`: the arguments every engine sets the same way, and the training call
    wrapped in all of the above.

This module knows nothing about tasks, examples, tokenizers, losses, metrics or model heads: it takes a
Trainer's ingredients from an engine and hands the trained Trainer back. transformers is imported lazily:
importing tunewise must stay cheap.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunewise.train import checkpoints

ProgressCallback = Callable[[int, int], None]
"""Called as `progress(done_steps, total_steps)` after every optimizer step."""


# ------------------------------------------------------------------------------------------ stopping


@contextlib.contextmanager
def sigterm_flag() -> Iterator[threading.Event]:
    """While active, SIGTERM sets the event instead of killing the process (main thread only: elsewhere
    Python cannot install a handler, and the event simply never fires)."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: event.set())
    try:
        yield event
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_on_sigterm(stop: threading.Event) -> Any:
    """A TrainerCallback that, once `stop` is set, saves a checkpoint at the end of the current step and ends
    training there."""
    from transformers import TrainerCallback

    class StopOnSigterm(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if stop.is_set():
                control.should_save = True
                control.should_training_stop = True

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # Stopping ends the epoch loop, and with per-epoch strategies the Trainer would then evaluate and
            # save again as if the epoch were done: an evaluation no uninterrupted run makes at this step (its
            # DataLoader even draws from the global RNG), and a checkpoint overwritten with that state. Only
            # an epoch that really finished gets its evaluation and save.
            if stop.is_set() and abs((state.epoch or 0) - round(state.epoch or 0)) > 1e-9:
                control.should_evaluate = False
                control.should_save = False

    return StopOnSigterm()


def progress_callback(progress: ProgressCallback) -> Any:
    """A TrainerCallback calling `progress(done, total)` after every optimizer step, on process 0 only."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                progress(state.global_step, state.max_steps)

    return Progress()


def loss_events() -> Any:
    """A TrainerCallback passing each logged training loss to the run's events file (store/events.py), which
    records it for the arm running now; outside a run it does nothing."""
    from transformers import TrainerCallback

    from tunewise.store.events import report_train_loss

    class LossEvents(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
            if state.is_world_process_zero and logs and isinstance(logs.get("loss"), (int, float)):
                report_train_loss(state.global_step, logs["loss"])

    return LossEvents()


# ------------------------------------------------------------------------------------------ clock


@dataclass
class TrainingClock:
    """Training seconds across interruptions: those recorded in the checkpoint resumed from, plus this run's.

    Each checkpoint's completion marker records the total so far, so a resumed run reports what the whole
    training cost (up to the last checkpoint before a kill -9; work after it is lost and not counted).
    """

    before: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def restart(self) -> None:
        self.started = time.perf_counter()

    def total(self) -> float:
        return self.before + time.perf_counter() - self.started


# ------------------------------------------------------------------------------------------ trainer


def ordered_loader(trainer: Any, batches: Any) -> Any:
    """The train DataLoader over `batches` (a `LengthGroupedBatches`: its order is a pure function of seed and
    epoch, so a resumed run sees the batches an uninterrupted one sees), prepared by the Trainer's accelerator.
    Return it from an overridden `get_train_dataloader`."""
    from torch.utils.data import DataLoader

    loader = DataLoader(trainer.train_dataset, batch_sampler=batches, collate_fn=trainer.data_collator, num_workers=0)
    return trainer.accelerator.prepare(loader)


def seal_checkpoint(trainer: Any, keep_last: int, **facts: object) -> None:
    """After the Trainer saved `checkpoint-<step>`: mark it complete (its files fsynced first), then keep the
    newest `keep_last` and the best. Call from an overridden `_save_checkpoint`, on the saving process."""
    if not trainer.args.should_save:
        return
    root = Path(trainer.args.output_dir)
    checkpoints.mark_complete(root / f"checkpoint-{trainer.state.global_step}", **facts)
    best = trainer.state.best_model_checkpoint
    checkpoints.rotate(root, keep_last, Path(best) if best else None)


@functools.cache
def trainer_base() -> type:
    """The Trainer class engines use or subclass (built on first call: the transformers import is heavy).

    Its constructor takes, beside the Trainer's own arguments, `batches` (a `LengthGroupedBatches`),
    `keep_last` (complete checkpoints kept besides the best) and `clock` (a `TrainingClock`, whose total each
    checkpoint records as `train_seconds`). transformers' own group-by-length sampler draws its shuffle from
    the global RNG at the start of each epoch, so a run resumed mid-epoch would see other batches than an
    uninterrupted one: hence our sampler. `save_total_limit` must stay None: this class rotates checkpoints
    itself, unmarking before deleting.
    """
    from transformers import Trainer

    class ScaffoldTrainer(Trainer):
        """Trainer with our length-grouped batch order and crash-safe, self-rotated checkpoints."""

        def __init__(self, *args: Any, batches: Any, keep_last: int, clock: TrainingClock, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._batches = batches
            self._keep_last = keep_last
            self._clock = clock

        def get_train_dataloader(self) -> Any:
            return ordered_loader(self, self._batches)

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            super()._save_checkpoint(model, trial)
            seal_checkpoint(self, self._keep_last, train_seconds=round(self._clock.total(), 3))

    return ScaffoldTrainer


def training_arguments(output_dir: Path, *, precision: Any, device: Any, seed: int, **engine: Any) -> Any:
    """`TrainingArguments` with what every engine sets alike (precision flags for `precision` on `device`,
    seeds, no DataLoader workers, no tqdm, our own checkpoint rotation) and the engine's own `engine` ones."""
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir),
        save_total_limit=None,  # trainer_base() rotates itself, unmarking before deleting
        bf16=precision.dtype == torch.bfloat16,
        fp16=precision.dtype == torch.float16,
        use_cpu=device.type == "cpu",  # bf16 on a CPU is refused by TrainingArguments unless this is said
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,  # tokenized rows are already in memory; workers would only copy them
        disable_tqdm=True,
        **engine,
    )


@dataclass(frozen=True, slots=True)
class Fitted:
    """A finished (or SIGTERM-interrupted) training: the Trainer, the seconds across resumes, and whether
    SIGTERM ended it (a checkpoint was written; call again to finish)."""

    trainer: Any
    seconds: float
    interrupted: bool


def fit(trainer_class: type, *, start: Path | None, progress: ProgressCallback | None = None,
        callbacks: Sequence[Any] = (), log: Callable[[str], None] = lambda message: None,
        **trainer_kwargs: Any) -> Fitted:
    """Build `trainer_class` (`trainer_base()` or a subclass) and train it, from checkpoint `start` if given.

    SIGTERM during training writes a checkpoint and stops (`interrupted=True`). The callbacks are ours (stop on
    SIGTERM, then progress) followed by `callbacks`; `trainer_kwargs` go to the constructor (model, args,
    datasets, collator, batches, keep_last...), `clock` excepted: fit starts it from what `start` recorded.
    """
    from transformers import PrinterCallback

    clock = TrainingClock(before=checkpoints.recorded_seconds(start))
    with sigterm_flag() as stop:
        hooks = [stop_on_sigterm(stop), loss_events()]
        if progress is not None:
            hooks.append(progress_callback(progress))
        trainer = trainer_class(callbacks=[*hooks, *callbacks], clock=clock, **trainer_kwargs)
        trainer.remove_callback(PrinterCallback)  # it prints raw log dicts; progress goes through `progress`
        if start is not None:
            log(f"resuming from {start.name}")
        clock.restart()
        trainer.train(resume_from_checkpoint=str(start) if start is not None else None)
        return Fitted(trainer, clock.total(), stop.is_set())


# ------------------------------------------------------------------------------------------ history


@dataclass(frozen=True, slots=True)
class LogRow:
    """The log lines of one step (or epoch) folded together: `epoch` as the first of them logged it, and the
    value of each field some line carried."""

    at: int
    epoch: float
    values: dict[str, float]


def fold_log(log_history: Sequence[Mapping[str, Any]], by: Literal["step", "epoch"],
             fields: Mapping[str, str]) -> list[LogRow]:
    """Fold the Trainer's `log_history` into rows, oldest first: one per step (`by="step"`) or per whole epoch
    (`by="epoch"`, the logged epoch rounded; lines without an epoch are skipped).

    `fields` maps a logged key to the name it gets in a row (`{"loss": "train_loss", "eval_loss": "val_loss"}`);
    a later line overwrites an earlier one's value. Lines carrying none of the keys are ignored, so a step or
    epoch only gets a row when something the engine records was logged at it.
    """
    rows: dict[int, LogRow] = {}
    for line in log_history:
        if by == "epoch" and "epoch" not in line:
            continue
        found = {name: float(line[key]) for key, name in fields.items() if key in line}
        if not found:
            continue
        at = round(line["epoch"]) if by == "epoch" else int(line.get("step", 0))
        row = rows.setdefault(at, LogRow(at, float(line.get("epoch", 0)), {}))
        row.values.update(found)
    return [rows[at] for at in sorted(rows)]
