"""Hand each decoding step's new tokens to a per-row callback while a batch is being generated.

`model.generate(streamer=...)` calls `put` once with the prompt ids (B, L) and then once per step with the
batch's new tokens (B,) or (B, 1). `RowStreamer` splits that step by row, maps the row back to the caller's
prompt index (generation batches are length-sorted), and stops a row's stream at its end-of-turn token or at
`max_new_tokens`: after that, `generate` only pads the row, and those pads are nobody's text.

Knows nothing about text, HTTP or event loops: the callback receives token ids and decides what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers.generation.streamers import BaseStreamer

TokenCallback = Callable[[int, list[int], bool], None]
"""`(prompt index, new token ids, finished)`; `finished` is True exactly once per row, with its last tokens
(the end-of-turn token is included, as in `Generation.completion_tokens`)."""


class RowStreamer(BaseStreamer):
    def __init__(self, rows: Sequence[int], on_tokens: TokenCallback, end_ids: Sequence[int],
                 max_new_tokens: int) -> None:
        self.rows = list(rows)
        self.on_tokens = on_tokens
        self.end_ids = set(end_ids)
        self.max_new_tokens = max_new_tokens
        self.counts = [0] * len(self.rows)
        self.done = [False] * len(self.rows)
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # the first call carries the (padded) prompts, not generated tokens
            self.prompt_seen = True
            return
        for slot, new in enumerate(value.reshape(len(self.rows), -1).tolist()):
            if self.done[slot]:
                continue
            taken: list[int] = []
            for token in new:
                taken.append(token)
                self.counts[slot] += 1
                if token in self.end_ids or self.counts[slot] >= self.max_new_tokens:
                    self.done[slot] = True
                    break
            self.on_tokens(self.rows[slot], taken, self.done[slot])

    def end(self) -> None:
        # every row normally ended in `put`; a row cut short some other way still hears that it is over
        for slot, finished in enumerate(self.done):
            if not finished:
                self.done[slot] = True
                self.on_tokens(self.rows[slot], [], True)
