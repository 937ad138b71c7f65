"""True token streaming, over real HTTP on loopback with the official `openai` client.

Whether a chunk left the server before generation finished is shown by event order, not by clocks: a real
forward pre-hook on the tiny model holds its last decoding step until the test has seen streamed text. A
server that only streamed a finished answer would never release it (the hook gives up after a minute and the
test fails on what it recorded).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from tunewise.serve.app import build_state, create_app
from tunewise.serve.config import ServeConfig
from tunewise.serve.models import Loader, build_models
from tunewise.serve.server import serve_in_thread
from tunewise.serve.streaming import TextDeltas

TOKENS = 12
PROMPTS = [[{"role": "user", "content": text}] for text in ("hi there", "tell me a story about a cat", "ünïcödé ✓")]


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path) -> list:
    return build_models(Loader("fp32", None), model=str(tiny_model_dir))


@contextmanager
def server(models: list, **settings) -> Iterator[tuple[openai.OpenAI, str]]:
    state = build_state(models, ServeConfig(cache_size=0, **settings))
    with serve_in_thread(create_app(state), state) as (url, _):
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120), url


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.split("{")[0].split(" ")[0] == name)


def plain(api: openai.OpenAI, name: str, messages: list, **params) -> tuple[str, str, int]:
    reply = api.chat.completions.create(model=name, messages=messages, max_tokens=TOKENS, temperature=0, **params)
    return reply.choices[0].message.content, reply.choices[0].finish_reason, reply.usage.completion_tokens


def streamed(api: openai.OpenAI, name: str, messages: list, on_text=None, **params) -> tuple[str, str, int]:
    stream = api.chat.completions.create(model=name, messages=messages, max_tokens=TOKENS, temperature=0,
                                         stream=True, stream_options={"include_usage": True}, **params)
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.choices:
            if chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
                if on_text is not None:
                    on_text(pieces)
            finish = chunk.choices[0].finish_reason or finish
        usage = chunk.usage or usage
    assert all("\ufffd" not in p for p in pieces)  # no piece ends inside a character
    return "".join(pieces), finish, usage.completion_tokens


class HeldStep:
    """Holds the model's `step`-th forward call (1-based) until `release` is set; a real torch hook."""

    def __init__(self, model, step: int) -> None:
        self.step, self.calls = step, 0
        self.release, self.passed = threading.Event(), threading.Event()
        self.handle = model.register_forward_pre_hook(self.hook)

    def hook(self, module, args) -> None:
        self.calls += 1
        if self.calls == self.step:
            self.release.wait(60)
        if self.calls >= self.step:
            self.passed.set()

    def remove(self) -> None:
        self.release.set()
        self.handle.remove()


def test_text_deltas_hold_back_split_characters_and_stop_sequences(served):
    lm = served[0].engine.lm
    text = "naïve café 😀 über 漢字 stop here"
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert any("\ufffd" in lm.decode(ids[:k]) for k in range(1, len(ids)))  # the case really occurs
    for stops, expected in (([], text), (["stop"], text[:text.index("stop")]), (["漢字 s"], text[:text.index("漢")])):
        deltas = TextDeltas(lm.decode, stops)
        pieces = [deltas.add([token]) for token in ids]
        assert all("\ufffd" not in p for p in pieces) and all(s not in "".join(pieces) for s in stops)
        final = lm.decode(ids)
        pieces.append(deltas.finish(final[:min([final.index(s) for s in stops], default=len(final))]))
        assert "".join(pieces) == expected


