"""Prometheus metrics of one server: traffic, latency, tokens, cache, queue and errors.

Each app has its own registry (several servers in one test process must not share counters). Route labels
are the known route paths only ("other" for anything else) so random 404 paths cannot grow the series count.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ServeMetrics:
    def __init__(self, queue_depth: Callable[[], float], in_flight: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("tunewise_requests", "HTTP requests answered", ["route", "status"], registry=r)
        self.latency = Histogram("tunewise_request_seconds", "Time to answer a request (whole response)", ["route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("tunewise_tokens", "Tokens processed", ["model", "kind"], registry=r)
        self.cache_hits = Counter("tunewise_cache_hits", "Answers served from the cache", ["kind"], registry=r)
        self.cache_misses = Counter("tunewise_cache_misses", "Cacheable requests the cache could not answer",
                                    registry=r)
        self.errors = Counter("tunewise_errors", "Error responses by error code", ["status", "code"], registry=r)
        self.batch_size = Histogram("tunewise_batch_size", "Requests per batched model call", ["kind"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=r)
        self.stream_disconnects = Counter("tunewise_stream_disconnects",
                                          "Streamed responses whose client went away before the end", registry=r)
        self.captured = Counter("tunewise_capture_records", "Capture outcomes", ["outcome"], registry=r)
        Gauge("tunewise_queue_depth", "Requests admitted and not yet answered by the model",
              registry=r).set_function(queue_depth)
        Gauge("tunewise_in_flight", "HTTP requests being handled", registry=r).set_function(in_flight)

    def render(self) -> bytes:
        return generate_latest(self.registry)
