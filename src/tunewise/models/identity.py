"""A model's identity for cache keys: changes whenever the weights or config could have changed.

Hashing gigabytes of weights on every run would cost more than the cache saves, so a local folder is
identified by its config and tokenizer files' contents plus each weight file's name, size and mtime; a
hub id by its name (and revision, when given). Knows nothing about loading models.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_CONTENT_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                  "chat_template.jinja", "adapter_config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


def model_fingerprint(model: str | Path) -> str:
    path = Path(model)
    if not path.is_dir():
        return f"hub:{model}"
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        if not file.is_file():
            continue
        relative = str(file.relative_to(path))
        if file.name in _CONTENT_FILES:
            digest.update(relative.encode() + b"\0" + file.read_bytes() + b"\0")
        elif file.suffix in _WEIGHT_SUFFIXES:
            stat = file.stat()
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return f"{path.name}:{digest.hexdigest()[:16]}"
