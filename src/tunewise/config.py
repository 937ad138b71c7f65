"""The experiment file: typed, documented, validated on load, with errors that name the line and the fix.

An experiment YAML names the data, the task, the split and a list of arms (ways of doing the task). Every
field is a pydantic model field with a description; unknown keys are errors (a typo must not silently
fall back to a default). `load_experiment` also applies dotted overrides (`--set arms.0.k=5`) before
validating, so the resolved config saved in the run manifest is exactly what ran. Knows nothing about
models or files beyond reading the YAML. The `arms` list is a union over the arm registry's config
classes (arms/registry.py), rebuilt when an arm is registered; importing this module loads no torch,
scikit-learn or scipy.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Union, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from tunewise.arms import registry
from tunewise.settings import CostConfig, DataConfig, EvaluationConfig, LocalArmConfig, SplitConfig, Strict, TaskConfig


class ConfigError(ValueError):
    """The experiment file (or an override) is invalid; the message lists every problem with its line."""


def _arm_union() -> Any:
    """The discriminated union (on `type`) of every registered arm's config class."""
    classes = registry.config_classes()
    return Annotated[Union[classes] if len(classes) > 1 else classes[0], Field(discriminator="type")]  # noqa: UP007


class Experiment(Strict):
    """One head-to-head: a dataset, a task, one frozen split, and the arms compared on it."""

    name: str = Field(description="Experiment name, shown in reports.")
    data: DataConfig
    task: TaskConfig
    split: SplitConfig = Field(default_factory=SplitConfig)
    arms: list[_arm_union()] = Field(min_length=1, description="The ways of doing the task to compare.")  # type: ignore[valid-type]
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
            registry.check(arm, self)
        if self.evaluation.primary_metric is None:
            self.evaluation.primary_metric = "accuracy" if self.task.type == "classify" else "score"
        _check_primary_metric(self.evaluation.primary_metric, self.task.type)
        _check_judge(self, names)
        if self.evaluation.gates.max_invalid_rate is not None and self.task.type != "extract":
            raise ValueError(f"evaluation.gates.max_invalid_rate applies to extract tasks (answers that must be JSON); "
                             f"task.type is {self.task.type}. Fix: remove the gate")
        if self.evaluation.baseline_arm is not None and self.evaluation.baseline_arm not in names:
            raise ValueError(f"evaluation.baseline_arm {self.evaluation.baseline_arm!r} is not an arm; known: {names}")
        return self


# The metrics each task type computes per example (evaluate/metrics.py: families), beyond `score` and `judge`.
METRICS_BY_TASK = {"classify": ("accuracy", "macro_f1"), "generate": ("rouge_l", "chrf", "bleu"),
                   "extract": ("field_f1",)}


def _check_primary_metric(metric: str, task_type: str) -> None:
    """evaluation.primary_metric is one the task computes: a classification metric on free text cannot rank."""
    if metric in ("score", "judge") or metric in METRICS_BY_TASK[task_type]:
        return
    needs = next(kind for kind, names in METRICS_BY_TASK.items() if metric in names)
    fits = ", ".join(f"`{m}`" for m in ("score", *METRICS_BY_TASK[task_type]))
    raise ValueError(f"evaluation.primary_metric {metric!r} needs task.type {needs}, and task.type is {task_type}. "
                     f"Fix: use {fits} (or `judge`, with evaluation.judge set)")


def _check_judge(experiment: Experiment, names: list[str]) -> None:
    """evaluation.judge fits the task and the arms; primary_metric `judge` has a judge to ask."""
    judge, metric = experiment.evaluation.judge, experiment.evaluation.primary_metric
    if metric == "judge" and experiment.evaluation.robustness.perturbations:
        raise ValueError("evaluation.robustness re-runs the arms on perturbed inputs, and those answers are not "
                         "judged, so a drop in `judge` cannot be measured. Fix: rank by `score` "
                         "(evaluation.primary_metric), or remove evaluation.robustness.perturbations")
    if judge is None:
        if metric == "judge":
            raise ValueError("evaluation.primary_metric is `judge` but evaluation.judge is not set. Fix: add "
                             "evaluation.judge (e.g. {mode: pointwise}) or rank by `score`")
        return
    if experiment.task.type == "classify":
        raise ValueError("evaluation.judge scores free-text answers (task.type generate or extract); task.type is "
                         "classify, where accuracy already says which answer is right. Fix: remove evaluation.judge")
    unknown = [a for a in judge.arms or [] if a not in names]
    if unknown:
        raise ValueError(f"evaluation.judge.arms {unknown} are not arms; known: {names}. Fix: list arm names")
    judged = judge.arms or names
    if metric == "judge" and set(judged) != set(names):
        raise ValueError(f"evaluation.primary_metric `judge` ranks every arm by the judge, but evaluation.judge.arms "
                         f"leaves out {sorted(set(names) - set(judged))}. Fix: remove evaluation.judge.arms, or rank "
                         "by `score`")
    if judge.mode == "pairwise" and len(set(judged)) < 2:
        raise ValueError(f"evaluation.judge.mode pairwise compares two arms' answers, but only {sorted(set(judged))} "
                         "would be judged. Fix: judge at least two arms, or use mode: pointwise")


def _rebuild_arms() -> None:
    """Registering an arm changes the union the `arms` field validates against."""
    Experiment.model_fields["arms"].annotation = list[_arm_union()]  # type: ignore[misc]
    Experiment.model_rebuild(force=True)


registry.on_change(_rebuild_arms)


