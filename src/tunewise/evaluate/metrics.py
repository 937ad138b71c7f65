"""Per-arm quality from its predictions, written so every metric can be bootstrapped cheaply.

Each metric is a function of *summed per-example statistics*: accuracy sums correctness, macro-F1 sums a
confusion-matrix cell per example, BLEU and chrF sum sacrebleu's own n-gram statistics, field-level F1
sums (true positives, predicted fields, reference fields). A bootstrap resample is then a weighted sum
of rows, so a thousand resamples cost one matrix product (see stats.py), and corpus-level metrics
(macro-F1, BLEU) are resampled correctly rather than averaged per sentence.

Metrics: classification accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix;
extraction JSON validity, exact match and field-level precision/recall/F1; generation BLEU, chrF (both
scaled to 0-1), ROUGE-L F and exact match. `score` is always the task's own scorer (mean). Knows nothing
about models, arms or files.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunewise.schema import Prediction
from tunewise.tasks import Task

Reduce = Callable[[np.ndarray, int], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Family:
    """Per-example statistics (n x k) and how summed statistics (B x k, over n examples) become metrics."""

    stats: np.ndarray
    reduce: Reduce

    def values(self, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Metrics for each row of `weights` (B x n resample counts); all ones (the data itself) by default."""
        n = self.stats.shape[0]
        weights = np.ones((1, n)) if weights is None else weights
        return self.reduce(weights @ self.stats, n)

    def subset(self, index: Sequence[int]) -> Family:
        return Family(self.stats[np.asarray(index, dtype=int)], self.reduce)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den is 0 (scikit-learn's zero_division=0)."""
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


def mean_family(name: str, values: Sequence[float]) -> Family:
    return Family(np.asarray(values, dtype=float).reshape(-1, 1), lambda t, n: {name: t[:, 0] / max(n, 1)})


def confusion_family(references: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> Family:
    """One-hot confusion cell per example; anything outside `labels` (an unparsed answer) falls in an extra
    last row/column, so it counts against recall and never as a true positive."""
    size = len(labels) + 1
    index = {label: i for i, label in enumerate(labels)}
    cells = [index.get(r, size - 1) * size + index.get(p, size - 1) for r, p in zip(references, predicted)]
    stats = np.zeros((len(cells), size * size))
    stats[np.arange(len(cells)), cells] = 1

    def reduce(totals: np.ndarray, n: int) -> dict[str, np.ndarray]:
        matrix = totals.reshape(-1, size, size)[:, :-1, :]  # rows: reference labels; columns include "other"
        tp = np.stack([matrix[:, i, i] for i in range(len(labels))], axis=1)
        predicted_count = totals.reshape(-1, size, size)[:, :, :-1].sum(axis=1)
        reference_count = matrix.sum(axis=2)
        precision, recall = _ratio(tp, predicted_count), _ratio(tp, reference_count)
        f1 = _ratio(2 * tp, predicted_count + reference_count)
        out = {"macro_f1": f1.mean(axis=1)}
        for i, label in enumerate(labels):
            out[f"precision[{label}]"], out[f"recall[{label}]"], out[f"f1[{label}]"] = \
                precision[:, i], recall[:, i], f1[:, i]
        return out

    return Family(stats, reduce)


def flatten_fields(value: Any, prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}: nested objects become dotted fields; lists are compared whole."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, inner in value.items():
            out.update(flatten_fields(inner, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(value, sort_keys=True)}


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def field_family(references: Sequence[str], predicted: Sequence[str]) -> Family:
    """Micro-averaged field precision/recall/F1: a field is right when its dotted path and value both match."""
    from tunewise.tasks.extract import first_json_object

    rows = []
    for reference, prediction in zip(references, predicted):
        expected = flatten_fields(first_json_object(reference) or {})
        got = flatten_fields(_json_object(prediction) or {}) if prediction else {}
        tp = sum(1 for key, value in got.items() if expected.get(key) == value)
        rows.append((tp, len(got), len(expected)))

    def reduce(totals: np.ndarray, n: int) -> dict[str, np.ndarray]:
        precision, recall = _ratio(totals[:, 0], totals[:, 1]), _ratio(totals[:, 0], totals[:, 2])
        return {"field_precision": precision, "field_recall": recall,
                "field_f1": _ratio(2 * precision * recall, precision + recall)}

    return Family(np.asarray(rows, dtype=float).reshape(-1, 3), reduce)


def sacrebleu_family(name: str, metric: Any, references: Sequence[str], predicted: Sequence[str]) -> Family:
    """BLEU or chrF from sacrebleu's own per-sentence statistics, so the corpus score is sacrebleu's exactly."""
    stats = np.asarray(metric._extract_corpus_statistics(list(predicted), [list(references)]), dtype=float)

    def reduce(totals: np.ndarray, n: int) -> dict[str, np.ndarray]:
        return {name: np.array([metric._compute_score_from_stats(list(row)).score / 100 for row in totals])}

    return Family(stats, reduce)


def rouge_l(references: Sequence[str], predicted: Sequence[str]) -> list[float]:
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rougeL"], use_stemmer=False)
    return [scorer.score(r, p)["rougeL"].fmeasure for r, p in zip(references, predicted)]


def families(predictions: Sequence[Prediction], task: Task) -> list[Family]:
    """Every metric family for this task, over the predictions in order."""
    references = [p.reference for p in predictions]
    predicted = [p.prediction for p in predictions]
    scores = [task.score(p.prediction, p.reference) for p in predictions]
    out = [mean_family("score", scores)]
    if task.labels:
        out += [mean_family("accuracy", [float(p == r) for p, r in zip(predicted, references)]),
                confusion_family(references, predicted, task.labels)]
    elif task.name == "extract":
        out += [mean_family("exact_match", scores),
                mean_family("json_valid", [float(_json_object(p) is not None) for p in predicted]),
                field_family(references, predicted)]
    else:
        from sacrebleu.metrics import BLEU, CHRF

        out += [mean_family("exact_match", scores), sacrebleu_family("bleu", BLEU(), references, predicted),
                sacrebleu_family("chrf", CHRF(), references, predicted),
                mean_family("rouge_l", rouge_l(references, predicted))]
    return out


def point_values(fams: Sequence[Family]) -> dict[str, float]:
    return {name: float(value[0]) for fam in fams for name, value in fam.values().items()}


def confusion_matrix(predictions: Sequence[Prediction], labels: Sequence[str]) -> dict[str, Any]:
    """Rows are references, columns predictions; `(none)` collects answers outside the labels, and is left out
    when no answer (and no reference) fell there: an empty row and column only make the matrix harder to read."""
    from sklearn.metrics import confusion_matrix as sk_confusion

    other = "(none)"
    known = set(labels)
    references = [p.reference if p.reference in known else other for p in predictions]
    predicted = [p.prediction if p.prediction in known else other for p in predictions]
    names = list(labels) + ([other] if other in references or other in predicted else [])
    return {"labels": names, "matrix": sk_confusion(references, predicted, labels=names).tolist()}


def arm_metrics(predictions: Sequence[Prediction], task: Task) -> dict[str, Any]:
    """The flat per-arm summary kept in metrics.json: point values of every metric, failures, latency."""
    if not predictions:
        return {"n": 0}
    latencies = [p.latency_s for p in predictions]
    out: dict[str, Any] = {
        "n": len(predictions),
        "failed": sum(p.error is not None for p in predictions),
        "unparsed": sum(not p.prediction and p.error is None for p in predictions),
        "cached": sum(p.cached for p in predictions),
        "latency_p50_s": statistics.median(latencies),
        "prompt_tokens_mean": sum(p.prompt_tokens for p in predictions) / len(predictions),
    }
    values = point_values(families(predictions, task))
    out.update({k: v for k, v in values.items() if "[" not in k})  # per-class figures live in results.json
    return out
