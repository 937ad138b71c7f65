"""The pydantic settings of the training engines (causal-LM SFT, classifier heads, searches, augmentation, the
classical model), kept apart from the engines so an experiment file is validated without importing torch or
scikit-learn. Knows nothing about how the settings are used.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class SFTSettings(BaseModel):
    """How a causal LM is fine-tuned. Defaults suit LoRA on a small instruct model with a few hundred examples."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["lora", "full"] = Field("lora", description="lora: train low-rank adapters (peft) on a frozen "
                                            "model, small and fast; full: train every weight.")
    epochs: int = Field(1, ge=1, description="Passes over the training examples; early stopping may end sooner.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    learning_rate: float | None = Field(None, gt=0, description="Peak AdamW learning rate; default 2e-4 for "
                                        "lora, 2e-5 for full.")
    batch_size: int = Field(8, ge=1, description="Examples per device per step.")
    gradient_accumulation: int = Field(1, ge=1, description="Batches summed per optimizer step (global batch = "
                                       "batch_size x this x processes).")
    max_length: int = Field(512, ge=8, description="Tokens per example; longer conversations keep their start.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay.")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps with a linearly rising rate.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping threshold (global L2 norm).")
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto", description="Recompute activations in the backward pass: about a third more compute for far less "
                            "memory. auto: on only when the estimated activation memory exceeds half the memory "
                            "available (train/memory.py); the choice and why are in the training record.")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    # 0 by default, as peft's own LoraConfig: on a CPU dropout was 40% of a bf16 LoRA step (a random mask and a
    # copy of each adapter's input; BENCHMARKS.md, train_efficiency), and the fine-tuning API trains without it.
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA branch (0 = none; 0.05-0.1 "
                                "regularises small data, at a cost in speed on CPUs).")
    target_modules: list[str] | str = Field("all-linear", description="Modules given adapters: 'all-linear' "
                                            "(every linear layer but the output head, found per architecture "
                                            "by peft) or a list of module names.")
    lora_layers: int | None = Field(None, ge=1, description="Put adapters on the top N transformer layers only: "
                                    "backpropagation then stops below them, about 2x faster on a CPU for N = a "
                                    "third of the layers; default: every layer.")
    early_stopping_patience: int = Field(2, ge=1, description="Evaluations without a lower validation loss before "
                                         "training stops.")
    checkpoint_every_steps: int | None = Field(None, ge=1, description="Save (and evaluate) every N steps; "
                                               "default: at the end of every epoch.")
    keep_checkpoints: int = Field(2, ge=1, description="Newest complete checkpoints kept (the best is kept too).")
    seed: int = Field(0, description="Seeds adapter initialisation, dropout and the data order.")
    precision: Literal["auto", "bf16", "fp32", "fp16"] = Field("auto", description="auto: bf16 autocast where the "
                                                               "hardware runs it fast, else fp32.")
    report_to: list[Literal["tensorboard", "mlflow"]] = Field(default_factory=list, description="Also log losses "
                                                                  "and learning rate to TensorBoard (event files beside "
                                                                  "the checkpoints) or MLflow; the package must be "
                                                                  "installed.")

    @property
    def lr(self) -> float:
        return self.learning_rate or (2e-4 if self.method == "lora" else 2e-5)


