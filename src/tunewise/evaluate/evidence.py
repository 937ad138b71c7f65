"""The evidence of a run: every arm's metrics with confidence intervals, paired tests, cost, ROI, slices,
training and robustness records, the verdict and the review sheet, as one JSON-able dict (results.json).

Two entry points: `build_results` right after the arms of `tunewise run` finish, and `results_from_run`,
which rebuilds the same dict from a run folder alone (config from the manifest, the frozen test split,
predictions/*.jsonl): no model work, so `tunewise report` can re-render after a robustness or training
record lands. Everything random is seeded with split.seed, so both give identical results. Reads the
run folder; knows nothing about models.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from tunewise.arms import registry
from tunewise.config import Experiment
from tunewise.evaluate import cost as costs
from tunewise.evaluate.baseline import majority_baseline
from tunewise.evaluate.confidence import verdict_confidence
from tunewise.evaluate.distillation import distillation_summary
from tunewise.evaluate.gates import check_gates
from tunewise.evaluate.hardware_price import resolve_hourly
from tunewise.evaluate.human_review import human_review_for_run
from tunewise.evaluate.judge_evidence import judge_family, judge_scores, judge_section
from tunewise.evaluate.metrics import arm_metrics, confusion_matrix, families
from tunewise.evaluate.projection import project, sentence
from tunewise.evaluate.review import review_sheet
from tunewise.evaluate.sequential import extended_test, read_looks, sequential_results
from tunewise.evaluate.slices import slice_report
from tunewise.evaluate.stats import compare, intervals, metric_family, resample_weights
from tunewise.evaluate.verdict import Candidate, Verdict, decide, holm_family
from tunewise.schema import Example, Prediction
from tunewise.tasks import Task

SCHEMA_VERSION = 1


class EvidenceError(ValueError):
    """The run folder lacks what the evidence needs; the message names the file and the fix."""


def _read_json(path: Path, notes: list[str]) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        notes.append(f"{path.name} in {path.parent.name}/ could not be read ({exc}); it is left out")
        return None


def default_baseline(experiment: Experiment, finished: Sequence[str]) -> str | None:
    if experiment.evaluation.baseline_arm in finished:
        return experiment.evaluation.baseline_arm
    zero_shot = [a.name for a in experiment.arms if a.type == "zero_shot" and a.name in finished]
    return zero_shot[0] if zero_shot else next((a.name for a in experiment.arms if a.name in finished), None)


def _arm_cost(arm: Any, predictions: Sequence[Prediction], experiment: Experiment,
              known: Mapping[str, float | None]) -> float | None:
    """USD per 1,000 requests, or None when it cannot be known (a remote model without a price)."""
    return registry.cost_per_1k(arm, predictions, experiment.cost, known)


def build_results(experiment: Experiment, run_dir: Path, run_id: str, task: Task, test: Sequence[Example],
                  done: Mapping[str, Sequence[Prediction]], failures: Mapping[str, str],
                  settled: Mapping[str, str] | None = None) -> dict[str, Any]:
    """results.json of the arms in `done` on `test`; `settled` (an extended run's arms settled at an earlier look,
    evaluate/sequential.py) are out of the verdict with their reason."""
    ev, cost_cfg = experiment.evaluation, experiment.cost
    seed, alpha, metric = experiment.split.seed, ev.alpha, ev.primary_metric
    notes: list[str] = []
    arms_cfg = {arm.name: arm for arm in experiment.arms}
    finished = [a.name for a in experiment.arms if a.name in done and done[a.name]]
    # every arm is judged on the same examples: those of the test subset every finished arm answered
    by_arm = {name: {p.id: p for p in done[name]} for name in finished}
    examples = [e for e in test if all(e.id in by_arm[name] for name in finished)]
    if finished and len(examples) < len(test):
        notes.append(f"{len(test) - len(examples)} test example(s) lack an answer from some arm; all arms are "
                     f"compared on the {len(examples)} every arm answered")
    ids = [e.id for e in examples]
    aligned = {name: [by_arm[name][i] for i in ids] for name in finished}
    fams = {name: families(aligned[name], task) for name in finished}
    weights = resample_weights(len(ids), ev.bootstrap_resamples, seed) if ids else None
    judged = _read_json(run_dir / "judge.json", notes) if ev.judge is not None else None
    judge_by_arm = _add_judge(judged, ids, fams, metric, notes, run_dir)

    arms: dict[str, Any] = {}
    cost_known: dict[str, float | None] = {}
    volume = cost_cfg.requests_per_day * cost_cfg.horizon_days
    hourly = resolve_hourly(cost_cfg)
    robustness = _read_json(run_dir / "robustness.json", notes) or {}
    train_labels = _train_labels(run_dir)
    for name in finished:
        predictions, arm = aligned[name], arms_cfg[name]
        cis = intervals(fams[name], weights, 1 - alpha)
        training = _read_json(run_dir / "training" / f"{name}.json", notes)
        cost_known[name] = _arm_cost(arm, predictions, experiment, cost_known)
        train_cost = costs.training_cost(training, hourly.usd_per_hour)
        training_usd = train_cost["usd"] if train_cost else 0.0
        arms[name] = {
            "type": arm.type, "model": getattr(arm, "model", None),
            "summary": arm_metrics(predictions, task) | ({"judge": cis["judge"]["value"]} if "judge" in cis else {}),
            "metrics": {k: v for k, v in cis.items() if "[" not in k},
            "per_class": _per_class(cis, task.labels) if task.labels else None,
            "confusion": confusion_matrix(predictions, task.labels) if task.labels else None,
            "latency": costs.latency_profile(predictions, _read_json(run_dir / "latency" / f"{name}.json", notes)),
            "cost": {"per_1k_usd": cost_known[name], "training": train_cost,
                     "amortised_per_1k_usd": costs.amortised_per_1k(cost_known[name], training_usd, volume)},
            "training": training, "robustness": robustness.get(name),
            "needs_training": registry.trains(arm) or training is not None,
            "train_examples": (training or {}).get("train_examples", registry.train_examples(arm, len(train_labels))),
        }
    _distillations(arms, aligned, run_dir, lambda arm, preds: _arm_cost(arms_cfg[arm], preds, experiment, cost_known),
                   cost_cfg.requests_per_day)
    pairwise = [compare(a, b, fams[a], fams[b], metric, weights, alpha, _correctness(aligned, a, b, metric, task),
                        ev.margin).to_dict() for a, b in combinations(finished, 2)]
    baseline = default_baseline(experiment, finished)
    roi = _roi(arms, baseline, metric, cost_cfg.requests_per_day)
    gates = check_gates(ev.gates.model_dump(), arms)
    verdict = _verdict(experiment, arms, failures, pairwise, fams, weights, (gates or {}).get("out", {}),
                       settled or {})
    verdict.reasons += _projections(arms, verdict.recommended, len(ids), ev.bootstrap_resamples, seed)
    baseline_floor = _majority_floor(train_labels, task, examples, weights, 1 - alpha, metric, arms, notes)
    return {
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "experiment": experiment.name, "task": task.name,
        "labels": list(task.labels) if task.labels else None,
        "test_examples": len(ids), "primary_metric": metric, "alpha": alpha, "confidence": 1 - alpha,
        "margin": ev.margin,
        "bootstrap": {"resamples": ev.bootstrap_resamples, "seed": seed, "method": "percentile"},
        "cost_assumptions": _cost_assumptions(cost_cfg, hourly, volume),
        "arms": arms, "majority_baseline": baseline_floor, "failures": dict(failures), "pairwise": pairwise,
        "baseline": baseline, "roi": roi,
        "slices": slice_report(examples, fams, ev.slice_by, metric, ev.slice_gap_warn) if ev.slice_by and ids else None,
        "robustness": robustness or None, "gates": gates,
        "judge": judge_section(judged, ids, judge_by_arm, arms, fams, weights, 1 - alpha, task.name, cost_cfg,
                               hourly.usd_per_hour) if judged else None,
        "verdict": verdict.to_dict(),
        "review": review_sheet(ids, aligned, ev.review_size, seed, task.score) if len(finished) > 1 else None,
        "human_review": human_review_for_run(run_dir, list(arms), 1 - alpha),
        "notes": notes,
    }


def _cost_assumptions(cost_cfg: Any, hourly: Any, volume: float) -> dict[str, Any]:
    """The prices and volumes every cost figure in results.json was computed with."""
    return {"hardware_usd_per_hour": hourly.usd_per_hour, "hardware_price": hourly.to_dict(),
            "requests_per_day": cost_cfg.requests_per_day, "horizon_days": cost_cfg.horizon_days,
            "amortisation_requests": volume,
            "remote_prices": {k: v.model_dump() for k, v in cost_cfg.remote_prices.items()}}


def _add_judge(judged: Mapping[str, Any] | None, ids: Sequence[str], fams: dict[str, list[Any]], metric: str,
               notes: list[str], run_dir: Path) -> dict[str, np.ndarray]:
    """The judge's per-example scores (judge.json) joined to each judged arm's metric families as `judge`, so they
    get intervals and paired tests like any metric; refuses a judge-ranked run whose judge did not cover every arm."""
    scores = judge_scores(judged, ids) if judged else {}
    scores = {name: values for name, values in scores.items() if name in fams}
    for name, values in scores.items():
        fams[name] = [*fams[name], judge_family(values)]
    if judged and judged.get("error"):
        notes.append(f"the judge failed ({judged['error']}); no judge scores")
    missing = [name for name in fams if name not in scores]
    if metric == "judge" and missing:
        why = f"the judge failed: {judged['error']}" if judged and judged.get("error") else \
            f"judge.json has no verdicts for {missing}"
        raise EvidenceError(f"{run_dir / 'judge.json'}: evaluation.primary_metric is `judge` but {why}. Fix: make "
                            "the judge reachable and run `tunewise run --resume` on this run (answers are kept)")
    return scores


def _distillations(arms: dict[str, Any], aligned: Mapping[str, Sequence[Prediction]], run_dir: Path, cost_of: Any,
                   requests_per_day: float) -> None:
    """A distilled student's summary against its teacher (evaluate/distillation.py), on the arm itself."""
    for name, arm in arms.items():
        record = (arm["training"] or {}).get("distillation")
        if record:
            arm["distillation"] = distillation_summary(name, record, arms, aligned, run_dir, cost_of, requests_per_day)


