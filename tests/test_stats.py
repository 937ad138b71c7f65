"""Metrics and statistics against reference implementations: scikit-learn, sacrebleu, rouge-score for point
values; scipy.stats.bootstrap for intervals; scipy's binomial and chi-square for McNemar."""

from __future__ import annotations

import json

import numpy as np
import pytest
from evidence_cases import LABELS, examples, predictions
from scipy import stats as sps

from tunewise.evaluate.metrics import (
    confusion_family,
    families,
    mean_family,
    point_values,
    sacrebleu_family,
)
from tunewise.evaluate.stats import (
    compare,
    holm,
    intervals,
    mcnemar_p,
    mcnemar_test,
    paired_bootstrap,
    resample_weights,
)
from tunewise.tasks.extract import ExtractTask
from tunewise.tasks.generate import GenerateTask


def test_classification_point_values_match_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    refs = ["a", "a", "b", "b", "c", "c", "a", "b"]
    preds = ["a", "b", "b", "", "a", "a", "a", "zzz"]  # "" unparsed, "zzz" outside the labels, c never predicted
    values = point_values([confusion_family(refs, preds, ["a", "b", "c"]),
                           mean_family("accuracy", [float(p == r) for p, r in zip(preds, refs)])])
    assert values["accuracy"] == pytest.approx(accuracy_score(refs, preds))
    assert values["macro_f1"] == pytest.approx(f1_score(refs, preds, labels=["a", "b", "c"], average="macro",
                                                        zero_division=0))
    p, r, f, _ = precision_recall_fscore_support(refs, preds, labels=["a", "b", "c"], zero_division=0)
    for i, label in enumerate("abc"):
        assert (values[f"precision[{label}]"], values[f"recall[{label}]"], values[f"f1[{label}]"]) == \
            pytest.approx((p[i], r[i], f[i]))


