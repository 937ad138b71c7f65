"""Record served conversations as training data: one `{"messages": [...]}` line per answer, PII-checked.

What a deployment answers today is tomorrow's fine-tuning set, so each answered chat (the caller's messages
plus the reply) is appended in the same chat JSONL that `tunewise check` and the trainers read. Every text is
scanned with the project's privacy scanner first; records with personal data or secrets are redacted (typed
placeholders such as <EMAIL_ADDRESS>) or skipped, as configured.

Appends are safe across threads and processes: one `os.write` of a whole line on an O_APPEND descriptor under
an exclusive `flock`, so concurrent writers never interleave within a line. Knows nothing about HTTP.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Literal

from tunewise.data import privacy

Outcome = Literal["written", "redacted", "skipped"]


class Capture:
    def __init__(self, path: Path, pii: Literal["redact", "skip"] = "redact") -> None:
        self.path = Path(path)
        self.pii = pii
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # opened once, up front, so a path we cannot write fails at start-up and not on the first request
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def record(self, messages: list[dict[str, str]], reply: str) -> Outcome:
        turns = [{"role": m["role"], "content": m["content"]} for m in messages]
        turns.append({"role": "assistant", "content": reply})
        findings = [privacy.scan(turn["content"]) for turn in turns]
        outcome: Outcome = "written"
        if any(findings):
            if self.pii == "skip":
                return "skipped"
            turns = [{**turn, "content": privacy.redact(turn["content"], found)}
                     for turn, found in zip(turns, findings)]
            outcome = "redacted"
        line = (json.dumps({"messages": turns}, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                os.write(self._fd, line)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        return outcome

    def close(self) -> None:
        os.close(self._fd)
