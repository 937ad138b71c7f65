"""OpenAI's files endpoints: POST /v1/files (multipart: file, purpose=fine-tune), GET /v1/files,
GET|DELETE /v1/files/{id}, GET /v1/files/{id}/content.

The upload form is parsed by python-multipart through FastAPI (`UploadFile`, `Form`): the file part is spooled
to a temporary file (on disk past 1 MB) and streamed from there into the store, so it is never held whole in
memory. `UploadRoute` enforces `max_upload_bytes` before and while the body is read (413 with the server's
envelope) and answers an unreadable form with a 400 naming `file`. What is usable training data is the file
store's business (files.py, with `tunewise check`'s rules). Knows nothing about training or models.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive

from tunewise.serve.errors import APIError
from tunewise.serve.files import FILE_ID, FileRejected, StoredFile
from tunewise.serve.jobs import TERMINAL
from tunewise.serve.openapi import answers, query
from tunewise.serve.paging import AFTER, LIMIT, MAX_LIMIT, ORDER, paged
from tunewise.serve.responses import FileDeleted, FileList, FileObject
from tunewise.serve.state import FineTuning, ServerState, State, current_state

FORM_HEADROOM = 64 * 1024  # a body may exceed the file limit by this much: the form's boundaries and headers
_TOO_LARGE = "file_too_large"


class _BodyTooLarge(StarletteHTTPException):
    """Raised from the body stream while FastAPI reads the form; FastAPI lets only HTTP exceptions through
    its body reading unchanged, and `UploadRoute` turns this one back into the envelope in `error`."""

    def __init__(self, error: APIError) -> None:
        super().__init__(error.status, error.message)
        self.error = error


def _capped(receive: Receive, limit: int) -> Receive:
    """`receive` that stops the request once its body passes `limit` bytes."""
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit + FORM_HEADROOM:
                raise _BodyTooLarge(APIError(413, f"the upload exceeds {limit:,} bytes, the most this server "
                                                  "accepts (--max-upload-bytes)", param="file", code=_TOO_LARGE))
        return message

    return capped


def _refuse_early(request: Request, limit: int) -> None:
    """What can be refused from the headers alone: a declared size over the limit, a body that is no form."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + FORM_HEADROOM:
        raise APIError(413, f"the upload has {int(declared):,} bytes; this server accepts files up to {limit:,} "
                            "bytes (--max-upload-bytes)", param="file", code=_TOO_LARGE)
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise APIError(400, "cannot read the upload: expected a multipart/form-data body (a file upload), got "
                            f"content type {content_type!r}", param="file", code="invalid_request")


class UploadRoute(APIRoute):
    """An upload route: size limit on the raw body, and form-reading failures as the server's 400 envelope."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            limit = current_state(request).config.max_upload_bytes
            _refuse_early(request, limit)
            try:
                return await handler(Request(request.scope, _capped(request.receive, limit)))
            except _BodyTooLarge as error:
                raise error.error from None
            except StarletteHTTPException as error:  # python-multipart or FastAPI could not read the form
                raise APIError(error.status_code, f"cannot read the upload: {error.detail}", param="file",
                               code="invalid_request") from None

        return limited


router = APIRouter()


def _finetuning(state: ServerState) -> FineTuning:
    assert state.finetune is not None, "the files router is mounted only with a state folder"
    return state.finetune


def file_or_404(state: ServerState, file_id: str, param: str = "file_id") -> StoredFile:
    """The stored file `file_id`, or a 404 naming `param` (an id of the wrong shape is simply not found)."""
    files = _finetuning(state).files
    record = files.get(file_id) if FILE_ID.fullmatch(file_id) else None
    if record is None:
        raise APIError(404, f"No file with id {file_id!r} on this server (GET /v1/files lists them).", param=param,
                       code="file_not_found")
    return record


async def upload(state: State, file: Annotated[UploadFile | None, File()] = None,
                 purpose: Annotated[str | None, Form()] = None) -> JSONResponse:
    if file is None:
        raise APIError(400, "no `file` part in the form; send the JSONL file as `file`", param="file",
                       code="missing_required_parameter")
    if purpose is None:
        raise APIError(400, "no `purpose` field in the form; send purpose=fine-tune", param="purpose",
                       code="missing_required_parameter")
    filename, limit = file.filename or "", state.config.max_upload_bytes
    size = file.size if file.size is not None else await asyncio.to_thread(_length, file)
    if size > limit:
        raise APIError(413, f"{filename} has {size:,} bytes; this server accepts files up to {limit:,} bytes "
                            "(--max-upload-bytes)", param="file", code=_TOO_LARGE)
    name = Path(filename.replace("\\", "/")).name or "upload.jsonl"  # a name, never a path
    await file.seek(0)
    try:  # streamed from the spooled upload into the store, in a worker thread
        record = await asyncio.to_thread(_finetuning(state).files.add, name, purpose, file.file)
    except FileRejected as error:
        raise APIError(400, error.message, param="purpose" if error.code == "invalid_purpose" else "file",
                       code=error.code) from None
    return JSONResponse(record.public())


def _length(file: UploadFile) -> int:
    file.file.seek(0, 2)
    return file.file.tell()


router.add_api_route("/v1/files", upload, methods=["POST"], route_class_override=UploadRoute, response_model=None,
                     responses=answers(FileObject, 400, 413))

_PURPOSE = ("purpose", {"type": "string"}, "Only files uploaded with this purpose.")


@router.get("/v1/files", response_model=None, responses=answers(FileList, 400),
            openapi_extra=query(_PURPOSE, LIMIT, AFTER, ORDER))
async def list_files(request: Request, state: State) -> dict[str, Any]:
    purpose = request.query_params.get("purpose")
    records = [f.public() for f in _finetuning(state).files.all() if purpose is None or f.purpose == purpose]
    return paged(records, request, default_limit=MAX_LIMIT, orderable=True)  # OpenAI's default is the maximum


@router.get("/v1/files/{file_id}", response_model=None, responses=answers(FileObject, 404))
async def get_file(file_id: str, state: State) -> dict[str, Any]:
    return file_or_404(state, file_id).public()


@router.get("/v1/files/{file_id}/content", response_class=Response,
            responses=answers(None, 404, media={"application/jsonl": {"schema": {"type": "string"}}}))
async def file_content(file_id: str, state: State) -> Response:
    file_or_404(state, file_id)
    try:
        content = await asyncio.to_thread(_finetuning(state).files.data_path(file_id).read_bytes)
    except FileNotFoundError:  # deleted between the lookup and the read
        raise APIError(404, f"File {file_id!r} was deleted (GET /v1/files lists the files).", param="file_id",
                       code="file_not_found") from None
    return Response(content, media_type="application/jsonl")


@router.delete("/v1/files/{file_id}", response_model=None, responses=answers(FileDeleted, 400, 404))
async def delete_file(file_id: str, state: State) -> dict[str, Any]:
    file_or_404(state, file_id)
    finetune = _finetuning(state)
    users = [j["id"] for j in finetune.jobs.all() if j["status"] not in TERMINAL
             and file_id in (j.get("training_file"), j.get("validation_file"))]
    if users:
        raise APIError(400, f"file {file_id} is used by unfinished fine-tuning job(s) {', '.join(users)}; cancel "
                            "them or wait for them to finish", param="file_id", code="file_in_use")
    await asyncio.to_thread(finetune.files.delete, file_id)
    return {"id": file_id, "object": "file", "deleted": True}
