"""The experiment file: typed, documented, validated on load, with errors that name the line and the fix.

An experiment YAML names the data, the task, the split and a list of arms (ways of doing the task). Every
field is a pydantic model field with a description; unknown keys are errors (a typo must not silently
fall back to a default). `load_experiment` also applies dotted overrides (`--set arms.0.k=5`) before
validating, so the resolved config saved in the run manifest is exactly what ran. Knows nothing about
models or files beyond reading the YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tunewise.arms.classical import ClassicalConfig
from tunewise.train.classifier import ClassifierConfig
from tunewise.train.augment import AugmentConfig
from tunewise.train.search import SearchConfig
from tunewise.train.sft import SFTSettings


class ConfigError(ValueError):
    """The experiment file (or an override) is invalid; the message lists every problem with its line."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(Strict):
    path: Path = Field(description="Data file (JSONL, JSON, CSV or Parquet). Relative paths are relative to the YAML file. "
                                   "The special value `bundled:bbc-news` is the bundled BBC News dataset.")
    format: Literal["jsonl", "json", "csv", "parquet"] | None = Field(None, description="Container format; default: from the extension.")
    mapping: dict[str, str] | None = Field(None, description="Column mapping, e.g. {input: body, output: category}, when the "
                                                             "data does not use a standard shape.")


class TaskConfig(Strict):
    type: Literal["classify", "extract", "generate"] = Field(description="What the model must do with each input.")
    labels: list[str] | None = Field(None, description="Classification labels; default: every label in the training split.")
    instructions: str | None = Field(None, description="Task instructions given to prompted models; default: the task's own.")
    json_schema: dict[str, Any] | None = Field(None, description="For extract: the JSON schema answers must follow.")
    max_input_words: int = Field(200, ge=8, description="Inputs (and exemplars) are cut to this many words in prompts, "
                                                        "so few-shot prompts stay within small models' budgets.")
    exemplar_words: int | None = Field(None, ge=8, description="Exemplars (few-shot and retrieval) are cut to this many "
                                       "words; default: max_input_words. Short exemplars still show the answer format "
                                       "and make k-shot prompts several times cheaper to score.")
    max_new_tokens: int = Field(64, ge=1, le=4096, description="Generation budget for extract/generate tasks.")


class SplitConfig(Strict):
    seed: int = Field(13, description="Seed of the frozen split and of every sampled choice (exemplars, subsets).")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="Share of examples held out for validation.")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of examples held out for the head-to-head test.")
    stratify: bool = Field(True, description="Keep label proportions equal across splits.")
    max_test: int | None = Field(None, ge=1, description="Evaluate every arm on this many test examples (a stratified, "
                                                          "seeded subset) to bound time on a CPU; default: the whole test split.")

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1 so examples remain for training")
        return self


