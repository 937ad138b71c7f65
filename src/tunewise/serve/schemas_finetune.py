"""The request body of POST /v1/fine_tuning/jobs, typed strictly: unknown fields are errors (a misspelt
hyperparameter must not be silently ignored), and each field's JSON schema says what its validator accepts.

`integrations` is accepted empty (OpenAI's clients send `[]`); a non-empty list is refused with the reason,
since this server reports to no third party (losses are in the job's events). Knows nothing about models,
files or training.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

_STRICT = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")
_RANGES = {"n_epochs": (1, 50), "batch_size": (1, 256), "learning_rate_multiplier": (1e-6, 1000)}


def _auto_or(kind: str, low: float, high: float) -> dict[str, Any]:
    return {"anyOf": [{"const": "auto"}, {"type": kind, "minimum": low, "maximum": high}], "default": "auto"}


class Hyperparameters(BaseModel):
    """OpenAI's three knobs; "auto" lets the job choose (finetuner.resolve_hyperparameters)."""

    model_config = _STRICT
    n_epochs: Any = Field("auto", json_schema_extra=_auto_or("integer", *_RANGES["n_epochs"]))
    batch_size: Any = Field("auto", json_schema_extra=_auto_or("integer", *_RANGES["batch_size"]))
    learning_rate_multiplier: Any = Field("auto", json_schema_extra=_auto_or("number",
                                                                          *_RANGES["learning_rate_multiplier"]))

    @field_validator("n_epochs", "batch_size", "learning_rate_multiplier")
    @classmethod
    def _auto_or_in_range(cls, value: Any, info: ValidationInfo) -> Any:
        # one check per field (not a typed union) so an error names the field, not a union member
        low, high = _RANGES[info.field_name]  # type: ignore[index]
        number = (int, float) if info.field_name == "learning_rate_multiplier" else (int,)
        if value == "auto" or (isinstance(value, number) and not isinstance(value, bool) and low <= value <= high):
            return value
        kind = "a number" if len(number) == 2 else "a whole number"
        raise ValueError(f"must be \"auto\" or {kind} from {low:g} to {high:g}")


class Supervised(BaseModel):
    model_config = _STRICT
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)


class Method(BaseModel):
    model_config = _STRICT
    type: Literal["supervised"]
    supervised: Supervised = Field(default_factory=Supervised)


class JobRequest(BaseModel):
    """POST /v1/fine_tuning/jobs."""

    model_config = _STRICT
    model: str = Field(min_length=1, max_length=256)
    training_file: str = Field(min_length=1, max_length=64)
    validation_file: str | None = Field(None, max_length=64)
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    suffix: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,40}$")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = None
    integrations: list[dict[str, Any]] | None = Field(None, json_schema_extra={
        "anyOf": [{"type": "array", "maxItems": 0}, {"type": "null"}]})

    @field_validator("integrations")
    @classmethod
    def _none_supported(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value:
            raise ValueError("integrations (such as wandb) are not supported by this server; send [] or leave it "
                             "out. Losses are in the job's events (GET /v1/fine_tuning/jobs/{id}/events)")
        return value

    @model_validator(mode="after")
    def _one_place_for_hyperparameters(self) -> JobRequest:
        if self.hyperparameters is not None and self.method is not None:
            raise ValueError("give hyperparameters either at the top level or in method.supervised, not both")
        return self

    def chosen(self) -> dict[str, Any]:
        source = self.method.supervised.hyperparameters if self.method else self.hyperparameters or Hyperparameters()
        return source.model_dump()
