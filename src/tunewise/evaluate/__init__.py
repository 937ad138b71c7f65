"""Evaluation: metrics, statistics, robustness, forgetting and cost (grown by the evidence stage)."""