class _ArmBase(Strict):
    name: str = Field(description="Unique arm name; used for predictions/<name>.jsonl and in the report.",
                      pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")


class _LocalArm(_ArmBase):
    model: str = Field("smollm2", description="Local folder, hub id, or `smollm2` for the bundled SmolLM2-135M-Instruct.")
    precision: Literal["auto", "bf16", "fp32", "fp16"] = Field("auto", description="auto = bf16 where the hardware runs it fast, else fp32.")
    batch_size: int = Field(8, ge=1, le=512, description="Examples per forward pass.")
    prompt: str = Field("default", description="Prompt template: a named variant of the task (default, terse, cot).")
    variants: list[str] | None = Field(None, description="Several prompt templates compared as separate arms named `<name>@<variant>`.")


class ZeroShotArm(_LocalArm):
    """The model with instructions only."""

    type: Literal["zero_shot"]


class FewShotArm(_LocalArm):
    """k training examples as exemplars (label-balanced for classification; fixed for every test input)."""

    type: Literal["few_shot"]
    k: int = Field(4, ge=1, le=64, description="Number of exemplars.")


class RetrievalArm(_LocalArm):
    """The k training examples nearest to each test input as exemplars."""

    type: Literal["retrieval"]
    k: int = Field(4, ge=1, le=64, description="Number of retrieved exemplars.")
    retriever: Literal["embedding", "bm25"] = Field("embedding", description="MiniLM embeddings (cosine) or BM25 (no model).")
    embedder: str = Field("minilm", description="Sentence-transformers folder, or `minilm` for the bundled all-MiniLM-L6-v2.")


class ClassicalArm(_ArmBase):
    """TF-IDF (+ metadata features) into a linear model or random forest, chosen by cross-validated search."""

    type: Literal["classical"]
    settings: ClassicalConfig = Field(default_factory=ClassicalConfig, description="Model family, search and features.")


class RemoteArm(_ArmBase):
    """Any OpenAI-compatible endpoint."""

    type: Literal["remote"]
    base_url: str = Field(description="Endpoint base URL, e.g. http://127.0.0.1:8000/v1.")
    model: str = Field(description="Model name the endpoint knows.")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="Environment variable holding the key; null for none.")
    mode: Literal["zero_shot", "few_shot", "cot"] = Field("zero_shot", description="Prompting strategy.")
    k: int = Field(4, ge=1, le=64, description="Exemplars for few_shot mode.")
    concurrency: int = Field(4, ge=1, le=256, description="Requests in flight at once.")
    timeout_s: float = Field(60, gt=0, description="Per-request timeout.")
    retries: int = Field(4, ge=0, le=20, description="Retries on 429/5xx/timeouts, with exponential backoff.")
    max_tokens: int = Field(64, ge=1, le=32768, description="Completion budget per request.")


class EnsembleArm(_ArmBase):
    """Majority vote of other arms' predictions (ties go to the first member listed)."""

    type: Literal["ensemble"]
    members: list[str] = Field(min_length=2, description="Names of the arms to combine.")


class StageConfig(Strict):
    """One stage of progressive fine-tuning: each starts from the model the previous stage ended with."""

    name: str = Field(description="Stage name (e.g. general, domain, company); predictions go to <arm>~stage-<name>.",
                      pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data: Path | None = Field(None, description="Training data for this stage (relative to the YAML); default: the "
                                                "experiment's own training split.")
    format: Literal["task", "chat"] = Field("task", description="task: render each example with the task's prompt "
                                                                "and its reference as the reply; chat: train on the "
                                                                "conversations as they are (general instruction data).")
    epochs: int | None = Field(None, ge=1, description="Epochs for this stage; default: training.epochs.")
    learning_rate: float | None = Field(None, gt=0, description="Learning rate for this stage; default: the arm's.")
    max_train_examples: int | None = Field(None, ge=2, description="Seeded subset of this stage's data.")


class ReplayConfig(Strict):
    """General data mixed into fine-tuning so the model keeps what it could do before (limits forgetting)."""

    data: Path = Field(description="Chat data (JSONL etc.) trained on as it is, e.g. general instructions and replies; "
                                   "relative to the YAML.")
    fraction: float = Field(0.1, gt=0, le=1, description="Replay examples added, as a share of the training examples "
                                                         "(a seeded sample).")


class RemoteTraining(Strict):
    """Where a `provider: openai` fine-tuning arm trains: any OpenAI-compatible fine-tuning endpoint (OpenAI
    itself, or a tunewise server started with --state-dir)."""

    base_url: str = Field(description="Endpoint base URL, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="Environment variable holding the key; null for "
                                                                  "none (a local server without keys).")
    learning_rate_multiplier: float | None = Field(None, gt=0, description="Sent as the job's "
                                                   "learning_rate_multiplier; default: auto (the endpoint chooses).")
    suffix: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,40}$", description="Suffix of the fine-tuned model's "
                                                                                  "name; default: the arm name.")
    poll_interval_s: float = Field(5.0, gt=0, le=600, description="How often the job's status and events are read.")
    job_timeout_s: float = Field(86_400.0, gt=0, description="Give up following the job after this long (it keeps "
                                                             "running; `--resume` follows it again).")
    request_timeout_s: float = Field(60.0, gt=0, description="Per-request timeout (uploads, job calls, scoring).")
    concurrency: int = Field(4, ge=1, le=256, description="Scoring requests in flight at once.")
    retries: int = Field(4, ge=0, le=20, description="Scoring retries on 429/5xx/timeouts, with backoff.")


