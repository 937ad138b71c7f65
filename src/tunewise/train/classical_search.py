"""The classical arm's hyperparameter search: which candidates, how many rows each sees, and when to stop.

Why not a plain grid: on 24,000 TF-IDF rows a cross-validated grid over three families took 13 minutes, most
of it a random forest and refitting the same TF-IDF for every candidate. Here, by default:
- successive halving (scikit-learn's `HalvingGridSearchCV`): every candidate is scored on a third of a third
  of the rows, the best third goes on with three times the rows, until one is left on all of them;
- the features (TF-IDF plus metadata encoders) are fitted once per fold and row subset and shared by every
  candidate on that fold, instead of once per candidate (`SharedFeatures`);
- tree models join only where they can pay: small data (< `TREE_ROWS` rows) or metadata features, or when
  asked (`model: random_forest`);
- a time budget ends the search early: the best candidate of the deepest round finished so far wins.

This module knows nothing about run folders or progress bars: progress is a callback of rows done.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from math import ceil, floor, log
from typing import Any

import numpy as np
from joblib import parallel_backend
from scipy.stats import loguniform, randint
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.experimental import enable_halving_search_cv  # noqa: F401  (makes the halving searches importable)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import get_scorer
from sklearn.model_selection import (
    GridSearchCV,
    HalvingGridSearchCV,
    ParameterGrid,
    RandomizedSearchCV,
    StratifiedKFold,
)
from sklearn.naive_bayes import ComplementNB
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from tunewise.train.settings import ClassicalConfig

# progress(description, total) -> context manager yielding advance(n): the arms' progress factory
ProgressFactory = Callable[[str, int], Any]
LINEAR = ("logreg", "linear_svm", "complement_nb")
TREES = ("random_forest",)
# Below this many training rows a forest's fits are cheap enough to try; above it, on sparse TF-IDF, a forest
# cost most of the search time and did not win (BBC News and reviews).
TREE_ROWS = 5_000
FACTOR = 3

# Grids around the values that win on text (TF-IDF features are many and sparse: C >= 1 usually wins for
# logistic regression). Halving makes candidates cheap, so the grids are finer than a full grid could afford.
GRIDS: dict[str, dict[str, list[Any]]] = {
    "logreg": {"C": [1.0, 3.0, 10.0, 30.0, 100.0]},
    "linear_svm": {"C": [0.1, 0.3, 1.0, 3.0, 10.0]},
    "complement_nb": {"alpha": [0.03, 0.1, 0.3, 1.0]},
    "random_forest": {"n_estimators": [100, 300], "max_depth": [None, 50]},
}
DISTRIBUTIONS: dict[str, dict[str, Any]] = {
    "logreg": {"C": loguniform(1e-2, 1e3)},
    "linear_svm": {"C": loguniform(1e-3, 1e2)},
    "complement_nb": {"alpha": loguniform(1e-3, 1e1)},
    "random_forest": {"n_estimators": randint(50, 400), "max_depth": [None, 10, 30, 100],
                      "min_samples_leaf": [1, 2, 4]},
}


class BudgetSpent(Exception):  # noqa: N818  (a signal, not an error: the search stops and keeps what it has)
    """Raised from inside the search when `time_budget_s` has passed."""


# ---------------------------------------------------------------- candidates


def estimator(name: str, config: ClassicalConfig) -> BaseEstimator:
    """One family's estimator with the settings every candidate shares."""
    if name == "logreg":
        # newton-cg: 5 Newton steps where lbfgs needs 30-50 on 50k sparse TF-IDF columns (BBC: ~0.6 s vs 2-7 s a fit).
        return LogisticRegression(solver="newton-cg", max_iter=1000, class_weight=config.class_weight,
                                  random_state=config.seed)
    if name == "linear_svm":
        return LinearSVC(max_iter=5000, class_weight=config.class_weight, random_state=config.seed)
    if name == "complement_nb":
        return ComplementNB()  # no class_weight: ComplementNB is built for skewed labels already
    return RandomForestClassifier(class_weight=config.class_weight, random_state=config.seed, n_jobs=1)


def families(config: ClassicalConfig, rows: int) -> tuple[str, ...]:
    """The families `auto` searches: the linear ones always (ComplementNB only without numeric features,
    which may be negative once scaled); the forest where it can pay: small data or metadata features."""
    if config.model != "auto":
        return (config.model,)
    linear = LINEAR if not config.numeric_features else tuple(n for n in LINEAR if n != "complement_nb")
    has_metadata = bool(config.numeric_features or config.categorical_features)
    return linear + (TREES if rows < TREE_ROWS or has_metadata else ())


def search_space(config: ClassicalConfig, names: Sequence[str]) -> list[dict[str, Any]]:
    """One entry per family; the `clf` step is itself a searched parameter, so `auto` is one search."""
    space = DISTRIBUTIONS if config.search == "random" else GRIDS
    return [{"clf": [estimator(name, config)], **{f"clf__{key}": values for key, values in space[name].items()}}
            for name in names]


