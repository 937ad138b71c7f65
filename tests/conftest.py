"""Shared fixtures. Tests never download: the hub is switched off before anything imports transformers."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Two caches, so that no test passes on what an earlier session left behind and a developer's own ~/.cache is
# never written:
# - TUNEWISE_CACHE, private to this session and removed at its end: what tunewise caches while working (answers
#   in predictions.sqlite, embeddings, tokenized data, classical fits).
# - TUNEWISE_ASSET_CACHE, kept between sessions in .cache/tunewise-test/ at the repository root (git-ignored;
#   `make clean` removes it): the converted bundled model, tokenizer and dataset export. Converting the model
#   takes half a minute or more and gives the same folder every time. The folder's name hashes assets.py (the
#   conversion code) and the transformers version, so a change to either converts afresh rather than
#   testing an old conversion; folders of other hashes unused for a day are removed.
# The tests of conversion and caching themselves (test_assets.py) point both at temp folders of their own, so
# a clean machine's first-use conversion is still what they exercise. Set either variable to choose the folder.
ROOT = Path(__file__).resolve().parents[1]
SHARED_ASSETS = ROOT / ".cache" / "tunewise-test"
STALE_ASSETS_SECONDS = 24 * 3600


def _shared_asset_cache() -> Path:
    import hashlib
    import importlib.metadata
    import importlib.util
    import shutil
    import time

    spec = importlib.util.find_spec("tunewise.assets")
    assert spec is not None and spec.origin is not None, "tunewise is not importable: run with PYTHONPATH=src"
    digest = hashlib.sha256(Path(spec.origin).read_bytes())
    digest.update(importlib.metadata.version("transformers").encode())
    folder = SHARED_ASSETS / f"assets-{digest.hexdigest()[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    os.utime(folder)  # in use: another session's sweep below leaves it alone
    cutoff = time.time() - STALE_ASSETS_SECONDS
    for other in SHARED_ASSETS.glob("assets-*"):
        if other != folder and other.is_dir() and other.stat().st_mtime < cutoff:
            shutil.rmtree(other, ignore_errors=True)
    return folder


if "TUNEWISE_CACHE" not in os.environ:
    _SESSION_CACHE = tempfile.mkdtemp(prefix="tunewise-test-cache-")
    os.environ["TUNEWISE_CACHE"] = _SESSION_CACHE
else:
    _SESSION_CACHE = None
if not os.environ.get("TUNEWISE_ASSET_CACHE"):
    os.environ["TUNEWISE_ASSET_CACHE"] = str(_shared_asset_cache())


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