class ExtraTask(Strict):
    """Another dataset and task one fine-tuned model also learns (multi-task), told apart by a prefix on the
    user turn. Its data gets its own frozen, seeded split (splits/<arm>~task-<name>/), its training examples
    join the arm's training mix, its validation examples the validation loss, and its test examples are scored
    separately (predictions/<arm>~task-<name>.jsonl, metrics in training/<arm>.json); the head-to-head and the
    verdict stay on the experiment's own task."""

    name: str = Field(description="Task name, unique within the arm; used in file names and the report.",
                      pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data: DataConfig = Field(description="This task's data file (path, format, mapping as the experiment's `data`).")
    task: TaskConfig = Field(description="What the model must do with this data (type, labels, instructions ...).")
    prefix: str = Field(description="Text put before the input in the user turn, e.g. '[sentiment] ', so the model "
                                    "knows which task it is doing; unique within the arm.", min_length=1)
    weight: float = Field(1.0, gt=0, le=100, description="How many times each training example counts in the mix: "
                                                        "2 = every example twice, 0.5 = a seeded half.")
    max_train_examples: int | None = Field(None, ge=2, description="Train on a seeded (stratified) subset of this "
                                                                   "many of the task's training examples.")
    max_val_examples: int | None = Field(64, ge=1, description="Validation examples of this task in the validation "
                                                               "loss; null: all.")
    split: SplitConfig | None = Field(None, description="How this task's data is split, and `max_test` of its test "
                                                        "examples scored; default: the experiment's `split` settings.")

    @model_validator(mode="after")
    def _prefix_is_visible(self) -> ExtraTask:
        if not self.prefix.strip():
            raise ValueError(f"task {self.name!r}: prefix {self.prefix!r} is only whitespace; use a visible "
                             "marker such as '[sentiment] '")
        return self


class FinetuneArm(_ArmBase):
    """A model fine-tuned on the training split (validated on the validation split), then scored on the same
    test examples as every other arm. lora/full train a causal LM on the task's own prompt with the reference
    as the assistant reply, and classify by the same label scoring as the prompting arms; classifier puts a
    sequence-classification head on an encoder (or decoder)."""

    type: Literal["finetune"]
    provider: Literal["local", "openai"] = Field("local", description="local: train here with the engine; openai: "
                                                 "upload the training split to an OpenAI-compatible fine-tuning "
                                                 "endpoint (see `remote`), follow the job, score its model there.")
    remote: RemoteTraining | None = Field(None, description="provider openai: the endpoint and how to follow the job.")
    method: Literal["lora", "full", "classifier"] = Field("lora", description="lora: low-rank adapters on a frozen "
                                                          "causal LM; full: every weight; classifier: a classification "
                                                          "head (classify tasks only).")
    model: str | None = Field(None, description="Base model: local folder, hub id, `smollm2` (default for lora/full) "
                                                "or `minilm` (default for classifier).")
    prompt: str = Field("default", description="Prompt template the model is trained and evaluated on (lora/full).")
    precision: Literal["auto", "bf16", "fp32", "fp16"] = Field("auto", description="Evaluation precision; auto = bf16 "
                                                               "where the hardware runs it fast, else fp32.")
    batch_size: int = Field(8, ge=1, le=512, description="Examples per forward pass when evaluating.")
    max_train_examples: int | None = Field(None, ge=2, description="Train on a stratified, seeded subset of this many "
                                                                   "training examples (bounds CPU time); default: all.")
    max_val_examples: int | None = Field(64, ge=1, description="Validate (early stopping, best checkpoint) on at most "
                                                               "this many validation examples; null: all.")
    training: SFTSettings = Field(default_factory=SFTSettings, description="lora/full: epochs, learning rate, LoRA "
                                                                          "rank, checkpoints...; see SFTSettings.")
    head: ClassifierConfig = Field(default_factory=ClassifierConfig, description="classifier: epochs, learning rate, "
                                                                                "max length...; see ClassifierConfig.")
    search: SearchConfig | None = Field(None, description="lora/full: an optuna search over learning rate, rank and "
                                                          "epochs by validation loss; the best trial is the arm's model.")
    learning_curve: list[float] | None = Field(None, description="lora/full: also train on these fractions of the "
                                                                 "training examples (e.g. [0.25, 0.5]) and score each on "
                                                                 "the test split: is more data worth collecting?")
    init_from: Path | None = Field(None, description="lora/full: keep training an earlier model: an adapter folder "
                                                     "(runs/<id>/adapters/<arm>) or a model folder (its merged/).")
    augment: AugmentConfig | None = Field(None, description="lora/full: synthetic copies of the training examples "
                                                            "(typos, casing, other templates, paraphrases), marked "
                                                            "synthetic, training split only.")
    replay: ReplayConfig | None = Field(None, description="lora/full: general data mixed into training to limit "
                                                          "forgetting.")
    forgetting_probe: int | None = Field(None, ge=1, le=100, description="lora/full: run the general-capability "
                                                                       "probe (perplexity on general English, rule-checked "
                                                                       "instructions; this many items each) on the base and "
                                                                       "the fine-tuned model; alarm below 90% retention.")
    stages: list[StageConfig] | None = Field(None, description="lora/full: progressive fine-tuning, e.g. general "
                                                               "data, then domain data, then your own; each stage is "
                                                               "checkpointed and scored on the test split.")
    tasks: list[ExtraTask] | None = Field(None, description="lora/full: multi-task: more datasets and tasks the same "
                                                            "model learns, each told apart by its prefix and scored "
                                                            "on its own test split.")
    prefix: str | None = Field(None, description="With `tasks`: text put before the input of the experiment's own "
                                                 "task, e.g. '[topic] ' (default: none; its system prompt tells it "
                                                 "apart).")

    @model_validator(mode="after")
    def _settings_match_method(self) -> FinetuneArm:
        self._remote_fits()
        if self.learning_curve is not None and not all(0 < f < 1 for f in self.learning_curve):
            raise ValueError(f"learning_curve {self.learning_curve}: fractions must lie strictly between 0 and 1 "
                             "(the full training split is always the arm itself)")
        # settings are compared with their defaults, not by presence: a saved manifest spells every field out
        if self.method == "classifier":
            if self.training.model_dump(exclude={"method"}) != SFTSettings().model_dump(exclude={"method"}):
                raise ValueError("`training` configures lora/full fine-tuning; a classifier arm takes `head`")
            extras = [name for name in ("search", "learning_curve", "init_from", "stages", "augment", "replay",
                                        "forgetting_probe", "tasks", "prefix")
                      if getattr(self, name)]
            if extras:
                raise ValueError(f"{', '.join(extras)}: only lora/full arms take these; remove them or use lora")
            if self.model is None:
                self.model = "minilm"
            self.head = self.head.model_copy(update={"model": self.model})
            return self
        if self.head.model_dump(exclude={"model"}) != ClassifierConfig().model_dump(exclude={"model"}):
            raise ValueError(f"`head` configures method classifier; method {self.method} takes `training`")
        if "method" in self.training.model_fields_set and self.training.method != self.method:
            raise ValueError(f"training.method {self.training.method!r} contradicts method {self.method!r}; "
                             "set `method` on the arm only")
        if self.stages is not None:
            names = [stage.name for stage in self.stages]
            if not names or len(set(names)) != len(names):
                raise ValueError(f"stages need at least one stage and unique names; got {names}")
            if self.search is not None:
                raise ValueError("search and stages do not combine; search the settings of a single-stage arm first")
        self._check_tasks()
        if self.model is None:
            self.model = "smollm2"
        self.training = self.training.model_copy(update={"method": self.method})
        return self

    def _remote_fits(self) -> None:
        """provider openai sends the data, epochs, batch size and seed; everything that trains here is refused."""
        if self.provider == "local":
            if self.remote is not None:
                raise ValueError("`remote` configures provider openai; set provider: openai or remove it")
            return
        if self.remote is None:
            raise ValueError("provider openai needs `remote` with at least base_url (the fine-tuning endpoint)")
        if self.model is None:
            raise ValueError("provider openai: set `model` to the base model name the endpoint fine-tunes")
        if self.method != "lora":
            raise ValueError(f"provider openai: method {self.method!r} is decided by the endpoint; leave method unset")
        local = [name for name in ("search", "learning_curve", "init_from", "stages", "augment", "replay",
                                   "forgetting_probe", "tasks", "prefix") if getattr(self, name)]
        sent = {"method", "epochs", "batch_size", "seed"}
        # compared with the defaults, not by presence: a saved manifest spells every field out
        local += [f"training.{name}" for name, value in self.training.model_dump(exclude=sent).items()
                  if value != SFTSettings.model_fields[name].get_default(call_default_factory=True)]
        if local:
            raise ValueError(f"provider openai: {', '.join(local)} only apply to local training; the endpoint gets "
                             "training.epochs, training.batch_size, training.seed and remote.learning_rate_multiplier")


    def _check_tasks(self) -> None:
        if self.tasks is None:
            if self.prefix is not None:
                raise ValueError("prefix marks the experiment's task among several; it needs `tasks` (add the other "
                                 "tasks, or remove prefix)")
            return
        if not self.tasks:
            raise ValueError("tasks is empty; list at least one other task, or remove `tasks`")
        names = [t.name for t in self.tasks]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"tasks: repeated name(s) {repeated}; give every task its own `name`")
        prefixes = [t.prefix for t in self.tasks] + ([self.prefix] if self.prefix is not None else [])
        repeated = sorted({p for p in prefixes if prefixes.count(p) > 1})
        if repeated:
            raise ValueError(f"tasks: prefix(es) {repeated} used twice (the arm's own `prefix` counts); the model "
                             "tells tasks apart by prefix, so give each task a different one")
        if self.prefix is not None and not self.prefix.strip():
            raise ValueError(f"prefix {self.prefix!r} is only whitespace; use a visible marker such as '[topic] '")
        clashes = [name for name in ("stages", "learning_curve") if getattr(self, name)]
        if clashes:
            raise ValueError(f"tasks do not combine with {', '.join(clashes)} yet: train the multi-task arm without "
                             "them, or drop `tasks`")


