"""What every tunewise Trainer needs to survive a stop: SIGTERM turns into "checkpoint, then end", and a
checkpoint the Trainer has written is only trusted once marked complete (see checkpoints.py).

Shared by the SFT trainer (sft.py) and the classifier head (classifier.py), so both answer SIGTERM and
resume the same way. transformers is imported lazily: importing tunewise must stay cheap.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunewise.train import checkpoints


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
