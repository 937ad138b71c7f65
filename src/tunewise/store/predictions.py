"""`predictions/<arm>.jsonl`: one line per test example, appended as soon as it exists, so an interrupted
run loses at most the batch in flight and a resumed run skips what is already there.

A torn last line (the process died mid-write) is ignored on reading and overwritten on the next append.
Knows nothing about models or arms.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from tunewise.schema import Prediction


class PredictionStore:
    def __init__(self, path: Path, metadata: Mapping[str, dict[str, Any]] | None = None) -> None:
        """`metadata`: each test example's metadata by id, written on its predictions (arms need not copy it)."""
        self.path = path
        self._metadata = metadata or {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._done: dict[str, Prediction] = {}
        self._valid_bytes = 0
        if path.exists():
            self._load()

    def _load(self) -> None:
        with open(self.path, "rb") as handle:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break  # torn final write
                try:
                    item = json.loads(raw)
                except ValueError:
                    break
                prediction = Prediction(**item)
                self._done[prediction.id] = prediction
                self._valid_bytes += len(raw)

    @property
    def done(self) -> dict[str, Prediction]:
        return self._done

    def append(self, predictions: Iterable[Prediction]) -> None:
        lines = [json.dumps(self._with_metadata(p).to_dict(), ensure_ascii=False, allow_nan=False) + "\n"
                 for p in predictions]
        if not lines:
            return
        with open(self.path, "r+b" if self.path.exists() else "wb") as handle:
            handle.seek(self._valid_bytes)
            handle.truncate()
            data = "".join(lines).encode("utf-8")
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            self._valid_bytes += len(data)
        for line in lines:
            prediction = Prediction(**json.loads(line))
            self._done[prediction.id] = prediction

    def _with_metadata(self, prediction: Prediction) -> Prediction:
        if prediction.metadata is None and prediction.id in self._metadata:
            return replace(prediction, metadata=self._metadata[prediction.id])
        return prediction

    def ordered(self, ids: Iterable[str]) -> list[Prediction]:
        return [self._done[i] for i in ids if i in self._done]