class RemotePrice(Strict):
    input_per_million: float = Field(ge=0, description="USD per million prompt tokens.")
    output_per_million: float = Field(ge=0, description="USD per million completion tokens.")
    as_of: str = Field(description="When the price was read (prices change; the report shows this date).")


class CostConfig(Strict):
    hardware_usd_per_hour: float = Field(0.0, ge=0, description="What an hour of the machine running local arms "
                                                                "costs; local cost = measured seconds x this.")
    remote_prices: dict[str, RemotePrice] = Field(default_factory=dict, description="Per remote model name: token "
                                                                                      "prices, user-editable and dated.")
    requests_per_day: float = Field(1000.0, gt=0, description="Requests a day you expect to serve: sets the payback "
                                                             "period of training and the volume it is amortised over.")
    horizon_days: float = Field(365.0, gt=0, description="Days over which training cost is amortised when arms are "
                                                         "compared per request (volume = requests_per_day x this).")


class PerturbationConfig(Strict):
    """One way of damaging test inputs for the robustness check (see tunewise.evaluate.robustness)."""

    kind: Literal["typos", "case", "whitespace", "punctuation", "truncate"] = Field(
        description="typos: letter swaps, drops, insertions and keyboard-neighbour slips; case: upper, lower or "
                    "random casing; whitespace: extra spaces and line breaks between words; punctuation: all "
                    "punctuation removed; truncate: only the first part of the input kept.")
    rate: float = Field(0.05, ge=0, le=1, description="typos: chance each letter is edited; whitespace: chance each "
                                                        "gap between words is widened or broken.")
    mode: Literal["upper", "lower", "random"] = Field("random", description="case: which casing.")
    keep: float = Field(0.5, gt=0, le=1, description="truncate: share of the words kept, from the start.")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$",
                             description="Name in predictions/<arm>~<name>.jsonl and tables; default: derived from "
                                         "kind and parameter, e.g. typos-0.05.")


