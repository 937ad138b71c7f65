"""The floor every classifier must clear: always answering the training split's most common label.

A table of arms means little without it: on imbalanced data "always positive" can sit within a few points of
every model, and accuracy alone hides that. The baseline is scored on the same test examples and resamples as
the arms, and when the labels are imbalanced the report warns that accuracy is weak and suggests macro-F1.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tunewise.evaluate.metrics import confusion_family, mean_family
from tunewise.evaluate.stats import intervals

# Imbalanced: the baseline already gets half the test set right, or one class is 3x as common as another.
IMBALANCE_BASELINE_ACCURACY = 0.5
IMBALANCE_CLASS_RATIO = 3.0


def majority_baseline(train_labels: Sequence[str], references: Sequence[str], labels: Sequence[str],
                      weights: np.ndarray | None, confidence: float, metric: str,
                      arm_lows: Mapping[str, float]) -> dict[str, Any] | None:
    """The baseline's metrics with intervals, whether the labels are imbalanced, and the arms it is not clearly
    below (`arm_lows`: each arm's lower interval bound on `metric`). None without training labels or a test set."""
    if not train_labels or not references or weights is None:
        return None
    counts = Counter(train_labels)
    label = min(counts, key=lambda name: (-counts[name], name))
    answers = [label] * len(references)
    fams = [mean_family("accuracy", [float(r == label) for r in references]),
            confusion_family(references, answers, labels)]
    metrics = {k: v for k, v in intervals(fams, weights, confidence).items() if "[" not in k}
    test_counts = Counter(references)
    ratio = max(test_counts.values()) / max(min(test_counts.get(name, 0) for name in labels), 1)
    imbalanced = metrics["accuracy"]["value"] >= IMBALANCE_BASELINE_ACCURACY or ratio >= IMBALANCE_CLASS_RATIO
    floor = metrics.get(metric, {}).get("value")
    return {"label": label, "metrics": metrics, "imbalanced": imbalanced, "class_ratio": ratio,
            "not_clearly_better": sorted(name for name, low in arm_lows.items() if floor is not None and low <= floor),
            "warning": _warning(label, metrics, ratio, metric) if imbalanced else None}


def _warning(label: str, metrics: Mapping[str, Any], ratio: float, metric: str) -> str:
    acc = metrics["accuracy"]
    text = (f"labels are imbalanced (largest class {ratio:.1f}x the smallest in the test set): always answering "
            f"'{label}' scores accuracy {acc['value']:.3f} [{acc['low']:.3f}, {acc['high']:.3f}]")
    if metric == "accuracy":
        return text + ", so accuracy says little here; set evaluation.primary_metric: macro_f1"
    return text + f"; the primary metric is {metric}"