def _roi(arms: Mapping[str, Any], baseline: str | None, metric: str, requests_per_day: float) -> dict[str, Any]:
    if baseline is None:
        return {}
    base = _roi_view(arms[baseline], metric)
    return {name: costs.roi(_roi_view(arm, metric), base, requests_per_day) for name, arm in arms.items()
            if name != baseline}


def _projections(arms: Mapping[str, Any], recommended: str | None, test_examples: int, resamples: int,
                 seed: int) -> list[str]:
    """Each arm with a learning curve gets its projection (projection.py) against the recommended arm, on the
    curve's own metric; returns the sentences for the verdict's reasons."""
    said = []
    for name, arm in arms.items():
        curve = (arm.get("training") or {}).get("learning_curve")
        if not curve:
            continue
        metric = curve[0].get("metric")
        rival = (arms.get(recommended) or {}).get("metrics", {}).get(metric) if recommended else None
        arm["projection"] = project(curve, test_examples=test_examples, target=rival["value"] if rival else None,
                                    target_arm=recommended if rival else None, resamples=resamples, seed=seed)
        said.append(sentence(name, arm["projection"]))
    return said


def _majority_floor(train_labels: list[str], task: Task, examples: Sequence[Example], weights: Any, confidence: float,
                    metric: str, arms: Mapping[str, Any], notes: list[str]) -> dict[str, Any] | None:
    """The always-the-most-common-label baseline (classification only); its imbalance warning joins the notes."""
    if not task.labels:
        return None
    lows = {name: arm["metrics"][metric]["low"] for name, arm in arms.items()}
    floor = majority_baseline(train_labels, [e.label for e in examples], task.labels, weights, confidence,
                              metric, lows)
    if floor and floor["warning"]:
        notes.append(floor["warning"])
    return floor


