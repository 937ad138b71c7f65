"""Hyperparameter search for fine-tuning with optuna: learning rate, LoRA rank and epochs, by validation loss.

Each trial is a full `train_sft` run in its own folder; the validation loss at every evaluation is reported
to optuna so a median pruner can stop trials that are clearly worse than those before them (on a CPU that
is most of the saving). The best trial's trained model is kept in memory and returned, so the winner is
not trained twice; every trial (parameters, value, state, seconds) is recorded for the report.

This module knows nothing about tasks or run folders beyond the folder it is given.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewise.schema import Example
from tunewise.train.settings import SearchConfig, SFTSettings
from tunewise.train.sft import SFTModel, train_sft


@dataclass
class SearchResult:
    best: SFTModel
    best_params: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"best_params": self.best_params, "best_value": self.best_value, "metric": "val_loss",
                "trials": self.trials}


def _pruning_callback(trial: Any) -> Any:
    import optuna
    from transformers import TrainerCallback

    class ReportValLoss(TrainerCallback):
        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                        **kwargs: Any) -> None:
            if metrics and "eval_loss" in metrics:
                trial.report(metrics["eval_loss"], state.global_step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"validation loss {metrics['eval_loss']:.4f} at step "
                                             f"{state.global_step} is worse than the median of earlier trials")

    return ReportValLoss()


def search_sft(train: Sequence[Example], val: Sequence[Example], settings: SFTSettings, model: str, folder: Path,
               search: SearchConfig, *, log: Callable[[str], None] = lambda message: None,
               on_trial: Callable[[], None] = lambda: None, init_from: Path | None = None) -> SearchResult:
    """Run the search; return the best trial's model (lowest validation loss) and every trial's record."""
    if not val:
        raise ValueError("a hyperparameter search needs validation examples to compare trials. Fix: give the "
                         "experiment a validation split (split.val_fraction > 0)")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=search.seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2) if search.prune else optuna.pruners.NopPruner()
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
    kept: dict[str, Any] = {}
    records: list[dict[str, Any]] = []

    def objective(trial: Any) -> float:
        params = {"learning_rate": trial.suggest_float("learning_rate", *search.learning_rate, log=True),
                  "epochs": trial.suggest_categorical("epochs", search.epochs)}
        if settings.method == "lora":
            rank = trial.suggest_categorical("lora_r", search.lora_r)
            params |= {"lora_r": rank, "lora_alpha": 2 * rank}
        trial_settings = settings.model_copy(update=params)
        started = time.perf_counter()
        trial_dir = Path(folder) / f"trial-{trial.number}"
        try:
            result = train_sft(train, val, trial_settings, model, trial_dir, resume=False, log=log,
                               callbacks=[_pruning_callback(trial)], init_from=init_from)
        except optuna.TrialPruned:
            records.append({"number": trial.number, "params": params, "value": None, "state": "pruned",
                            "seconds": round(time.perf_counter() - started, 2)})
            raise
        finally:
            shutil.rmtree(trial_dir, ignore_errors=True)  # the best model stays in memory, not on disk
            on_trial()
        value = result.info.best_val_loss
        records.append({"number": trial.number, "params": params, "value": value, "state": "complete",
                        "seconds": round(time.perf_counter() - started, 2)})
        log(f"trial {trial.number}: {params} -> validation loss {value:.4f}")
        if "value" not in kept or value < kept["value"]:
            kept.update(value=value, model=result, params=params)
        return value

    study.optimize(objective, n_trials=search.trials, timeout=search.timeout_s, catch=())
    if "model" not in kept:
        raise ValueError(f"every one of {len(study.trials)} trial(s) was pruned or failed; widen the search ranges")
    return SearchResult(kept["model"], kept["params"], kept["value"], records)
