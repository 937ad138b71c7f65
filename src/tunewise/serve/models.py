"""What the server can answer with: each served model name maps to a `ServedModel`.

Three sources build them: a run folder (an arm exactly as it was evaluated: the base model with the arm's
prompt and exemplars, the saved classical model, or the arm's LoRA adapter), a local model folder, and a root
of adapter folders. LoRA adapters that share a base model share one loaded copy of it (an `Engine`); the
batcher switches the active adapter per batch, so N adapters cost one base model's memory.

Prompted arms render requests with the task's own `messages()` and the arm's exemplar choice (the same
seed, the same label-balanced draw, the same retrieval index over the training split), so the server answers
a request exactly as the evaluation answered a test example; classification arms answer by label scoring, as
in evaluation. This module knows nothing about HTTP.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunewise.schema import ARM_MARKER, Example, Message
from tunewise.serve.adapters import AdapterError, AdapterSpec, check_folder, discover, read_adapter, read_json

Messages = list[dict[str, str]]


class ServeSetupError(ValueError):
    """The run, arm, model or adapter cannot be served as asked; the message says why and what to do."""


class Engine:
    """One loaded base model plus the LoRA adapters attached to it. Used only from the batcher's thread."""

    def __init__(self, model: str, precision: str, threads: int | None) -> None:
        from tunewise.models.identity import model_fingerprint
        from tunewise.models.local import LocalLM

        self.lm = LocalLM(model, precision=precision, threads=threads)
        self.fingerprint = model_fingerprint(self.lm.name)
        self.adapters: dict[str, AdapterSpec] = {}
        # the smaller of the model's position limit and the tokenizer's (tokenizers without one say ~1e30)
        limits = [getattr(self.lm.model.config, "max_position_embeddings", None),
                  getattr(self.lm.tokenizer, "model_max_length", None)]
        self.context_length = min([x for x in limits if isinstance(x, int) and 0 < x < 10**7] or [2048])

    def attach(self, spec: AdapterSpec) -> None:
        from peft import PeftModel

        # the adapter folder passed the safetensors-only check; peft reads adapter_model.safetensors from it
        if isinstance(self.lm.model, PeftModel):
            self.lm.model.load_adapter(str(spec.folder), adapter_name=spec.name, is_trainable=False)
        else:
            self.lm.model = PeftModel.from_pretrained(self.lm.model, str(spec.folder), adapter_name=spec.name,
                                                      is_trainable=False)
        self.lm.model.eval()
        self.adapters[spec.name] = spec

    @contextmanager
    def active(self, adapter: str | None) -> Iterator[Any]:
        """The LocalLM with `adapter` switched on (or every adapter off, for the base model)."""
        from peft import PeftModel

        model = self.lm.model
        if not isinstance(model, PeftModel):
            yield self.lm
        elif adapter is None:
            with model.disable_adapter():
                yield self.lm
        else:
            model.set_adapter(adapter)
            yield self.lm


@dataclass
class ServedModel:
    """One name in GET /v1/models and what answers it.

    `prompt` turns a request's input text into the arm's full prompt (None: the caller's messages are used
    as they are). With `labels`, chat answers are the best label by log-likelihood, as in evaluation.
    """

    name: str
    kind: Literal["lm", "classical"]
    identity: dict[str, Any]
    owned_by: str
    engine: Engine | None = None
    adapter: str | None = None
    classical: Any = None
    prompt: Callable[[str], Messages] | None = None
    labels: list[str] | None = None
    json_schema: dict[str, Any] | None = None
    default_max_tokens: int | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def context_length(self) -> int | None:
        return self.engine.context_length if self.engine else None


def request_example(text: str) -> Example:
    """A request's input as the one-user-turn example the task renders (its `input` is the text itself)."""
    return Example(id="request", messages=(Message("user", text),), line=0)


def softmax(scores: list[float]) -> list[float]:
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Loader:
    """Builds served models, loading each base model once however many names use it."""

    def __init__(self, precision: str, threads: int | None) -> None:
        self.precision = precision
        self.threads = threads
        self.engines: dict[str, Engine] = {}

    def engine(self, model: str) -> Engine:
        from tunewise.assets import resolve_model

        path = resolve_model(model)
        if path not in self.engines:
            self.engines[path] = Engine(path, self.precision, self.threads)
        return self.engines[path]

    def base_model(self, model: str) -> ServedModel:
        engine = self.engine(model)
        name = "smollm2" if model.strip().lower() == "smollm2" else Path(engine.lm.name).name
        return ServedModel(name, "lm", {"base": engine.fingerprint, "precision": engine.lm.precision.name},
                           "local", engine=engine, description=f"{engine.lm.name} ({engine.lm.precision.reason})")

    def adapter_model(self, spec: AdapterSpec, base: str | None = None) -> ServedModel:
        engine = self.engine(base or spec.base_model)
        engine.attach(spec)
        identity = {"base": engine.fingerprint, "precision": engine.lm.precision.name, "adapter": spec.name,
                    "adapter_sha256": spec.content_sha256}
        served = ServedModel(spec.name, "lm", identity, "adapter", engine=engine, adapter=spec.name,
                             description=f"LoRA adapter {spec.folder} on {engine.lm.name}")
        if spec.arm is not None:
            _apply_finetune_arm(served, spec.arm, spec.folder)
        return served

    def adapters(self, root: Path, base: str | None = None) -> list[ServedModel]:
        return [self.adapter_model(spec, base) for spec in discover(root)]


