"""Per-request latency, measured as a user of the served arm meets it: one request at a time.

An arm's predictions carry its batched time divided by the batch size, so every example of a batch gets the
same figure and p50 equals p95. The probe instead sends the first N test examples one at a time (batch of one,
after one untimed warm-up call so model loading is not counted) through the same backend the arm scored with,
and records each request's wall time, with the machine's load average before and after, because a loaded
machine's tail says more about the load than about the arm. Written once per arm to `latency/<arm>.json`;
a resumed run keeps the figures it has.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tunewise.schema import Example


def probe_path(run_dir: Path, arm: str) -> Path:
    return run_dir / "latency" / f"{arm}.json"


MIN_REQUESTS = 5


def measure(one: Callable[[Example], Any], examples: Sequence[Example], budget_s: float | None = None) -> dict[str, Any]:
    """Time `one(example)` for each example after a warm-up call on the first; p50/p95/mean in seconds. With a
    budget, stop once it is spent and at least MIN_REQUESTS are timed (a slow arm gets fewer, never none)."""
    load_before = _load()
    one(examples[0])  # warm-up: lazy loading, first-call allocation and kernel selection are not a request's cost
    seconds: list[float] = []
    for example in examples:
        if budget_s is not None and len(seconds) >= MIN_REQUESTS and sum(seconds) >= budget_s:
            break
        start = time.perf_counter()
        one(example)
        seconds.append(time.perf_counter() - start)
    return _record(seconds, load_before, _load(), os.cpu_count())


def _record(seconds: Sequence[float], load_before: float, load_after: float, cpus: int | None) -> dict[str, Any]:
    import numpy as np

    values = np.asarray(seconds, dtype=float)
    return {"requests": len(values), "batch_size": 1, "p50_s": float(np.percentile(values, 50)),
            "p95_s": float(np.percentile(values, 95)), "mean_s": float(values.mean()), "max_s": float(values.max()),
            "seconds": [round(float(s), 6) for s in values], "load_before": load_before, "load_after": load_after,
            "cpus": cpus}


def run_probe(run_dir: Path, arm: str, one: Callable[[Example], Any], examples: Sequence[Example], n: int,
              log: Callable[[str], None], budget_s: float | None = None) -> dict[str, Any] | None:
    """Probe `arm` unless it is off (n = 0), already recorded, or has no examples; never fails the arm."""
    from tunewise.store.atomic import atomic_write_text

    path = probe_path(run_dir, arm)
    if n <= 0 or not examples or path.is_file():
        return None
    try:
        record = measure(one, list(examples[:n]), budget_s)
    except Exception as exc:  # a probe is extra evidence: losing it must not lose the arm's predictions
        log(f"{arm}: latency probe failed ({type(exc).__name__}: {exc}); batched figures only")
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1))
    log(f"{arm}: {record['requests']} single requests, p50 {record['p50_s'] * 1000:,.0f} ms, "
        f"p95 {record['p95_s'] * 1000:,.0f} ms (load {record['load_before']:.1f})")
    return record


def combine_probes(run_dir: Path, arm: str, members: Sequence[str]) -> dict[str, Any] | None:
    """An arm that asks its members one after the other (an ensemble) answers a request in the sum of their
    times: its probe is the request-by-request sum of the members' probes, when every member has one."""
    import numpy as np

    from tunewise.store.atomic import atomic_write_text

    records = []
    for member in members:
        path = probe_path(run_dir, member)
        if not path.is_file():
            return None
        records.append(json.loads(path.read_text(encoding="utf-8")))
    n = min(len(r["seconds"]) for r in records)
    if n == 0:
        return None
    values = np.sum([r["seconds"][:n] for r in records], axis=0)
    record = _record(values, records[0]["load_before"], records[-1]["load_after"], records[0]["cpus"])
    record["sum_of"] = list(members)
    atomic_write_text(probe_path(run_dir, arm), json.dumps(record, indent=1))
    return record


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on this platform
        return 0.0