def _expand_variants(arms: list[Any]) -> list[Any]:
    """`variants: [a, b]` on one arm becomes arms `name@a` and `name@b` with `prompt` set."""
    expanded = []
    for arm in arms:
        if isinstance(arm, LocalArmConfig) and arm.variants:
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
        raise ConfigError(_explain(path, text, exc, raw, overrides or [])) from None
    data_path = str(experiment.data.path)
    if not data_path.startswith("bundled:") and not experiment.data.path.is_absolute():
        experiment.data.path = (path.parent / experiment.data.path).resolve()
    for name in ("test", "val"):  # the user's own held-out files, relative to the YAML like data.path
        held = getattr(experiment.data, name)
        if held is not None and not held.is_absolute():
            setattr(experiment.data, name, (path.parent / held).resolve())
    missing = []
    table = experiment.cost.hardware_price_table
    if table is not None:  # relative to the YAML, like the data files
        resolved = table if Path(table).is_absolute() else str((path.parent / table).resolve())
        experiment.cost.hardware_price_table = resolved
        if not Path(resolved).is_file():
            missing.append(f"  {path}:{_line_of(text, ['cost', 'hardware_price_table'])}: cost.hardware_price_table: "
                           f"{resolved} does not exist. Fix: copy the shipped tunewise/catalog/hardware_prices.yaml "
                           "there, or remove the field to use it as is.")
    for arm in experiment.arms:
        # the index in the file (prompt variants add arms before this one in experiment.arms)
        i = next((k for k, a in enumerate(raw["arms"]) if isinstance(a, dict) and a.get("name") == arm.name), 0)
        for loc, message in registry.resolve_paths(arm, path.parent):
            dotted = ".".join(["arms", str(i), *loc])
            missing.append(f"  {path}:{_line_of(text, ['arms', str(i), *loc])}: {dotted}: {message}")
    if missing:
        raise ConfigError(f"{path}: {len(missing)} problem(s)\n" + "\n".join(missing))
    return experiment


def _explain(path: Path, text: str, exc: ValidationError, raw: dict[str, Any], overrides: list[str]) -> str:
    lines = [f"{path}: {exc.error_count()} problem(s)"]
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        # pydantic adds the union member's tag to the location ("arms.0.few_shot.k"); drop it for humans
        loc = [part for i, part in enumerate(loc) if not (i > 0 and loc[i - 1].isdigit() and part in registry.types())]
        dotted = ".".join(loc) or "(top level)"
        given = error.get("input")
        shown = "" if isinstance(given, (dict, list)) or given is None else f" (got {given!r})"
        problem = f"{dotted}: {error['msg']}{shown}{_did_you_mean(error, loc, raw)}"
        assignment = next((a for a in overrides if _overridden(a, loc)), None)
        if assignment is not None:  # the value came from the command line, not from any line of the file
            lines.append(f"  --set {assignment}: {problem}")
            continue
        # a bad or missing arm `type` is reported on the arm; point at its `type:` line when there is one
        line = _line_of(text, loc + ["type"] if error["type"].startswith("union_tag") else loc)
        lines.append(f"  {path}:{line}: {problem}" if line else f"  {problem}")
    return "\n".join(lines)


def _overridden(assignment: str, loc: list[str]) -> bool:
    """The error is at or inside the value a `--set` assignment wrote."""
    keys = assignment.partition("=")[0].strip().split(".")
    return loc[:len(keys)] == keys


def _did_you_mean(error: Any, loc: list[str], raw: dict[str, Any]) -> str:
    """A close match for a mistyped arm type or field name (difflib), since pydantic only says it is wrong."""
    if error["type"] == "union_tag_invalid":
        wrong, known = str(error.get("ctx", {}).get("tag", "")), registry.types()
    elif error["type"] == "extra_forbidden" and loc:
        wrong, model = loc[-1], _model_at(loc[:-1], raw)
        known = list(model.model_fields) if model is not None else []
    else:
        return ""
    close = difflib.get_close_matches(wrong, known, n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else (f"; known: {', '.join(known)}" if known else "")


def _model_at(loc: list[str], raw: Any) -> type[BaseModel] | None:
    """The config class at a dotted location, following the arms list into each arm's own class by `type`."""
    model: Any = Experiment
    node: Any = raw
    for part in loc:
        if part.isdigit():
            node = node[int(part)] if isinstance(node, list) and int(part) < len(node) else None
            if model == "arm":
                try:
                    model = registry.module_of(str(node.get("type")) if isinstance(node, dict) else "").Config
                except ValueError:
                    return None
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        node = node.get(part) if isinstance(node, dict) else None
        model = "arm" if model is Experiment and part == "arms" else _model_in(field.annotation)
    return model if isinstance(model, type) else None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((found for inner in get_args(annotation) if (found := _model_in(inner)) is not None), None)


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
    """Every field with its description, for `tunewise init --explain` and the docs: the experiment's own
    sections, then each registered arm and the settings models nested in it."""
    rows = []
    for model in _documented_models():
        rows.append(f"{model.__name__}:")
        for name, field in model.model_fields.items():
            rows.append(f"  {name}: {field.description or ''}")
    return "\n".join(rows)


def _documented_models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in found:
                found.append(annotation)
                for field in annotation.model_fields.values():
                    visit(field.annotation)
        for inner in get_args(annotation):
            visit(inner)

    for model in (DataConfig, TaskConfig, SplitConfig, *registry.config_classes(), EvaluationConfig, CostConfig,
                  Experiment):
        visit(model)
    return found
