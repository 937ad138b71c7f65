"""The catalog of candidate base models `tunewise advise` weighs: an editable YAML file.

The package ships `tunewise/catalog/models.yaml`; `--catalog FILE` replaces it with the user's own (copy the
shipped one and edit it: prices and throughputs differ per machine and change over time). Each entry says
what the model is (source, size, context, licence, local or API), what it can do (tasks), and the figures
the estimates use (training tokens/s on a CPU and a GPU, or an API's training price), with where those
figures came from. Validated on load; a mistake is reported with its file, line, field and fix.
This module knows nothing about data or models beyond reading the file.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tunewise.config import _line_of

TaskName = Literal["classify", "extract", "generate"]


class CatalogError(ValueError):
    """The catalog file is invalid; the message names the file, the line, the field and the fix."""


class Throughput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpu: float | None = Field(None, gt=0, description="Training tokens per second on a CPU (null: not practical).")
    gpu: float | None = Field(None, gt=0, description="Training tokens per second on one GPU.")


class CatalogModel(BaseModel):
    """One candidate base model."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Short name shown in tables.")
    source: str = Field(min_length=1, description="Local folder, hub id, bundled alias (smollm2, minilm) or the "
                                                  "API's model name.")
    kind: Literal["local", "api"] = Field(description="local: weights you run yourself; api: a hosted fine-tuning "
                                                      "service (your data leaves your machines).")
    architecture: Literal["causal_lm", "encoder"] = Field(description="causal_lm generates text (any task); encoder "
                                                                      "gets a classifier head (classify only).")
    parameters: int | None = Field(None, gt=0, description="Number of parameters (null when not published).")
    context_length: int = Field(gt=0, description="Longest input the model takes, in tokens.")
    licence: str = Field(min_length=1, description="Licence of the weights or the service's terms.")
    tasks: list[TaskName] = Field(min_length=1, description="Tasks it can be fine-tuned for.")
    offline: bool = Field(False, description="True when it ships with tunewise (usable with no network).")
    throughput: Throughput = Field(default_factory=Throughput, description="Training speed, for local models.")
    training_usd_per_million_tokens: float | None = Field(None, ge=0, description="API models: the service's "
                                                                                  "training price.")
    figures: str = Field(min_length=1, description="Where the throughput or price figures came from, and when.")

    @model_validator(mode="after")
    def _figures_for_its_kind(self) -> CatalogModel:
        if self.kind == "local" and self.throughput.cpu is None and self.throughput.gpu is None:
            raise ValueError("a local model needs throughput.cpu or throughput.gpu (training tokens/s)")
        if self.kind == "api" and self.training_usd_per_million_tokens is None:
            raise ValueError("an api model needs training_usd_per_million_tokens")
        if self.architecture == "encoder" and self.tasks != ["classify"]:
            raise ValueError("an encoder model can only be fine-tuned to classify: set tasks: [classify]")
        return self


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[CatalogModel] = Field(min_length=1, description="The candidates.")

    @model_validator(mode="after")
    def _unique_names(self) -> Catalog:
        names = [m.name for m in self.models]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"model names must be unique; repeated: {', '.join(repeated)}")
        return self


def shipped_catalog_text() -> str:
    return files("tunewise.catalog").joinpath("models.yaml").read_text(encoding="utf-8")


def load_catalog(path: str | Path | None = None) -> tuple[Catalog, str]:
    """The catalog at `path` (default: the shipped one) and where it came from."""
    if path is None:
        return parse_catalog(shipped_catalog_text(), "tunewise/catalog/models.yaml (shipped)"), "shipped"
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read the catalog: {exc}. Fix: pass a readable UTF-8 YAML file.") from None
    return parse_catalog(text, str(path)), str(path)


def parse_catalog(text: str, where: str) -> Catalog:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise CatalogError(f"{where}{at}: not valid YAML: {getattr(exc, 'problem', exc)}. Fix the syntax there "
                           "(indentation, a missing colon or quote).") from None
    if not isinstance(raw, dict) or "models" not in raw:
        raise CatalogError(f"{where}: the top level must be a mapping with a `models:` list. Fix: start from the "
                           "shipped catalog (tunewise/catalog/models.yaml).")
    try:
        return Catalog.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{where}: {exc.error_count()} problem(s) in the model catalog"]
        for error in exc.errors():
            loc = [str(part) for part in error["loc"]]
            line = _line_of(text, loc)
            name = _entry_name(raw, loc)
            given = error.get("input")
            shown = "" if isinstance(given, (dict, list)) or given is None else f" (got {given!r})"
            field = ".".join(loc) or "(top level)"
            lines.append(f"  {where}:{line or '?'}: {field}{name}: {error['msg']}{shown}. Fix: {_fix(error, loc)}")
        raise CatalogError("\n".join(lines)) from None


def _entry_name(raw: dict, loc: list[str]) -> str:
    if len(loc) >= 2 and loc[0] == "models" and loc[1].isdigit():
        models = raw.get("models") or []
        index = int(loc[1])
        if index < len(models) and isinstance(models[index], dict) and models[index].get("name"):
            return f" (model {models[index]['name']!r})"
    return ""


def _fix(error: dict, loc: list[str]) -> str:
    field = loc[-1] if loc else ""
    description = None
    for model in (CatalogModel, Throughput, Catalog):
        if field in model.model_fields:
            description = model.model_fields[field].description
            break
    if error["type"] == "missing":
        return f"add `{field}`: {description}" if description else f"add `{field}`"
    if error["type"] == "extra_forbidden":
        known = ", ".join(CatalogModel.model_fields)
        return f"remove or rename `{field}`; a model entry takes {known}"
    return f"set `{field}` to a valid value: {description}" if description else "see the shipped catalog"
