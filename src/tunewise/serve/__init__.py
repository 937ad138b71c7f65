"""Serving: an OpenAI-compatible HTTP API over a run's winning arm, a local model, or LoRA adapters."""
