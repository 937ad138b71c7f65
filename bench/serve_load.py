"""How much does the server's micro-batching buy under concurrent load, and what does its cache save?

Two servers on loopback, same process, same loaded SmolLM2 (bundled), same short prompts (BBC News openings
with a one-sentence-summary instruction, greedy, max_tokens 16): (a) `tunewise serve`'s app (micro-batching,
answer cache off so every request does model work) and (b) a naive OpenAI-compatible server that calls
`LocalLM.generate` on one request at a time. A closed-loop load of C concurrent clients (C = 1, 8, 32) sends a
bounded number of requests (max(C, 8)) to each, interleaved and repeated (median of the repeats); prints requests/s and
p95 latency per side and `ratio serve_vs_naive_c<C>` (our throughput / naive throughput).

Then an evaluation re-run: the remote-arm client (`RemoteLM`, concurrency 8) answers N classification
prompts through our server twice with its cache on; `ratio cache_rerun_speedup` is first-pass wall time /
second-pass wall time (each repeat on a fresh cache).

    .venv/bin/python bench/serve_load.py [--repeats 3] [--max-tokens 16] [--concurrency 1 8 32]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import statistics
import threading
import time
from contextlib import contextmanager

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import torch  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from tunewise.assets import bundled_dataset_path  # noqa: E402
from tunewise.models.remote import RemoteLM  # noqa: E402
from tunewise.serve.app import build_state, create_app  # noqa: E402
from tunewise.serve.config import ServeConfig  # noqa: E402
from tunewise.serve.models import Loader  # noqa: E402
from tunewise.serve.server import serve_in_thread  # noqa: E402

INSTRUCTION = "Summarize the news article in one sentence."


def prompts(n: int, words: int, seed: int = 0) -> list[list[dict[str, str]]]:
    rows = [json.loads(line) for line in bundled_dataset_path().read_text(encoding="utf-8").splitlines()]
    chosen = random.Random(seed).sample(rows, n)
    return [[{"role": "system", "content": INSTRUCTION},
             {"role": "user", "content": " ".join(row["text"].split()[:words])}] for row in chosen]


def naive_app(lm, lock: threading.Lock) -> FastAPI:
    """What one writes first: a chat endpoint that generates for its own request, one request at a time."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def chat(body: dict) -> dict:  # a sync endpoint: FastAPI runs it on its thread pool
        with lock:
            generation = lm.generate([body["messages"]], max_new_tokens=body["max_tokens"], batch_size=1)[0]
        return {"id": "naive", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": generation.text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": generation.prompt_tokens, "completion_tokens": generation.completion_tokens,
                          "total_tokens": generation.prompt_tokens + generation.completion_tokens}}

    return app


@contextmanager
def naive_server(lm):
    import uvicorn

    from tunewise.serve.server import bind

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(naive_app(lm, threading.Lock()), log_level="warning", access_log=False,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def load(url: str, model: str, batch: list[list[dict[str, str]]], concurrency: int,
         max_tokens: int) -> tuple[float, float, int]:
    """Closed loop: `concurrency` clients send `batch` between them. Returns (requests/s, p95 s, new tokens)."""
    latencies: list[float] = []
    tokens = [0]
    lock = threading.Lock()
    with httpx.Client(timeout=600, limits=httpx.Limits(max_connections=concurrency)) as http:
        def one(messages: list[dict[str, str]]) -> None:
            start = time.perf_counter()
            response = http.post(f"{url}/v1/chat/completions", json={
                "model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0})
            response.raise_for_status()
            with lock:
                latencies.append(time.perf_counter() - start)
                tokens[0] += response.json()["usage"]["completion_tokens"]

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, batch))
        wall = time.perf_counter() - start
    latencies.sort()
    return len(batch) / wall, latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], tokens[0]


