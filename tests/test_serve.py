"""The OpenAI-compatible server, over real HTTP on loopback, with the official `openai` client and httpx.

Tiny models built from config (a 2-layer Llama and LoRA adapters made with peft here) keep every test fast;
the models are loaded once per module and shared by the servers the tests start (each with its own state:
batcher, caches, metrics). fp32 so batched and one-at-a-time answers can be compared exactly.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest

from tunewise.serve.adapters import AdapterError, discover
from tunewise.serve.app import build_state, create_app
from tunewise.serve.config import ServeConfig
from tunewise.serve.models import Loader, ServeSetupError, build_models
from tunewise.serve.server import serve_in_thread

KEY = "test-key-0123456789"
HI = [{"role": "user", "content": "hi there"}]


def make_adapter(base: Path, folder: Path, seed: int, arm: dict | None = None) -> Path:
    """A LoRA adapter with random (non-zero) B matrices, so it visibly changes the base model's answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(LlamaForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    if arm is not None:
        (folder / "tunewise-arm.json").write_text(json.dumps(arm))
    return folder


@pytest.fixture(scope="module")
def adapter_root(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("adapters")
    make_adapter(tiny_model_dir, root / "lora-a", 1)
    make_adapter(tiny_model_dir, root / "lora-b", 2)
    return root


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path, adapter_root: Path) -> list:
    return build_models(Loader("fp32", None), model=str(tiny_model_dir), adapters=adapter_root)


@contextmanager
def server(models: list, **settings):
    state = build_state(models, ServeConfig(**settings))
    with serve_in_thread(create_app(state), state) as (url, _):
        yield url, state


def client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)


def metric(url: str, name: str, headers: dict | None = None) -> float:
    text = httpx.get(f"{url}/metrics", headers=headers or {}).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_openai_client_chats_streams_lists_models_and_classifies(served, tiny_model_dir):
    from tunewise.models.local import LocalLM

    with server(served) as (url, _):
        api = client(url)
        assert [m.id for m in api.models.list().data] == [tiny_model_dir.name, "lora-a", "lora-b"]
        base = api.chat.completions.create(model=tiny_model_dir.name, messages=HI, max_tokens=8, temperature=0)
        assert base.usage.completion_tokens == 8 and base.choices[0].finish_reason == "length"
        direct = LocalLM(tiny_model_dir, precision="fp32").generate([HI], max_new_tokens=8)[0]
        assert base.choices[0].message.content == direct.text and base.usage.prompt_tokens == direct.prompt_tokens
        stream = api.chat.completions.create(model=tiny_model_dir.name, messages=HI, max_tokens=8, temperature=0,
                                             stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == direct.text
        assert chunks[-1].usage.completion_tokens == 8
        # adapters on the same base are chosen by the model name and change the answer
        answers = {name: api.chat.completions.create(model=name, messages=HI, max_tokens=8, temperature=0)
                   .choices[0].message.content for name in ("lora-a", "lora-b", tiny_model_dir.name)}
        assert len(set(answers.values())) == 3 and answers[tiny_model_dir.name] == direct.text
        done = api.completions.create(model="lora-a", prompt=["Once upon", "a time"], max_tokens=4, temperature=0)
        assert [c.index for c in done.choices] == [0, 1] and done.usage.completion_tokens == 8
        result = api.post("/classify", cast_to=object, body={"model": "lora-a", "input": ["good film", "bad"],
                                                              "labels": ["positive", "negative"]})
        for row in result["data"]:
            assert sum(row["probabilities"].values()) == pytest.approx(1.0)
            assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)