# ---------------------------------------------------------------- shared features


def _fingerprint(table: Any) -> int:
    """Cheap identity of a feature table: the folds index the same Python strings, whose hashes are cached."""
    return hash((table.shape, *(tuple(column) for column in np.asarray(table, dtype=object).T)))


# Feature caches of the searches running in this process, by token: a parameter holding the dict itself would be
# deep-copied by every `clone`, so candidates hold the token. Each cache keeps its newest `capacity` entries.
_CACHES: dict[int, tuple[dict[Any, Any], int]] = {}


@contextmanager
def shared_cache(capacity: int) -> Iterator[int]:
    """A fresh feature cache for one search, dropped (with its matrices) when the search ends. A round needs a
    fitted transformer and a transformed held-out fold per fold, so `capacity` 2 x folds (+ the refit) keeps a
    round whole while earlier rounds' matrices are let go."""
    token = max(_CACHES, default=0) + 1
    _CACHES[token] = ({}, capacity)
    try:
        yield token
    finally:
        del _CACHES[token]


class SharedFeatures(BaseEstimator, TransformerMixin):
    """The features step of the searched pipeline: fits its transformer once per distinct row set and hands
    every later candidate on the same rows that fitted transformer and its matrix.

    Only used during a search (the saved pipeline holds the plain fitted transformer, see `unwrap`).
    """

    def __init__(self, features: Any = None, cache: int = 0) -> None:
        self.features = features
        self.cache = cache

    def _cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        store, capacity = _CACHES.get(self.cache, ({}, 0))  # outside its search: nothing shared, still correct
        if key not in store:
            store[key] = compute()
            while len(store) > capacity > 0:
                del store[next(iter(store))]  # the oldest: a finished round's
        return store[key]

    def fit_transform(self, X: Any, y: Any = None, **params: Any) -> Any:
        self.fit_key_ = ("fit", _fingerprint(X))

        def fit() -> tuple[Any, Any]:
            fitted = clone(self.features)
            return fitted, fitted.fit_transform(X)

        self.fitted_, matrix = self._cached(self.fit_key_, fit)
        return matrix

    def fit(self, X: Any, y: Any = None) -> SharedFeatures:
        self.fit_transform(X, y)
        return self

    def transform(self, X: Any) -> Any:
        # keyed by the rows the transformer was fitted on (not its id, which a freed object's successor may reuse)
        return self._cached(("transform", self.fit_key_, _fingerprint(X)), lambda: self.fitted_.transform(X))


def unwrap(pipeline: Pipeline) -> Pipeline:
    """The searched pipeline as a plain one: the fitted transformer, not the cache wrapper around it."""
    features = pipeline.named_steps["features"]
    return Pipeline([("features", features.fitted_), ("clf", pipeline.named_steps["clf"])])


# ---------------------------------------------------------------- plan, monitor


@dataclass(frozen=True)
class Plan:
    """The rounds a search will run, as (candidates, rows) pairs: one round for a grid or random search."""

    rounds: tuple[tuple[int, int], ...]
    min_rows: int = 0

    @property
    def halving(self) -> bool:
        return len(self.rounds) > 1

    def units(self, cv: int) -> int:
        """Work in row-fits: every candidate is fitted `cv` times on about its round's rows; the refit on all."""
        return sum(candidates * cv * rows for candidates, rows in self.rounds) + self.rounds[-1][1]


