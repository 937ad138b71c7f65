"""Running an experiment: read, split, every arm, robustness re-runs, evidence, report; and the demo."""
