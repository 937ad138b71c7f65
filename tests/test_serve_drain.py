"""SIGTERM under load: `tunewise serve` drains with requests in flight while busy-loop processes compete for
the CPU. Every request either finishes (streams with `[DONE]`) or, when a short `--drain-timeout` runs out,
gets the 503 envelope (a stream: the error event, then `[DONE]`); nothing is answered in plain text, nothing is
cut, and the process exits 0 without aborting ("terminate called without an active exception" came from a
generation thread still inside torch at interpreter exit).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from test_serve import HI, metric

pytestmark = pytest.mark.subprocess

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "TUNEWISE_API_KEYS": ""}


@contextmanager
def busy_cpus(count: int = 2) -> Iterator[None]:
    """`count` processes spinning on the CPU beside the server (the loaded machine of the issue); started once
    the server listens, so its start-up is not slowed."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


@contextmanager
def cli_server(model: Path, *options: str) -> Iterator[tuple[subprocess.Popen, str, list[str]]]:
    """`tunewise serve` in its own process; yields it, its root URL and its stderr lines (kept being read)."""
    process = subprocess.Popen([sys.executable, "-m", "tunewise.cli", "serve", "--model", str(model), "--port", "0",
                                "--precision", "fp32", *options], stderr=subprocess.PIPE, text=True, env=ENV)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        url = None
        while url is None:
            line = process.stderr.readline()
            assert line or process.poll() is None, "the server exited before listening: " + "".join(lines)
            assert time.monotonic() < deadline, "the server did not start"
            lines.append(line)
            if "listening on" in line:
                url = line.split("listening on", 1)[1].strip().removesuffix("/v1")
        threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True).start()
        yield process, url, lines
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def ask(url: str, name: str, stream: bool, max_tokens: int) -> httpx.Response:
    body = {"model": name, "messages": HI, "max_tokens": max_tokens, "temperature": 0, "stream": stream}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300)


def outcome(response: httpx.Response) -> str:
    """"answered", "refused" (the 503 envelope, whole or as a stream's last event) or what went wrong."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        events = [block.removeprefix("data: ") for block in response.text.split("\n\n") if block]
        if events[-1:] != ["[DONE]"]:
            return f"stream cut: {events[-2:]}"
        last = json.loads(events[-2])
        if "error" in last:
            return "refused" if last["error"]["code"] == "shutting_down" else f"stream error {last['error']}"
        return "answered" if response.status_code == 200 else f"stream status {response.status_code}"
    if response.headers.get("content-type") != "application/json":
        return f"plain {response.status_code}: {response.text[:80]}"
    if response.status_code == 200:
        return "answered"
    error = response.json()["error"]
    return "refused" if (response.status_code, error["code"]) == (503, "shutting_down") else f"{error}"


def drain_with_requests_in_flight(url: str, process: subprocess.Popen, name: str, count: int,
                                  max_tokens: int) -> list[str]:
    """Send `count` requests (half streamed), SIGTERM once all are admitted, return each one's outcome."""
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(ask, url, name, i % 2 == 1, max_tokens) for i in range(count)]
        deadline = time.monotonic() + 60
        while metric(url, "tunewise_queue_depth") < count:
            assert time.monotonic() < deadline, "the requests never reached the model"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        return [outcome(future.result()) for future in futures]


def test_sigterm_under_cpu_load_finishes_every_request_in_flight_and_exits_0(tiny_model_dir):
    with cli_server(tiny_model_dir, "--max-wait-ms", "1500", "--max-batch", "4") as (process, url, log), busy_cpus():
        outcomes = drain_with_requests_in_flight(url, process, tiny_model_dir.name, count=10, max_tokens=48)
        assert outcomes == ["answered"] * 10, outcomes
        assert process.wait(timeout=120) == 0, "".join(log)
    text = "".join(log)
    assert "draining: 10 request(s) in flight" in text, text
    assert "terminate called" not in text and "Traceback" not in text, text


def test_a_drain_that_runs_out_of_time_refuses_the_rest_with_envelopes_and_exits_0(tiny_model_dir):
    options = ("--max-wait-ms", "1000", "--max-batch", "4", "--drain-timeout", "0.5")
    with cli_server(tiny_model_dir, *options) as (process, url, log), busy_cpus():
        outcomes = drain_with_requests_in_flight(url, process, tiny_model_dir.name, count=8, max_tokens=400)
        assert set(outcomes) <= {"answered", "refused"}, outcomes
        assert "refused" in outcomes, outcomes  # 400 tokens each cannot all finish within half a second
        assert process.wait(timeout=120) == 0, "".join(log)
    text = "".join(log)
    assert "drain limit of 0.5 s passed" in text, text
    assert "terminate called" not in text and "Traceback" not in text, text
