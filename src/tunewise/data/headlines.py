"""`bundled:bbc-headlines`: the bundled BBC News articles as a headline-writing task.

Each BBC article's first line is its headline. The bundled dataset keeps the headline inside `text`, so no
column mapping can say "input = the body without its first line, output = the first line"; this shape does:
rows `{"id", "input": body, "output": headline, "topic": label}` (topic is kept as example metadata, for
slices), derived once from the bundled file and rebuilt when that file changes (its hash is recorded beside).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

NAME = "bbc-headlines"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def headlines_dataset_path() -> Path:
    """The headline-writing JSONL, derived from the bundled BBC News file on first use (atomic writes)."""
    from tunewise.assets import bundled_dataset_path
    from tunewise.store.atomic import atomic_write_text

    source = bundled_dataset_path()
    target = source.with_name(f"{NAME}.jsonl")
    marker = target.with_name(f"{target.name}.source-sha256")
    source_hash = _sha256(source)
    if target.is_file() and marker.is_file() and marker.read_text(encoding="utf-8").strip() == source_hash:
        return target
    rows = []
    for line in source.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        headline, _, body = record["text"].partition("\n")
        rows.append(json.dumps({"id": record["id"], "input": body.strip(), "output": headline.strip(),
                                "topic": record["label"]}, ensure_ascii=False))
    atomic_write_text(target, "\n".join(rows) + "\n")
    atomic_write_text(marker, source_hash + "\n")
    return target