def _apply_finetune_arm(served: ServedModel, arm: dict[str, Any], folder: Path) -> None:
    """A fine-tuned arm answers task inputs with the task's prompt (no exemplars), as it was trained."""
    from pydantic import ValidationError

    from tunewise.settings import TaskConfig
    from tunewise.tasks import make_task

    try:
        task_config = TaskConfig.model_validate(arm.get("task") or {})
    except ValidationError as err:
        raise AdapterError(f"{folder / ARM_MARKER}: task is invalid: {err}. Fix: re-run fine-tuning "
                           "or correct the task object.") from None
    if arm.get("labels") and not isinstance(task_config.labels, dict):  # named labels keep their names
        task_config = task_config.model_copy(update={"labels": list(arm["labels"])})
    task = make_task(task_config, [])
    variant = str(arm.get("prompt_variant") or "default")
    from tunewise.arms.multitask import prompt

    render = prompt(task, variant, arm.get("prefix"))  # a multi-task arm's own task keeps its prefix
    served.prompt = lambda text: render(request_example(text))
    served.labels = list(getattr(task, "options", task.labels)) if task.labels else None  # what the model says
    served.json_schema = getattr(task, "schema", None) if task.name == "extract" else None
    served.default_max_tokens = task_config.max_new_tokens
    served.identity |= {"task": task_config.model_dump(mode="json"), "variant": variant}
    served.extra = {"arm": arm.get("arm", folder.name), "type": "finetune", "method": arm.get("method", "lora")}


# ---------------------------------------------------------------- run folders


def _read_metrics(run_dir: Path, servable: list[str]) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ServeSetupError(f"{run_dir} has no readable metrics.json to pick the recommended arm from. Fix: name "
                              f"the arm with --arm (servable: {', '.join(servable) or 'none'}).") from None


def _best_by_metric(run_dir: Path, metrics: dict[str, Any], servable: list[str]) -> str:
    metric = metrics.get("primary_metric") or "accuracy"
    ranked = sorted(((arm_metrics.get(metric), name) for name, arm_metrics in metrics.get("arms", {}).items()
                     if name in servable and isinstance(arm_metrics.get(metric), (int, float))), reverse=True)
    if not ranked:
        raise ServeSetupError(f"{run_dir / 'metrics.json'}: no servable arm has a {metric!r} figure. Fix: name the "
                              f"arm with --arm (servable: {', '.join(servable) or 'none'}).")
    return ranked[0][1]


def _recommended(run_dir: Path, candidates: list[str], not_served: Callable[[str], str],
                 log: Callable[[str], None]) -> str:
    """The arm the verdict recommends (metrics.json `recommended`, written with results.json's verdict): the
    served arm is the one the evidence chose, which may be cheaper or untrained rather than the best metric.

    When it cannot be served, the log says why (the arm's own `not_served`) and the best servable arm by the
    primary metric is served instead; a run without a recommendation (no arm qualified, or an older run)
    falls back the same way and says so. `candidates` includes arms whose saved settings cannot be read, so
    a broken recommended arm is refused later rather than silently replaced.
    """
    metrics = _read_metrics(run_dir, candidates)
    recommended = metrics.get("recommended")
    if recommended in candidates:
        return recommended
    fallback = _best_by_metric(run_dir, metrics, candidates)
    metric = metrics.get("primary_metric") or "accuracy"
    if recommended is None:
        log(f"{run_dir / 'metrics.json'} names no recommended arm (the verdict recommended none, or the run "
            f"predates it); serving {fallback!r}, the best servable arm by {metric}")
    else:
        log(f"the verdict recommends {recommended!r}, which cannot be served ({not_served(recommended)}); serving "
            f"{fallback!r}, the best servable arm by {metric}, instead")
    return fallback