def plan(config: ClassicalConfig, space: list[dict[str, Any]], rows: int, n_labels: int) -> Plan:
    """The rounds of successive halving the way scikit-learn counts them (`min_resources="exhaust"`), or one
    round where halving cannot start smaller than the whole (tiny data) or was not asked for."""
    candidates = config.n_iter if config.search == "random" else len(ParameterGrid(space))
    single = Plan(((candidates, rows),))
    if config.search != "halving" or candidates < FACTOR:
        return single
    required = 1 + floor(log(candidates, FACTOR))
    min_rows = max(2 * config.cv * n_labels, rows // FACTOR ** (required - 1))
    if min_rows * FACTOR > rows:
        return single
    count = min(required, 1 + floor(log(rows // min_rows, FACTOR)))
    rounds, left = [], candidates
    for index in range(count):
        rounds.append((left, min(int(FACTOR**index * min_rows), rows)))
        left = ceil(left / FACTOR)
    return Plan(tuple(rounds), min_rows)


@dataclass
class Monitor:
    """The search's scorer: scores with the configured scorer, advances progress, remembers every fold's
    score, and ends the search (`BudgetSpent`) once the deadline has passed."""

    scoring: str
    cv: int
    deadline: float
    advance: Callable[[int], None]
    limit: int  # the search's planned row-fits: folds' sizes round differently, so the count is capped here
    done: int = 0
    records: list[tuple[int, str, BaseEstimator, float]] = field(default_factory=list)
    _round: int = 0
    _rows: int = 0

    def __call__(self, pipeline: Pipeline, X: Any, y: Any) -> float:
        score = float(get_scorer(self.scoring)(pipeline, X, y))
        rows = len(X) * self.cv
        if rows > self._rows * 1.5:  # halving triples the rows each round; folds differ by a row or two
            self._round, self._rows = self._round + (1 if self._rows else 0), rows
        clf = pipeline.named_steps["clf"]
        self.records.append((self._round, repr(clf), clf, score))
        step = max(0, min(rows, self.limit - self.done))
        self.done += step
        self.advance(step)
        if time.monotonic() > self.deadline:
            raise BudgetSpent
        return score

    def best_so_far(self) -> tuple[BaseEstimator, float]:
        """The best mean score of the deepest round in which any candidate finished all its folds (or, when
        none did, of whatever was scored)."""
        scores: dict[tuple[int, str], list[float]] = {}
        models: dict[str, BaseEstimator] = {}
        for round_index, key, clf, score in self.records:
            scores.setdefault((round_index, key), []).append(score)
            models[key] = clf
        finished = [k for k, v in scores.items() if len(v) == self.cv] or list(scores)
        deepest = max(r for r, _ in finished)
        key = max((k for k in finished if k[0] == deepest), key=lambda k: float(np.nanmean(scores[k])))
        return clone(models[key[1]]), float(np.nanmean(scores[key]))


# ---------------------------------------------------------------- search


@dataclass
class SearchResult:
    pipeline: Pipeline
    params: dict[str, Any]
    cv_score: float
    seconds: float
    rounds: list[tuple[int, int]]
    stopped_early: bool


def _plain(value: Any) -> Any:
    """numpy scalars (from the random search's distributions) as Python numbers, so params are JSON."""
    return value.item() if isinstance(value, np.generic) else value


def _params(clf: BaseEstimator, space: list[dict[str, Any]]) -> dict[str, Any]:
    """The searched hyperparameters of the chosen estimator, by their plain names."""
    names = {key.removeprefix("clf__") for entry in space for key in entry if key != "clf"}
    return {key: _plain(value) for key, value in sorted(clf.get_params().items()) if key in names}


def _searcher(config: ClassicalConfig, pipeline: Pipeline, space: list[dict[str, Any]], the_plan: Plan,
              monitor: Monitor) -> Any:
    folds = StratifiedKFold(n_splits=config.cv, shuffle=True, random_state=config.seed)
    common = {"scoring": monitor, "cv": folds, "n_jobs": config.n_jobs, "refit": True, "error_score": "raise",
              "return_train_score": False}  # halving defaults to True: a second scoring pass per fit
    if the_plan.halving:
        return HalvingGridSearchCV(pipeline, space, factor=FACTOR, resource="n_samples",
                                   min_resources=the_plan.min_rows, random_state=config.seed, **common)
    if config.search == "random":
        return RandomizedSearchCV(pipeline, space, n_iter=config.n_iter, random_state=config.seed, **common)
    return GridSearchCV(pipeline, space, **common)


def run_search(table: np.ndarray, labels: list[str], features: Any, config: ClassicalConfig,
               progress: ProgressFactory | None = None) -> SearchResult:
    """Search `config`'s candidates on stratified folds of (table, labels), then refit the best on all rows.

    Runs under joblib's threading backend so the scorer, and with it the progress and the budget, sees every
    fit however many workers `n_jobs` asks for.
    """
    space = search_space(config, families(config, len(labels)))
    the_plan = plan(config, space, len(labels), len(set(labels)))
    started = time.monotonic()
    budget = config.time_budget_s if config.time_budget_s is not None else float("inf")
    description = f"search, {len(the_plan.rounds)} round(s)"
    total = the_plan.units(config.cv)
    with (progress(description, total) if progress else nullcontext(lambda n: None)) as advance, \
            shared_cache(2 * config.cv + 1) as token, parallel_backend("threading"):
        monitor = Monitor(config.scoring, config.cv, started + budget, advance, total - len(labels))
        pipeline = Pipeline([("features", SharedFeatures(features, token)), ("clf", space[0]["clf"][0])])
        search = _searcher(config, pipeline, space, the_plan, monitor)
        try:
            search.fit(table, labels)
            best, clf, score, early = search.best_estimator_, search.best_estimator_.named_steps["clf"], \
                float(search.best_score_), False
        except BudgetSpent:
            clf, score = monitor.best_so_far()
            best, early = clone(pipeline).set_params(clf=clf).fit(table, labels), True
            clf = best.named_steps["clf"]
        advance(total - monitor.done)  # the refit, and what an early stop skipped: the bar ends full
    return SearchResult(pipeline=unwrap(best), params=_params(clf, space), cv_score=score,
                        seconds=time.monotonic() - started, rounds=list(the_plan.rounds), stopped_early=early)
