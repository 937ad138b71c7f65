"""Which process is running a run, so a reader can tell a running run from one whose process died.

A run killed with SIGKILL (or by the out-of-memory killer, or a power cut) never writes its final status: its
manifest says "running" forever. `tunewise run` records its pid and host in the manifest (`process`); a reader on
the same host checks whether that pid still exists. Another host's pid cannot be checked, and a pid the system
has since given to a new process reads as alive: the answer errs towards "still running", never the other way.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any


def this_process() -> dict[str, Any]:
    """The manifest's `process` field for the current process."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def process_gone(manifest: Mapping[str, Any]) -> bool:
    """True when the manifest names a process on this host that no longer exists (the run died without a word)."""
    process = manifest.get("process")
    if not isinstance(process, Mapping) or process.get("host") != socket.gethostname():
        return False
    pid = process.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the pid exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        return False
    return False
