"""The classical arm: learns text and metadata, searches honestly, saves and loads exactly, fails clearly."""

from __future__ import annotations

import json
import random
from contextlib import contextmanager

import pytest
from pydantic import ValidationError

from tunewise.schema import Example, Message
from tunewise.train.classical import META_FILE, ClassicalError, ClassicalModel, train_classical
from tunewise.train.settings import ClassicalConfig

TOPICS = {
    "sport": "goal match striker league referee penalty stadium coach",
    "tech": "software chip cloud startup laptop server algorithm robot",
    "food": "recipe oven flour spice dinner chef garlic dessert",
}
NOISE = "the a of report today people said new year week".split()


def example(index: int, text: str, label: str, **metadata: object) -> Example:
    return Example(id=f"ex{index}", line=index + 1, metadata=dict(metadata),
                   messages=(Message("user", text), Message("assistant", label)))


def topic_examples(per_label: int, seed: int) -> list[Example]:
    """Separable by words: each text mixes its topic's words with shared noise."""
    rng = random.Random(seed)
    rows = []
    for label, words in TOPICS.items():
        for _ in range(per_label):
            text = " ".join(rng.sample(words.split(), 3) + rng.sample(NOISE, 4))
            rows.append((text, label))
    rng.shuffle(rows)
    return [example(i, text, label) for i, (text, label) in enumerate(rows)]


def noise_examples(count: int, seed: int, label_of) -> list[Example]:
    """Text that says nothing about the label; only the metadata built by `label_of(rng)` does."""
    rng = random.Random(seed)
    out = []
    for index in range(count):
        label, metadata = label_of(rng)
        out.append(example(index, " ".join(rng.choices(NOISE, k=6)), label, **metadata))
    return out


def accuracy(model: ClassicalModel, test: list[Example]) -> float:
    return sum(p == e.label for p, e in zip(model.predict(test), test)) / len(test)


@pytest.fixture(scope="module")
def topics() -> tuple[list[Example], list[Example]]:
    return topic_examples(12, seed=1), topic_examples(6, seed=2)


@pytest.mark.parametrize(("model", "kind", "params"), [
    ("logreg", "probability", {"C"}),
    ("linear_svm", "softmax_decision", {"C"}),
    ("random_forest", "probability", {"n_estimators", "max_depth"}),
])
def test_each_family_learns_separable_text(topics, model, kind, params) -> None:
    train, test = topics
    fitted = train_classical(train, ClassicalConfig(model=model))
    assert fitted.best_model_name == model
    assert set(fitted.best_params) == params
    assert fitted.score_kind == kind
    assert fitted.cv_score > 0.9 and fitted.search_seconds > 0
    assert accuracy(fitted, test) == 1.0
    scores = fitted.predict_scores(test)
    assert all(set(row) == set(TOPICS) and sum(row.values()) == pytest.approx(1.0) for row in scores)
    assert [max(row, key=row.get) for row in scores] == fitted.predict(test)


def test_auto_and_random_search_report_plain_json_params(topics) -> None:
    train, test = topics
    auto = train_classical(train, ClassicalConfig(model="auto"))
    assert auto.best_model_name in {"logreg", "linear_svm", "complement_nb", "random_forest"}
    randomised = train_classical(train, ClassicalConfig(model="logreg", search="random", n_iter=3))
    assert type(randomised.best_params["C"]) is float  # a numpy scalar from scipy would not be JSON
    for fitted in (auto, randomised):
        json.dumps(fitted.best_params)
        assert accuracy(fitted, test) == 1.0


