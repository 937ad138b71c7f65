"""An on-disk cache of tokenized fine-tuning examples, so the same data is rendered and tokenized once.

Rendering a conversation through its chat template and finding the assistant spans costs three template
renders and tokenizations per example (`sft_data.assistant_spans`): seconds for a few hundred examples, paid
again by every optuna trial, learning-curve point, progressive stage and resume. The result depends only on
the tokenizer (vocabulary, merges, normalisation, added and special tokens), its chat template, the
examples, `max_length`, the end-of-turn ids, the transformers version that renders the template and this
module's format version, so a SHA-256 over exactly those is the key of one file per example set.

Files are safetensors (no pickle: loading one cannot run code), written atomically, and carry a checksum of
their payload; a file that is unreadable, truncated, altered or for another key is a miss and is rebuilt,
never an error. A cache that cannot be written (read-only or full disk) costs the saving, not the run.

This module knows nothing about models or training: it maps examples to `TokenizedExample`s, like
`sft_data.tokenize_examples`, with a memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tunewise.schema import Example
from tunewise.store.atomic import atomic_open
from tunewise.train.sft_data import TokenizedExample, end_of_turn_set, tokenize_examples

FORMAT_VERSION = 1
"""Bump when `sft_data` changes what a tokenized example holds (masking rules, truncation): old files miss."""

KEEP_FILES = 64
"""Newest files kept in a cache folder; each is a few MB for a few thousand examples."""

SUFFIX = ".safetensors"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """SHA-256 of everything in the tokenizer that decides token ids and chat rendering.

    A fast tokenizer serialises its whole pipeline (vocabulary, merges, normaliser, pre-tokenizer, added
    tokens) to one JSON string; a slow one is described by its vocabulary. The special tokens and the chat
    template are added because the template reads them (`bos_token`, `eos_token`).
    """
    import transformers

    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode("utf-8"))
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode("utf-8"))
    digest.update(json.dumps({
        "class": type(tokenizer).__name__,
        "special": {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())},
        "chat_template": tokenizer.chat_template,
        "transformers": transformers.__version__,
    }, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()


def _examples_digest(examples: Sequence[Example]) -> str:
    """SHA-256 of what rendering reads from each example (id for the dropped list, every turn and weight)."""
    canonical = [[e.id, [[m.role, m.content, m.weight] for m in e.messages]] for e in examples]
    return hashlib.sha256(json.dumps(canonical, ensure_ascii=False, separators=(",", ":")).encode("utf-8")).hexdigest()


def _payload_digest(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _to_tensors(items: Sequence[TokenizedExample]) -> dict[str, torch.Tensor]:
    lengths = torch.tensor([0] + [len(item) for item in items], dtype=torch.int64)
    return {
        "input_ids": torch.tensor([t for item in items for t in item.input_ids], dtype=torch.int32),
        "labels": torch.tensor([t for item in items for t in item.labels], dtype=torch.int32),
        "offsets": torch.cumsum(lengths, 0),
        "truncated": torch.tensor([item.truncated for item in items], dtype=torch.uint8),
    }


def _from_tensors(tensors: dict[str, torch.Tensor]) -> list[TokenizedExample]:
    offsets = tensors["offsets"].tolist()
    ids, labels = tensors["input_ids"].tolist(), tensors["labels"].tolist()
    flags = tensors["truncated"].tolist()
    if len(offsets) != len(flags) + 1 or offsets[0] != 0 or offsets[-1] != len(ids) or len(labels) != len(ids):
        raise ValueError("inconsistent cache entry")
    return [TokenizedExample(ids[a:b], labels[a:b], bool(flag))
            for a, b, flag in zip(offsets, offsets[1:], flags)]


class TokenCache:
    """Tokenize example sets for one (tokenizer, max_length, end-of-turn ids), through files in `folder`.

    `folder=None` turns the memory off (every call tokenizes). `hits` and `misses` count calls.
    """

    def __init__(self, folder: Path | None, tokenizer: Any, max_length: int,
                 end_of_turn_ids: Sequence[int] | None = None, keep: int = KEEP_FILES) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.end_of_turn_ids = sorted(end_of_turn_set(tokenizer, end_of_turn_ids))
        self.keep = keep
        self.hits = 0
        self.misses = 0
        self._context = json.dumps({"format": FORMAT_VERSION, "tokenizer": tokenizer_fingerprint(tokenizer),
                                    "max_length": max_length, "end_of_turn_ids": self.end_of_turn_ids},
                                   sort_keys=True) if self.folder is not None else ""

    def key(self, examples: Sequence[Example]) -> str:
        """The file name stem for this example set: SHA-256 of the context and the examples."""
        return hashlib.sha256(f"{self._context}\n{_examples_digest(examples)}".encode()).hexdigest()

    def tokenize(self, examples: Sequence[Example]) -> tuple[list[TokenizedExample], list[str], int]:
        """Same result as `sft_data.tokenize_examples`: (kept, ids dropped, truncated count)."""
        if not examples:
            return [], [], 0
        if self.folder is None:
            self.misses += 1
            return self._compute(examples)
        key = self.key(examples)
        path = self.folder / f"{key}{SUFFIX}"
        found = self._load(path, key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        result = self._compute(examples)
        self._store(path, key, *result)
        return result

    def _compute(self, examples: Sequence[Example]) -> tuple[list[TokenizedExample], list[str], int]:
        return tokenize_examples(examples, self.tokenizer, self.max_length, self.end_of_turn_ids)

    def _load(self, path: Path, key: str) -> tuple[list[TokenizedExample], list[str], int] | None:
        """The entry at `path`, or None when absent or damaged in any way (it is then rebuilt)."""
        if not path.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
            if meta.get("key") != key or meta.get("sha256") != _payload_digest(tensors):
                return None
            items = _from_tensors(tensors)
            dropped = json.loads(meta["dropped"])
        except Exception:  # noqa: BLE001 - any damage (torn header, bad JSON, missing tensor) means rebuild
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: kept longest by `_prune`
        return items, dropped, sum(item.truncated for item in items)

    def _store(self, path: Path, key: str, items: list[TokenizedExample], dropped: list[str], truncated: int) -> None:
        from safetensors.torch import save

        tensors = _to_tensors(items)
        meta = {"key": key, "sha256": _payload_digest(tensors), "dropped": json.dumps(dropped),
                "format": str(FORMAT_VERSION), "examples": str(len(items) + len(dropped))}
        try:
            with atomic_open(path, "wb") as out:
                out.write(save(tensors, metadata=meta))
            self._prune()
        except OSError:
            return  # a read-only or full cache costs the saving, never the training run

    def _prune(self) -> None:
        assert self.folder is not None
        files = sorted(self.folder.glob(f"*{SUFFIX}"), key=lambda f: f.stat().st_mtime, reverse=True)
        for old in files[self.keep:]:
            old.unlink(missing_ok=True)
