"""Chat with any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, tunewise's own server) fairly and completely.

An evaluation needs every test example answered or visibly failed, in order, with its token usage for cost.
So this module owns the transport concerns: bounded concurrency, its own retries with exponential backoff and
jitter (the `openai` client's built-in retries are switched off so attempts are never multiplied), timeouts,
and the split between failures that belong to one prompt (recorded as `RemoteFailure`, the others go on) and
failures that doom every prompt (a wrong key or model name: `RemoteError` at once, with the fix).

It knows nothing about tasks, prompts or parsing: message lists in, text and token counts out.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import openai

from tunewise.schema import Generation

# Local servers ignore the key, but the client refuses to start without one.
_PLACEHOLDER_KEY = "no-key"
# No wait, computed or server-directed, exceeds this: a Retry-After of an hour should not stall a run silently.
MAX_WAIT_S = 120.0
# The statuses the openai client itself treats as transient (request timeout, lock conflict, rate limit, 5xx).
_TRANSIENT_STATUSES = frozenset({408, 409, 429})


class RemoteError(RuntimeError):
    """A problem that dooms every prompt of a call (missing or wrong key, unknown model), so nothing is retried."""


@dataclass(frozen=True, slots=True)
class RemoteFailure:
    """One prompt that got no answer: after all retries, or at once for a request the server rejected (4xx).

    `error` carries the server's own message where there was one; `attempts` counts the requests made.
    """

    error: str
    attempts: int


class RemoteLM:
    """A chat model behind an OpenAI-compatible `base_url` (the API root, usually ending in `/v1`).

    The API key is read once, here, from the environment variable `api_key_env` so it never sits in a config
    file or a run manifest; `api_key_env=None` is for local endpoints that need no key.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        concurrency: int = 4,
        timeout_s: float = 60,
        retries: int = 4,
        backoff_s: float = 0.5,
    ) -> None:
        problems = []
        if concurrency < 1:
            problems.append(f"concurrency must be at least 1, got {concurrency}")
        if timeout_s <= 0:
            problems.append(f"timeout_s must be positive, got {timeout_s}")
        if retries < 0:
            problems.append(f"retries must be 0 or more, got {retries}")
        if backoff_s < 0:
            problems.append(f"backoff_s must be 0 or more, got {backoff_s}")
        if problems:
            raise ValueError(f"RemoteLM({model!r} at {base_url}): " + "; ".join(problems))
        self.base_url = base_url
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._api_key = self._read_key()
        self._rng = random.Random()

    def _read_key(self) -> str:
        if self.api_key_env is None:
            return _PLACEHOLDER_KEY
        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise RemoteError(
                f"Model {self.model!r} at {self.base_url} needs an API key, but the environment variable "
                f"{self.api_key_env} is not set. Fix: export {self.api_key_env}=<your key>, or set api_key_env "
                "to the variable that holds it, or to null for a local endpoint that needs no key."
            )
        return key

    def describe(self) -> dict[str, Any]:
        """What a run manifest records about this backend. Never the key: only the variable it came from."""
        return {
            "backend": "remote",
            "base_url": self.base_url,
            "model": self.model,
            "api_key_env": self.api_key_env,
            "concurrency": self.concurrency,
            "timeout_s": self.timeout_s,
            "retries": self.retries,
            "backoff_s": self.backoff_s,
        }

    def __repr__(self) -> str:
        return f"RemoteLM({self.model!r} at {self.base_url}, concurrency={self.concurrency})"

    def chat(
        self,
        prompts: Sequence[list[dict]],
        *,
        max_tokens: int = 64,
        temperature: float = 0.0,
        seed: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[Generation | RemoteFailure]:
        """Answer every prompt (a list of `{"role", "content"}` messages); results come back in input order.

        `progress(1)` is called as each prompt finishes, answered or failed (fits Rich's `advance`).
        Raises `RemoteError` when the endpoint rejects the key (401/403) or does not know the model (404).
        """
        if not prompts:
            return []
        params: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature}
        if seed is not None:
            params["seed"] = seed
        return _run_sync(lambda: self._chat_all(prompts, params, progress))

    async def _chat_all(
        self,
        prompts: Sequence[list[dict]],
        params: dict[str, Any],
        progress: Callable[[int], None] | None,
    ) -> list[Generation | RemoteFailure]:
        # A client per call: it binds to the event loop it first runs on, and each call has its own loop.
        async with openai.AsyncOpenAI(
            base_url=self.base_url, api_key=self._api_key, timeout=self.timeout_s, max_retries=0
        ) as client:
            slots = asyncio.Semaphore(self.concurrency)
            # Set by the first fatal error, so prompts waiting for a slot never send a request that must fail too.
            aborted = asyncio.Event()

            async def one(messages: list[dict]) -> Generation | RemoteFailure:
                try:
                    result = await self._chat_one(client, slots, aborted, messages, params)
                except RemoteError:
                    aborted.set()
                    raise
                if progress is not None:
                    progress(1)
                return result

            tasks = [asyncio.create_task(one(messages)) for messages in prompts]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                # A RemoteError (or an interrupt) ends the call: stop the other prompts before the client closes.
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

    async def _chat_one(
        self,
        client: openai.AsyncOpenAI,
        slots: asyncio.Semaphore,
        aborted: asyncio.Event,
        messages: list[dict],
        params: dict[str, Any],
    ) -> Generation | RemoteFailure:
        # Only role and content go out: training-only keys such as `weight` are not part of the chat API.
        wire = [{"role": m["role"], "content": m["content"]} for m in messages]
        attempts = 0
        while True:
            attempts += 1
            # The slot is held per attempt, not across backoff sleeps, so one struggling prompt does not
            # idle a slot the others could use; in-flight requests still never exceed `concurrency`.
            async with slots:
                if aborted.is_set():
                    return RemoteFailure("not sent: the call was aborted by a fatal error", attempts - 1)
                started = time.perf_counter()
                try:
                    response = await client.chat.completions.create(model=self.model, messages=wire, **params)
                except openai.APIStatusError as error:
                    self._abort_if_fatal(error)
                    failure, retry_after = f"HTTP {error.status_code}: {_server_message(error)}", _retry_after(error)
                    if not _is_transient(error.status_code):  # a bad request stays bad: fail fast
                        return RemoteFailure(failure, attempts)
                except openai.APITimeoutError:
                    failure, retry_after = f"timed out after {self.timeout_s:g} s", None
                except openai.APIConnectionError as error:
                    failure, retry_after = f"could not connect to {self.base_url}: {_cause(error)}", None
                except openai.APIError as error:  # a response the client could not read: retrying will not help
                    return RemoteFailure(f"unreadable response: {error}", attempts)
                else:
                    latency = time.perf_counter() - started
                    return _generation(response, latency, attempts)
            if attempts > self.retries:
                return RemoteFailure(f"{failure} (gave up after {attempts} attempts)", attempts)
            await asyncio.sleep(self._wait(attempts, retry_after))

    def _wait(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (so prompts rate-limited together do not retry together), but never
        shorter than the server's Retry-After."""
        backoff = self.backoff_s * 2 ** (attempt - 1) * self._rng.uniform(0.5, 1.0)
        return min(MAX_WAIT_S, max(backoff, retry_after or 0.0))

    def _abort_if_fatal(self, error: openai.APIStatusError) -> None:
        message = _server_message(error)
        if error.status_code in (401, 403):
            if self.api_key_env:
                fix = (f"The key came from the environment variable {self.api_key_env}. Fix: set it to a valid key "
                       "for this endpoint, or point api_key_env at the variable that holds one.")
            else:
                fix = "No key was sent (api_key_env is null). Fix: set api_key_env to the variable holding a key."
            raise RemoteError(
                f"{self.base_url} rejected the API key for model {self.model!r} (HTTP {error.status_code}: "
                f"{message}). {fix}"
            ) from error
        if error.status_code == 404:
            raise RemoteError(
                f"{self.base_url} has no model {self.model!r} (HTTP 404: {message}). Fix: use a model name the "
                f"endpoint serves (GET {self.base_url.rstrip('/')}/models lists them), and check that base_url "
                "is the API root, usually ending in /v1."
            ) from error


def _is_transient(status: int) -> bool:
    return status in _TRANSIENT_STATUSES or status >= 500


def _generation(response: Any, latency: float, attempts: int) -> Generation | RemoteFailure:
    if not response.choices:
        return RemoteFailure("the endpoint answered with no choices", attempts)
    usage = response.usage
    return Generation(
        text=response.choices[0].message.content or "",
        prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
        completion_tokens=(usage.completion_tokens or 0) if usage else 0,
        latency_s=latency,
    )


def _server_message(error: openai.APIStatusError) -> str:
    """The server's own words (`error.message` of the OpenAI envelope), not the client's wrapper text."""
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return error.message


def _cause(error: openai.APIConnectionError) -> str:
    return str(error.__cause__) if error.__cause__ else error.message


def _retry_after(error: openai.APIStatusError) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, `retry-after` in seconds, or as an HTTP date."""
    headers = error.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
    return None


def _run_sync(make_coroutine: Callable[[], Any]) -> Any:
    """Run a coroutine to completion from sync code, also when the caller is itself inside an event loop
    (a notebook, an async server): then it runs on a fresh loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()