class RobustnessConfig(Strict):
    perturbations: list[PerturbationConfig] = Field(
        default_factory=list, description="Perturbations applied to a copy of the test subset; every arm is re-run on "
                                          "each copy. Empty (the default) skips the robustness check.")
    max_examples: int = Field(100, ge=1, description="Perturb about this many test examples (a stratified, seeded "
                                                     "subset of the evaluated ones; per-label rounding may add a few): "
                                                     "each perturbation re-runs every arm on them.")


class EvaluationConfig(Strict):
    primary_metric: Literal["accuracy", "macro_f1", "score"] | None = Field(
        None, description="The metric arms are ranked by: accuracy or macro_f1 for classification, score (the "
                          "task's own: exact match) for extract/generate. Default: accuracy, or score.")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="Significance level of the paired tests between arms; "
                                                         "confidence intervals are at 1 - alpha.")
    bootstrap_resamples: int = Field(1000, ge=100, le=100_000, description="Bootstrap resamples for confidence "
                                                                          "intervals and paired bootstrap tests "
                                                                          "(seeded with split.seed).")
    quality_bar: float | None = Field(None, ge=0, le=1, description="Absolute bar on the primary metric an arm must "
                                                                   "reach to be recommended; default: not "
                                                                   "significantly worse than the best arm.")
    baseline_arm: str | None = Field(None, description="Arm that ROI is measured against; default: the first "
                                                       "zero_shot arm, else the first arm.")
    max_failure_rate: float = Field(0.0, ge=0, le=1, description="An arm whose share of failed requests is above "
                                                                 "this is never recommended.")
    slice_by: list[str] = Field(default_factory=list, description="Example metadata fields to break metrics down by "
                                                                  "(a fairness check flags the largest gap).")
    slice_gap_warn: float = Field(0.1, ge=0, le=1, description="A gap in the primary metric between two slices of "
                                                               "one arm at least this large is reported as a warning.")
    review_size: int = Field(20, ge=0, le=1000, description="Test examples where arms disagree, sampled (seeded) "
                                                            "into the report's review sheet for a person to judge.")
    robustness: RobustnessConfig = Field(default_factory=RobustnessConfig,
                                         description="Score drop of every arm on perturbed test inputs "
                                                     "(written to robustness.json).")

    @model_validator(mode="after")
    def _perturbation_names_unique(self) -> EvaluationConfig:
        from tunewise.evaluate.robustness import Perturbation

        names = [Perturbation(p.kind, p.rate, p.mode, p.keep, p.name).name for p in self.robustness.perturbations]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"evaluation.robustness.perturbations: repeated name(s) {repeated}; give each a `name`")
        return self


