"""The server's settings: typed, each with a description, validated once at start-up.

Knows nothing about models or HTTP; `tunewise serve` builds one of these from its options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ServeConfig(BaseModel):
    """How the server listens, admits work, batches it, caches answers and records traffic."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Interface to listen on; 0.0.0.0 exposes the server to the network.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port; 0 picks a free one (printed at start-up).")
    api_keys_env: str | None = Field("TUNEWISE_API_KEYS", description="Environment variable holding accepted API "
                                     "keys, comma-separated; unset or empty adds none.")
    api_key_file: Path | None = Field(None, description="File with one accepted API key per line (# comments). "
                                      "With no key from either source the server is open.")
    open_network: bool = Field(False, description="Listen on a non-loopback interface without API keys, for a "
                               "proxy in front that authenticates callers; without it such a bind is refused.")
    public_metrics: bool = Field(False, description="Serve /metrics without a key (for scrapers without one).")
    public_docs: bool = Field(False, description="Serve the OpenAPI schema (/openapi.json) and its browsable page "
                              "(/docs) without a key; with keys and without this, they need the key like every "
                              "route (a browser cannot send one, so /docs then works only from API tooling).")
    max_queue: int = Field(256, ge=1, description="Requests admitted (waiting or running) at once; more get 429 "
                           "with Retry-After.")
    max_batch: int = Field(16, ge=1, le=512, description="Most requests one batched model call answers.")
    max_wait_ms: float = Field(10.0, ge=0, le=60_000, description="How long the first request of a batch waits for "
                               "others to join it: more throughput under load, that much more latency when idle.")
    timeout_s: float = Field(120.0, gt=0, description="Per-request limit on waiting plus model time; then 504.")
    default_max_tokens: int = Field(64, ge=1, description="Completion budget when a request names none.")
    max_tokens_limit: int = Field(2048, ge=1, description="Largest max_tokens a request may ask for.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Larger request bodies get 413.")
    cache_size: int = Field(4096, ge=0, description="Entries in the exact-match answer cache; 0 turns it off.")
    semantic_cache: bool = Field(False, description="Also answer from the cache when the last user message is "
                                 "close in meaning (MiniLM cosine) to a cached one with the same model and settings.")
    semantic_threshold: float = Field(0.95, gt=0, le=1, description="Cosine similarity a semantic hit needs.")
    capture_path: Path | None = Field(None, description="Append every answered chat as {\"messages\": [...]} to this "
                                      "JSONL file (the training chat format); off when unset.")
    capture_pii: Literal["redact", "skip"] = Field("redact", description="Captured text with personal data or "
                                                   "secrets: replace the spans with placeholders, or skip the record.")
    drain_timeout_s: float | None = Field(None, ge=0, description="After SIGTERM, how long in-flight requests "
                                          "may take; those still unanswered then get a 503 envelope (a stream: an "
                                          "error event and [DONE]). Default: --timeout plus 5 s, which no request "
                                          "can outlast (each ends by --timeout, with a 504 if need be).")
    precision: Literal["auto", "bf16", "fp32", "fp16"] = Field("auto", description="Local model precision; auto = "
                                                               "bf16 where the hardware runs it fast.")
    threads: int | None = Field(None, ge=1, description="CPU threads for torch; default: all cores.")
    state_dir: Path | None = Field(None, description="Folder for uploaded files, fine-tuning jobs and the models they "
                                   "train; turns on /v1/files and /v1/fine_tuning/jobs (off when unset). Jobs survive "
                                   "a restart: an interrupted one resumes from its last checkpoint.")
    max_upload_bytes: int = Field(64_000_000, ge=1024, description="Largest file accepted by POST /v1/files; larger "
                                  "uploads get 413.")

    @model_validator(mode="after")
    def _budgets_agree(self) -> ServeConfig:
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError(f"default_max_tokens ({self.default_max_tokens}) exceeds max_tokens_limit "
                             f"({self.max_tokens_limit}); lower the default or raise the limit")
        return self