def run_models(loader: Loader, run_dir: Path, arms: list[str],
               log: Callable[[str], None] = lambda message: None) -> list[ServedModel]:
    """The named arms of a run (default: the arm its verdict recommends, or, when that one cannot be served,
    the best servable arm by the run's primary metric, with the reason logged).

    Only what serving needs is read back from the manifest's config (the task, the split seed, the chosen
    arms' settings), each validated on its own: an arm this server does not serve cannot block the others.
    Each arm's module builds its served model (arms/registry.py `serve`) from a `RunServing`.
    """
    from pydantic import ValidationError

    from tunewise.arms import registry
    from tunewise.settings import SplitConfig, TaskConfig
    from tunewise.store.runs import RunError, open_run

    try:
        run = open_run(run_dir)
    except RunError as err:
        raise ServeSetupError(str(err)) from None
    config = run.manifest.get("config") or {}
    manifest = run.path / "manifest.json"
    adapter_root = run.path / "adapters"
    # listed by name only; the chosen ones are checked when read, so a broken adapter blocks only itself
    exported = sorted(p.name for p in adapter_root.iterdir()
                      if p.is_dir() and not p.name.startswith(".")) if adapter_root.is_dir() else []
    settings, unreadable = _arm_settings(config, manifest)
    servable = [name for name, arm in settings.items() if registry.servable(arm)
                and (not registry.trains(arm) or name in exported)]
    servable += [name for name in exported if name not in servable]
    def why(name: str) -> str:
        if name in unreadable:
            return unreadable[name]
        if name not in settings:
            return "no such arm"
        return registry.not_served(settings[name])

    # an unreadable recommended arm is refused below, not silently replaced by another
    chosen = arms or [_recommended(run.path, servable + list(unreadable), why, log)]
    unknown = [name for name in chosen if name not in servable]
    if unknown:
        raise ServeSetupError(f"cannot serve {', '.join(f'{n!r} ({why(n)})' for n in unknown)} from {run_dir}. "
                              f"Fix: pick one of {', '.join(servable) or '(none)'}.")
    try:
        task_config = TaskConfig.model_validate(config.get("task") or {})
        seed = SplitConfig.model_validate(config.get("split") or {}).seed
    except ValidationError as err:
        raise ServeSetupError(f"{manifest}: the run's config does not validate in this tunewise "
                              f"({err.error_count()} problem(s), first: {err.errors()[0]['msg']}). Fix: serve a run "
                              "made by this version of `tunewise run`.") from None
    serving = RunServing.open(loader, run.path, task_config, seed)
    served = []
    for name in chosen:
        model = registry.serve(settings[name], serving) if name in settings else serving.fine_tuned(name)
        if model is None:
            raise ServeSetupError(f"cannot serve {name!r} ({registry.not_served(settings[name])}) from {run_dir}")
        served.append(model)
    return served


