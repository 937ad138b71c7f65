"""The shapes of what the server answers, as pydantic models, for the published OpenAPI schema only.

Routes build their answers as plain dicts (they are OpenAI's shapes, and building them is cheap); these models
say the same thing to API tooling and to clients generated from /openapi.json. They follow OpenAI's objects
field for field where we implement the endpoint (a field OpenAI marks required is required here, nullable
where OpenAI's is), plus tunewise's own `tunewise` blocks. A test holds every answer to these models with the
official `openai` client's types, and schemathesis holds every answer to the published schema.
Knows nothing about models, batching or storage.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    message: str = Field(description="What went wrong and how to fix it.")
    type: str = Field(description="invalid_request_error, authentication_error, rate_limit_error, server_error...")
    param: str | None = Field(description="The request field (dotted path), header or form part at fault.")
    code: str | None = Field(description="A stable machine-readable code, e.g. model_not_found.")


class ErrorEnvelope(BaseModel):
    """OpenAI's error envelope: every 4xx and 5xx answer has this body."""

    error: ErrorBody


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Cached(BaseModel):
    cached: Literal["exact", "semantic"] | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    refusal: str | None = Field(description="Always null: this server does not refuse by policy.")


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None


class ChatCompletion(BaseModel):
    """A whole chat answer. With `"stream": true` the answer is a text/event-stream of chat.completion.chunk
    objects instead, ending with `data: [DONE]` (an error after the first event is sent as an error envelope
    event, then `[DONE]`)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None
    tunewise: Cached | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: None


class Completion(BaseModel):
    """A whole completion (one choice per prompt); streamed as text_completion events ending `data: [DONE]`."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    tunewise: dict[str, Any] = Field(description="kind (lm or classical), labels, description, arm details.")


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class Classification(BaseModel):
    object: Literal["classification"]
    index: int
    label: str
    probabilities: dict[str, float]
    cached: Literal["exact", "semantic"] | None = None


class ClassifyUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class ClassificationList(BaseModel):
    object: Literal["list"]
    model: str
    data: list[Classification]
    usage: ClassifyUsage


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    models: list[str]


class FileObject(BaseModel):
    id: str
    object: Literal["file"]
    bytes: int
    created_at: int
    filename: str
    purpose: Literal["fine-tune"]
    status: Literal["uploaded", "processed", "error"]
    status_details: str | None = Field(description="Warnings `tunewise check` found in the file, if any.")


class Page(BaseModel):
    object: Literal["list"]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


class FileList(Page):
    data: list[FileObject]


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"]
    deleted: bool


class JobError(BaseModel):
    code: str
    message: str
    param: str | None


class JobHyperparameters(BaseModel):
    n_epochs: int | Literal["auto"]
    batch_size: int | Literal["auto"]
    learning_rate_multiplier: float | Literal["auto"]


class JobSupervised(BaseModel):
    hyperparameters: JobHyperparameters


class JobMethod(BaseModel):
    type: Literal["supervised"]
    supervised: JobSupervised


class FineTuningJob(BaseModel):
    """OpenAI's fine_tuning.job. `paused` is a status OpenAI's API uses for paused jobs (pause/resume)."""

    id: str
    object: Literal["fine_tuning.job"]
    created_at: int
    finished_at: int | None
    status: Literal["validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"]
    model: str
    fine_tuned_model: str | None
    training_file: str
    validation_file: str | None
    hyperparameters: JobHyperparameters
    method: JobMethod
    seed: int
    error: JobError | None
    trained_tokens: int | None
    result_files: list[str]
    organization_id: str
    estimated_finish: int | None
    integrations: list[dict[str, Any]] | None
    user_provided_suffix: str | None = None
    metadata: dict[str, str] | None = None
    tunewise: dict[str, Any] | None = Field(None, description="Progress: step and total_steps.")


class JobList(Page):
    data: list[FineTuningJob]


class JobEvent(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"]
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"]
    data: dict[str, Any] | None


class EventList(BaseModel):
    object: Literal["list"]
    data: list[JobEvent]
    has_more: bool


class CheckpointMetrics(BaseModel):
    step: float | None = None
    train_loss: float | None = None
    valid_loss: float | None = None


class Checkpoint(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"]
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: CheckpointMetrics
    step_number: int


class CheckpointList(Page):
    data: list[Checkpoint]
