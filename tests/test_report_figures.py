"""The report's figures read correctly: labels of near-equal arms do not overprint, a legend names only what is
drawn, p50 bars match their legend colours, epoch-only histories still get a loss curve, and the confusion matrix
has no empty `(none)` row and column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from evidence_cases import classify_run  # noqa: E402

from tunewise.evaluate.evidence import build_results  # noqa: E402
from tunewise.evaluate.metrics import confusion_matrix  # noqa: E402
from tunewise.report import plots  # noqa: E402
from tunewise.schema import Prediction  # noqa: E402


def _results(tmp_path: Path) -> dict[str, Any]:
    exp, task, test, done = classify_run(tmp_path)
    return build_results(exp, tmp_path, "r1", task, test, done, {})


def test_labels_of_points_on_top_of_each_other_get_different_places() -> None:
    fig, ax = plt.subplots()
    points = {"alpha": (1.0, 0.9), "beta": (1.0, 0.9), "gamma": (1.0, 0.9)}
    ax.scatter([1.0], [0.9])
    plots._place_labels(ax, points)
    offsets = [tuple(text.xyann) for text in ax.texts]
    plt.close(fig)
    assert len(offsets) == 3 and len(set(offsets)) == 3


def test_the_frontier_is_in_the_legend_only_when_it_is_drawn(tmp_path: Path) -> None:
    results = _results(tmp_path)  # per request: clf cheapest, then zs, then few
    accuracy = {name: arm["metrics"]["accuracy"] for name, arm in results["arms"].items()}
    accuracy["clf"]["value"], accuracy["zs"]["value"], accuracy["few"]["value"] = 0.6, 0.7, 0.9
    assert "frontier: nothing cheaper is better" in plots.cost_vs_quality(results)  # three steps up
    accuracy["clf"]["value"] = 0.99  # the cheapest is also the best: a one-point frontier draws no line
    assert "frontier" not in plots.cost_vs_quality(results)


def test_the_latency_legend_names_the_colours_of_its_bars(tmp_path: Path) -> None:
    results = _results(tmp_path)
    svg = plots.latency(results)
    assert "p50, recommended arm" in svg and plots.HIGHLIGHT in svg and plots.OTHER in svg and plots.P95 in svg


def test_an_epoch_only_history_still_draws_against_share_of_training(tmp_path: Path) -> None:
    results = _results(tmp_path)
    results["arms"]["clf"]["training"] = {"history": [{"epoch": 1, "step": None, "train_loss": 0.9, "val_loss": 1.0},
                                                      {"epoch": 2, "step": None, "train_loss": 0.5, "val_loss": 0.7}]}
    results["arms"]["few"]["training"] = {"history": [{"step": 10, "train_loss": 1.1}, {"step": 40, "train_loss": 0.6}]}
    svg = plots.loss_curves(results)
    assert "clf train loss" in svg and "clf val loss" in svg and "few train loss" in svg
    assert "share of training" in svg
    assert plots._progress([{"step": None, "epoch": 1}, {"step": None, "epoch": 4}], by_step=False) == [0.25, 1.0]


def test_the_none_column_appears_only_when_some_answer_fell_outside_the_labels() -> None:
    def pred(i: int, answer: str) -> Prediction:
        return Prediction(id=str(i), arm="a", input="x", reference="pos", prediction=answer, raw=answer, latency_s=0.1)

    clean = confusion_matrix([pred(0, "pos"), pred(1, "neg")], ["neg", "pos"])
    assert clean["labels"] == ["neg", "pos"] and clean["matrix"] == [[0, 0], [1, 1]]
    stray = confusion_matrix([pred(0, "pos"), pred(1, "maybe")], ["neg", "pos"])
    assert stray["labels"] == ["neg", "pos", "(none)"] and stray["matrix"][1] == [0, 1, 1]