def _arm_settings(config: dict[str, Any], manifest: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Each arm of the saved config validated on its own, by name; and why the others could not be read."""
    from pydantic import ValidationError

    from tunewise.arms import registry

    settings: dict[str, Any] = {}
    unreadable: dict[str, str] = {}
    for raw in config.get("arms") or []:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            continue
        try:
            settings[raw["name"]] = registry.module_of(str(raw.get("type"))).Config.model_validate(raw)
        except ValidationError as err:
            unreadable[raw["name"]] = (f"{manifest}: its settings do not validate in this tunewise "
                                       f"({err.errors()[0]['msg']}); serve a run made by this version of "
                                       "`tunewise run`")
        except ValueError as err:
            unreadable[raw["name"]] = str(err)
    return settings, unreadable


@dataclass
class RunServing:
    """What an arm's `serve(arm, run)` builds its served model from: the run's task, frozen training split and
    seed (so prompts and exemplars are chosen exactly as in evaluation) and the loader that shares base models."""

    loader: Loader
    run_dir: Path
    task: Any
    task_config: Any
    train: list[Example]
    seed: int

    @classmethod
    def open(cls, loader: Loader, run_dir: Path, task_config: Any, seed: int) -> RunServing:
        from tunewise.data.formats import read_examples
        from tunewise.tasks import make_task

        splits = run_dir / "splits"
        if not (splits / "train.jsonl").is_file():
            raise ServeSetupError(f"{splits} has no train.jsonl, so exemplars cannot be chosen as in evaluation. Fix: "
                                  "serve a run whose split was written (tunewise run writes it first).")
        train = read_examples(splits / "train.jsonl").examples
        return cls(loader, run_dir, make_task(task_config, train), task_config, train, seed)

    @staticmethod
    def request(text: str) -> Example:
        return request_example(text)

    def prompted(self, arm: Any, prompt: Callable[[str], Messages]) -> ServedModel:
        """A prompted arm on its base model: `prompt` turns a request's text into the arm's full prompt."""
        engine = self.loader.engine(arm.model)
        identity = {"base": engine.fingerprint, "precision": engine.lm.precision.name,
                    "arm": arm.model_dump(mode="json"), "task": self.task_config.model_dump(mode="json"),
                    "train": hashlib.sha256("\n".join(e.id for e in self.train).encode()).hexdigest()}
        task = self.task
        return ServedModel(arm.name, "lm", identity, "arm", engine=engine, prompt=prompt,
                           labels=list(task.labels) if task.labels else None,
                           json_schema=getattr(task, "schema", None) if task.name == "extract" else None,
                           default_max_tokens=self.task_config.max_new_tokens,
                           description=f"{arm.type} arm on {engine.lm.name}", extra={"arm": arm.name, "type": arm.type})

    def classical(self, name: str) -> ServedModel:
        """The scikit-learn model the arm saved in models/<name>/."""
        return _classical(self.run_dir / "models" / name, name)

    def scorer(self, arm: Any, model: Any, identity: dict[str, Any], description: str) -> ServedModel:
        """An arm that answers without a language model: `model.predict_scores(examples)` gives per-label scores
        (and `model.labels` the labels); chat answers are the best label, /v1/classify the scores."""
        return ServedModel(arm.name, "classical", identity, arm.type, classical=model, labels=list(model.labels),
                           description=description, extra={"arm": arm.name, "type": arm.type})

    def fine_tuned(self, name: str) -> ServedModel:
        """The model the arm exported to adapters/<name>/."""
        return _fine_tuned(self.loader, self.run_dir / "adapters", name)


def _fine_tuned(loader: Loader, root: Path, name: str) -> ServedModel:
    """`RUN/adapters/<name>/` as the fine-tuning stage exported it: a LoRA adapter (served on its shared base),
    a full fine-tune (a whole model folder), or a classifier head (per-label probabilities)."""
    from tunewise.models.identity import model_fingerprint
    from tunewise.train.classifier import MARKER, ClassifierError, ClassifierModel

    folder = root / name
    if (folder / "adapter_config.json").is_file():
        return loader.adapter_model(read_adapter(root, folder))
    problems = check_folder(root, folder)
    if problems:
        raise AdapterError("refusing to serve fine-tuned model:\n  " + "\n  ".join(problems))
    if (folder / MARKER).is_file():
        try:
            head = ClassifierModel.load(folder, precision=loader.precision)  # serve --precision applies
        except ClassifierError as err:
            raise ServeSetupError(str(err)) from None
        return ServedModel(name, "classical", {"classifier": model_fingerprint(folder)}, "finetune", classical=head,
                           labels=head.labels, description=f"classifier head from {folder}",
                           extra={"arm": name, "type": "finetune", "method": "classifier"})
    if (folder / ARM_MARKER).is_file() and (folder / "config.json").is_file():
        engine = loader.engine(str(folder))
        served = ServedModel(name, "lm", {"base": engine.fingerprint, "precision": engine.lm.precision.name},
                             "finetune", engine=engine, description=f"fully fine-tuned model {folder}")
        _apply_finetune_arm(served, read_json(folder / ARM_MARKER), folder)
        return served
    raise ServeSetupError(f"{folder} is not a fine-tuned model tunewise can serve: no adapter_config.json (LoRA), "
                          f"no {MARKER} (classifier head) and no {ARM_MARKER} with config.json (full fine-tune). "
                          "Fix: re-run the fine-tuning arm, which exports one of these.")


def _classical(folder: Path, name: str) -> ServedModel:
    from tunewise.train.classical import ClassicalError, ClassicalModel

    try:
        model = ClassicalModel.load(folder)
    except ClassicalError as err:
        raise ServeSetupError(str(err)) from None
    identity = {"classical": _file_sha256(folder / "pipeline.joblib")}
    return ServedModel(name, "classical", identity, "classical", classical=model, labels=model.labels,
                       description=f"{model.best_model_name} {model.best_params} from {folder}")


def build_models(loader: Loader, *, run: Path | None = None, arms: list[str] | None = None,
                 model: str | None = None, adapters: Path | None = None,
                 log: Callable[[str], None] = lambda message: None) -> list[ServedModel]:
    """What `tunewise serve` serves: a run's arms, or a model and/or a root of adapters; `log` hears why a
    run's recommended arm was replaced."""
    if run is not None:
        if model is not None or adapters is not None:
            raise ServeSetupError("serve either a run (RUN [--arm NAME]) or --model/--adapters, not both")
        return run_models(loader, run, arms or [], log)
    if arms:
        raise ServeSetupError("--arm names an arm of a run; pass the run folder too")
    if model is None and adapters is None:
        raise ServeSetupError("nothing to serve. Fix: pass a run folder, --model PATH (or smollm2), or --adapters DIR")
    served = [loader.base_model(model)] if model is not None else []
    if adapters is not None:
        served += loader.adapters(adapters, base=model)
    names = [m.name for m in served]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ServeSetupError(f"two served models share the name(s) {clashes}. Fix: rename the adapter folder(s).")
    return served


__all__ = ["AdapterError", "Engine", "Loader", "ServeSetupError", "ServedModel", "build_models", "request_example",
           "softmax"]
