"""Route logic without uvicorn: each router mounted alone on a bare FastAPI app over a tiny server state, driven
by Starlette's TestClient in process; and the SSE encoding and the event-stream driver on their own.

The models here are stand-ins where the route does not need a language model (a classical "model" whose
scores are fixed; no model at all for uploads), and conftest's 2-layer random Llama where it does.
"""

from __future__ import annotations

import asyncio
import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from tunewise.serve import (
    routes_chat,
    routes_classify,
    routes_files,
    routes_health,
    routes_models,
)
from tunewise.serve.answering import Answer
from tunewise.serve.app import create_app, install_error_handlers
from tunewise.serve.config import ServeConfig
from tunewise.serve.event_stream import event_stream
from tunewise.serve.files import COPY_CHUNK, FileStore
from tunewise.serve.jobs import JobStore
from tunewise.serve.models import ServedModel
from tunewise.serve.sse import DONE, chat_frames, completion_frames, pieces, sse
from tunewise.serve.state import FineTuning, ServerState, build_state

LABELS = ["business", "sports"]


class KeywordScores:
    """A classical model's stand-in: "goal" means sports; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def predict_scores(self, examples: list) -> list[dict[str, float]]:
        self.calls += 1
        return [{"business": 0.2, "sports": 0.8} if "goal" in e.messages[0].content else
                {"business": 0.9, "sports": 0.1} for e in examples]


def keyword_model() -> ServedModel:
    return ServedModel(name="topics", kind="classical", identity={"test": "topics"}, owned_by="tunewise-arm",
                       classical=KeywordScores(), labels=list(LABELS), description="keyword stand-in")


@contextmanager
def tiny_state(models: list[ServedModel], **settings) -> Iterator[ServerState]:
    state = build_state(models, ServeConfig(api_keys_env=None, **settings))
    try:
        yield state
    finally:
        state.close()


def router_app(state: ServerState, *routers: APIRouter) -> FastAPI:
    """A bare app with only `routers`, the error envelopes and `state` (no gate, no other routes)."""
    app = FastAPI()
    app.state.tunewise = state
    install_error_handlers(app, state)
    for router in routers:
        app.include_router(router)
    return app


def events(raw: bytes) -> list:
    """The `data:` payloads of an SSE body, JSON-decoded ("[DONE]" kept as text)."""
    blocks = [b for b in raw.decode().split("\n\n") if b]
    assert all(b.startswith("data: ") for b in blocks), raw
    return [b[6:] if b[6:] == "[DONE]" else json.loads(b[6:]) for b in blocks]


# ---------------------------------------------------------------- SSE encoding alone


def test_sse_encoder_frames_chat_and_completion_chunks_exactly():
    assert sse({"a": "é"}) == 'data: {"a": "é"}\n\n'.encode()
    assert DONE == b"data: [DONE]\n\n"
    frame, usage_frame = chat_frames("m", "chatcmpl-1", 7, include_usage=True)
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m",
            "system_fingerprint": None}
    assert json.loads(frame(0, "", None)[6:]) == base | {"usage": None, "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None, "logprobs": None}]}
    assert json.loads(frame(1, "hi", None)[6:])["choices"] == [
        {"index": 1, "delta": {"content": "hi"}, "finish_reason": None, "logprobs": None}]
    assert json.loads(frame(0, None, "stop")[6:])["choices"][0]["delta"] == {}
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert json.loads(usage_frame(usage)[6:]) == base | {"choices": [], "usage": usage}
    frame, _ = chat_frames("m", "chatcmpl-1", 7, include_usage=False)
    assert "usage" not in json.loads(frame(0, "x", None)[6:])

    frame, usage_frame = completion_frames("m", "cmpl-1", 7, include_usage=False)
    assert frame(0, "", None) == b""  # the legacy protocol has no opening event
    assert json.loads(frame(2, "once", None)[6:]) == {"id": "cmpl-1", "object": "text_completion", "created": 7,
                                                      "model": "m", "choices": [{"index": 2, "text": "once",
                                                      "finish_reason": None, "logprobs": None}]}
    assert json.loads(frame(2, None, "length")[6:])["choices"][0] == {
        "index": 2, "text": "", "finish_reason": "length", "logprobs": None}


def test_word_pieces_rejoin_to_the_text():
    for text in ("the  cat sat ", " leading", "one", "", "ünï cödé  ✓"):
        assert "".join(pieces(text)) == text
    assert pieces("the cat  sat") == ["the", " cat", "  sat"]


def test_event_stream_interleaves_whole_answers_then_usage_and_done():
    with tiny_state([]) as state:
        answers = [Answer("red fox", 4, 2, "stop"), Answer("blue", 3, 1, "length")]
        frame, usage_frame = completion_frames("m", "cmpl-x", 1, include_usage=True)
        filed: list[int] = []

        async def after(index: int, done: Answer) -> None:
            filed.append(index)  # only live answers are filed after the stream; these came whole

        async def collect() -> bytes:
            return b"".join([chunk async for chunk in event_stream(state, answers, frame, usage_frame, after)])

        got = events(asyncio.run(collect()))
    assert got[-1] == "[DONE]" and filed == []
    assert got[-2]["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    texts, finishes = ["", ""], [None, None]
    for event in got[:-2]:
        for choice in event["choices"]:
            texts[choice["index"]] += choice["text"]
            finishes[choice["index"]] = choice["finish_reason"] or finishes[choice["index"]]
    assert texts == ["red fox", "blue"] and finishes == ["stop", "length"]


# ---------------------------------------------------------------- one router each, in process


def test_models_router_alone_lists_and_finds_models():
    with tiny_state([keyword_model()]) as state, TestClient(router_app(state, routes_models.router)) as http:
        listed = http.get("/v1/models").json()
        assert [m["id"] for m in listed["data"]] == ["topics"]
        card = http.get("/v1/models/topics").json()
        assert card == {"id": "topics", "object": "model", "created": int(state.started), "owned_by": "tunewise-arm",
                        "tunewise": {"kind": "classical", "labels": LABELS, "description": "keyword stand-in"}}
        missing = http.get("/v1/models/nope")
        assert missing.status_code == 404
        assert missing.json()["error"] == {"message": "The model 'nope' does not exist here. Served: topics "
                                                      "(GET /v1/models).", "type": "invalid_request_error",
                                           "param": "model", "code": "model_not_found"}


def test_classify_router_alone_labels_caches_and_refuses_other_labels():
    model = keyword_model()
    with tiny_state([model]) as state, TestClient(router_app(state, routes_classify.router)) as http:
        first = http.post("/v1/classify", json={"model": "topics", "input": ["a goal today", "shares fell"]}).json()
        assert [row["label"] for row in first["data"]] == ["sports", "business"]
        assert first["data"][0]["probabilities"] == {"business": 0.2, "sports": 0.8}
        assert all("cached" not in row for row in first["data"]) and first["usage"]["prompt_tokens"] == 0
        calls = model.classical.calls
        again = http.post("/v1/classify", json={"model": "topics", "input": "a goal today"}).json()
        assert again["data"][0]["cached"] == "exact" and model.classical.calls == calls
        wrong = http.post("/v1/classify", json={"model": "topics", "input": "x", "labels": ["a", "b"]})
        assert (wrong.status_code, wrong.json()["error"]["param"]) == (400, "labels")
        bad = http.post("/v1/classify", content=b"[1]", headers={"content-type": "application/json"})
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_json")
        big = http.post("/v1/classify", json={"model": "topics", "input": "x" * 2_000_000})
        assert (big.status_code, big.json()["error"]["code"]) == (413, "request_too_large")


def test_health_router_reports_ready_then_draining():
    with tiny_state([keyword_model()]) as state, TestClient(router_app(state, routes_health.router)) as http:
        assert http.get("/health").json() == {"status": "ok"}
        assert http.get("/ready").json() == {"status": "ready", "models": ["topics"]}
        state.draining = True
        draining = http.get("/ready")
        assert draining.status_code == 503 and draining.json()["error"]["code"] == "shutting_down"
        assert "tunewise_requests" in http.get("/metrics").text


def test_the_gate_checks_keys_and_refuses_work_while_draining(tmp_path):
    key = "gate-key-0123456789"
    (tmp_path / "keys").write_text(key + "\n")
    with tiny_state([keyword_model()], api_key_file=tmp_path / "keys") as state, \
            TestClient(create_app(state)) as http:
        refused = http.get("/v1/models")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
        assert http.get("/health").status_code == 200
        assert http.get("/metrics").status_code == 401
        auth = {"authorization": f"Bearer {key}"}
        assert http.get("/v1/models", headers=auth).status_code == 200
        state.draining = True
        late = http.get("/v1/models", headers=auth)
        assert (late.status_code, late.headers["retry-after"], late.json()["error"]["code"]) == \
            (503, "1", "shutting_down")
        assert http.get("/metrics", headers=auth).status_code == 200
        assert state.in_flight == 0


def test_without_a_state_folder_the_files_api_says_how_to_turn_it_on():
    with tiny_state([keyword_model()]) as state, TestClient(create_app(state)) as http:
        for response in (http.get("/v1/files"), http.post("/v1/fine_tuning/jobs", json={})):
            assert response.status_code == 404 and response.json()["error"]["code"] == "finetuning_disabled"


# ---------------------------------------------------------------- uploads (python-multipart)


class IdleTuner:
    def close(self) -> None:
        pass


ROWS = [{"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "blue"}]}
        for i in range(12)]
GOOD = "".join(json.dumps(r) + "\n" for r in ROWS).encode()


@contextmanager
def files_client(tmp_path: Path, **settings) -> Iterator[tuple[TestClient, ServerState]]:
    with tiny_state([], **settings) as state:
        state.finetune = FineTuning(FileStore(tmp_path / "files"), JobStore(tmp_path / "jobs"), IdleTuner())  # type: ignore[arg-type]
        with TestClient(router_app(state, routes_files.router)) as http:
            yield http, state


def multipart(boundary: str, parts: list[tuple[str, str | None, bytes]]) -> bytes:
    """A multipart/form-data body: (name, filename or None for a plain field, content) per part."""
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_an_upload_is_spooled_checked_stored_and_served_back_byte_for_byte(tmp_path):
    content = GOOD.replace(b"\n", b"\r\n", 1)  # bytes come back exactly as sent, CRLF included
    with files_client(tmp_path) as (http, state):
        store = state.finetune.files
        received: list[type] = []
        original = store.add

        def spy(name, purpose, source):
            received.append(type(source))
            return original(name, purpose, source)

        store.add = spy  # type: ignore[method-assign]
        response = http.post("/v1/files", files={"file": ("dir\\colours.jsonl", content)},
                             data={"purpose": "fine-tune"})
        assert response.status_code == 200, response.text
        record = response.json()
        assert (record["filename"], record["bytes"], record["purpose"]) == ("colours.jsonl", len(content), "fine-tune")
        assert received == [tempfile.SpooledTemporaryFile]  # handed over as the spooled file, not as bytes
        assert http.get(f"/v1/files/{record['id']}/content").content == content
        assert [f["id"] for f in http.get("/v1/files").json()["data"]] == [record["id"]]
        assert http.delete(f"/v1/files/{record['id']}").json()["deleted"] is True
        assert http.get(f"/v1/files/{record['id']}").json()["error"]["code"] == "file_not_found"


def test_the_store_copies_an_upload_in_chunks(tmp_path):
    class ChunksOnly(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            assert size is not None and 0 < size <= COPY_CHUNK, f"read whole ({size})"
            return super().read(size)

    record = FileStore(tmp_path).add("a.jsonl", "fine-tune", ChunksOnly(GOOD))
    assert record.bytes == len(GOOD) and (tmp_path / f"{record.id}.jsonl").read_bytes() == GOOD


def test_uploads_are_refused_with_the_same_envelopes_as_before(tmp_path):
    limit = 4096
    with files_client(tmp_path, max_upload_bytes=limit) as (http, _):
        def post(**kwargs) -> tuple[int, dict]:
            response = http.post("/v1/files", **kwargs)
            return response.status_code, response.json()["error"]

        status, error = post(files={"file": ("a.jsonl", GOOD)})
        assert (status, error["param"], error["code"]) == (400, "purpose", "missing_required_parameter")
        assert error["message"] == "no `purpose` field in the form; send purpose=fine-tune"
        status, error = post(data={"purpose": "fine-tune"}, files={"other": ("a.jsonl", GOOD)})
        assert (status, error["param"], error["code"]) == (400, "file", "missing_required_parameter")
        assert error["message"] == "no `file` part in the form; send the JSONL file as `file`"
        status, error = post(content=b"not a form", headers={"content-type": "text/plain"})
        assert (status, error["param"], error["code"]) == (400, "file", "invalid_request")
        assert error["message"] == ("cannot read the upload: expected a multipart/form-data body (a file upload), "
                                    "got content type 'text/plain'")
        status, error = post(content=b"--x\r\nno headers", headers={"content-type": "multipart/form-data"})
        assert (status, error["param"], error["code"]) == (400, "file", "invalid_request")
        assert error["message"].startswith("cannot read the upload: ")
        status, error = post(files={"file": ("a.jsonl", GOOD)}, data={"purpose": "assistants"})
        assert (status, error["param"], error["code"]) == (400, "purpose", "invalid_purpose")

        # over the limit: by the declared length, by the streamed body, and by the file part itself
        status, error = post(files={"file": ("big.jsonl", b"x" * 80_000)}, data={"purpose": "fine-tune"})
        assert (status, error["param"], error["code"]) == (413, "file", "file_too_large")
        assert error["message"].startswith("the upload has ") and error["message"].endswith(
            "bytes; this server accepts files up to 4,096 bytes (--max-upload-bytes)")
        body = multipart("b0und", [("purpose", None, b"fine-tune"), ("file", "big.jsonl", b"x" * 80_000)])
        status, error = post(content=iter([body[i:i + 8192] for i in range(0, len(body), 8192)]),
                             headers={"content-type": "multipart/form-data; boundary=b0und"})
        assert (status, error["code"]) == (413, "file_too_large")
        assert error["message"] == "the upload exceeds 4,096 bytes, the most this server accepts (--max-upload-bytes)"
        status, error = post(files={"file": ("near.jsonl", b"x" * (limit + 1))}, data={"purpose": "fine-tune"})
        assert (status, error["code"]) == (413, "file_too_large")
        assert error["message"] == ("near.jsonl has 4,097 bytes; this server accepts files up to 4,096 bytes "
                                    "(--max-upload-bytes)")
        assert http.get("/v1/files").json()["data"] == []  # nothing kept


# ---------------------------------------------------------------- chat with a real (tiny) model, in process


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> list[ServedModel]:
    from tunewise.serve.models import Loader, build_models

    return build_models(Loader("fp32", None), model=str(tiny_model_dir))


def test_chat_router_alone_answers_whole_and_streamed_alike(tiny):
    name = tiny[0].name
    body = {"model": name, "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 6, "temperature": 0}
    with tiny_state(tiny, cache_size=0) as state, TestClient(router_app(state, routes_chat.router)) as http:
        whole = http.post("/v1/chat/completions", json=body).json()
        assert whole["object"] == "chat.completion" and whole["usage"]["completion_tokens"] == 6
        streamed = http.post("/v1/chat/completions", json=body | {"stream": True,
                                                                   "stream_options": {"include_usage": True}})
        assert streamed.headers["content-type"].startswith("text/event-stream")
        assert streamed.headers["cache-control"] == "no-cache"
        got = events(streamed.content)
        assert got[-1] == "[DONE]" and got[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in got[:-1] if e["choices"])
        assert text == whole["choices"][0]["message"]["content"]
        assert got[-2]["usage"] == whole["usage"]
        completion = http.post("/v1/completions", json={"model": name, "prompt": ["a", "b"], "max_tokens": 3,
                                                        "temperature": 0}).json()
        assert [c["index"] for c in completion["choices"]] == [0, 1]
        assert completion["usage"]["completion_tokens"] == 6


def test_an_upload_with_a_lone_surrogate_is_a_400_naming_the_line(tmp_path):
    """A \\ud800 escape alone decodes to no character: the file is refused, line and field named, never a 500."""
    content = b'{"prompt": "\\ud800", "completion": "y"}\n' * 12
    with files_client(tmp_path) as (http, _):
        response = http.post("/v1/files", files={"file": ("odd.jsonl", content)}, data={"purpose": "fine-tune"})
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "surrogate" in message and "1" in message


def test_an_empty_upload_is_named_by_its_own_name_and_a_vanished_file_is_a_404(tmp_path):
    with files_client(tmp_path) as (http, state):
        empty = http.post("/v1/files", files={"file": ("mine.jsonl", b"")}, data={"purpose": "fine-tune"})
        assert empty.status_code == 400 and "mine.jsonl" in empty.json()["error"]["message"]
        assert "file-" not in empty.json()["error"]["message"]
        record = http.post("/v1/files", files={"file": ("colours.jsonl", GOOD)}, data={"purpose": "fine-tune"}).json()
        state.finetune.files.data_path(record["id"]).unlink()  # as a concurrent DELETE would, mid-request
        gone = http.get(f"/v1/files/{record['id']}/content")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "file_not_found"


def test_the_probes_answer_head():
    with tiny_state([keyword_model()]) as state, TestClient(router_app(state, routes_health.router)) as http:
        for path in ("/health", "/ready"):
            response = http.head(path)
            assert response.status_code == 200 and response.content == b""
