"""Crash-safe checkpoint folders: a checkpoint counts only once its completion marker is on disk.

transformers' Trainer writes `checkpoint-<step>/` file by file, so a kill -9 during a save leaves a folder
that looks like a checkpoint and is not one. Here every file of a finished save is fsynced, then a marker
(`tunewise-complete.json`) is written atomically and the folder fsynced; resume picks the newest folder with a
marker and deletes the rest of the partial ones. Rotation removes the marker first, so a crash halfway
through a deletion leaves a folder that is simply ignored. This module knows nothing about models or
trainers: it manages folders of files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from tunewise.store.atomic import atomic_write_text

MARKER = "tunewise-complete.json"
_STEP = re.compile(r"^checkpoint-(\d+)$")


def _fsync_tree(folder: Path) -> None:
    for file in folder.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def step_of(folder: Path) -> int | None:
    match = _STEP.match(folder.name)
    return int(match.group(1)) if match else None


def mark_complete(folder: Path, **facts: object) -> None:
    """Declare `folder` a usable checkpoint: its files are durable before the marker exists."""
    _fsync_tree(folder)
    atomic_write_text(folder / MARKER, json.dumps({"step": step_of(folder), "time": time.time(), **facts}) + "\n")


def is_complete(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and step_of(p) is not None and is_complete(p)]
    return sorted(found, key=lambda p: step_of(p) or 0)


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint; partial ones (no marker: the process died while saving) are removed."""
    if not root.is_dir():
        return None
    for folder in root.iterdir():
        if folder.is_dir() and step_of(folder) is not None and not is_complete(folder):
            shutil.rmtree(folder, ignore_errors=True)
    found = checkpoints(root)
    return found[-1] if found else None


def remove(folder: Path) -> None:
    """Unmark first, then delete: an interrupted deletion leaves an ignored folder, never a broken 'complete' one."""
    (folder / MARKER).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def recorded_seconds(folder: Path | None) -> float:
    """Training seconds spent up to checkpoint `folder` (its marker's `train_seconds`); 0 without one, so a
    resumed run reports the time of every leg, not only the last."""
    if folder is None:
        return 0.0
    marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    return float(marker.get("train_seconds", 0.0))  # checkpoints written before this field count as 0


def rotate(root: Path, keep_last: int, keep: Path | None = None) -> None:
    """Keep the newest `keep_last` complete checkpoints and `keep` (the best so far); remove the others."""
    found = checkpoints(root)
    survivors = set(found[-keep_last:]) if keep_last > 0 else set()
    if keep is not None:
        survivors.add(Path(keep))
    for folder in found:
        if folder not in survivors:
            remove(folder)