def test_generation_metrics_match_sacrebleu_and_rouge_score():
    import sacrebleu
    from rouge_score.rouge_scorer import RougeScorer

    from tunewise.schema import Prediction

    refs = ["the cat sat on the mat", "hello there friend", "a quick brown fox jumps", "nothing"]
    hyps = ["the cat sat on a mat", "hello friend", "a quick brown fox jumped", "Nothing"]
    preds = [Prediction(id=str(i), arm="g", input="", reference=r, prediction=h, raw=h, latency_s=0.1)
             for i, (r, h) in enumerate(zip(refs, hyps))]
    values = point_values(families(preds, GenerateTask()))
    assert values["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score / 100)
    assert values["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score / 100)
    scorer = RougeScorer(["rougeL"])
    assert values["rouge_l"] == pytest.approx(np.mean([scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(refs, hyps)]))
    assert values["exact_match"] == values["score"] == pytest.approx(0.25)  # "Nothing" matches after normalising


def test_extraction_field_level_precision_recall():
    from tunewise.schema import Prediction

    refs = [{"name": "Ann", "total": 3, "addr": {"city": "Oslo", "zip": "0150"}}, {"name": "Bo", "total": 5}, {"a": 1}]
    answers = ['{"name": "Ann", "total": 4, "addr": {"city": "Oslo"}}', '{"name": "Bo", "total": 5}', ""]
    preds = [Prediction(id=str(i), arm="x", input="", reference=json.dumps(r), prediction=a, raw=a, latency_s=0.0)
             for i, (r, a) in enumerate(zip(refs, answers))]
    values = point_values(families(preds, ExtractTask()))
    # fields predicted: 3 + 2 = 5, right: name, addr.city, name, total = 4; reference fields: 4 + 2 + 1 = 7
    assert values["field_precision"] == pytest.approx(4 / 5)
    assert values["field_recall"] == pytest.approx(4 / 7)
    assert values["field_f1"] == pytest.approx(2 * (4 / 5) * (4 / 7) / (4 / 5 + 4 / 7))
    assert values["json_valid"] == pytest.approx(2 / 3) and values["exact_match"] == pytest.approx(1 / 3)


def test_accuracy_interval_agrees_with_scipy_bootstrap():
    correct = np.random.default_rng(5).random(200) < 0.7
    ours = intervals([mean_family("accuracy", correct.astype(float))], resample_weights(200, 4000, seed=1), 0.95)
    ref = sps.bootstrap((correct.astype(float),), np.mean, n_resamples=4000, method="percentile",
                        confidence_level=0.95, random_state=2).confidence_interval
    assert ours["accuracy"]["value"] == pytest.approx(correct.mean())
    assert ours["accuracy"]["low"] == pytest.approx(ref.low, abs=0.015)
    assert ours["accuracy"]["high"] == pytest.approx(ref.high, abs=0.015)
    assert ours["accuracy"]["low"] < correct.mean() < ours["accuracy"]["high"]


def test_macro_f1_interval_agrees_with_scipy_bootstrap_of_scikit_learn():
    from sklearn.metrics import f1_score

    test = examples(120)
    preds = predictions("a", test, 0.75, 0.1, seed=4)
    refs, got = [p.reference for p in preds], [p.prediction for p in preds]
    ours = intervals([confusion_family(refs, got, LABELS)], resample_weights(120, 1000, seed=3), 0.95)["macro_f1"]
    ref = sps.bootstrap((np.array(refs), np.array(got)),
                        lambda r, g: f1_score(r, g, labels=LABELS, average="macro", zero_division=0),
                        paired=True, vectorized=False, n_resamples=1000, method="percentile",
                        random_state=7).confidence_interval
    assert ours["value"] == pytest.approx(f1_score(refs, got, labels=LABELS, average="macro"))
    assert ours["low"] == pytest.approx(ref.low, abs=0.03) and ours["high"] == pytest.approx(ref.high, abs=0.03)


def test_bleu_interval_is_seeded_and_brackets_the_corpus_score():
    from sacrebleu.metrics import BLEU

    refs = [f"the report number {i} is ready for review today" for i in range(60)]
    hyps = [r if i % 3 else r.replace("ready", "done") for i, r in enumerate(refs)]
    fam = sacrebleu_family("bleu", BLEU(), refs, hyps)
    first = intervals([fam], resample_weights(60, 300, seed=9), 0.95)["bleu"]
    again = intervals([fam], resample_weights(60, 300, seed=9), 0.95)["bleu"]
    assert first == again and first["low"] <= first["value"] <= first["high"] and first["low"] < first["high"]


@pytest.mark.parametrize("b,c", [(3, 12), (30, 50)])
def test_mcnemar_matches_binomial_and_chi_square_references(b, c):
    both, neither = 40, 10
    a = [True] * both + [True] * b + [False] * c + [False] * neither
    z = [True] * both + [False] * b + [True] * c + [False] * neither
    p, statistic, name = mcnemar_test(a, z)
    if b + c < 25:
        assert name == "McNemar exact"
        assert p == pytest.approx(sps.binomtest(b, b + c, 0.5).pvalue)
    else:
        assert name == "McNemar chi-square"
        expected = (abs(b - c) - 1) ** 2 / (b + c)
        assert statistic == pytest.approx(expected) and p == pytest.approx(sps.chi2.sf(expected, 1))


def test_the_vectorised_mcnemar_matches_statsmodels_on_a_grid_of_discordant_counts():
    from statsmodels.stats.contingency_tables import mcnemar

    b, c = np.meshgrid(np.arange(0, 40, 3), np.arange(0, 40, 4))
    expected = [1.0 if x + y == 0 else mcnemar([[5, x], [y, 5]], exact=x + y < 25, correction=True).pvalue
                for x, y in zip(b.ravel(), c.ravel())]
    assert mcnemar_p(b.ravel(), c.ravel()) == pytest.approx(expected)


def test_holm_matches_statsmodels_along_the_last_axis():
    from statsmodels.stats.multitest import multipletests

    p = np.random.default_rng(4).random((20, 6)) ** 3
    expected = np.stack([multipletests(row, method="holm")[1] for row in p])
    assert holm(p) == pytest.approx(expected)


def test_paired_bootstrap_difference_interval_agrees_with_scipy():
    rng = np.random.default_rng(11)
    a = (rng.random(300) < 0.8).astype(float)
    b = (rng.random(300) < 0.7).astype(float)
    weights = resample_weights(300, 4000, seed=2)
    observed, deltas, p = paired_bootstrap(mean_family("score", a), mean_family("score", b), "score", weights)
    ref = sps.bootstrap((a, b), lambda x, y, axis=-1: np.mean(x - y, axis=axis), paired=True, n_resamples=4000,
                        method="percentile", random_state=3).confidence_interval
    low, high = np.percentile(deltas, [2.5, 97.5])
    assert observed == pytest.approx(a.mean() - b.mean())
    assert low == pytest.approx(ref.low, abs=0.015) and high == pytest.approx(ref.high, abs=0.015)
    # the bootstrap p-value agrees with a paired permutation test on this clear difference
    perm = sps.permutation_test((a, b), lambda x, y, axis=-1: np.mean(x - y, axis=axis), permutation_type="samples",
                                n_resamples=2000, random_state=4).pvalue
    assert p < 0.05 and perm < 0.05


def test_results_say_no_significant_difference_plainly():
    scores = (np.arange(100) % 3 == 0).astype(float)
    weights = resample_weights(100, 500, seed=1)
    same = compare("x", "y", [mean_family("score", scores)], [mean_family("score", scores)], "score", weights, 0.05)
    assert same.p_value == 1.0 and not same.significant
    assert same.summary.startswith("no significant difference between x and y")
    better = compare("x", "y", [mean_family("score", np.ones(100))], [mean_family("score", scores)], "score",
                     weights, 0.05)
    assert better.significant and better.summary.startswith("x is significantly better than y")
    correct = ([True] * 60 + [False] * 40, [True] * 52 + [False] * 48)  # 8 discordant pairs, all one way
    mc = compare("x", "y", [mean_family("accuracy", np.array(correct[0], float))],
                 [mean_family("accuracy", np.array(correct[1], float))], "accuracy", weights, 0.05, correct)
    assert mc.test == "McNemar exact" and mc.p_value == pytest.approx(2 * 0.5 ** 8) and mc.significant