def batches(state) -> float:
    """Batched model calls the server has made so far (its batch-size histogram's count)."""
    return state.metrics.registry.get_sample_value("tunewise_batch_size_count", {"kind": "generate"}) or 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--words", type=int, default=16, help="article opening length, in words")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=50.0,
                        help="the server's batch window; 50 ms keeps a burst of 32 together on two busy cores")
    parser.add_argument("--eval-n", type=int, default=48, help="prompts in the cache re-run evaluation")
    parser.add_argument("--precision", default="auto", help="auto: bf16 where the hardware multiplies it natively "
                        "(as `tunewise serve` chooses), else fp32; or force bf16 / fp32")
    args = parser.parse_args()

    loader = Loader(args.precision, None)
    served = loader.base_model("smollm2")
    lm = served.engine.lm
    config = ServeConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, cache_size=0, max_queue=1024)
    pool = prompts(sum(max(c, 8) for c in args.concurrency) * args.repeats + args.eval_n, args.words)
    warm = pool[:2]
    lm.generate(warm, max_new_tokens=4)  # first-call allocations
    print(f"model {lm.name}  precision {lm.precision.name} ({lm.precision.reason})  threads {torch.get_num_threads()}")
    mean_prompt = statistics.mean(len(lm.render(p)) for p in pool)
    print(f"max_tokens {args.max_tokens}  prompt words {args.words} (mean {mean_prompt:.0f} prompt tokens)  max_batch {args.max_batch}  "
          f"max_wait_ms {config.max_wait_ms:g}  repeats {args.repeats}")
    results: dict[tuple[str, int], list[tuple[float, float, int]]] = {}
    calls: dict[int, list[float]] = {}
    state = build_state([served], config)
    cursor = 2
    with serve_in_thread(create_app(state), state) as (ours_url, _), naive_server(lm) as naive_url:
        for repeat in range(args.repeats):
            for c in args.concurrency:
                n = max(c, 8)
                batch, cursor = pool[cursor:cursor + n], cursor + n  # fresh prompts: nothing cached anywhere
                sides = [("serve", ours_url), ("naive", naive_url)]
                for side, url in sides if repeat % 2 == 0 else sides[::-1]:
                    before = batches(state)
                    results.setdefault((side, c), []).append(load(url, served.name, batch, c, args.max_tokens))
                    if side == "serve":
                        calls.setdefault(c, []).append(batches(state) - before)
    for c in args.concurrency:
        line = [f"c={c:<3} n={max(c, 8):<3}"]
        for side in ("serve", "naive"):
            runs = results[(side, c)]
            rps = statistics.median(r[0] for r in runs)
            p95 = statistics.median(r[1] for r in runs)
            line.append(f"{side} {rps:6.2f} req/s {rps * statistics.mean(r[2] for r in runs) / max(c, 8):7.1f} "
                        f"tok/s p95 {p95:6.2f} s")
        line.append(f"(serve: {statistics.median(calls[c]):.0f} batched calls for {max(c, 8)} requests)")
        print("  ".join(line))

    eval_prompts = pool[cursor:cursor + args.eval_n]
    cold, warm_times = [], []
    for _ in range(args.repeats):
        state = build_state([served], config.model_copy(update={"cache_size": 4096}))
        with serve_in_thread(create_app(state), state) as (url, _):
            remote = RemoteLM(f"{url}/v1", served.name, api_key_env=None, concurrency=8)
            start = time.perf_counter()
            first = remote.chat(eval_prompts, max_tokens=args.max_tokens, temperature=0.0)
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            second = remote.chat(eval_prompts, max_tokens=args.max_tokens, temperature=0.0)
            warm_times.append(time.perf_counter() - start)
            assert [g.text for g in first] == [g.text for g in second]
    print(f"evaluation of {args.eval_n} prompts through the server: first pass median {statistics.median(cold):.2f} s, "
          f"re-run median {statistics.median(warm_times):.3f} s (identical answers)")
    for c in args.concurrency:
        ours = statistics.median(r[0] for r in results[("serve", c)])
        naive = statistics.median(r[0] for r in results[("naive", c)])
        print(f"ratio serve_vs_naive_c{c} {ours / naive:.2f}")
    ours_p95 = statistics.median(r[1] for r in results[("serve", max(args.concurrency))])
    naive_p95 = statistics.median(r[1] for r in results[("naive", max(args.concurrency))])
    print(f"ratio serve_vs_naive_p95_c{max(args.concurrency)} {naive_p95 / ours_p95:.2f}")
    print(f"ratio cache_rerun_speedup {statistics.median(cold) / statistics.median(warm_times):.2f}")


if __name__ == "__main__":
    main()
