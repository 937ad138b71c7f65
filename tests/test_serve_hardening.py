"""Malformed and edge-case input never gets a 500 or a plain-text answer: each case below gets a 2xx, or a 4xx
with OpenAI's error envelope naming the parameter; a stream always ends with `data: [DONE]`; an unexpected
failure is a 500 envelope whose request id is in the log; and the server stays healthy throughout.

One real server on loopback (uvicorn with tunewise's protocol class, so malformed HTTP reaches the same code a
client would) over conftest's 2-layer random Llama, fp32.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path

import httpx
import pytest

from tunewise.serve.app import build_state, create_app
from tunewise.serve.bodies import MAX_JSON_DEPTH
from tunewise.serve.config import ServeConfig
from tunewise.serve.models import Loader, build_models
from tunewise.serve.server import serve_in_thread

ENVELOPE = {"message", "type", "param", "code"}
MODEL = "@"  # replaced by the tiny model's name


@pytest.fixture(scope="module")
def live(tiny_model_dir: Path):
    """(root URL, server state, model name, the FastAPI app inside the gate) of one server for the module."""
    models = build_models(Loader("fp32", None), model=str(tiny_model_dir))
    state = build_state(models, ServeConfig(max_tokens_limit=64, api_keys_env=None))
    gate = create_app(state)
    with serve_in_thread(gate, state) as (url, _):
        yield url, state, tiny_model_dir.name, gate.app


def deep(opening: bytes, closing: bytes, levels: int, inside: bytes = b"") -> bytes:
    return opening * levels + inside + closing * levels


def raw_body(body: dict | bytes, name: str) -> bytes:
    if isinstance(body, bytes):
        return body.replace(b'"@"', json.dumps(name).encode())
    return json.dumps({**body, "model": name} if body.get("model") == MODEL else body).encode()


USER = [{"role": "user", "content": "hi there"}]
# (id, path, body (dict or raw bytes; "@" is the served model), status, param)
CASES = [
    ("empty prompt", "/v1/completions", {"model": MODEL, "prompt": "", "max_tokens": 4}, 200, None),
    ("empty prompt streamed", "/v1/completions", {"model": MODEL, "prompt": "", "stream": True}, 200, None),
    ("list of empty prompts", "/v1/completions", {"model": MODEL, "prompt": ["", ""], "max_tokens": 4}, 200, None),
    ("one empty prompt of two", "/v1/completions", {"model": MODEL, "prompt": ["hi", ""], "max_tokens": 4}, 200,
     None),
    ("list of empty prompts streamed", "/v1/completions",
     {"model": MODEL, "prompt": ["", ""], "max_tokens": 4, "stream": True}, 200, None),
    ("empty prompt sampled", "/v1/completions", {"model": MODEL, "prompt": "", "temperature": 1, "max_tokens": 4},
     200, None),
    ("lone surrogate in content", "/v1/chat/completions",
     b'{"model": "@", "messages": [{"role": "user", "content": "x\\ud800y"}], "max_tokens": 2}', 400,
     "messages.0.content"),
    ("lone low surrogate in a prompt", "/v1/completions", b'{"model": "@", "prompt": ["ok", "\\udfffz"]}', 400,
     "prompt.1"),
    ("lone surrogate streamed", "/v1/chat/completions",
     b'{"model": "@", "stream": true, "messages": [{"role": "user", "content": "\\ud83d"}]}', 400,
     "messages.0.content"),
    ("a surrogate pair is fine", "/v1/chat/completions",
     b'{"model": "@", "messages": [{"role": "user", "content": "\\ud83d\\ude00"}], "max_tokens": 2}', 200, None),
    ("100,000 [ in messages", "/v1/chat/completions",
     b'{"model": "@", "messages": ' + deep(b"[", b"]", 100_000) + b"}", 400, "messages"),
    ("5,000 { in a message", "/v1/chat/completions",
     b'{"model": "@", "messages": [{"role": "user", "content": ' + deep(b'{"a": ', b"}", 5_000, b"1") + b"}]}",
     400, "messages"),
    ("nesting at the top", "/v1/completions", deep(b"[", b"]", 50_000), 400, None),
    ("brackets inside strings do not count", "/v1/chat/completions",
     {"model": MODEL, "messages": [{"role": "user", "content": "[{" * 150}], "max_tokens": 2}, 200, None),
    ("just past the depth limit", "/v1/completions",
     b'{"model": "@", "prompt": "x", "metadata": ' + deep(b"[", b"]", MAX_JSON_DEPTH) + b"}", 400, "metadata"),
    ("temperature 1e-45", "/v1/chat/completions", {"model": MODEL, "messages": USER, "temperature": 1e-45,
                                                   "max_tokens": 4}, 200, None),
    ("temperature 1e-300", "/v1/completions", {"model": MODEL, "prompt": "a b", "temperature": 1e-300,
                                               "max_tokens": 4}, 200, None),
    ("temperature 1e-45 streamed", "/v1/chat/completions", {"model": MODEL, "messages": USER, "temperature": 1e-45,
                                                            "max_tokens": 4, "stream": True}, 200, None),
    ("temperature 5e-324 seeded", "/v1/completions", {"model": MODEL, "prompt": "a", "temperature": 5e-324,
                                                      "seed": 3, "max_tokens": 4}, 200, None),
    ("temperature at the floor samples", "/v1/chat/completions",
     {"model": MODEL, "messages": USER, "temperature": 1e-3, "seed": 1, "max_tokens": 4}, 200, None),
    ("temperature 2 samples", "/v1/completions", {"model": MODEL, "prompt": "a", "temperature": 2, "max_tokens": 4},
     200, None),
    ("temperature overflowing to inf", "/v1/chat/completions",
     b'{"model": "@", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e999}', 400, "temperature"),
    ("negative temperature", "/v1/completions", {"model": MODEL, "prompt": "a", "temperature": -1e-45}, 400,
     "temperature"),
    ("a 5,000-digit max_tokens", "/v1/completions", b'{"model": "@", "prompt": "a", "max_tokens": 1' + b"0" * 5000
     + b"}", 400, None),
    ("max_tokens over the limit", "/v1/completions", {"model": MODEL, "prompt": "a", "max_tokens": 65}, 400,
     "max_tokens"),
    ("seed out of range", "/v1/completions", {"model": MODEL, "prompt": "a", "seed": 2**64}, 400, "seed"),
    ("empty model name", "/v1/completions", {"model": "", "prompt": "a"}, 400, "model"),
    ("empty messages", "/v1/chat/completions", {"model": MODEL, "messages": []}, 400, "messages"),
    ("empty content", "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": ""}],
                                               "max_tokens": 2}, 200, None),
    ("empty content parts", "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": []}],
                                                     "max_tokens": 2}, 200, None),
    ("NUL characters", "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "\x00"}],
                                                "max_tokens": 2}, 200, None),
    ("empty classify input", "/v1/classify", {"model": MODEL, "input": "", "labels": ["a", "b"]}, 200, None),
    ("lone surrogate in a label", "/v1/classify", b'{"model": "@", "input": "x", "labels": ["a", "\\ud800"]}', 400,
     "labels.1"),
    ("a body that is a string", "/v1/completions", b'"hello"', 400, None),
    # a union field's error names the field the client sent, not pydantic's member (`stop.str`)
    ("stop as a number", "/v1/completions", {"model": MODEL, "prompt": "a", "stop": 5}, 400, "stop"),
    ("stop list with null", "/v1/completions", {"model": MODEL, "prompt": "a", "stop": [None]}, 400, "stop.0"),
    ("prompt null", "/v1/completions", {"model": MODEL, "prompt": None}, 400, "prompt"),
    ("classify input a number", "/v1/classify", {"model": MODEL, "input": 5, "labels": ["a", "b"]}, 400, "input"),
    ("a text part without text", "/v1/chat/completions",
     {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "text"}]}]}, 400,
     "messages.0.content.0.text"),
    ("invalid UTF-8", "/v1/completions", b'{"model": "\xff"}', 400, None),
]


def check(response: httpx.Response, status: int, param: str | None, case: str) -> None:
    assert response.status_code == status, (case, response.status_code, response.text[:300])
    assert response.headers["x-request-id"].startswith("req_")
    if status >= 400:
        assert response.headers["content-type"] == "application/json", (case, response.headers)
        error = response.json()["error"]
        assert set(error) == ENVELOPE and error["message"], (case, error)
        assert error["param"] == param, (case, error)
    elif response.headers["content-type"].startswith("text/event-stream"):
        events = [block for block in response.text.split("\n\n") if block]
        assert events[-1] == "data: [DONE]", (case, events[-3:])
        assert not any('"error"' in block for block in events), (case, events)
    else:
        assert "choices" in response.json() or response.json()["object"] == "list", case


@pytest.mark.parametrize("case, path, body, status, param", CASES, ids=[c[0] for c in CASES])
def test_malformed_input_gets_a_2xx_or_a_4xx_envelope_naming_the_parameter(live, case, path, body, status, param):
    url, _, name, _ = live
    with httpx.Client(base_url=url, timeout=60) as http:
        response = http.post(path, content=raw_body(body, name), headers={"content-type": "application/json"})
        check(response, status, param, case)
        assert http.get("/health").status_code == 200


def raw_request(url: str, head: bytes, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send bytes no HTTP client would send; the status, headers and body of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + b"\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    header_block, _, payload = data.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, payload


BAD_HTTP = [  # (id, request head, param)
    ("Content-Length not a number", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc",
     "Content-Length"),
    ("negative Content-Length", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -1", "Content-Length"),
    ("two Content-Lengths that disagree",
     b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3", "Content-Length"),
    ("a header without a colon", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nbroken header", None),
    ("not HTTP at all", b"HELLO", None),
]


@pytest.mark.parametrize("case, head, param", BAD_HTTP, ids=[c[0] for c in BAD_HTTP])
def test_malformed_http_gets_the_envelope_not_plain_text(live, case, head, param):
    url = live[0]
    status, headers, payload = raw_request(url, head, b"{}")
    assert status == 400 and headers["content-type"] == "application/json", (case, headers, payload)
    error = json.loads(payload)["error"]
    assert set(error) == ENVELOPE and error["param"] == param and error["code"] == "invalid_request", error
    assert httpx.get(f"{url}/health").status_code == 200


def test_a_body_shorter_than_its_content_length_is_refused_cleanly(live):
    url = live[0]
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"model\"")
        sock.shutdown(socket.SHUT_WR)  # the client gives up half-way through its body
        sock.recv(65536)
    assert httpx.get(f"{url}/health").status_code == 200


def test_an_unexpected_exception_is_a_500_envelope_with_the_request_id_in_the_log(live, caplog):
    url, _, _, app = live

    async def boom() -> None:
        raise ZeroDivisionError("a bug")

    app.add_api_route("/v1/boom", boom, methods=["GET"])
    with caplog.at_level(logging.ERROR, logger="tunewise.serve"):
        response = httpx.get(f"{url}/v1/boom", timeout=30)
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    request_id = response.headers["x-request-id"]
    assert set(error) == ENVELOPE and error["code"] == "internal_error" and request_id in error["message"]
    assert "ZeroDivisionError" in error["message"]
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert httpx.get(f"{url}/health").status_code == 200


def test_a_generation_that_fails_mid_stream_ends_with_an_error_event_and_done(live, monkeypatch):
    url, state, name, _ = live
    lm = state.models[name].engine.lm

    def broken(prompts, *, on_tokens=None, **settings):
        if on_tokens is not None:
            on_tokens(0, lm.tokenizer("Hello", add_special_tokens=False)["input_ids"], False)
        raise RuntimeError("the model fell over")

    monkeypatch.setattr(lm, "generate", broken)
    body = {"model": name, "messages": [{"role": "user", "content": "fail please"}], "max_tokens": 4,
            "stream": True, "temperature": 0.5}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200
    events = [block for block in response.text.split("\n\n") if block]
    assert events[-1] == "data: [DONE]"
    error = json.loads(events[-2].removeprefix("data: "))["error"]
    assert set(error) == ENVELOPE and error["code"] == "internal_error"
    plain = httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": False}, timeout=30)
    assert plain.status_code == 500 and plain.json()["error"]["code"] == "internal_error"
    monkeypatch.undo()
    assert httpx.get(f"{url}/health").status_code == 200
    assert httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": False}, timeout=30).status_code == 200



def test_an_empty_prompt_is_continued_from_the_start_of_text_as_openai_does(live):
    url, state, name, _ = live
    tokenizer = state.models[name].engine.lm.tokenizer
    start = tokenizer.bos_token or tokenizer.eos_token
    body = {"model": name, "max_tokens": 4, "temperature": 0}
    empty = httpx.post(f"{url}/v1/completions", json={**body, "prompt": ["", ""]}, timeout=30).json()
    explicit = httpx.post(f"{url}/v1/completions", json={**body, "prompt": start}, timeout=30).json()
    assert [c["text"] for c in empty["choices"]] == [explicit["choices"][0]["text"]] * 2
    assert empty["usage"]["prompt_tokens"] == 2 * explicit["usage"]["prompt_tokens"] == 2


def test_abort_fails_waiting_requests_and_stops_a_running_generation_at_its_next_step(live):
    from tunewise.serve.batching import Stopping

    _, state, name, _ = live
    fresh = build_state(list(state.models.values()), ServeConfig(api_keys_env=None, max_wait_ms=0))
    try:
        running = fresh.batcher.submit(("generate", name, 400, 0.0, None), "Once upon a time")
        deadline = time.monotonic() + 30
        while not running.running():
            assert time.monotonic() < deadline
            time.sleep(0.005)
        waiting = fresh.batcher.submit(("generate", name, 400, 0.5, None), "Another story")
        assert fresh.batcher.abort() == 1
        for future in (waiting, running):
            with pytest.raises(Stopping):
                future.result(timeout=30)
        assert fresh.batcher.depth() == 0
        with pytest.raises(Stopping):
            fresh.batcher.submit(("generate", name, 4, 0.0, None), "too late")
    finally:
        fresh.close()


def test_abort_while_a_batch_window_is_open_leaves_the_batcher_alive():
    """abort() empties the queue under the window's feet: the batcher thread must not crash, and serves on."""

    from tunewise.serve.batching import MicroBatcher

    batcher = MicroBatcher(lambda key, payloads: list(payloads), max_batch=8, max_wait_s=2, max_queue=10)
    try:
        waiting = batcher.submit("k", 1)
        time.sleep(0.3)  # inside the 2 s window
        assert batcher.abort() == 1
        with pytest.raises(Exception, match="stopped"):
            waiting.result(timeout=5)
        batcher.aborting.clear()
        assert batcher.submit("k", 2).result(timeout=10) == 2
    finally:
        batcher.close()
