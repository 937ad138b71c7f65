"""OpenAI's fine-tuning job endpoints: POST|GET /v1/fine_tuning/jobs, GET /v1/fine_tuning/jobs/{id},
POST /v1/fine_tuning/jobs/{id}/cancel|pause|resume, GET /v1/fine_tuning/jobs/{id}/events|checkpoints; and, on a
server without a state folder, `disabled_router`, whose 404 says how to turn the files and fine-tuning API on.

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

from tunewise.serve.bodies import read_body
from tunewise.serve.errors import APIError
from tunewise.serve.files import MIN_TRAINING_EXAMPLES
from tunewise.serve.finetuner import JobConflict, trainable
from tunewise.serve.jobs import JOB_ID
from tunewise.serve.openapi import answers, json_body, query
from tunewise.serve.paging import AFTER, LIMIT, paged
from tunewise.serve.responses import CheckpointList, EventList, FineTuningJob, JobList
from tunewise.serve.routes_files import file_or_404
from tunewise.serve.schemas_finetune import JobRequest
from tunewise.serve.state import FineTuning, ServerState, State

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


@router.post("/v1/fine_tuning/jobs", openapi_extra=json_body(JobRequest),
             responses=answers(FineTuningJob, 400, 404, 413))
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


@router.get("/v1/fine_tuning/jobs", response_model=None, responses=answers(JobList, 400),
            openapi_extra=query(LIMIT, AFTER))
async def list_jobs(request: Request, state: State) -> dict[str, Any]:
    return paged(_finetuning(state).jobs.all(), request)


@router.get("/v1/fine_tuning/jobs/{job_id}", response_model=None, responses=answers(FineTuningJob, 404))
async def get_job(job_id: str, state: State) -> dict[str, Any]:
    return _job_or_404(state, job_id)


Action = Literal["cancel", "pause", "resume"]


async def _act(state: ServerState, job_id: str, action: Action) -> dict[str, Any]:
    _job_or_404(state, job_id)
    tuner = _finetuning(state).tuner
    try:
        return await asyncio.to_thread(getattr(tuner, action), job_id)
    except JobConflict as error:
        raise APIError(400, str(error), param="fine_tuning_job_id", code="invalid_state") from None


@router.post("/v1/fine_tuning/jobs/{job_id}/cancel", response_model=None,
             responses=answers(FineTuningJob, 400, 404))
async def cancel_job(job_id: str, state: State) -> dict[str, Any]:
    return await _act(state, job_id, "cancel")


@router.post("/v1/fine_tuning/jobs/{job_id}/pause", response_model=None,
             responses=answers(FineTuningJob, 400, 404))
async def pause_job(job_id: str, state: State) -> dict[str, Any]:
    """A queued job waits; a running one writes a checkpoint at the end of its current step and stops (the
    engine's SIGTERM-safe stop). Its status is `paused` until resumed, also across server restarts."""
    return await _act(state, job_id, "pause")


@router.post("/v1/fine_tuning/jobs/{job_id}/resume", response_model=None,
             responses=answers(FineTuningJob, 400, 404))
async def resume_job(job_id: str, state: State) -> dict[str, Any]:
    """Queue a paused job again; it continues from its last checkpoint, to the weights an uninterrupted job
    would have trained."""
    return await _act(state, job_id, "resume")


@router.get("/v1/fine_tuning/jobs/{job_id}/events", response_model=None, responses=answers(EventList, 400, 404),
            openapi_extra=query(LIMIT, AFTER))
async def job_events(job_id: str, request: Request, state: State) -> dict[str, Any]:
    _job_or_404(state, job_id)
    listed = paged(await asyncio.to_thread(_finetuning(state).jobs.events, job_id), request)
    return {"object": "list", "data": listed["data"], "has_more": listed["has_more"]}


@router.get("/v1/fine_tuning/jobs/{job_id}/checkpoints", response_model=None,
            responses=answers(CheckpointList, 400, 404), openapi_extra=query(LIMIT, AFTER))
async def job_checkpoints(job_id: str, request: Request, state: State) -> dict[str, Any]:
    """The checkpoints the engine wrote (one per epoch, and one on each pause or shutdown), newest first, with
    the losses logged up to each. They are a record: the weights are kept only until the job finishes, and a
    checkpoint's model name is not served (the job's final model is)."""
    job = _job_or_404(state, job_id)
    return paged(await asyncio.to_thread(_finetuning(state).jobs.checkpoints, job), request, default_limit=10)


disabled_router = APIRouter(include_in_schema=False)


@disabled_router.api_route("/v1/files{rest:path}", methods=["GET", "POST", "DELETE"])
@disabled_router.api_route("/v1/fine_tuning/{rest:path}", methods=["GET", "POST", "DELETE"])
async def finetuning_off(rest: str) -> Response:
    raise APIError(404, "the files and fine-tuning API is off on this server. Fix: start it with "
                        "--state-dir DIR (a folder for uploads, jobs and the models they train).",
                   code="finetuning_disabled")