def test_halving_search_runs_in_rounds_and_reports_progress_in_row_fits() -> None:
    train = topic_examples(200, seed=3)
    seen: list[tuple[str, int]] = []
    done: list[int] = []

    @contextmanager
    def progress(description: str, total: int):
        seen.append((description, total))
        yield done.append

    fitted = train_classical(train, ClassicalConfig(model="auto"), progress)
    candidates = [count for count, _ in fitted.rounds]
    assert len(fitted.rounds) >= 2 and candidates == sorted(candidates, reverse=True)
    assert [rows for _, rows in fitted.rounds] == sorted(rows for _, rows in fitted.rounds)
    assert fitted.rounds[-1][1] <= len(train) and fitted.cv_score > 0.9 and not fitted.stopped_early
    assert len(seen) == 1 and sum(done) == seen[0][1]  # the bar ends exactly full


def test_time_budget_stops_the_search_and_keeps_the_best_so_far(topics) -> None:
    train, test = topic_examples(200, seed=3), topics[1]
    fitted = train_classical(train, ClassicalConfig(model="auto", time_budget_s=1e-6))
    assert fitted.stopped_early and fitted.best_model_name in {"logreg", "linear_svm", "complement_nb"}
    assert accuracy(fitted, test) == 1.0


def test_features_are_fitted_once_per_fold_and_shared_by_the_candidates(topics, monkeypatch) -> None:
    from sklearn.compose import ColumnTransformer

    rows: list[int] = []
    original = ColumnTransformer.fit_transform

    def counted(self, X, y=None, **params):
        rows.append(len(X))
        return original(self, X, y, **params)

    monkeypatch.setattr(ColumnTransformer, "fit_transform", counted)
    fitted = train_classical(topics[0], ClassicalConfig(model="logreg", search="grid", cv=3))
    assert len(rows) == 3 + 1  # 5 candidates x 3 folds share 3 fits; then the refit on all rows
    assert rows[-1] == len(topics[0]) and fitted.cv_score > 0.9


def test_forest_joins_auto_only_where_it_can_pay() -> None:
    from tunewise.train.classical_search import families

    assert "random_forest" in families(ClassicalConfig(), 500)
    assert "random_forest" not in families(ClassicalConfig(), 50_000)
    assert "random_forest" in families(ClassicalConfig(categorical_features=["region"]), 50_000)
    assert "complement_nb" not in families(ClassicalConfig(numeric_features=["age"]), 500)  # scaled: may be negative
    assert families(ClassicalConfig(model="random_forest"), 50_000) == ("random_forest",)


def test_categorical_metadata_alone_can_carry_the_label() -> None:
    def region(rng: random.Random):
        place = rng.choice(["north", "south", "east"])
        return {"north": "cold", "south": "warm", "east": "cold"}[place], {"region": place}

    train, test = noise_examples(90, 1, region), noise_examples(40, 2, region)
    with_feature = train_classical(train, ClassicalConfig(model="logreg", categorical_features=["region"]))
    text_only = train_classical(train, ClassicalConfig(model="logreg"))
    assert accuracy(with_feature, test) >= 0.95
    assert accuracy(text_only, test) < 0.8
    unseen = [example(0, "the report", "cold", region="west")]  # ignored by the encoder, not an error
    assert with_feature.predict(unseen)[0] in {"cold", "warm"}


def test_numeric_metadata_is_scaled_and_used_and_numeric_strings_count() -> None:
    def temperature(rng: random.Random):
        value = rng.uniform(-30, 30)
        return ("hot" if value > 0 else "cold"), {"celsius": f"{value:.2f}" if rng.random() < 0.5 else value}

    train, test = noise_examples(80, 3, temperature), noise_examples(40, 4, temperature)
    fitted = train_classical(train, ClassicalConfig(model="logreg", numeric_features=["celsius"]))
    assert accuracy(fitted, test) >= 0.9


