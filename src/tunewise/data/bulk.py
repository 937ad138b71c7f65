"""Pause Python's cyclic garbage collector while a file's records become millions of small objects.

Reading 100k chat lines creates about two million dicts, lists, strings and dataclasses that all stay alive
until the report is built. Each time enough of them accumulate, the collector walks every live container to
look for reference cycles, and the older generations grow with the data, so the walks cost more and more:
on 100k lines they were a third of `tunewise check`'s time (bench/check_throughput.py, with and without).
None of these objects form cycles, so reference counting frees them all anyway; pausing the collector only
skips the pointless walks. The pause nests and restores whatever state the caller had.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block; re-enable it afterwards only if it was enabled before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
