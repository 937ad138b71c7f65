"""Request bodies of the OpenAI-compatible endpoints, typed strictly (a string "5" is not a number).

Fields OpenAI clients send that do not change our answer (`user`, `metadata`, penalties at their defaults)
are accepted and ignored; options we cannot honour (n > 1, top_p < 1, tools, logprobs) are rejected with the
parameter named rather than silently ignored. Each field's JSON schema (published at /openapi.json) says what
its validator accepts, so generated clients and API testers see the real rules. A temperature above 0 but below `TEMPERATURE_FLOOR` is answered
greedily (as temperature 0): dividing logits by 1e-45 overflows to inf and the sampler's probabilities become
nan, and any temperature that small already picks the top token. Knows nothing about models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_CONFIG = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore")

TEMPERATURE_FLOOR = 1e-3
"""Temperatures in (0, this) are treated as 0 (greedy). At 1e-3 a logit lead of 0.02 already makes the runner-up
e^20 times less likely than the top token; far below it, logits / temperature overflows float32 (inf, then nan
probabilities)."""


def _stops_schema() -> dict[str, Any]:
    """The JSON schema of `stop`: a non-empty string, or a list of at most 4 of them, or null."""
    text = {"type": "string", "minLength": 1}
    return {"anyOf": [text, {"type": "array", "items": text, "maxItems": 4}, {"type": "null"}],
            "description": "Up to 4 sequences where generation stops (not included in the text)."}


class TextPart(BaseModel):
    model_config = _CONFIG
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = _CONFIG
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def plain(self) -> dict[str, str]:
        """`{"role", "content"}` with text parts joined; `developer` is OpenAI's newer name for `system`."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(BaseModel):
    model_config = _CONFIG
    include_usage: bool = False


class _Sampling(BaseModel):
    model_config = _CONFIG
    model: str = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2, description=f"0 is greedy; values below {TEMPERATURE_FLOOR:g} are "
                               "treated as 0.")
    top_p: float = Field(1.0, gt=0, le=1, json_schema_extra={"enum": [1]})
    n: int = Field(1, ge=1, json_schema_extra={"enum": [1]})
    seed: int | None = Field(None, ge=-(2**63), lt=2**63)
    stop: str | list[str] | None = Field(None, json_schema_extra=_stops_schema())
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("temperature")
    @classmethod
    def _greedy_below_floor(cls, value: float) -> float:
        return 0.0 if value < TEMPERATURE_FLOOR else value

    @field_validator("top_p")
    @classmethod
    def _full_nucleus(cls, value: float) -> float:
        if value != 1:
            raise ValueError("only top_p 1 is supported (plain temperature sampling); use temperature instead")
        return value

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only n 1 is supported; send separate requests (they are batched together)")
        return value

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes at most 4 non-empty strings")
        return stops

    def stops(self) -> list[str]:
        return list(self.stop or [])


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[dict] | None = Field(None, json_schema_extra={"anyOf": [{"type": "array", "maxItems": 0},
                                                                      {"type": "null"}]})
    logprobs: bool = Field(False, json_schema_extra={"enum": [False]})

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, value: list[dict] | None) -> list[dict] | None:
        if value:
            raise ValueError("tools are not supported by this server; leave tools out or send []")
        return value

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool) -> bool:
        if value:
            raise ValueError("logprobs are not supported by this server; leave logprobs out or send false")
        return value

    @model_validator(mode="after")
    def _max_tokens(self) -> ChatRequest:
        if self.max_tokens is None:
            self.max_tokens = self.max_completion_tokens
        return self


class CompletionRequest(_Sampling):
    prompt: str | list[str] = Field(json_schema_extra={"anyOf": [{"type": "string"}, {
        "type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 64}]})
    echo: bool = Field(False, json_schema_extra={"enum": [False]})
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for this legacy endpoint

    @field_validator("prompt")
    @classmethod
    def _some_prompts(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not 1 <= len(value) <= 64:
            raise ValueError("prompt takes a string or a list of 1 to 64 strings")
        return value

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("echo is not supported by this server")
        return value


class ClassifyRequest(BaseModel):
    """tunewise's own endpoint: the label of each input and a probability per label."""

    model_config = _CONFIG
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] = Field(json_schema_extra={"anyOf": [{"type": "string"}, {
        "type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 256}]})
    labels: list[str] | None = Field(None, min_length=2, max_length=100, json_schema_extra={"anyOf": [
        {"type": "array", "items": {"type": "string", "pattern": r"\S"}, "minItems": 2, "maxItems": 100,
         "uniqueItems": True}, {"type": "null"}]})

    @field_validator("input")
    @classmethod
    def _some_inputs(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not 1 <= len(value) <= 256:
            raise ValueError("input takes a string or a list of 1 to 256 strings")
        return value

    @field_validator("labels")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (len(set(value)) != len(value) or any(not v.strip() for v in value)):
            raise ValueError("labels must be distinct, non-empty strings")
        return value