def _train_labels(run_dir: Path) -> list[str]:
    """The frozen training split's labels (the baseline's answer is its most common one; their count is what
    exemplar arms drew from); [] when absent."""
    path = run_dir / "splits" / "train.jsonl"
    if not path.is_file():
        return []
    from tunewise.data.formats import read_examples

    return [e.label for e in read_examples(path).examples if e.label is not None]


def _verdict(experiment: Experiment, arms: Mapping[str, Any], failures: Mapping[str, str],
             pairwise: Sequence[dict[str, Any]], fams: Mapping[str, Any], weights: np.ndarray | None,
             gated: Mapping[str, str], settled: Mapping[str, str]) -> Verdict:
    """The rule applied to the arms' figures, then re-applied on the shared resamples for its confidence; arms
    in `gated` (evaluate/gates.py: arm -> why) are out of both."""
    ev, seed = experiment.evaluation, experiment.split.seed
    metric, alpha = ev.primary_metric, ev.alpha
    volume = experiment.cost.requests_per_day * experiment.cost.horizon_days
    candidates = [Candidate(name=a.name, type=a.type, quality=None, failure=failures.get(a.name, "no predictions"),
                            settled=settled.get(a.name)) for a in experiment.arms if a.name not in arms]
    candidates += [Candidate(name=name, type=r["type"], quality=r["metrics"][metric]["value"],
                             low=r["metrics"][metric]["low"], high=r["metrics"][metric]["high"],
                             n=r["summary"]["n"], failed=r["summary"]["failed"],
                             cost_per_1k_usd=r["cost"]["amortised_per_1k_usd"],
                             latency_p50_s=r["latency"]["latency_p50_s"], needs_training=r["needs_training"],
                             gate=gated.get(name))
                   for name, r in arms.items()]
    verdict = decide(candidates, pairwise, metric=metric, alpha=alpha, margin=ev.margin, quality_bar=ev.quality_bar,
                     max_failure_rate=ev.max_failure_rate, volume=volume)
    eligible = [c for c in candidates if c.name in arms and c.name not in verdict.excluded]
    adjusted = holm_family(pairwise, {c.name for c in eligible})
    for test in pairwise:  # the all-pairs table shows the same adjusted p-values the verdict used
        test["p_adjusted"] = adjusted.get(frozenset((test["a"], test["b"])))
    if eligible and weights is not None:
        quality = np.stack([metric_family(fams[c.name], metric).values(weights)[metric] for c in eligible], axis=1)
        verdict.confidence = verdict_confidence(eligible, quality, alpha=alpha, margin=ev.margin,
                                                quality_bar=ev.quality_bar, seed=seed)
    return verdict


