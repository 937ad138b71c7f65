"""tunewise: measure whether fine-tuning pays on your own data, then serve the winner."""

__version__ = "0.1.0"
