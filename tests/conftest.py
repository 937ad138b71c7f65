"""Shared fixtures. Tests never download: the hub is switched off before anything imports transformers."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Converted assets go to a cache private to this test session, so a clean machine's first-use conversion
# is what the tests exercise, and a developer's own cache is never written. Set TUNEWISE_CACHE to reuse one.
if "TUNEWISE_CACHE" not in os.environ:
    _SESSION_CACHE = tempfile.mkdtemp(prefix="tunewise-test-cache-")
    os.environ["TUNEWISE_CACHE"] = _SESSION_CACHE
else:
    _SESSION_CACHE = None


def pytest_sessionfinish(session, exitstatus) -> None:
    if _SESSION_CACHE:
        import shutil

        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)
sys.path.insert(0, str(Path(__file__).parent))  # for the shared corpus generator in tests/corrupt.py


@pytest.fixture
def word_counter():
    """Token counting without a tokenizer: fast, deterministic, enough for checks that are not about tokens."""
    from tunewise.data.tokens import TokenCounter

    return TokenCounter(None, None, "words")


@pytest.fixture
def write(tmp_path: Path):
    """write(name, content) -> path; content may be str, bytes or a list of JSON-able records (JSONL)."""
    import json

    def _write(name: str, content: object) -> Path:
        path = tmp_path / name
        if isinstance(content, list):
            content = "".join(json.dumps(item) + "\n" for item in content)
        if isinstance(content, str):
            content = content.encode("utf-8")
        path.write_bytes(content)  # type: ignore[arg-type]
        return path

    return _write


def chat(user: str, assistant: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return {"messages": messages}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with the bundled SmolLM2 tokenizer (real chat template): fast and offline."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tunewise.assets import bundled_tokenizer_path

    tokenizer = AutoTokenizer.from_pretrained(bundled_tokenizer_path())
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         initializer_range=0.3,  # peaked logits: greedy ties would make identity tests flaky
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    import torch

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
