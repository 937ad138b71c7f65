"""Re-rendering a run's report.md and report.html after a review is saved, in the background.

A save writes reviews.jsonl and results.json at once (evaluate/human_review.py); the reports are rendered from
results.json afterwards, because drawing the plots takes seconds on a large run and the reviewer should not
wait for it. Saves that arrive while a render runs are folded into one more render, so the last render always
reads the latest results.json. Each file is written atomically: a reader sees the old report or the new one.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path


class ReportRefresher:
    """One background render at a time per run folder, plus at most one queued behind it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[Path] = set()
        self._again: set[Path] = set()
        self.errors: dict[Path, str] = {}

    def schedule(self, folder: Path) -> None:
        with self._lock:
            if folder in self._running:
                self._again.add(folder)
                return
            self._running.add(folder)
        threading.Thread(target=self._work, args=(folder,), name=f"report-{folder.name}", daemon=True).start()

    def busy(self, folder: Path) -> bool:
        with self._lock:
            return folder in self._running

    def _work(self, folder: Path) -> None:
        from tunewise.report import write_rendered

        while True:
            try:
                write_rendered(folder, json.loads((folder / "results.json").read_text(encoding="utf-8")))
                self.errors.pop(folder, None)
            except Exception as exc:  # a damaged results.json: the next save or `tunewise report` fixes it
                self.errors[folder] = f"{type(exc).__name__}: {exc}"
            with self._lock:
                if folder in self._again:
                    self._again.discard(folder)
                    continue
                self._running.discard(folder)
                return