def test_save_load_round_trip_is_exact(topics, tmp_path) -> None:
    train, test = topics
    fitted = train_classical(train, ClassicalConfig(model="linear_svm"))
    folder = fitted.save(tmp_path / "model")
    fitted.save(folder)  # saving over an existing model replaces it whole
    loaded = ClassicalModel.load(folder)
    assert loaded.predict(test) == fitted.predict(test)
    assert loaded.predict_scores(test) == fitted.predict_scores(test)
    assert (loaded.best_model_name, loaded.best_params, loaded.cv_score, loaded.config, loaded.score_kind) == (
        fitted.best_model_name, fitted.best_params, fitted.cv_score, fitted.config, fitted.score_kind)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temp folders left behind


def test_load_refuses_what_is_not_a_classical_model_folder(tmp_path) -> None:
    with pytest.raises(ClassicalError, match="does not exist"):
        ClassicalModel.load(tmp_path / "missing")
    with pytest.raises(ClassicalError, match="not a tunewise classical model folder"):
        ClassicalModel.load(tmp_path)
    (tmp_path / META_FILE).write_text(json.dumps({"kind": "something-else"}))
    with pytest.raises(ClassicalError, match="does not describe a tunewise classical model"):
        ClassicalModel.load(tmp_path)


@pytest.mark.parametrize("model", ["random_forest", "linear_svm"])
def test_same_seed_same_model(topics, model) -> None:
    train, test = topics
    config = ClassicalConfig(model=model, search="random", n_iter=1, seed=7)
    first, second = train_classical(train, config), train_classical(train, config)
    assert first.best_params == second.best_params
    assert first.predict_scores(test) == second.predict_scores(test)


def test_one_label_is_an_error() -> None:
    with pytest.raises(ClassicalError, match="at least 2 distinct labels.*only 'sport'"):
        train_classical([example(i, "goal match", "sport") for i in range(6)])


def test_missing_and_bad_metadata_name_key_and_line() -> None:
    train = topic_examples(4, seed=5)
    train[3] = example(3, train[3].input, train[3].label, region="north", score="high")
    with pytest.raises(ClassicalError) as caught:
        train_classical(train, ClassicalConfig(categorical_features=["region"], numeric_features=["score"]))
    message = str(caught.value)
    assert "line 1 (id 'ex0'): metadata has no categorical feature 'region'" in message
    assert "line 4 (id 'ex3'): numeric feature 'score' is 'high', not a finite number" in message
    assert "... and" in message  # 12 examples x 2 keys: the rest are counted, not listed


def test_too_few_examples_per_label_suggests_lowering_cv() -> None:
    train = topic_examples(4, seed=6) + [example(100, "chip", "rare"), example(101, "chip cloud", "rare")]
    with pytest.raises(ClassicalError, match=r"3-fold .* 'rare' has 2\. Fix: lower `cv` to 2"):
        train_classical(train, ClassicalConfig(cv=3))
    with pytest.raises(ClassicalError, match="add examples"):
        train_classical(train[:-1], ClassicalConfig(cv=2))


def test_unlabelled_example_is_an_error() -> None:
    train = topic_examples(4, seed=7) + [Example(id="q", line=99, messages=(Message("user", "hello"),))]
    with pytest.raises(ClassicalError, match="line 99"):
        train_classical(train)


@pytest.mark.parametrize("bad", [{"scoring": "f1_banana"}, {"ngram_range": (2, 1)}, {"cv": 1}, {"n_jobs": 0},
                                 {"model": "xgboost"}, {"max_feature": 10}, {"time_budget_s": 0},
                                 {"search": "bayes"}])
def test_config_rejects_bad_values(bad) -> None:
    with pytest.raises(ValidationError):
        ClassicalConfig(**bad)


@pytest.mark.slow
def test_bbc_news_holdout_accuracy() -> None:
    from tunewise.assets import bundled_dataset_path
    from tunewise.data.formats import read_examples

    examples = read_examples(bundled_dataset_path()).examples
    random.Random(0).shuffle(examples)
    cut = int(len(examples) * 0.7)
    fitted = train_classical(examples[:cut], ClassicalConfig(model="linear_svm"))
    assert accuracy(fitted, examples[cut:]) >= 0.9
