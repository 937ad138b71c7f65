"""The fine-tuning engine: turn examples into trained tokens, batches and checkpoints."""