Arm = Annotated[Union[ZeroShotArm, FewShotArm, RetrievalArm, ClassicalArm, RemoteArm, EnsembleArm, FinetuneArm],
                Field(discriminator="type")]
LOCAL_ARMS = (ZeroShotArm, FewShotArm, RetrievalArm)


class Experiment(Strict):
    """One head-to-head: a dataset, a task, one frozen split, and the arms compared on it."""

    name: str = Field(description="Experiment name, shown in reports.")
    data: DataConfig
    task: TaskConfig
    split: SplitConfig = Field(default_factory=SplitConfig)
    arms: list[Arm] = Field(min_length=1, description="The ways of doing the task to compare.")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    runs_dir: Path = Field(Path("runs"), description="Where run folders are created (relative to the working directory).")
    threads: int | None = Field(None, ge=1, description="CPU threads for local models; default: all cores.")

    @model_validator(mode="after")
    def _arms_fit_together(self) -> Experiment:
        self.arms = _expand_variants(self.arms)
        names = [arm.name for arm in self.arms]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"arm names must be unique; repeated: {', '.join(repeated)}")
        for arm in self.arms:
            if isinstance(arm, EnsembleArm):
                unknown = [m for m in arm.members if m not in names or m == arm.name]
                if unknown:
                    raise ValueError(f"ensemble {arm.name!r} names unknown arms {unknown}; known: {names}")
            if isinstance(arm, ClassicalArm) and self.task.type != "classify":
                raise ValueError(f"arm {arm.name!r}: the classical arm needs task.type classify")
            for extra in (arm.tasks or []) if isinstance(arm, FinetuneArm) else []:
                if extra.split is None:  # spelled out, so the saved manifest says how the task was split
                    extra.split = self.split.model_copy()
            if isinstance(arm, FinetuneArm) and arm.method == "classifier" and self.task.type != "classify":
                raise ValueError(f"arm {arm.name!r}: method classifier needs task.type classify; use lora or full")
        if self.evaluation.primary_metric is None:
            self.evaluation.primary_metric = "accuracy" if self.task.type == "classify" else "score"
        if self.evaluation.primary_metric != "score" and self.task.type != "classify":
            raise ValueError(f"evaluation.primary_metric {self.evaluation.primary_metric!r} needs task.type classify; "
                             "use `score` for extract and generate")
        if self.evaluation.baseline_arm is not None and self.evaluation.baseline_arm not in names:
            raise ValueError(f"evaluation.baseline_arm {self.evaluation.baseline_arm!r} is not an arm; known: {names}")
        return self


