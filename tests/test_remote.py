"""RemoteLM against a real OpenAI-compatible HTTP server on loopback, through the real `openai` client.

Timeouts and backoffs are tiny so the whole file runs in seconds; what is checked is behaviour the server can
see (request counts, concurrency, bodies) and what the caller gets back.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import openai
import pytest
from openai_loopback import MODEL, LoopbackError, ServerStats, serve

from tunewise.models.remote import RemoteError, RemoteFailure, RemoteLM
from tunewise.schema import Generation

KEY_VAR = "TUNEWISE_TEST_REMOTE_KEY"


def ask(text: str) -> list[dict]:
    return [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": text}]


def echo(messages: list[dict]) -> str:
    """Keyword rules would do; echoing the question makes the order of answers checkable."""
    return f"answer to {messages[-1]['content']}"


def lm(base_url: str, **options) -> RemoteLM:
    options = {"api_key_env": None, "concurrency": 4, "timeout_s": 5, "retries": 4, "backoff_s": 0.001} | options
    return RemoteLM(base_url, MODEL, **options)


def test_answers_come_back_in_input_order_with_usage_and_parameters() -> None:
    stats = ServerStats()
    questions = [f"q{i}" for i in range(8)]
    # Earlier prompts answer later, so completion order is the reverse of input order.
    slow_first = lambda messages: 0.01 * (8 - int(messages[-1]["content"][1:]))  # noqa: E731
    ticks: list[int] = []
    with serve(echo, stats=stats, delay=slow_first) as base_url:
        results = lm(base_url).chat(
            [ask(q) for q in questions], max_tokens=16, temperature=0.3, seed=7, progress=ticks.append
        )
    assert [r.text for r in results] == [f"answer to {q}" for q in questions]
    assert all(isinstance(r, Generation) and not r.cached and r.latency_s > 0 for r in results)
    assert [(r.prompt_tokens, r.completion_tokens) for r in results] == [(3, 3)] * 8  # "Answer briefly." + "qN"
    assert ticks == [1] * 8
    assert stats.requests == 8
    body = stats.bodies[0]
    assert (body["model"], body["max_tokens"], body["temperature"], body["seed"]) == (MODEL, 16, 0.3, 7)


def test_only_role_and_content_are_sent() -> None:
    stats = ServerStats()
    with serve(echo, stats=stats) as base_url:
        lm(base_url).chat([[{"role": "user", "content": "hi", "weight": 0}]])
    assert stats.bodies[0]["messages"] == [{"role": "user", "content": "hi"}]
    assert "seed" not in stats.bodies[0]


def test_absent_usage_is_recorded_as_zero() -> None:
    with serve(echo, usage=False) as base_url:
        [result] = lm(base_url).chat([ask("q")])
    assert isinstance(result, Generation)
    assert (result.text, result.prompt_tokens, result.completion_tokens) == ("answer to q", 0, 0)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_bound_is_respected(concurrency: int) -> None:
    stats = ServerStats()
    with serve(echo, stats=stats, delay=0.03) as base_url:
        results = lm(base_url, concurrency=concurrency).chat([ask(f"q{i}") for i in range(9)])
    assert all(isinstance(r, Generation) for r in results)
    assert stats.max_in_flight <= concurrency
    if concurrency > 1:
        assert stats.max_in_flight > 1


@pytest.mark.parametrize("status", [429, 500])
def test_transient_errors_are_retried_until_answered(status: int) -> None:
    stats = ServerStats()
    with serve(echo, stats=stats, fail_first=5, fail_status=status) as base_url:
        results = lm(base_url, concurrency=2, retries=4).chat([ask(f"q{i}") for i in range(3)])
    assert [r.text for r in results] == ["answer to q0", "answer to q1", "answer to q2"]
    assert stats.requests == 3 + 5


def test_retry_after_is_honoured() -> None:
    stats = ServerStats()
    with serve(echo, stats=stats, fail_first=1, fail_status=429, retry_after=0.3) as base_url:
        started = time.perf_counter()
        [result] = lm(base_url, backoff_s=0.001).chat([ask("q")])
        elapsed = time.perf_counter() - started
    assert isinstance(result, Generation)
    assert stats.requests == 2
    assert elapsed >= 0.3


def test_exhausted_retries_give_a_failure_per_prompt_not_an_exception() -> None:
    stats = ServerStats()
    with serve(echo, stats=stats, fail_first=1000, fail_status=500) as base_url:
        results = lm(base_url, retries=2).chat([ask("a"), ask("b")])
    assert all(isinstance(r, RemoteFailure) and r.attempts == 3 for r in results)
    assert "HTTP 500: The server had an error." in results[0].error
    assert stats.requests == 2 * 3


def test_a_timeout_fails_that_prompt_after_retries_and_the_others_are_answered() -> None:
    stats = ServerStats()
    slow = lambda messages: 0.5 if messages[-1]["content"] == "slow" else 0.0  # noqa: E731
    with serve(echo, stats=stats, delay=slow) as base_url:
        results = lm(base_url, timeout_s=0.1, retries=1).chat([ask("a"), ask("slow"), ask("c")])
    assert [r.text for r in (results[0], results[2])] == ["answer to a", "answer to c"]
    failure = results[1]
    assert isinstance(failure, RemoteFailure)
    assert failure.attempts == 2 and "timed out" in failure.error
    assert stats.requests == 3 + 1


def test_a_bad_request_fails_fast_with_the_servers_message() -> None:
    def strict(messages: list[dict]) -> str:
        if messages[-1]["content"] == "huge":
            raise LoopbackError(400, "This model's maximum context length is 8 tokens.", "context_length_exceeded")
        return echo(messages)

    stats = ServerStats()
    with serve(strict, stats=stats) as base_url:
        results = lm(base_url).chat([ask("a"), ask("huge"), ask("c")])
    assert results[1] == RemoteFailure("HTTP 400: This model's maximum context length is 8 tokens.", 1)
    assert [results[0].text, results[2].text] == ["answer to a", "answer to c"]
    assert stats.requests == 3


def test_an_unreachable_endpoint_fails_each_prompt_after_retries() -> None:
    with socket.socket() as sock:  # a port nothing listens on once the socket closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    results = lm(f"http://127.0.0.1:{port}/v1", retries=1).chat([ask("a")])
    assert isinstance(results[0], RemoteFailure)
    assert results[0].attempts == 2 and "could not connect" in results[0].error


def test_a_wrong_key_aborts_the_call_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VAR, "sk-wrong-secret")
    stats = ServerStats()
    with serve(echo, stats=stats, api_key="sk-right") as base_url:
        with pytest.raises(RemoteError) as raised:
            lm(base_url, api_key_env=KEY_VAR, concurrency=2).chat([ask(f"q{i}") for i in range(10)])
    message = str(raised.value)
    assert base_url in message and MODEL in message and KEY_VAR in message and "401" in message
    assert "sk-wrong-secret" not in message
    assert stats.requests <= 2  # no retries, and no prompt started after the first rejection


def test_the_right_key_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VAR, "sk-right")
    with serve(echo, api_key="sk-right") as base_url:
        [result] = lm(base_url, api_key_env=KEY_VAR).chat([ask("q")])
    assert isinstance(result, Generation)


def test_an_unknown_model_aborts_the_call_with_the_fix() -> None:
    stats = ServerStats()
    with serve(echo, stats=stats) as base_url:
        with pytest.raises(RemoteError) as raised:
            RemoteLM(base_url, "gpt-nope", api_key_env=None, backoff_s=0.001).chat([ask("q")] * 3)
    message = str(raised.value)
    assert "gpt-nope" in message and base_url in message and "/models" in message and "/v1" in message
    assert stats.requests <= 3


def test_a_missing_key_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_VAR, raising=False)
    with pytest.raises(RemoteError, match=f"{KEY_VAR} is not set.*api_key_env"):
        RemoteLM("http://127.0.0.1:1/v1", MODEL, api_key_env=KEY_VAR)


def test_invalid_settings_are_all_reported() -> None:
    with pytest.raises(ValueError, match="concurrency.*retries"):
        RemoteLM("http://127.0.0.1:1/v1", MODEL, api_key_env=None, concurrency=0, retries=-1)


def test_describe_and_repr_never_hold_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VAR, "sk-very-secret")
    remote = RemoteLM("http://127.0.0.1:1/v1", MODEL, api_key_env=KEY_VAR, concurrency=2)
    described = remote.describe()
    assert described["base_url"] == "http://127.0.0.1:1/v1" and described["model"] == MODEL
    assert described["api_key_env"] == KEY_VAR and described["concurrency"] == 2
    assert "sk-very-secret" not in json.dumps(described) + repr(remote)


def test_chat_works_when_called_from_inside_an_event_loop() -> None:
    with serve(echo) as base_url:
        remote = lm(base_url)

        async def from_async_code() -> list:
            return remote.chat([ask("q")])

        [result] = asyncio.run(from_async_code())
    assert result.text == "answer to q"


def test_no_prompts_make_no_requests() -> None:
    assert lm("http://127.0.0.1:1/v1").chat([]) == []


def test_loopback_server_speaks_openai_shapes() -> None:
    """The helper itself: the official client lists models and reads a completion with finish_reason."""
    with serve(lambda messages: "one two three four", api_key="k") as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0)
        assert [m.id for m in client.models.list()] == [MODEL]
        response = client.chat.completions.create(model=MODEL, messages=ask("q"), max_tokens=2)
        client.close()
    assert response.choices[0].message.content == "one two"
    assert response.choices[0].finish_reason == "length"
    assert response.usage.total_tokens == 3 + 2