BAD = [  # (body or raw bytes, status, param, code)
    (b"{not json", 400, None, "invalid_json"),
    (b"[1, 2]", 400, None, "invalid_json"),
    (b"", 400, None, "invalid_json"),
    (b'{"model": "m", "messages": [], "temperature": NaN}', 400, None, "invalid_json"),
    ({"model": "nope", "messages": HI}, 404, "model", "model_not_found"),
    ({"model": "../lora-a", "messages": HI}, 404, "model", "model_not_found"),
    ({"model": "@", "messages": HI, "max_tokens": 0}, 400, "max_tokens", "invalid_value"),
    ({"model": "@", "messages": HI, "max_tokens": 100_000}, 400, "max_tokens", "invalid_value"),
    ({"model": "@", "messages": HI, "max_tokens": "5"}, 400, "max_tokens", "invalid_value"),
    ({"model": "@", "messages": HI, "temperature": 3}, 400, "temperature", "invalid_value"),
    ({"model": "@", "messages": HI, "temperature": True}, 400, "temperature", "invalid_value"),
    ({"model": "@"}, 400, "messages", "missing_required_parameter"),
    ({"model": "@", "messages": "hi"}, 400, "messages", "invalid_value"),
    ({"model": "@", "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages.0.role", "invalid_value"),
    ({"model": "@", "messages": [{"role": "user", "content": 5}]}, 400, "messages.0.content", "invalid_value"),
    ({"model": "@", "messages": HI, "n": 2}, 400, "n", "invalid_value"),
    ({"model": "@", "messages": HI, "top_p": 0.5}, 400, "top_p", "invalid_value"),
    ({"model": "@", "messages": HI, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "invalid_value"),
    ({"model": 7, "messages": HI}, 400, "model", "invalid_value"),
    ({"model": "@", "messages": [{"role": "user", "content": "word " * 600}]}, 400, "messages",
     "context_length_exceeded"),
    ({"model": "@", "messages": HI, "pad": "x" * 5000}, 413, None, "request_too_large"),
]


def test_bad_requests_get_4xx_with_the_openai_envelope_and_health_stays_up(served, tiny_model_dir):
    with server(served, max_body_bytes=4096, max_tokens_limit=256) as (url, _):
        with httpx.Client(base_url=url, timeout=30) as http:
            for body, status, param, code in BAD:
                if isinstance(body, dict) and body.get("model") == "@":
                    body = {**body, "model": tiny_model_dir.name}
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                response = http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
                error = response.json()["error"]
                assert (response.status_code, error["param"], error["code"]) == (status, param, code), (body, error)
                assert set(error) == {"message", "type", "param", "code"} and error["message"]
            others = [http.get("/v1/nowhere"), http.delete("/v1/chat/completions"),
                      http.post("/v1/classify", json={"model": tiny_model_dir.name, "input": "x"}),
                      http.post("/v1/classify", json={"model": tiny_model_dir.name, "input": [], "labels": ["a", "b"]}),
                      http.post("/v1/completions", json={"model": tiny_model_dir.name, "prompt": "x", "echo": True}),
                      http.post("/v1/classify", json={"model": tiny_model_dir.name, "input": "abcdefghij" * 300,
                                                      "labels": ["a", "b"]})]
            assert [r.status_code for r in others] == [404, 405, 400, 400, 400, 400]
            assert others[-1].json()["error"]["code"] == "context_length_exceeded"
            assert all(set(r.json()["error"]) == {"message", "type", "param", "code"} for r in others)
            assert others[2].json()["error"]["param"] == "labels"
            assert http.get("/health").status_code == 200 and http.get("/ready").status_code == 200
            assert metric(url, "tunewise_errors_total") == len(BAD) + len(others)


def test_every_route_but_the_allowlist_needs_a_key(served, tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("TUNEWISE_API_KEYS", "other-key-abcdefgh")
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"# serving keys\n{KEY}\n")
    routes = [("GET", "/v1/models"), ("GET", f"/v1/models/{tiny_model_dir.name}"), ("GET", "/metrics"),
              ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("POST", "/v1/classify"),
              ("GET", "/v1/unknown")]
    body = {"model": tiny_model_dir.name, "messages": HI, "prompt": "x", "input": "x", "labels": ["a", "b"],
            "max_tokens": 2, "temperature": 0}
    with server(served, api_key_file=key_file) as (url, _), httpx.Client(base_url=url, timeout=30) as http:
        for method, path in routes:
            for headers in ({}, {"authorization": "Bearer wrong-key-123456"}, {"authorization": KEY}):
                response = http.request(method, path, json=body if method == "POST" else None, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.json()["error"]["code"] == "invalid_api_key"
            for key in (KEY, "other-key-abcdefgh"):  # from the file and from the environment
                response = http.request(method, path, json=body if method == "POST" else None,
                                        headers={"authorization": f"Bearer {key}"})
                assert response.status_code == (404 if path == "/v1/unknown" else 200), (method, path)
        assert http.get("/health").status_code == 200 and http.get("/ready").status_code == 200
        assert client(url, KEY).models.list().data
        with pytest.raises(openai.AuthenticationError):
            client(url, "wrong-key-123456").models.list()
    with server(served, api_key_file=key_file, public_metrics=True) as (url, _):
        assert httpx.get(f"{url}/metrics").status_code == 200
        assert httpx.get(f"{url}/v1/models").status_code == 401


def test_deterministic_requests_are_cached_and_unseeded_samples_are_not(served, tiny_model_dir):
    name = tiny_model_dir.name
    with server(served) as (url, state), httpx.Client(base_url=url, timeout=30) as http:
        def ask(**params):
            body = {"model": name, "messages": HI, "max_tokens": 6} | params
            return http.post("/v1/chat/completions", json=body).json()

        first, again = ask(temperature=0), ask(temperature=0)
        assert "tunewise" not in first and again["tunewise"] == {"cached": "exact"}
        assert again["choices"][0]["message"] == first["choices"][0]["message"]
        assert ask(temperature=0, max_tokens=5).get("tunewise") is None  # other parameters, other key
        assert "tunewise" not in ask(model="lora-a", temperature=0)  # other adapter, other key
        samples = [ask(temperature=1.5) for _ in range(3)]
        assert all("tunewise" not in s for s in samples)
        seeded = [ask(temperature=1.5, seed=11) for _ in range(2)]
        assert "tunewise" not in seeded[0] and seeded[1]["tunewise"] == {"cached": "exact"}
        assert metric(url, 'tunewise_cache_hits_total{kind="exact"}') == 2
        assert len(state.cache) == 4


def test_seeded_sampling_is_reproducible_without_the_cache(served, tiny_model_dir):
    with server(served, cache_size=0) as (url, _):
        api = client(url)
        texts = [api.chat.completions.create(model=tiny_model_dir.name, messages=HI, max_tokens=8, temperature=1.5,
                                             seed=5).choices[0].message.content for _ in range(2)]
        assert texts[0] == texts[1]


def test_concurrent_requests_share_batches_and_match_one_at_a_time_answers(served, tiny_model_dir):
    prompts = [[{"role": "user", "content": f"question number {i} " + "and more " * i}] for i in range(8)]
    with server(served, max_wait_ms=300, max_batch=8, cache_size=0) as (url, _):
        api = client(url)
        alone = [api.chat.completions.create(model="lora-b", messages=p, max_tokens=6, temperature=0)
                 .choices[0].message.content for p in prompts]
        batches_before = metric(url, "tunewise_batch_size_count")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            together = list(pool.map(lambda p: api.chat.completions.create(
                model="lora-b", messages=p, max_tokens=6, temperature=0).choices[0].message.content, prompts))
        assert together == alone
        assert metric(url, "tunewise_batch_size_count") - batches_before <= 2  # 8 requests, at most 2 calls


def test_a_full_queue_answers_429_with_retry_after(served, tiny_model_dir):
    body = {"model": tiny_model_dir.name, "messages": HI, "max_tokens": 2, "temperature": 0}
    with server(served, max_queue=2, max_wait_ms=1500, max_batch=64, cache_size=0) as (url, _):
        def post(_):
            return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)

        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            responses = list(pool.map(post, range(5)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 200, 429, 429, 429]
        rejected = [r for r in responses if r.status_code == 429]
        assert all(r.headers["retry-after"].isdigit() and r.json()["error"]["code"] == "queue_full" for r in rejected)
        assert httpx.get(f"{url}/health").status_code == 200


def test_adapter_root_refuses_traversal_symlinks_and_pickles(tiny_model_dir, adapter_root, tmp_path):
    outside = tmp_path / "outside"
    make_adapter(tiny_model_dir, outside / "evil", 3)
    cases = {}
    link_root = tmp_path / "links"
    link_root.mkdir()
    (link_root / "evil").symlink_to(outside / "evil", target_is_directory=True)
    cases["folder link"] = link_root
    file_root = tmp_path / "file-link"
    make_adapter(tiny_model_dir, file_root / "ok", 4)
    (file_root / "ok" / "adapter_model.safetensors").unlink()
    (file_root / "ok" / "adapter_model.safetensors").symlink_to(outside / "evil" / "adapter_model.safetensors")
    cases["file link"] = file_root
    pickle_root = tmp_path / "pickles"
    make_adapter(tiny_model_dir, pickle_root / "old", 5)
    (pickle_root / "old" / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    cases["pickle"] = pickle_root
    for root in cases.values():
        with pytest.raises(AdapterError, match="links outside|pickle"):
            discover(root)
        with pytest.raises(AdapterError):
            build_models(Loader("fp32", None), model=str(tiny_model_dir), adapters=root)
    assert [spec.name for spec in discover(adapter_root)] == ["lora-a", "lora-b"]
    with pytest.raises(ServeSetupError, match="nothing to serve"):
        build_models(Loader("fp32", None))


def test_capture_writes_training_chats_with_pii_redacted_or_skipped(served, tiny_model_dir, tmp_path):
    from tunewise.data.formats import read_examples

    private = [{"role": "user", "content": "Write to jane.doe@example.com about the order"}]
    for mode in ("redact", "skip"):
        path = tmp_path / f"capture-{mode}.jsonl"
        with server(served, capture_path=path, capture_pii=mode) as (url, _):
            api = client(url)
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda i, api=api: api.chat.completions.create(
                    model="lora-a", messages=[{"role": "user", "content": f"plain question {i}"}], max_tokens=3,
                    temperature=0), range(6)))
            reply = api.chat.completions.create(model="lora-a", messages=private, max_tokens=3, temperature=0)
        records = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(records) == (7 if mode == "redact" else 6)
        assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in records)
        assert "jane.doe@example.com" not in path.read_text()
        if mode == "redact":
            assert records[-1]["messages"][0]["content"] == "Write to <EMAIL_ADDRESS> about the order"
            assert records[-1]["messages"][1]["content"] == reply.choices[0].message.content
        assert len(read_examples(path).examples) == len(records)  # the project's own reader takes it as data


def test_semantic_cache_answers_paraphrases_only_when_switched_on(served, tiny_model_dir):
    question = "What is the capital city of France?"
    with server(served, semantic_cache=True, semantic_threshold=0.9) as (url, _), \
            httpx.Client(base_url=url, timeout=60) as http:
        def ask(text: str, **params):
            body = {"model": "lora-a", "messages": [{"role": "user", "content": text}], "max_tokens": 4,
                    "temperature": 0} | params
            return http.post("/v1/chat/completions", json=body).json()

        first = ask(question)
        paraphrase = ask("what is the capital city of france")
        assert paraphrase["tunewise"] == {"cached": "semantic"}
        assert paraphrase["choices"][0]["message"] == first["choices"][0]["message"]
        assert "tunewise" not in ask("How do I bake sourdough bread?")
        assert "tunewise" not in ask("what is the capital city of france", max_tokens=3)  # other settings
        assert "tunewise" not in ask("what is the capital city of france", temperature=1.0)  # unseeded sample
    with server(served) as (url, _), httpx.Client(base_url=url, timeout=60) as http:  # off by default
        for text in (question, "what is the capital city of france"):
            reply = http.post("/v1/chat/completions", json={"model": "lora-a", "max_tokens": 4, "temperature": 0,
                                                            "messages": [{"role": "user", "content": text}]}).json()
            assert "tunewise" not in reply


def test_a_request_past_its_timeout_gets_504_and_is_never_run(served, tiny_model_dir):
    body = {"model": tiny_model_dir.name, "messages": HI, "max_tokens": 2, "temperature": 0}
    with server(served, timeout_s=0.3, max_wait_ms=1000) as (url, state):
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
        assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"
        deadline = time.monotonic() + 5
        while state.batcher.depth():  # the batch window closes; the abandoned request is dropped, not run
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert metric(url, "tunewise_batch_size_count") == 0
        assert httpx.get(f"{url}/health").status_code == 200


def test_run_arms_are_served_exactly_as_they_were_evaluated(tmp_path, monkeypatch, tiny_model_dir):
    import yaml

    from tunewise.config import load_experiment
    from tunewise.pipeline.experiment import run_experiment
    from tunewise.serve.models import softmax
    from tunewise.store.predictions import PredictionStore

    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    topics = {"goal": "sports", "shares": "business", "software": "tech"}
    rows = [{"text": f"story {i} about the {word} {'and more ' * (i % 4)}today", "label": label}
            for i in range(16) for word, label in topics.items()]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    local = {"model": str(tiny_model_dir), "precision": "fp32", "batch_size": 4}
    config = {"name": "serve", "data": {"path": "data.jsonl"}, "task": {"type": "classify"},
              "split": {"seed": 3, "max_test": 6}, "runs_dir": str(tmp_path / "runs"),
              "arms": [{"name": "zs", "type": "zero_shot", **local}, {"name": "fs", "type": "few_shot", "k": 3, **local},
                       {"name": "rag", "type": "retrieval", "retriever": "bm25", "k": 2, **local},
                       {"name": "tfidf", "type": "classical", "settings": {"model": "logreg", "cv": 2}}]}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    result = run_experiment(load_experiment(tmp_path / "exp.yaml"), log=lambda m: None)
    assert result.failures == {}
    run = result.run.path
    labels = sorted(topics.values())
    make_adapter(tiny_model_dir, run / "adapters" / "ft", 6, arm={
        "arm": "ft", "type": "finetune", "method": "lora", "base_model": str(tiny_model_dir),
        "task": {"type": "classify"}, "labels": labels, "prompt_variant": "default"})
    arm_meta = {"type": "finetune", "base_model": str(tiny_model_dir), "task": {"type": "classify"},
                "labels": labels, "prompt_variant": "default"}
    shutil.copytree(tiny_model_dir, run / "adapters" / "full")  # a full fine-tune: the whole model folder
    (run / "adapters" / "full" / "tunewise-arm.json").write_text(json.dumps(arm_meta | {"arm": "full",
                                                                                         "method": "full"}))
    head = classifier_head(tiny_model_dir, labels)
    head.save(run / "adapters" / "head")
    winner = build_models(Loader("fp32", None), run=run)
    assert len(winner) == 1 and winner[0].name == "tfidf"  # the verdict recommends the classical model (keywords)
    models = build_models(Loader("fp32", None), run=run, arms=["zs", "fs", "rag", "tfidf", "ft", "full", "head"])
    with server(models) as (url, _):
        api = client(url)
        for arm in ("zs", "fs", "rag", "tfidf"):
            for prediction in PredictionStore(run / "predictions" / f"{arm}.jsonl").done.values():
                reply = api.chat.completions.create(model=arm, messages=[{"role": "user", "content": prediction.input}],
                                                    max_tokens=4, temperature=0)
                assert reply.choices[0].message.content == prediction.prediction, arm
                scored = api.post("/classify", cast_to=object, body={"model": arm, "input": prediction.input})
                expected = (prediction.scores if arm == "tfidf"
                            else dict(zip(labels, softmax([prediction.scores[k] for k in labels]))))
                assert scored["data"][0]["probabilities"] == pytest.approx(expected, abs=1e-4), arm
        for arm in ("ft", "full"):
            tuned = api.post("/classify", cast_to=object, body={"model": arm, "input": "a goal today"})
            assert set(tuned["data"][0]["probabilities"]) == set(labels)
            reply = api.chat.completions.create(model=arm, messages=[{"role": "user", "content": "a goal today"}])
            assert reply.choices[0].message.content == tuned["data"][0]["label"]
        from tunewise.serve.models import request_example

        scored = api.post("/classify", cast_to=object, body={"model": "head", "input": ["shares fell", "a goal"]})
        expected = head.predict_scores([request_example("shares fell"), request_example("a goal")])
        assert [row["probabilities"] for row in scored["data"]] == [pytest.approx(e) for e in expected]
        with pytest.raises(openai.BadRequestError, match="one user message"):
            api.chat.completions.create(model="zs", messages=[*HI, {"role": "assistant", "content": "x"}, *HI])
    with pytest.raises(ServeSetupError, match="no such arm"):
        build_models(Loader("fp32", None), run=run, arms=["missing"])
    (run / "adapters" / "ft" / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(AdapterError, match="pickle"):
        build_models(Loader("fp32", None), run=run, arms=["ft"])
    assert [m.name for m in build_models(Loader("fp32", None), run=run, arms=["zs"])] == ["zs"]


def classifier_head(base: Path, labels: list[str]):
    """A tiny sequence-classification model saved the way the fine-tuning stage saves a classifier arm."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from tunewise.models.precision import choose_precision
    from tunewise.train.classifier import ClassifierModel
    from tunewise.train.settings import ClassifierConfig

    config = LlamaConfig.from_pretrained(base, num_labels=len(labels), id2label=dict(enumerate(labels)),
                                         label2id={label: i for i, label in enumerate(labels)})
    torch.manual_seed(7)
    return ClassifierModel(LlamaForSequenceClassification(config), AutoTokenizer.from_pretrained(base), labels,
                           ClassifierConfig(), choose_precision("cpu", "fp32"))


@pytest.mark.subprocess
def test_sigterm_drains_in_flight_requests_then_exits(tiny_model_dir):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "TUNEWISE_API_KEYS": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "tunewise.cli", "serve", "--model", str(tiny_model_dir), "--port", "0",
         "--max-wait-ms", "5000", "--precision", "fp32"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = None
        deadline = time.monotonic() + 90
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            assert line or process.poll() is None, "the server exited before listening"
            if "listening on" in line:
                url = line.split("listening on", 1)[1].strip().removesuffix("/v1")
        assert url, "the server did not start"
        drain_log = []
        threading.Thread(target=lambda: drain_log.extend(process.stderr), daemon=True).start()
        body = {"model": tiny_model_dir.name, "messages": HI, "max_tokens": 4, "temperature": 0}
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            in_flight = [pool.submit(httpx.post, f"{url}/v1/chat/completions", json=body, timeout=30)
                         for _ in range(3)]
            deadline = time.monotonic() + 10
            while metric(url, "tunewise_queue_depth") < 3:  # admitted, and held by the 5 s batching window
                assert time.monotonic() < deadline, "the requests never reached the server"
                time.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 3  # /ready fails as soon as the signal is handled
            while httpx.get(f"{url}/ready", timeout=5).status_code != 503:
                assert time.monotonic() < deadline, "/ready still passes after SIGTERM"
                time.sleep(0.01)
            late = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=5)
            assert late.status_code == 503 and late.json()["error"]["code"] == "shutting_down"
            assert httpx.get(f"{url}/health", timeout=5).status_code == 200
            assert [f.result().status_code for f in in_flight] == [200, 200, 200]
        assert process.wait(timeout=20) == 0, "".join(drain_log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_batcher_groups_by_key_caps_batches_and_bounds_admission():
    from tunewise.serve.batching import MicroBatcher, QueueFull

    calls: list[tuple[str, list[int]]] = []
    release = threading.Event()

    def run(key, payloads):
        release.wait(5)
        calls.append((key, list(payloads)))
        return [p * 10 for p in payloads]

    batcher = MicroBatcher(run, max_batch=3, max_wait_s=0.2, max_queue=7)
    futures = [batcher.submit("a" if i % 2 == 0 else "b", i) for i in range(7)]
    with pytest.raises(QueueFull):
        batcher.submit("a", 99)
    release.set()
    assert [f.result(5) for f in futures] == [i * 10 for i in range(7)]
    batcher.close()
    assert calls == [("a", [0, 2, 4]), ("b", [1, 3, 5]), ("a", [6])]
    assert batcher.depth() == 0


def test_serve_command_reports_setup_problems_plainly(tmp_path):
    from typer.testing import CliRunner

    from tunewise.cli.app import app

    runner = CliRunner()
    nothing = runner.invoke(app, ["serve"])
    assert nothing.exit_code == 2 and "nothing to serve" in " ".join(nothing.output.split())
    bad_root = runner.invoke(app, ["serve", "--adapters", str(tmp_path / "missing")])
    assert bad_root.exit_code == 2 and "is not a folder" in " ".join(bad_root.output.split())
    bad_option = runner.invoke(app, ["serve", "--model", "smollm2", "--max-batch", "0"])
    assert bad_option.exit_code == 2 and "--max-batch" in bad_option.output


def test_a_burst_still_arriving_keeps_the_batch_window_open():
    from tunewise.serve.batching import BURST_CAP, MicroBatcher

    calls: list[list[int]] = []

    def run(key, payloads):
        calls.append(list(payloads))
        return payloads

    batcher = MicroBatcher(run, max_batch=64, max_wait_s=1.5, max_queue=64)
    started = time.monotonic()
    futures = []
    for i in range(8):  # one every 0.3 s: the last arrives well past the first one's own window
        futures.append(batcher.submit("k", i))
        time.sleep(0.3)
    spread = time.monotonic() - started
    assert [f.result(30) for f in futures] == list(range(8))
    batcher.close()
    assert 1.5 < spread < BURST_CAP * 1.5 and calls == [list(range(8))]


def test_a_capture_that_cannot_be_written_never_costs_the_client_its_answer(served):
    """Capture is best effort: on a full disk the answer still arrives, and a stream ends at its one [DONE]."""
    with server(served, capture_path=Path("/dev/full")) as (url, _):
        body = {"model": "lora-a", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 3,
                "temperature": 0}
        plain = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
        assert plain.status_code == 200 and plain.json()["choices"][0]["message"]["content"] is not None
        streamed = httpx.post(f"{url}/v1/chat/completions", json=body | {"stream": True, "seed": 7}, timeout=60)
        events = [line for line in streamed.text.splitlines() if line.startswith("data: ")]
        assert streamed.status_code == 200 and events[-1] == "data: [DONE]" and events.count("data: [DONE]") == 1
        assert not any('"error"' in line for line in events)
        assert metric(url, 'tunewise_capture_records_total{outcome="failed"}') >= 1


def test_serve_refuses_the_network_without_keys_before_loading_a_model(monkeypatch):
    """Like `tunewise ui`: a non-loopback --host needs API keys, or --open-network when a proxy authenticates."""
    from typer.testing import CliRunner

    from tunewise.cli.app import app
    from tunewise.serve import models as serve_models
    from tunewise.serve.models import ServeSetupError

    def reached_loading(*args, **kwargs):
        raise ServeSetupError("reached model loading")

    monkeypatch.setattr(serve_models, "build_models", reached_loading)
    monkeypatch.delenv("TUNEWISE_API_KEYS", raising=False)
    runner = CliRunner()
    refused = runner.invoke(app, ["serve", "--model", "smollm2", "--host", "0.0.0.0"])
    said = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "--host 0.0.0.0 is not a loopback address" in said and "--open-network" in said
    assert "reached model loading" not in said
    for args, env in ((["--open-network"], None), ([], "a-long-enough-key"), (["--host", "127.0.0.1"], None)):
        if env:
            monkeypatch.setenv("TUNEWISE_API_KEYS", env)
        allowed = runner.invoke(app, ["serve", "--model", "smollm2", "--host", "0.0.0.0", *args])
        assert allowed.exit_code == 2 and "reached model loading" in " ".join(allowed.output.split()), args
