"""The classical baseline: TF-IDF plus metadata features into a linear model, naive Bayes or a random forest.

A fair head-to-head needs a strong cheap baseline, not a strawman, so the estimator and its main
hyperparameter are chosen by a stratified cross-validated search on the training split only (the test split
never reaches this module; the search itself, successive halving under a time budget, is classical_search.py). Text becomes word 1-2 gram TF-IDF with sublinear tf; numeric metadata keys are
standard-scaled and categorical ones one-hot encoded, so a column like "channel" or "account age" can carry
the prediction when the text does not.

This module knows nothing about prompts, models or run folders: it takes `Example`s and returns labels and
per-label scores. A saved model is a folder with the fitted scikit-learn pipeline (joblib, i.e. pickle:
load only folders you trust) and a small JSON describing it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np
import sklearn
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import ComplementNB
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC

from tunewise import __version__
from tunewise.data.values import is_missing, parse_number
from tunewise.schema import Example
from tunewise.store.atomic import atomic_dir
from tunewise.train.classical_search import ProgressFactory, run_search
from tunewise.train.settings import ClassicalConfig

ModelName = Literal["logreg", "linear_svm", "complement_nb", "random_forest"]
ScoreKind = Literal["probability", "softmax_decision"]
MODEL_NAMES: tuple[ModelName, ...] = ("logreg", "linear_svm", "complement_nb", "random_forest")
META_FILE = "tunewise-classical.json"
PIPELINE_FILE = "pipeline.joblib"
FOLDER_KIND = "tunewise-classical-model"
FORMAT_VERSION = 1
# Problems beyond this many are counted, not listed: the first few show the pattern, all of them scroll away.
MAX_LISTED = 10


class ClassicalError(ValueError):
    """The training data or a saved model folder cannot be used; the message names what and the fix."""


# ---------------------------------------------------------------- features


def _listing(problems: list[str]) -> str:
    shown = "\n".join(f"  - {p}" for p in problems[:MAX_LISTED])
    more = len(problems) - MAX_LISTED
    return shown + (f"\n  ... and {more} more" if more > 0 else "")


def _table(examples: Sequence[Example], config: ClassicalConfig) -> np.ndarray:
    """One object row per example: input text, numeric features, categorical features (the transformer's columns).

    Every missing or non-numeric metadata value is collected and reported at once, by key and line.
    """
    problems: list[str] = []
    rows: list[list[Any]] = []
    for example in examples:
        row: list[Any] = [example.input]
        for key in config.numeric_features:
            if key not in example.metadata:
                problems.append(f"line {example.line} (id {example.id!r}): metadata has no numeric feature {key!r}")
            elif is_missing(value := example.metadata[key]):
                row.append(math.nan)  # imputed with the training median (see `_features`)
            elif (number := parse_number(value)) is None:
                problems.append(f"line {example.line} (id {example.id!r}): numeric feature {key!r} is "
                                f"{value!r}, not a finite number (nor blank or N/A, which count as missing)")
            else:
                row.append(number)
        for key in config.categorical_features:
            if key not in example.metadata:
                problems.append(f"line {example.line} (id {example.id!r}): metadata has no categorical feature {key!r}")
            else:
                row.append(str(example.metadata[key]))
        rows.append(row)
    if problems:
        present = sorted({key for e in examples[:100] for key in e.metadata})
        raise ClassicalError(f"{len(problems)} metadata problem(s) for the classical features:\n{_listing(problems)}\n"
                             f"The examples' metadata keys (a table's other columns) are: {present or 'none'}. "
                             f"Fix: add the keys to every example's metadata, or remove them from "
                             f"features / numeric_features / categorical_features.")
    table = np.empty((len(rows), 1 + len(config.numeric_features) + len(config.categorical_features)), dtype=object)
    for index, row in enumerate(rows):
        table[index, :] = row
    return table


def _features(config: ClassicalConfig) -> ColumnTransformer:
    """Column 0 is text; then the numeric columns; then the categorical ones (the order `_table` writes)."""
    n_numeric, n_categorical = len(config.numeric_features), len(config.categorical_features)
    numeric = list(range(1, 1 + n_numeric))
    categorical = list(range(1 + n_numeric, 1 + n_numeric + n_categorical))
    text = TfidfVectorizer(ngram_range=config.ngram_range, sublinear_tf=True, max_features=config.max_features,
                           strip_accents="unicode")
    parts: list[tuple[str, Any, Any]] = [("text", text, 0)]
    if numeric:
        # Blank and N/A cells are NaN: the training median stands in for them, as `init --from` promised.
        scaled = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
        parts.append(("numeric", scaled, numeric))
    if categorical:
        parts.append(("categorical", OneHotEncoder(handle_unknown="ignore"), categorical))
    return ColumnTransformer(parts)


def _model_name(estimator: BaseEstimator) -> ModelName:
    return {LogisticRegression: "logreg", LinearSVC: "linear_svm", ComplementNB: "complement_nb",
            RandomForestClassifier: "random_forest"}[type(estimator)]  # type: ignore[return-value]


# ---------------------------------------------------------------- checks


def _labels(train: Sequence[Example], config: ClassicalConfig) -> list[str]:
    unlabelled = [f"line {e.line} (id {e.id!r})" for e in train if not e.label]
    if unlabelled:
        raise ClassicalError(f"{len(unlabelled)} training example(s) have no label (empty assistant turn):\n"
                             f"{_listing(unlabelled)}\nFix: give every example a label, or drop them with `tunewise fix`.")
    labels = [e.label for e in train]
    counts = Counter(labels)
    if len(counts) < 2:
        found = f"only {next(iter(counts))!r}" if counts else "no examples at all"
        raise ClassicalError(f"The classical arm needs at least 2 distinct labels in the training split; found {found}.")
    scarce = sorted((count, label) for label, count in counts.items() if count < config.cv)
    if scarce:
        listed = ", ".join(f"{label!r} has {count}" for count, label in scarce)
        smallest = scarce[0][0]
        fix = (f"lower `cv` to {smallest} or add examples" if smallest >= 2
               else "add examples (cross-validation needs at least 2 per label) or drop the rare labels")
        raise ClassicalError(f"{config.cv}-fold stratified cross-validation needs at least {config.cv} training "
                             f"examples per label, but {listed}. Fix: {fix}.")
    return labels


# ---------------------------------------------------------------- model


@dataclass
class ClassicalModel:
    """A fitted pipeline plus what the search found; `predict_scores` says how scores are made via `score_kind`."""

    pipeline: Pipeline
    config: ClassicalConfig
    best_model_name: ModelName
    best_params: dict[str, Any]
    cv_score: float
    search_seconds: float
    # (candidates, rows) per round of the search; stopped_early: the time budget ended it
    rounds: list[tuple[int, int]] = field(default_factory=list)
    stopped_early: bool = False

    @property
    def labels(self) -> list[str]:
        return [str(label) for label in self.pipeline.classes_]

    @property
    def score_kind(self) -> ScoreKind:
        """`probability` for logistic regression and forests; a linear SVM has only margins, which are softmaxed."""
        return "probability" if hasattr(self.pipeline, "predict_proba") else "softmax_decision"

    def predict(self, examples: Sequence[Example]) -> list[str]:
        return [str(label) for label in self.pipeline.predict(_table(examples, self.config))]

    def predict_scores(self, examples: Sequence[Example]) -> list[dict[str, float]]:
        """Per-label scores summing to 1: class probabilities, or the softmax of decision scores (see `score_kind`)."""
        table = _table(examples, self.config)
        if self.score_kind == "probability":
            matrix = self.pipeline.predict_proba(table)
        else:
            margins = self.pipeline.decision_function(table)
            if margins.ndim == 1:  # binary: one margin for classes_[1]; softmax([0, m]) is its logistic
                margins = np.column_stack([np.zeros_like(margins), margins])
            shifted = np.exp(margins - margins.max(axis=1, keepdims=True))
            matrix = shifted / shifted.sum(axis=1, keepdims=True)
        labels = self.labels
        return [{label: float(p) for label, p in zip(labels, row)} for row in matrix]

    def save(self, folder: str | Path) -> Path:
        """Write the pipeline and its description into `folder` at once: a reader never sees half a model."""
        folder = Path(folder)
        meta = {"kind": FOLDER_KIND, "format_version": FORMAT_VERSION, "best_model_name": self.best_model_name,
                "best_params": self.best_params, "cv_score": self.cv_score, "search_seconds": self.search_seconds,
                "rounds": self.rounds, "stopped_early": self.stopped_early, "labels": self.labels, "score_kind": self.score_kind, "config": self.config.model_dump(mode="json"),
                "versions": {"tunewise": __version__, "scikit-learn": sklearn.__version__}}
        with atomic_dir(folder) as tmp:
            joblib.dump(self.pipeline, tmp / PIPELINE_FILE)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ClassicalModel:
        """Read a folder written by `save`; anything else is refused before unpickling (joblib runs code)."""
        folder = Path(folder)
        fix = "pass a folder written by ClassicalModel.save (the classical arm writes one per run)"
        if not folder.is_dir():
            raise ClassicalError(f"Classical model folder {folder} does not exist or is not a folder. Fix: {fix}.")
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ClassicalError(f"{folder} is not a tunewise classical model folder: it has no {META_FILE}. "
                                 f"Fix: {fix}.") from None
        except ValueError as err:
            raise ClassicalError(f"{folder / META_FILE} is not valid JSON ({err}). Fix: re-save the model.") from None
        if not isinstance(meta, dict) or meta.get("kind") != FOLDER_KIND:
            raise ClassicalError(f"{folder / META_FILE} does not describe a tunewise classical model "
                                 f"(kind is not {FOLDER_KIND!r}). Fix: {fix}.")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ClassicalError(f"{folder} uses classical model format {meta.get('format_version')!r}; this tunewise "
                                 f"reads format {FORMAT_VERSION}. Fix: retrain with this version.")
        if not (folder / PIPELINE_FILE).is_file():
            raise ClassicalError(f"{folder} has {META_FILE} but no {PIPELINE_FILE}. Fix: re-save the model.")
        pipeline = joblib.load(folder / PIPELINE_FILE)
        if not isinstance(pipeline, Pipeline):
            raise ClassicalError(f"{folder / PIPELINE_FILE} holds a {type(pipeline).__name__}, not a scikit-learn "
                                 f"Pipeline. Fix: re-save the model.")
        return cls(pipeline=pipeline, config=ClassicalConfig.model_validate(meta["config"]),
                   best_model_name=meta["best_model_name"], best_params=meta["best_params"],
                   cv_score=float(meta["cv_score"]), search_seconds=float(meta["search_seconds"]),
                   rounds=[tuple(r) for r in meta.get("rounds", [])], stopped_early=bool(meta.get("stopped_early")))


def resolve_features(train: Sequence[Example], config: ClassicalConfig) -> ClassicalConfig:
    """`features` split by the training data: numeric when every value is a number, else categorical. The saved
    model keeps the resolved lists, so prediction treats each key exactly as training did."""
    if not config.features:
        return config
    numeric, categorical = list(config.numeric_features), list(config.categorical_features)
    for key in config.features:
        if key in numeric or key in categorical:
            continue
        values = [e.metadata.get(key) for e in train]
        present = [v for v in values if not is_missing(v)]
        numbers = bool(present) and all(parse_number(v) is not None for v in present)
        (numeric if numbers else categorical).append(key)
    return config.model_copy(update={"features": [], "numeric_features": numeric, "categorical_features": categorical})


def train_classical(train: Sequence[Example], config: ClassicalConfig | None = None,
                    progress: ProgressFactory | None = None) -> ClassicalModel:
    """Search the configured families on stratified folds of `train`, then refit the best on all of it.

    `progress(description, total)` (the arms' progress factory) shows the search in row-fits, with an ETA.
    """
    config = resolve_features(train, config or ClassicalConfig())
    labels = _labels(train, config)
    result = run_search(_table(train, config), labels, _features(config), config, progress)
    return ClassicalModel(pipeline=result.pipeline, config=config,
                          best_model_name=_model_name(result.pipeline.named_steps["clf"]), best_params=result.params,
                          cv_score=result.cv_score, search_seconds=result.seconds, rounds=result.rounds,
                          stopped_early=result.stopped_early)
