"""Progress as plain lines, for output that is not a terminal (a log file, CI, `nohup`).

Rich draws its bars only on a terminal; elsewhere it prints them once at the end, so a 51-minute run logged
nothing for 25 minutes. Here every task prints a line when it starts, then at most one line every `interval`
seconds while it advances (count, percent, elapsed, ETA), and one when it ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

INTERVAL_S = 10.0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def progress_line(description: str, done: int, total: int, elapsed: float) -> str:
    """`retrieval: 120/445 (27%) elapsed 0:00:31 eta 0:01:24`; the ETA assumes the pace so far holds."""
    share = done / total if total else 1.0
    eta = _clock(elapsed * (1 - share) / share) if share > 0 else "?"
    return f"{description}: {done:,}/{total:,} ({share:.0%}) elapsed {_clock(elapsed)} eta {eta}"


@contextmanager
def plain_progress(write: Callable[[str], Any], interval: float = INTERVAL_S,
                   clock: Callable[[], float] = time.monotonic) -> Iterator[Callable[[str, int], Any]]:
    """A progress factory (the arms' `ctx.progress`) that writes lines instead of drawing bars."""

    @contextmanager
    def factory(description: str, total: int) -> Iterator[Callable[[int], None]]:
        start = last = clock()
        done = 0
        write(progress_line(description, 0, total, 0.0))

        def advance(n: int) -> None:
            nonlocal done, last
            done += n
            now = clock()
            if now - last >= interval and done < total:
                last = now
                write(progress_line(description, done, total, now - start))

        yield advance
        write(progress_line(description, done, total, clock() - start))

    yield factory