class ClassifierConfig(BaseModel):
    """How a classifier head is fine-tuned. Defaults suit full fine-tuning of a small encoder (MiniLM)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("minilm", description="Encoder or decoder to put the head on: 'minilm' (bundled "
                       "all-MiniLM-L6-v2), a local model folder, or a hub id; see assets.resolve_model.")
    epochs: int = Field(3, ge=1, description="Maximum passes over the training split; early stopping may end "
                        "training sooner.")
    learning_rate: float = Field(5e-5, gt=0, description="Peak AdamW learning rate. 5e-5 suits full fine-tuning "
                                 "of a pretrained encoder; a model trained from scratch needs ~1e-3.")
    batch_size: int = Field(16, ge=1, description="Training examples per step; evaluation uses twice this.")
    max_length: int = Field(256, ge=8, description="Tokens kept per example; longer inputs are truncated.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decoupled weight decay, a guard against overfitting "
                                "small data.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Fraction of training steps over which the learning "
                                "rate rises linearly from 0, so the fresh head does not wreck the encoder early.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping threshold (global L2 norm).")
    early_stopping_patience: int = Field(2, ge=1, description="Epochs without validation improvement before "
                                         "training stops.")
    early_stopping_metric: Literal["macro_f1", "loss"] = Field(
        "macro_f1", description="What 'improvement' means: higher validation macro-F1, or lower validation loss. "
        "The best epoch by this metric is the one kept.")
    save_total_limit: int = Field(2, ge=1, description="Newest complete checkpoints kept on disk; the best one is "
                                  "kept too, so a resumed run can still end on it.")
    seed: int = Field(0, description="Seeds the head's initialisation, dropout and the data order.")
    precision: str = Field("auto", description="'auto' (bf16 where the hardware does it fast, else fp32), "
                           "'bf16', 'fp32' or 'fp16'; see models.precision.choose_precision.")


class SearchConfig(BaseModel):
    """What an optuna search over fine-tuning settings tries. Off unless `trials` is set on the arm."""

    model_config = ConfigDict(extra="forbid")

    trials: int = Field(6, ge=1, le=200, description="Trials to run (fewer if `timeout_s` runs out).")
    learning_rate: tuple[float, float] = Field((5e-5, 2e-3), description="Log-uniform range for the learning rate.")
    lora_r: list[int] = Field(default_factory=lambda: [4, 8, 16], description="LoRA ranks to try (lora only); "
                              "lora_alpha follows as 2 x rank.")
    epochs: list[int] = Field(default_factory=lambda: [1, 2], description="Epoch counts to try.")
    timeout_s: float | None = Field(None, gt=0, description="Stop starting new trials after this many seconds.")
    prune: bool = Field(True, description="Stop a trial early when its validation loss is worse than the median "
                        "of earlier trials at the same step (optuna MedianPruner).")
    seed: int = Field(0, description="Seeds the sampler (TPE), so the same search tries the same settings.")

    @model_validator(mode="after")
    def _ranges(self) -> SearchConfig:
        low, high = self.learning_rate
        if not 0 < low <= high:
            raise ValueError(f"learning_rate range {self.learning_rate} must be (low, high) with 0 < low <= high")
        if not self.lora_r or not self.epochs or min(self.lora_r) < 1 or min(self.epochs) < 1:
            raise ValueError("lora_r and epochs must be non-empty lists of positive integers")
        return self


class AugmentConfig(BaseModel):
    """How synthetic training copies are made (training split only)."""

    model_config = ConfigDict(extra="forbid")

    copies: int = Field(1, ge=1, le=10, description="Synthetic copies per training example.")
    typo_rate: float = Field(0.03, ge=0, le=0.3, description="Share of words given a typo in each copy (0: none).")
    random_case: bool = Field(False, description="Also randomise letter case in the copies.")
    templates: list[str] = Field(default_factory=list, description="Prompt variants of the task (default, terse, "
                                                                   "cot) the copies are rendered with, in turn; "
                                                                   "default: the arm's own prompt.")
    paraphrase: bool = Field(False, description="Rewrite each copy's input with the arm's base model first "
                                                "(slow on a CPU; quality depends on the model).")
    paraphrase_max_tokens: int = Field(160, ge=8, le=2048, description="Generation budget of a paraphrase.")


class ClassicalConfig(BaseModel):
    """Settings of the classical arm: which estimator family, how to search it, which features to use."""

    model_config = ConfigDict(extra="forbid")

    model: Literal["logreg", "linear_svm", "complement_nb", "random_forest", "auto"] = Field(
        "auto", description="Estimator family: logistic regression, linear SVM, complement naive Bayes, random forest, "
                            "or `auto`: the linear families (naive Bayes only without numeric features) in one "
                            "search, plus the random forest where it can pay (under 5,000 training rows, or "
                            "metadata features); on large sparse TF-IDF a forest costs most of the time and rarely "
                            "wins.")
    search: Literal["halving", "grid", "random"] = Field(
        "halving", description="`halving` (successive halving): every grid candidate is scored on a ninth or so of "
                               "the rows, the best third goes on with three times the rows, until the last round "
                               "uses them all (falls back to `grid` on data too small to split into rounds); "
                               "`grid` tries every candidate on all rows; `random` samples `n_iter` candidates "
                               "from wider distributions (log-uniform C, forest size and depth).")
    n_iter: int = Field(10, ge=1, description="Candidates sampled by the random search (ignored by the grid search).")
    cv: int = Field(3, ge=2, description="Stratified cross-validation folds; every label needs at least this many "
                                         "training examples.")
    scoring: str = Field("f1_macro", description="scikit-learn scorer name the search maximises; macro F1 by default so "
                                                 "rare labels count as much as common ones.")
    features: list[str] = Field(
        default_factory=list, description="Example metadata keys (a table's columns other than the input and label, "
                                          "e.g. [drugName, usefulCount]) added to the text features: numeric when "
                                          "every training value is a number (standard-scaled), else categorical "
                                          "(one-hot). Every example must have them.")
    numeric_features: list[str] = Field(
        default_factory=list, description="Example metadata keys holding numbers (\"1,986\" counts); standard-scaled and "
                                          "added to the text features. Every example must have them; a blank or "
                                          "N/A value is missing and takes the training median.")
    categorical_features: list[str] = Field(
        default_factory=list, description="Example metadata keys holding categories; one-hot encoded (categories unseen "
                                          "in training are ignored at prediction time). Every example must have them.")
    max_features: int | None = Field(50_000, ge=1, description="Vocabulary cap of the TF-IDF (most frequent n-grams "
                                                                "kept); null for no cap.")
    ngram_range: tuple[int, int] = Field((1, 2), description="Smallest and largest word n-gram of the TF-IDF.")
    class_weight: Literal["balanced"] | None = Field(
        None, description="`balanced` weights labels inversely to their frequency (helps on skewed labels); null weighs "
                          "every example equally.")
    seed: int = Field(0, description="Seed of the folds, the random search and the estimators; same seed, same model.")
    n_jobs: int = Field(1, ge=-1, description="Parallel search workers (-1: all cores). 1 by default: these machines "
                                              "have 2 cores and other arms may be running.")
    time_budget_s: float | None = Field(
        600.0, gt=0, description="Seconds the cross-validated search may take; when they run out the search stops "
                                 "and the best candidate of the deepest round finished so far is refitted on all "
                                 "rows (that refit, about one fit, comes on top). Null: no limit.")

    @field_validator("scoring")
    @classmethod
    def _known_scorer(cls, value: str) -> str:
        from sklearn.metrics import get_scorer_names  # here, not at import: the config stays sklearn-free

        if value not in get_scorer_names():
            raise ValueError(f"unknown scoring {value!r}; use a scikit-learn scorer name such as f1_macro, accuracy "
                             f"or balanced_accuracy")
        return value

    @field_validator("ngram_range")
    @classmethod
    def _ordered_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1 <= low <= high:
            raise ValueError(f"ngram_range {list(value)} must be [smallest, largest] with 1 <= smallest <= largest")
        return value

    @field_validator("n_jobs")
    @classmethod
    def _nonzero_jobs(cls, value: int) -> int:
        if value == 0:
            raise ValueError("n_jobs 0 runs nothing; use 1 (serial), a worker count, or -1 (all cores)")
        return value
