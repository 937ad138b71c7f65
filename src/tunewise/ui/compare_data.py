"""The paired test behind the Compare page: two arms of one run, or one arm in two runs that share a frozen split.

The statistics are the evaluation's own (`tunewise.evaluate.stats.compare`): McNemar on per-example correctness
for classification accuracy, the paired bootstrap otherwise, with the run's resamples, seed, alpha and margin.
Both sides are aligned on the example ids they share, so the pairs are the same test examples.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunewise.ui.run_data import PredictionTable, RunDataError


@dataclass(frozen=True)
class Side:
    """One arm of one run, as the Compare page names it."""

    run_id: str
    folder: Path
    arm: str

    @property
    def label(self) -> str:
        return self.arm


def test_split_hash(folder: Path) -> str | None:
    """sha256 of the run's frozen test split as `splits/split.json` records it (None when not recorded)."""
    path = folder / "splits" / "split.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("sha256", {}).get("test.jsonl") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def same_split_problem(a: Path, b: Path) -> str | None:
    """Why two runs cannot be compared example by example, or None when their frozen test splits match."""
    ha, hb = test_split_hash(a), test_split_hash(b)
    if ha is None or hb is None:
        missing = a if ha is None else b
        return (f"Run {missing.name} has no splits/split.json with the test split's sha256, so it cannot be shown "
                "that both runs scored the same examples.")
    if ha != hb:
        return (f"The runs were scored on different test splits (test.jsonl sha256 {ha[:12]}… vs {hb[:12]}…). A "
                "paired test needs the same frozen split: re-run one with `split.test` pointing at the other's "
                "splits/test.jsonl.")
    return None


def _predictions(table: PredictionTable, arm: str, ids: list[str]) -> list[Any]:
    from tunewise.schema import Prediction

    index = {example: i for i, example in enumerate(table.ids)}
    answers = table.answers[arm]
    return [Prediction(id=e, arm=arm, input="", reference=table.references[index[e]],
                       prediction=answers[index[e]] or "", raw="", latency_s=0.0) for e in ids]


def shared_ids(table_a: PredictionTable, arm_a: str, table_b: PredictionTable, arm_b: str) -> list[str]:
    """Example ids both sides answered, in side A's order, with the same reference on both sides."""
    ref_b = {e: table_b.references[i] for i, e in enumerate(table_b.ids) if table_b.answers[arm_b][i] is not None}
    return [e for i, e in enumerate(table_a.ids)
            if table_a.answers[arm_a][i] is not None and ref_b.get(e) == table_a.references[i]]


def paired_test(a: Side, table_a: PredictionTable, b: Side, table_b: PredictionTable, results: Mapping[str, Any],
                task: Any, label_a: str, label_b: str) -> tuple[dict[str, Any], int]:
    """The run's paired test of side A against side B (`delta` = A - B) and the number of shared examples."""
    from tunewise.evaluate.metrics import families
    from tunewise.evaluate.stats import compare, resample_weights

    ids = shared_ids(table_a, a.arm, table_b, b.arm)
    if len(ids) < 2:
        raise RunDataError(f"{label_a} and {label_b} share {len(ids)} answered test example(s) with the same "
                           "reference; a paired test needs at least two.")
    preds_a, preds_b = _predictions(table_a, a.arm, ids), _predictions(table_b, b.arm, ids)
    metric = str(results.get("primary_metric") or "score")
    bootstrap = results.get("bootstrap") if isinstance(results.get("bootstrap"), dict) else {}
    weights = resample_weights(len(ids), int(bootstrap.get("resamples", 1000)), int(bootstrap.get("seed", 0)))
    correct = None
    if metric == "accuracy" and task.labels:
        correct = ([p.prediction == p.reference for p in preds_a], [p.prediction == p.reference for p in preds_b])
    fams_a, fams_b = families(preds_a, task), families(preds_b, task)
    try:
        test = compare(label_a, label_b, fams_a, fams_b, metric, weights, float(results.get("alpha", 0.05)),
                       correct, float(results.get("margin") or 0.0))
    except KeyError as exc:
        raise RunDataError(f"results.json names primary metric {metric!r}, which these predictions do not give "
                           f"({exc}).") from None
    return test.to_dict(), len(ids)