def _per_class(cis: Mapping[str, Any], labels: Sequence[str]) -> dict[str, Any]:
    return {label: {part: cis[f"{part}[{label}]"] for part in ("precision", "recall", "f1")} for label in labels}


def _correctness(aligned: Mapping[str, Sequence[Prediction]], a: str, b: str, metric: str,
                 task: Task) -> tuple[list[bool], list[bool]] | None:
    """Per-example correctness for McNemar: only when the metric is classification accuracy."""
    if metric != "accuracy" or not task.labels:
        return None
    return tuple([p.prediction == p.reference for p in aligned[arm]] for arm in (a, b))  # type: ignore[return-value]


def _roi_view(arm: Mapping[str, Any], metric: str) -> dict[str, Any]:
    training = arm["cost"]["training"]
    return {"quality": arm["metrics"][metric]["value"], "latency_p50_s": arm["latency"]["latency_p50_s"],
            "cost_per_1k_usd": arm["cost"]["per_1k_usd"], "training_usd": training["usd"] if training else 0.0}


def results_from_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(results, metrics.json content) rebuilt from a run folder: manifest config, frozen split, predictions."""
    from tunewise.data.formats import read_examples
    from tunewise.data.split import stratified_subset
    from tunewise.store.predictions import PredictionStore
    from tunewise.store.runs import open_run
    from tunewise.tasks import make_task

    run = open_run(run_dir)
    try:
        experiment = Experiment.model_validate(run.manifest["config"])
    except Exception as exc:  # a manifest from another version: say which file, do not guess
        raise EvidenceError(f"{run_dir / 'manifest.json'}: its config does not load with this tunewise ({exc}); "
                            "re-run the experiment with this version") from None
    splits = run_dir / "splits"
    if not (splits / "test.jsonl").is_file():
        raise EvidenceError(f"{splits / 'test.jsonl'}: no frozen split in this run; run `tunewise run` first")
    parts = {name: read_examples(splits / f"{name}.jsonl").examples for name in ("train", "test")}
    task = make_task(experiment.task, parts["train"])
    base = stratified_subset(parts["test"], experiment.split.max_test, experiment.split.seed, bool(task.labels))
    test = extended_test(base, parts["test"], read_looks(run_dir))
    ids = [e.id for e in test]
    done = {}
    for arm in experiment.arms:
        path = run_dir / "predictions" / f"{arm.name}.jsonl"
        if path.is_file():
            predictions = PredictionStore(path).ordered(ids)
            if predictions:
                done[arm.name] = predictions
    if not done:
        raise EvidenceError(f"{run_dir / 'predictions'}: no predictions; run `tunewise run` (or --resume) first")
    previous = _read_json(run_dir / "metrics.json", []) or {}
    failures = {k: v for k, v in (previous.get("failures") or {}).items() if k not in done}
    results = run_evidence(experiment, run_dir, run.id, task, test, done, failures)
    return results, metrics_summary(results, failures)


def run_evidence(experiment: Experiment, run_dir: Path, run_id: str, task: Task, test: Sequence[Example],
                 done: Mapping[str, Sequence[Prediction]], failures: Mapping[str, str]) -> dict[str, Any]:
    """results.json of a run: build_results, or for a run extended with --extend (extend.json) its latest look
    (evaluate/sequential.py), so `tunewise report` and a plain --resume never undo an extension."""
    looks = read_looks(run_dir)
    if looks is None:
        return build_results(experiment, run_dir, run_id, task, test, done, failures)
    return sequential_results(build_results, experiment, run_dir, run_id, task, test, done, failures, looks)


def metrics_summary(results: Mapping[str, Any], failures: Mapping[str, str]) -> dict[str, Any]:
    """metrics.json: the flat per-arm figures earlier stages and scripts read (accuracy, macro_f1, score ...)."""
    arms = {}
    for name, arm in results["arms"].items():
        # p50 as the report and the verdict read it: the single-request probe's where there is one
        arms[name] = dict(arm["summary"], compute_s_per_1k=arm["latency"]["compute_s_per_1k"],
                          latency_p50_s=arm["latency"]["latency_p50_s"])
        if arm["cost"]["per_1k_usd"] is not None:
            arms[name]["cost_per_1k_usd"] = arm["cost"]["per_1k_usd"]
    return {"task": results["task"], "test_examples": results["test_examples"],
            "primary_metric": results["primary_metric"], "arms": arms, "failures": dict(failures),
            "verdict": results["verdict"]["headline"], "recommended": results["verdict"]["recommended"]}
