"""Model backends: local Hugging Face models and remote OpenAI-compatible endpoints."""