def test_streamed_text_equals_the_non_streamed_answer(served):
    name = served[0].name
    with server(served) as (api, _):
        for messages in PROMPTS:
            assert streamed(api, name, messages) == plain(api, name, messages)
        cut = plain(api, name, PROMPTS[1])[0]
        stop = cut[len(cut) // 2:len(cut) // 2 + 3]  # a stop sequence inside the answer
        assert streamed(api, name, PROMPTS[1], stop=[stop]) == plain(api, name, PROMPTS[1], stop=[stop])
        assert plain(api, name, PROMPTS[1], stop=[stop])[1] == "stop"


def test_the_first_text_arrives_while_generation_is_still_running(served):
    name, lm = served[0].name, served[0].engine.lm
    early = lm.generate([PROMPTS[1]], max_new_tokens=TOKENS - 1)[0]
    assert early.text and early.completion_tokens == TOKENS - 1  # text exists before the last step
    with server(served) as (api, _):
        expected = plain(api, name, PROMPTS[1])
        held = HeldStep(lm.model, TOKENS)  # prefill + 11 decoding steps: the 12th call makes the last token
        seen: list[bool] = []

        def on_text(pieces: list[str]) -> None:
            if not seen:
                seen.append(held.passed.is_set())  # had the last step run when the first text came?
                held.release.set()

        try:
            assert streamed(api, name, PROMPTS[1], on_text=on_text) == expected
        finally:
            held.remove()
        assert seen == [False]


def test_two_concurrent_streams_share_one_batch_and_both_are_right(served):
    name = served[0].name
    with server(served, max_batch=2, max_wait_ms=2000) as (api, url):
        expected = [plain(api, name, m) for m in PROMPTS[:2]]
        before = metric(url, "tunewise_batch_size_count")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            got = list(pool.map(lambda m: streamed(api, name, m), PROMPTS[:2]))
        assert got == expected
        assert metric(url, "tunewise_batch_size_count") - before == 1


def test_a_client_leaving_mid_stream_drops_only_its_row(served):
    name, lm = served[0].name, served[0].engine.lm
    with server(served, max_batch=2, max_wait_ms=2000) as (api, url):
        expected = plain(api, name, PROMPTS[2])
        held = HeldStep(lm.model, TOKENS)
        left = threading.Event()

        def leaver() -> None:
            stream = api.chat.completions.create(model=name, messages=PROMPTS[1], max_tokens=TOKENS, temperature=0,
                                                 stream=True)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    break
            stream.close()
            left.set()

        try:
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                stayer = pool.submit(streamed, api, name, PROMPTS[2])
                gone = pool.submit(leaver)
                gone.result()
                deadline = time.monotonic() + 60  # the server notices the closed connection on its own
                while metric(url, "tunewise_stream_disconnects_total") < 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert not held.passed.is_set()  # the batch was still generating when the client left
                held.release.set()
                assert stayer.result() == expected
        finally:
            held.remove()
        assert metric(url, "tunewise_stream_disconnects_total") == 1
        assert httpx.get(f"{url}/health").status_code == 200
        assert plain(api, name, PROMPTS[2]) == expected  # and the server answers on


def test_completions_stream_every_prompt_of_a_list_as_the_plain_answer(served):
    prompts = ["hi there", "tell me a story about a cat", "ünïcödé ✓"]
    with server(served) as (api, url):
        name = served[0].name
        plain_reply = api.completions.create(model=name, prompt=prompts, max_tokens=TOKENS, temperature=0)
        stream = api.completions.create(model=name, prompt=prompts, max_tokens=TOKENS, temperature=0, stream=True,
                                        stream_options={"include_usage": True})
        texts, finishes, usage, order = ["", "", ""], [None, None, None], None, []
        for chunk in stream:
            assert chunk.object == "text_completion"
            for choice in chunk.choices:
                texts[choice.index] += choice.text
                finishes[choice.index] = choice.finish_reason or finishes[choice.index]
                order.append(choice.index)
            usage = chunk.usage or usage
        assert metric(url, "tunewise_batch_size_count") >= 1
    by_index = sorted(plain_reply.choices, key=lambda c: c.index)
    assert texts == [c.text for c in by_index] and any(texts)
    assert finishes == [c.finish_reason for c in by_index]
    assert usage.completion_tokens == plain_reply.usage.completion_tokens
    assert set(order) == {0, 1, 2}
