"""Trained models reused across runs: a run that changes only what happens after training (cost settings, the
arms around it, the report) must not pay for the same training again.

A finished training's folder and its `training/<arm>.json` record are filed in the cache under a key of
everything that decides the weights: the arm's whole configuration, the exact training and validation
conversations it learned from (so the task, prompt variant and split are in it), the base model's fingerprint,
the seed and the library versions. Any change there is a miss and trains afresh. Files are hard-linked where
the file system allows (an export holds a full merged model), copied otherwise, and moved into place
atomically, so an interrupted copy never leaves a half folder that looks finished. The record keeps the
original training seconds: the cost comparison counts what the training cost once, and says it was reused.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tunewise.schema import Example
from tunewise.store.atomic import atomic_dir, atomic_write_text

RECORD = "training-record.json"


def training_key(kind: str, arm: Any, train: Sequence[Example], val: Sequence[Example], base_id: str,
                 seed: int) -> str:
    """The cache key of a training: what it learned from and how (see the module docstring)."""
    import torch
    import transformers

    from tunewise import __version__
    from tunewise.store.answer_cache import cache_key

    def rows(examples: Sequence[Example]) -> list[Any]:
        return [(e.id, [(m.role, m.content) for m in e.messages], e.metadata) for e in examples]

    return cache_key(kind=kind, arm=arm.model_dump(mode="json"), train=rows(train), val=rows(val), seed=seed,
                     base=base_id, torch=torch.__version__,
                     transformers=transformers.__version__, tunewise=__version__)


def cache_folder(key: str) -> Path:
    from tunewise.assets import cache_dir

    return cache_dir() / "trained" / key[:32]


def restore(key: str, folder: Path, record_path: Path | None, log: Callable[[str], None], name: str) -> bool:
    """Put the cached training into the run (`folder`, and the record at `record_path`); False on a miss."""
    cached = cache_folder(key)
    if not (cached / RECORD).is_file():
        return False
    record = json.loads((cached / RECORD).read_text(encoding="utf-8"))
    with atomic_dir(folder) as tmp:
        _link_tree(cached / "model", tmp)
    if record_path is not None:
        atomic_write_text(record_path, json.dumps(record | {"reused_from": str(cached)}, indent=2) + "\n")
    log(f"{name}: reused the identical training from {cached} (trained in {record.get('seconds', 0):.0f} s "
        "once; its cost still counts)")
    return True


def save(key: str, folder: Path, record_path: Path | None) -> None:
    """File a finished training in the cache (a failure to file it never fails the run)."""
    cached = cache_folder(key)
    record = json.loads(record_path.read_text(encoding="utf-8")) if record_path and record_path.is_file() else {}
    try:
        with atomic_dir(cached) as tmp:
            _link_tree(folder, tmp / "model")
            (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    except OSError:  # a full or read-only cache disk: the run folder still has everything
        return


def _link_tree(source: Path, target: Path) -> None:
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another file system, or links not allowed: copy instead
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link, dirs_exist_ok=True)
