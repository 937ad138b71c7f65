"""OpenAI's fine-tuning job endpoints: POST|GET /v1/fine_tuning/jobs, GET /v1/fine_tuning/jobs/{id},
POST /v1/fine_tuning/jobs/{id}/cancel, GET /v1/fine_tuning/jobs/{id}/events; and, on a server without a state
folder, `disabled_router`, whose 404 says how to turn the files and fine-tuning API on.

Everything a client can get wrong is refused when the request arrives, with the parameter named: an unknown
file or base model, a file of the wrong purpose or too few examples, hyperparameters out of range. What can
only fail later (training itself) ends the job `failed` with `error` {code, message, param}. The routes are
thin: jobs.py records, finetuner.py trains. Knows nothing about how uploads are read or stored.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tunewise.serve.bodies import read_body
from tunewise.serve.errors import APIError
from tunewise.serve.files import MIN_TRAINING_EXAMPLES
from tunewise.serve.finetuner import JobConflict, trainable
from tunewise.serve.jobs import JOB_ID
from tunewise.serve.paging import paged
from tunewise.serve.routes_files import file_or_404
from tunewise.serve.state import FineTuning, ServerState, State

_STRICT = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")
_RANGES = {"n_epochs": (1, 50), "batch_size": (1, 256), "learning_rate_multiplier": (1e-6, 1000)}


class Hyperparameters(BaseModel):
    """OpenAI's three knobs; "auto" lets the job choose (finetuner.resolve_hyperparameters)."""

    model_config = _STRICT
    n_epochs: Any = "auto"
    batch_size: Any = "auto"
    learning_rate_multiplier: Any = "auto"

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
    """POST /v1/fine_tuning/jobs. Unknown fields are errors: a misspelt hyperparameter must not be ignored."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")
    model: str = Field(min_length=1, max_length=256)
    training_file: str = Field(min_length=1, max_length=64)
    validation_file: str | None = Field(None, max_length=64)
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    suffix: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,40}$")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one_place_for_hyperparameters(self) -> JobRequest:
        if self.hyperparameters is not None and self.method is not None:
            raise ValueError("give hyperparameters either at the top level or in method.supervised, not both")
        return self

    def chosen(self) -> dict[str, Any]:
        source = self.method.supervised.hyperparameters if self.method else self.hyperparameters or Hyperparameters()
        return source.model_dump()


router = APIRouter()


def _finetuning(state: ServerState) -> FineTuning:
    assert state.finetune is not None, "the fine-tuning router is mounted only with a state folder"
    return state.finetune


def _job_or_404(state: ServerState, job_id: str) -> dict[str, Any]:
    job = _finetuning(state).jobs.get(job_id) if JOB_ID.fullmatch(job_id) else None
    if job is None:
        raise APIError(404, f"No fine-tuning job with id {job_id!r} (GET /v1/fine_tuning/jobs lists them).",
                       param="fine_tuning_job_id", code="fine_tuning_job_not_found")
    return job


def _check_request(state: ServerState, body: JobRequest) -> None:
    """Refuse a job that cannot start: an untrainable or unknown model, unusable training or validation files."""
    models = state.models
    problem = trainable(models.get(body.model))
    if problem is not None:
        bases = sorted(name for name, served in models.items() if trainable(served) is None)
        raise APIError(404 if body.model not in models else 400,
                       f"cannot fine-tune {body.model!r}: it {problem}. Base models here: "
                       f"{', '.join(bases) or 'none'}", param="model", code="model_not_found")
    for param in ("training_file", "validation_file"):
        file_id = getattr(body, param)
        if file_id is None:
            continue
        record = file_or_404(state, file_id, param)
        if record.purpose != "fine-tune":
            raise APIError(400, f"{param} {file_id} was uploaded with purpose {record.purpose!r}; upload it "
                                "with purpose fine-tune", param=param, code="invalid_value")
        if param == "training_file" and record.examples < MIN_TRAINING_EXAMPLES:
            raise APIError(400, f"training_file {file_id} ({record.filename}) has {record.examples} "
                                f"example(s); fine-tuning needs at least {MIN_TRAINING_EXAMPLES} (100+ "
                                "recommended). Fix: upload more examples", param=param,
                           code="invalid_training_file")


@router.post("/v1/fine_tuning/jobs")
async def create_job(request: Request, state: State) -> JSONResponse:
    body = await read_body(request, JobRequest, state.config.max_body_bytes)
    _check_request(state, body)
    finetune = _finetuning(state)
    hyper = body.chosen()
    job = await asyncio.to_thread(finetune.jobs.create, {
        "model": body.model, "training_file": body.training_file, "validation_file": body.validation_file,
        "hyperparameters": hyper, "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
        "seed": body.seed if body.seed is not None else 42, "user_provided_suffix": body.suffix,
        "metadata": body.metadata})
    finetune.tuner.submit(job["id"])
    return JSONResponse(job)


@router.get("/v1/fine_tuning/jobs")
async def list_jobs(request: Request, state: State) -> dict[str, Any]:
    return paged(_finetuning(state).jobs.all(), request)


@router.get("/v1/fine_tuning/jobs/{job_id}")
async def get_job(job_id: str, state: State) -> dict[str, Any]:
    return _job_or_404(state, job_id)


@router.post("/v1/fine_tuning/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, state: State) -> dict[str, Any]:
    _job_or_404(state, job_id)
    try:
        return await asyncio.to_thread(_finetuning(state).tuner.cancel, job_id)
    except JobConflict as error:
        raise APIError(400, str(error), param="fine_tuning_job_id", code="invalid_state") from None


@router.get("/v1/fine_tuning/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request, state: State) -> dict[str, Any]:
    _job_or_404(state, job_id)
    listed = paged(await asyncio.to_thread(_finetuning(state).jobs.events, job_id), request)
    return {"object": "list", "data": listed["data"], "has_more": listed["has_more"]}


disabled_router = APIRouter()


@disabled_router.api_route("/v1/files{rest:path}", methods=["GET", "POST", "DELETE"])
@disabled_router.api_route("/v1/fine_tuning/{rest:path}", methods=["GET", "POST", "DELETE"])
async def finetuning_off(rest: str) -> Response:
    raise APIError(404, "the files and fine-tuning API is off on this server. Fix: start it with "
                        "--state-dir DIR (a folder for uploads, jobs and the models they train).",
                   code="finetuning_disabled")
