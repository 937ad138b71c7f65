"""Learning-curve projection on seeded synthetic curves: the inverse power law is recovered from noiseless
points, a steep curve is projected to overtake the recommended arm, a flat one is not, a curve with too few
points says it cannot be fitted, and the projection reaches results.json and the verdict's reasons."""

from __future__ import annotations

import numpy as np
import pytest
from evidence_cases import TRAINING, classify_run

from tunewise.evaluate.evidence import build_results
from tunewise.evaluate.projection import fit_power_law, project, sentence


def curve(a: float, b: float, c: float, sizes=(50, 100, 200), noise: float = 0.0, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"fraction": n / max(sizes), "train_examples": n, "metric": "accuracy",
             "value": float(a - b * n ** -c + noise * rng.standard_normal())} for n in sizes]


def test_noiseless_points_give_back_the_law():
    n = np.array([40, 80, 160, 320, 640.0])
    (a, b, c), = fit_power_law(n, 0.92 - 1.5 * n ** -0.6)
    assert a == pytest.approx(0.92, abs=0.01) and c == pytest.approx(0.6, abs=0.05)


def test_a_steep_curve_is_projected_to_overtake_and_a_flat_one_is_not():
    steep = project(curve(0.97, 3.0, 0.5, sizes=(25, 50, 100, 200)), test_examples=5000, target=0.80,
                    target_arm="clf", seed=1)
    # 0.97 - 3 / sqrt(n): 0.758 at 200 examples, 0.820 at 400 (interval still reaching 0.80), 0.864 at 800
    assert steep["fitted"] and [p["status"] for p in steep["projections"]] == ["might", "overtakes"]
    assert steep["projections"][1]["value"] == pytest.approx(0.864, abs=0.01)
    assert all(p["low"] < p["value"] < p["high"] for p in steep["projections"])
    flat = project(curve(0.75, 0.5, 0.8), test_examples=2000, target=0.80, target_arm="clf", seed=1)
    assert [p["status"] for p in flat["projections"]] == ["not", "not"]
    text = sentence("lora", flat)
    assert "doubling the labelled data is not projected to overtake it" in text and "recommended clf" in text
    assert "quadrupling the labelled data is not projected" in text
    said = sentence("lora", steep)
    assert "quadrupling the labelled data is projected to overtake it" in said
    assert "doubling the labelled data might overtake it (the interval reaches 0.800" in said


def test_noisy_points_widen_the_interval_and_it_stays_seeded():
    noisy = curve(0.9, 1.0, 0.5, sizes=(25, 50, 100, 200, 400), noise=0.03, seed=4)
    wide = project(noisy, test_examples=100, target=0.88, target_arm="clf", seed=7)
    narrow = project(curve(0.9, 1.0, 0.5, sizes=(25, 50, 100, 200, 400)), test_examples=100_000, seed=7)
    spread = [p["high"] - p["low"] for p in wide["projections"]]
    assert all(s > n["high"] - n["low"] for s, n in zip(spread, narrow["projections"]))
    assert project(noisy, test_examples=100, target=0.88, target_arm="clf", seed=7) == wide


def test_too_few_points_cannot_be_fitted():
    record = project(curve(0.9, 1.0, 0.5, sizes=(100, 200)), test_examples=500, target=0.8, target_arm="clf")
    assert not record["fitted"] and "at least 3" in record["reason"]
    assert "cannot be projected" in sentence("lora", record)


def test_results_carry_the_projection_and_the_verdict_says_it(tmp_path):
    points = [{"fraction": f, "train_examples": n, "metric": "accuracy", "value": v}
              for f, n, v in ((0.25, 50, 0.6), (0.5, 100, 0.75), (1.0, 200, 0.84))]
    exp, task, test, done = classify_run(tmp_path, training=dict(TRAINING, learning_curve=points))
    results = build_results(exp, tmp_path, "r", task, test, done, {})
    record = results["arms"]["clf"]["projection"]
    assert record["fitted"] and record["target_arm"] == results["verdict"]["recommended"]
    assert any(r.startswith("The learning curve of clf (3 points up to 200 training examples)")
               for r in results["verdict"]["reasons"])
    from tunewise.report.plots import learning_curves

    figure = learning_curves(results)
    assert "clf, projected" in figure and "400" in figure and "800" in figure  # the 2x and 4x points are on the axis
    short = classify_run(tmp_path / "short", training=TRAINING)
    results = build_results(*short[:1], tmp_path / "short", "r", *short[1:], {})
    assert results["arms"]["clf"]["projection"]["fitted"] is False
