"""OpenAI's files and fine-tuning endpoints on the tunewise server, backed by the local engine.

    POST /v1/files (multipart: file, purpose=fine-tune)   GET /v1/files   GET|DELETE /v1/files/{id}
    GET /v1/files/{id}/content
    POST /v1/fine_tuning/jobs   GET /v1/fine_tuning/jobs   GET /v1/fine_tuning/jobs/{id}
    POST /v1/fine_tuning/jobs/{id}/cancel   GET /v1/fine_tuning/jobs/{id}/events

Everything a client can get wrong is refused when the request arrives, with the server's OpenAI error
envelope naming the parameter: an upload that `tunewise check` rejects (each bad line, its field and the fix),
an unknown file or base model, hyperparameters out of range. What can only fail later (training itself) ends
the job `failed` with `error` {code, message, param}. The routes are thin: files.py stores, jobs.py records,
finetuner.py trains.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tunewise.serve.errors import APIError
from tunewise.serve.files import FILE_ID, MIN_TRAINING_EXAMPLES, FileRejected, FileStore
from tunewise.serve.finetuner import FineTuner, JobConflict, trainable
from tunewise.serve.jobs import JOB_ID, TERMINAL, JobStore, page
from tunewise.serve.multipart import FormError, parse_form

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


def _file_or_404(files: FileStore, file_id: str, param: str = "file_id") -> Any:
    record = files.get(file_id) if FILE_ID.fullmatch(file_id) else None
    if record is None:
        raise APIError(404, f"No file with id {file_id!r} on this server (GET /v1/files lists them).", param=param,
                       code="file_not_found")
    return record


def _job_or_404(jobs: JobStore, job_id: str) -> dict[str, Any]:
    job = jobs.get(job_id) if JOB_ID.fullmatch(job_id) else None
    if job is None:
        raise APIError(404, f"No fine-tuning job with id {job_id!r} (GET /v1/fine_tuning/jobs lists them).",
                       param="fine_tuning_job_id", code="fine_tuning_job_not_found")
    return job


def _limit(request: Request, default: int = 20) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise APIError(400, f"limit must be a whole number from 1 to 100 (got {raw!r})", param="limit",
                       code="invalid_value")
    return int(raw)


def _paged(items: list[dict[str, Any]], request: Request) -> dict[str, Any]:
    after = request.query_params.get("after")
    try:
        data, more = page(items, after, _limit(request))
    except KeyError:
        raise APIError(400, f"after {after!r} is not the id of an item in this list", param="after",
                       code="invalid_value") from None
    return {"object": "list", "data": data, "has_more": more,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


async def _read_upload(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + 64 * 1024:  # room for form headers
        raise APIError(413, f"the upload has {int(declared):,} bytes; this server accepts files up to {limit:,} "
                            "bytes (--max-upload-bytes)", param="file", code="file_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit + 64 * 1024:
            raise APIError(413, f"the upload exceeds {limit:,} bytes, the most this server accepts "
                                "(--max-upload-bytes)", param="file", code="file_too_large")
    return bytes(body)


def add_finetune_routes(app: FastAPI, files: FileStore, jobs: JobStore, tuner: FineTuner, models: dict[str, Any],
                        read_json: Any, parse: Any, max_upload_bytes: int) -> None:
    """Mount the files and fine-tuning endpoints; `read_json` and `parse` are the app's own body readers."""

    @app.post("/v1/files")
    async def upload(request: Request) -> JSONResponse:
        body = await _read_upload(request, max_upload_bytes)
        try:
            form = parse_form(request.headers.get("content-type", ""), body)
        except FormError as error:
            raise APIError(400, f"cannot read the upload: {error}", param="file", code="invalid_request") from None
        if "file" not in form.files:
            raise APIError(400, "no `file` part in the form; send the JSONL file as `file`", param="file",
                           code="missing_required_parameter")
        if "purpose" not in form.fields:
            raise APIError(400, "no `purpose` field in the form; send purpose=fine-tune", param="purpose",
                           code="missing_required_parameter")
        filename, content = form.files["file"]
        if len(content) > max_upload_bytes:
            raise APIError(413, f"{filename} has {len(content):,} bytes; this server accepts files up to "
                                f"{max_upload_bytes:,} bytes (--max-upload-bytes)", param="file", code="file_too_large")
        name = Path(filename.replace("\\", "/")).name or "upload.jsonl"  # a name, never a path
        try:
            record = await asyncio.to_thread(files.add, name, form.fields["purpose"], content)
        except FileRejected as error:
            raise APIError(400, error.message, param="purpose" if error.code == "invalid_purpose" else "file",
                           code=error.code) from None
        return JSONResponse(record.public())

    @app.get("/v1/files")
    async def list_files(request: Request) -> dict[str, Any]:
        purpose = request.query_params.get("purpose")
        records = [f.public() for f in files.all() if purpose is None or f.purpose == purpose]
        return _paged(records, request)

    @app.get("/v1/files/{file_id}")
    async def get_file(file_id: str) -> dict[str, Any]:
        return _file_or_404(files, file_id).public()

    @app.get("/v1/files/{file_id}/content")
    async def file_content(file_id: str) -> Response:
        _file_or_404(files, file_id)
        content = await asyncio.to_thread(files.data_path(file_id).read_bytes)
        return Response(content, media_type="application/jsonl")

    @app.delete("/v1/files/{file_id}")
    async def delete_file(file_id: str) -> dict[str, Any]:
        _file_or_404(files, file_id)
        users = [j["id"] for j in jobs.all() if j["status"] not in TERMINAL
                 and file_id in (j.get("training_file"), j.get("validation_file"))]
        if users:
            raise APIError(400, f"file {file_id} is used by unfinished fine-tuning job(s) {', '.join(users)}; cancel "
                                "them or wait for them to finish", param="file_id", code="file_in_use")
        await asyncio.to_thread(files.delete, file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    @app.post("/v1/fine_tuning/jobs")
    async def create_job(request: Request) -> JSONResponse:
        body = parse(JobRequest, await read_json(request))
        problem = trainable(models.get(body.model))
        if problem is not None:
            bases = sorted(name for name, served in models.items() if trainable(served) is None)
            raise APIError(404 if body.model not in models else 400,
                           f"cannot fine-tune {body.model!r}: it {problem}. Base models here: "
                           f"{', '.join(bases) or 'none'}", param="model", code="model_not_found")
        for param in ("training_file", "validation_file"):
            file_id = getattr(body, param)
            if file_id is not None:
                record = _file_or_404(files, file_id, param)
                if record.purpose != "fine-tune":
                    raise APIError(400, f"{param} {file_id} was uploaded with purpose {record.purpose!r}; upload it "
                                        "with purpose fine-tune", param=param, code="invalid_value")
                if param == "training_file" and record.examples < MIN_TRAINING_EXAMPLES:
                    raise APIError(400, f"training_file {file_id} ({record.filename}) has {record.examples} "
                                        f"example(s); fine-tuning needs at least {MIN_TRAINING_EXAMPLES} (100+ "
                                        "recommended). Fix: upload more examples", param=param,
                                   code="invalid_training_file")
        hyper = body.chosen()
        job = await asyncio.to_thread(jobs.create, {
            "model": body.model, "training_file": body.training_file, "validation_file": body.validation_file,
            "hyperparameters": hyper, "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
            "seed": body.seed if body.seed is not None else 42, "user_provided_suffix": body.suffix,
            "metadata": body.metadata})
        tuner.submit(job["id"])
        return JSONResponse(job)

    @app.get("/v1/fine_tuning/jobs")
    async def list_jobs(request: Request) -> dict[str, Any]:
        return _paged(jobs.all(), request)

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    async def get_job(job_id: str) -> dict[str, Any]:
        return _job_or_404(jobs, job_id)

    @app.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    async def cancel_job(job_id: str) -> dict[str, Any]:
        _job_or_404(jobs, job_id)
        try:
            return await asyncio.to_thread(tuner.cancel, job_id)
        except JobConflict as error:
            raise APIError(400, str(error), param="fine_tuning_job_id", code="invalid_state") from None

    @app.get("/v1/fine_tuning/jobs/{job_id}/events")
    async def job_events(job_id: str, request: Request) -> dict[str, Any]:
        _job_or_404(jobs, job_id)
        listed = _paged(await asyncio.to_thread(jobs.events, job_id), request)
        return {"object": "list", "data": listed["data"], "has_more": listed["has_more"]}
