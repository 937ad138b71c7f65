"""The fine-tuning arm: its settings (method, base model, training, search, stages, multi-task, remote
training) and how it plugs into the experiment, the evidence and the server.

A model fine-tuned on the training split (validated on the validation split) and scored on the same test
examples as every other arm. The work happens elsewhere: local training in arms/finetune_local.py (engines in
train/), training at an OpenAI-compatible endpoint in arms/finetune_remote.py. This module imports neither
until the arm runs, so validating an experiment file never loads torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from tunewise.arms.base import priced_cost_per_1k
from tunewise.settings import ArmConfig, DataConfig, SplitConfig, Strict, TaskConfig
from tunewise.train.settings import AugmentConfig, ClassifierConfig, SearchConfig, SFTSettings

if TYPE_CHECKING:
    from tunewise.arms.context import ArmContext
    from tunewise.schema import Prediction
    from tunewise.settings import CostConfig

TRAINS = True


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


class FinetuneArm(ArmConfig):
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
    teacher: str | None = Field(None, description="Distillation: another arm (listed before this one; zero_shot, "
                                                  "few_shot, retrieval, prompt_search or remote) labels half of the "
                                                  "training split with its labels withheld, and this arm trains on "
                                                  "the teacher's labels (see arms/distill.py).")
    teacher_min_confidence: float | None = Field(None, gt=0, lt=1, description="Distillation: leave out pool "
                                                                              "examples whose teacher label has a "
                                                                              "lower probability (label scores).")
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


Config = FinetuneArm


def run(arm: FinetuneArm, ctx: ArmContext) -> list[Prediction]:
    if arm.provider == "openai":
        from tunewise.arms import finetune_remote
        from tunewise.arms.finetune_local import remote_examples

        train, val = remote_examples(arm, ctx)
        return finetune_remote.run(arm, ctx, ctx.max_new_tokens, train, val)
    from tunewise.arms import finetune_local

    return finetune_local.run(arm, ctx)


def cost_per_1k(arm: FinetuneArm, predictions: Sequence[Prediction], cost: CostConfig,
                known: Mapping[str, float | None]) -> float | None:
    if arm.provider == "openai":  # answered by the endpoint that trained it
        return priced_cost_per_1k(str(arm.model), predictions, cost)
    from tunewise.arms.base import local_cost_per_1k

    return local_cost_per_1k(arm, predictions, cost, known)


def check(arm: FinetuneArm, experiment: Any) -> None:
    if arm.teacher is not None:
        from tunewise.arms.distill import check_teacher

        if arm.provider != "local" or arm.stages or arm.tasks:
            raise ValueError(f"arm {arm.name!r}: a teacher works with a local lora, full or classifier arm "
                             "without stages or tasks")
        check_teacher(arm, experiment)
    elif arm.teacher_min_confidence is not None:
        raise ValueError(f"arm {arm.name!r}: teacher_min_confidence needs a teacher; set teacher or remove it")
    for extra in arm.tasks or []:
        if extra.split is None:  # spelled out, so the saved manifest says how the task was split
            extra.split = experiment.split.model_copy()
    if arm.method == "classifier" and experiment.task.type != "classify":
        raise ValueError(f"arm {arm.name!r}: method classifier needs task.type classify; use lora or full")


def resolve_paths(arm: FinetuneArm, folder: Path) -> list[tuple[list[str], str]]:
    """Relative paths are relative to the experiment file; a multi-task data file must exist."""
    if arm.init_from is not None and not arm.init_from.is_absolute():
        arm.init_from = (folder / arm.init_from).resolve()
    if arm.replay is not None and not arm.replay.data.is_absolute():
        arm.replay.data = (folder / arm.replay.data).resolve()
    for stage in arm.stages or []:
        if stage.data is not None and not stage.data.is_absolute():
            stage.data = (folder / stage.data).resolve()
    missing = []
    for j, extra in enumerate(arm.tasks or []):
        if str(extra.data.path).startswith("bundled:"):
            continue
        if not extra.data.path.is_absolute():
            extra.data.path = (folder / extra.data.path).resolve()
        if not extra.data.path.is_file():
            missing.append((["tasks", str(j), "data", "path"],
                            f"{extra.data.path}: no such file. Fix: point it at task {extra.name!r}'s data "
                            "(relative paths are relative to the experiment file)"))
    return missing


def data_files(arm: FinetuneArm) -> list[Path]:
    """The data files of a multi-task arm's extra tasks, recorded with their hashes in the manifest."""
    from tunewise.arms.multitask import task_data_path

    return [task_data_path(extra) for extra in arm.tasks or []]


def launch_problem(arm: FinetuneArm) -> str | None:
    if arm.method == "classifier":
        return "a classifier head trains in one process"
    if arm.search is not None or arm.stages or arm.learning_curve:
        return "search, stages and learning_curve train in one process"
    return None


def serve(arm: FinetuneArm, run: Any) -> Any:
    """The exported model in adapters/<arm>/ (LoRA adapter, merged model or classifier head); None when the
    endpoint that trained it serves it."""
    return None if arm.provider == "openai" else run.fine_tuned(arm.name)


def not_served(arm: FinetuneArm) -> str:
    if arm.provider == "openai":
        return "fine-tuned at its remote endpoint; its model is served there (training/<arm>.json names it)"
    return f"fine-tuned arm without an exported model in adapters/{arm.name}/ (its training has not finished)"