def _expand_variants(arms: list[Any]) -> list[Any]:
    """`variants: [a, b]` on one arm becomes arms `name@a` and `name@b` with `prompt` set."""
    expanded = []
    for arm in arms:
        if isinstance(arm, LOCAL_ARMS) and arm.variants:
            expanded += [arm.model_copy(update={"name": f"{arm.name}@{v}", "prompt": v, "variants": None})
                         for v in arm.variants]
        else:
            expanded.append(arm)
    return expanded


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """`arms.0.k=5` sets raw["arms"][0]["k"] = 5 (the value is parsed as YAML: numbers, booleans, lists)."""
    path, sep, text = assignment.partition("=")
    if not sep or not path.strip():
        raise ConfigError(f"--set {assignment!r}: expected DOTTED.PATH=VALUE, e.g. --set arms.0.k=5")
    keys = path.strip().split(".")
    node: Any = raw
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = ".".join(keys[:depth + 1])
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"--set {assignment!r}: {where} is not an index of a list of {len(node)}")
            key = int(key)
        elif not isinstance(node, dict):
            raise ConfigError(f"--set {assignment!r}: {'.'.join(keys[:depth])} is not a mapping or list")
        if last:
            node[key] = yaml.safe_load(text)
        else:
            if isinstance(node, dict) and key not in node:
                node[key] = {}
            node = node[key]


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> Experiment:
    """Read, override and validate an experiment YAML; raises ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with name, data, task and arms")
    for assignment in overrides or []:
        apply_override(raw, assignment)
    try:
        experiment = Experiment.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(path, text, exc)) from None
    data_path = str(experiment.data.path)
    if not data_path.startswith("bundled:") and not experiment.data.path.is_absolute():
        experiment.data.path = (path.parent / experiment.data.path).resolve()
    for arm in experiment.arms:
        if isinstance(arm, FinetuneArm) and arm.init_from is not None and not arm.init_from.is_absolute():
            arm.init_from = (path.parent / arm.init_from).resolve()
        if isinstance(arm, FinetuneArm) and arm.replay is not None and not arm.replay.data.is_absolute():
            arm.replay.data = (path.parent / arm.replay.data).resolve()
        for stage in (arm.stages or []) if isinstance(arm, FinetuneArm) else []:
            if stage.data is not None and not stage.data.is_absolute():
                stage.data = (path.parent / stage.data).resolve()
    missing = []
    for arm in experiment.arms:
        # the index in the file (prompt variants add arms before this one in experiment.arms)
        i = next((k for k, a in enumerate(raw["arms"]) if isinstance(a, dict) and a.get("name") == arm.name), 0)
        for j, extra in enumerate(arm.tasks or []) if isinstance(arm, FinetuneArm) else []:
            if str(extra.data.path).startswith("bundled:"):
                continue
            if not extra.data.path.is_absolute():
                extra.data.path = (path.parent / extra.data.path).resolve()
            if not extra.data.path.is_file():
                missing.append(f"  {path}:{_line_of(text, ['arms', str(i), 'tasks', str(j), 'data', 'path'])}: "
                               f"arms.{i}.tasks.{j}.data.path: {extra.data.path}: no such file. Fix: point it at "
                               f"task {extra.name!r}'s data (relative paths are relative to {path.name})")
    if missing:
        raise ConfigError(f"{path}: {len(missing)} problem(s)\n" + "\n".join(missing))
    return experiment


def _explain(path: Path, text: str, exc: ValidationError) -> str:
    lines = [f"{path}: {exc.error_count()} problem(s)"]
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        # pydantic adds the union member's tag to the location ("arms.0.few_shot.k"); drop it for humans
        loc = [part for i, part in enumerate(loc) if not (i > 0 and loc[i - 1].isdigit() and part in _ARM_TYPES)]
        dotted = ".".join(loc) or "(top level)"
        # a bad or missing arm `type` is reported on the arm; point at its `type:` line when there is one
        line = _line_of(text, loc + ["type"] if error["type"].startswith("union_tag") else loc)
        given = error.get("input")
        shown = "" if isinstance(given, (dict, list)) or given is None else f" (got {given!r})"
        lines.append(f"  {path}:{line}: {dotted}: {error['msg']}{shown}" if line else f"  {dotted}: {error['msg']}{shown}")
    return "\n".join(lines)


_ARM_TYPES = {"zero_shot", "few_shot", "retrieval", "classical", "remote", "ensemble", "finetune"}


def _line_of(text: str, loc: list[str]) -> int | None:
    """The YAML line of a dotted location (or of its nearest existing parent)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line


def dump_schema_doc() -> str:
    """Every field with its description, for `tunewise init --explain` and the docs."""
    rows = []
    for model in (DataConfig, TaskConfig, SplitConfig, ZeroShotArm, FewShotArm, RetrievalArm, ClassicalArm,
                  RemoteArm, EnsembleArm, FinetuneArm, RemoteTraining, ExtraTask, StageConfig, ReplayConfig,
                  AugmentConfig, SFTSettings, ClassifierConfig,
                  SearchConfig,
                  EvaluationConfig, RobustnessConfig, PerturbationConfig, CostConfig,
                  RemotePrice, Experiment):
        rows.append(f"{model.__name__}:")
        for name, field in model.model_fields.items():
            rows.append(f"  {name}: {field.description or ''}")
    return "\n".join(rows)
