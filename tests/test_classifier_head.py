"""Classifier-head fine-tuning on a tiny BERT built from config (no download), plus one slow run on MiniLM."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import torch

from tunewise.schema import Example, Message
from tunewise.train.classifier import ClassifierError, ClassifierModel, train_classifier
from tunewise.train.settings import ClassifierConfig

KEYWORDS = {
    "sport": ["football", "goal", "match", "team", "coach", "league"],
    "money": ["bank", "shares", "market", "profit", "tax", "price"],
    "weather": ["rain", "snow", "storm", "sunny", "wind", "cloud"],
}
FILLER = "the a of on in today people said this was very some new old about with from they it".split()


def example(text: str, label: str, index: int) -> Example:
    return Example(id=f"ex{index}", line=index + 1,
                   messages=(Message("user", text), Message("assistant", label)))


def synthetic(count: int, seed: int, labels: tuple[str, ...] = tuple(KEYWORDS)) -> list[Example]:
    """Sentences of filler words with two keywords of the label mixed in: separable, but only by content."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        label = labels[i % len(labels)]
        words = rng.choices(FILLER, k=rng.randint(4, 12)) + rng.sample(KEYWORDS[label], 2)
        rng.shuffle(words)
        out.append(example(" ".join(words), label, i))
    return out


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: with two threads on a 2-core machine that is busy with anything else, OpenMP waits
    made training 5-15x slower (tiny BERT 50 s instead of 3 s; MiniLM 154 s instead of 30 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with the bundled MiniLM tokenizer, saved as a 'pretrained' folder.

    It is saved without a head (BertModel) so that, like a real encoder, every label set gets a fresh head.
    """
    from transformers import AutoTokenizer, BertConfig, BertModel, set_seed

    from tunewise.assets import bundled_embedder_path

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(bundled_embedder_path())
    set_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_config(folder: Path, **overrides) -> ClassifierConfig:
    # From scratch a tiny model needs a far higher learning rate than fine-tuning a pretrained one.
    settings = dict(model=str(folder), epochs=10, learning_rate=3e-3, batch_size=16, max_length=32,
                    warmup_ratio=0.0, early_stopping_patience=3, seed=0)
    return ClassifierConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def trained(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> ClassifierModel:
    steps: list[tuple[int, int]] = []
    model = train_classifier(synthetic(240, seed=1), synthetic(30, seed=2), tiny_config(tiny_encoder),
                             tmp_path_factory.mktemp("run"), progress=lambda done, total: steps.append((done, total)))
    assert steps and all(done <= total for done, total in steps)
    return model


def test_learns_separable_labels(trained: ClassifierModel) -> None:
    test = synthetic(60, seed=3)
    predicted = trained.predict(test)
    accuracy = sum(p == e.label for p, e in zip(predicted, test, strict=True)) / len(test)
    assert accuracy >= 0.9
    assert trained.labels == sorted(KEYWORDS)


def test_scores_are_probabilities_in_input_order(trained: ClassifierModel) -> None:
    test = synthetic(9, seed=4)
    scores = trained.predict_scores(test)
    assert all(set(row) == set(KEYWORDS) and abs(sum(row.values()) - 1) < 1e-4 for row in scores)
    # Batching sorts by length; one-at-a-time scoring must agree with it example by example.
    single = [trained.predict_scores([e])[0] for e in test]
    for batched, alone in zip(scores, single, strict=True):
        assert max(batched, key=batched.__getitem__) == max(alone, key=alone.__getitem__)


def test_training_info_records_history_and_precision(trained: ClassifierModel) -> None:
    info = trained.info
    assert info is not None
    assert info.precision in ("bf16", "fp32") and info.precision in info.precision_reason
    assert len(info.history) == info.epochs_run
    assert all(r.train_loss is not None and r.val_loss is not None for r in info.history)
    assert 1 <= info.best_epoch <= info.epochs_run
    assert info.history[info.best_epoch - 1].val_macro_f1 == info.best_metric


def test_save_load_round_trip_gives_identical_probabilities(trained: ClassifierModel, tmp_path: Path) -> None:
    test = synthetic(12, seed=5)
    folder = trained.save(tmp_path / "model")
    assert (folder / "model.safetensors").is_file()
    loaded = ClassifierModel.load(folder)
    assert loaded.labels == trained.labels
    assert loaded.config == trained.config
    assert loaded.info == trained.info
    assert loaded.predict_scores(test) == trained.predict_scores(test)


def test_load_rejects_a_folder_that_is_not_a_classifier(tiny_encoder: Path, tmp_path: Path) -> None:
    with pytest.raises(ClassifierError, match="not a tunewise classifier folder"):
        ClassifierModel.load(tiny_encoder)
    with pytest.raises(ClassifierError, match="does not exist"):
        ClassifierModel.load(tmp_path / "missing")


def test_early_stopping_ends_training_when_validation_stops_improving(tiny_encoder: Path, tmp_path: Path) -> None:
    # Validation labels are the training rule inverted, so every epoch that learns the training split makes
    # validation loss worse: the first epoch is the best, and patience 1 stops training right after it.
    train = synthetic(60, seed=6, labels=("sport", "money"))
    val = [example(e.input, "money" if e.label == "sport" else "sport", i)
           for i, e in enumerate(synthetic(20, seed=7, labels=("sport", "money")))]
    config = tiny_config(tiny_encoder, epochs=10, early_stopping_metric="loss", early_stopping_patience=1)
    model = train_classifier(train, val, config, tmp_path)
    info = model.info
    assert info is not None
    assert info.stopped_early and info.epochs_run < 10
    assert info.epochs_run == info.best_epoch + 1
    checkpoints = list((tmp_path / "checkpoints").glob("checkpoint-*"))
    assert 1 <= len(checkpoints) <= config.save_total_limit


def test_sigterm_checkpoints_and_resume_finishes_like_an_uninterrupted_run(tiny_encoder: Path,
                                                                           tmp_path: Path) -> None:
    """SIGTERM mid-epoch: a complete checkpoint is written at the end of that step and training stops; calling
    again resumes from it (data order, dropout draws, optimizer and schedule restored) and ends with the weights
    of a run that was never stopped."""
    import os
    import signal

    from tunewise.train import checkpoints

    train, val = synthetic(48, seed=8), synthetic(12, seed=9)
    config = tiny_config(tiny_encoder, epochs=3, early_stopping_patience=5)  # 3 steps an epoch, 9 in all
    whole = train_classifier(train, val, config, tmp_path / "whole")

    def stop_at_step_4(done: int, total: int) -> None:
        if done == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler only sets a flag; training checks it next step

    stopped = train_classifier(train, val, config, tmp_path / "stopped", progress=stop_at_step_4)
    assert stopped.info is not None and stopped.info.interrupted
    found = checkpoints.checkpoints(tmp_path / "stopped" / "checkpoints")
    assert [checkpoints.step_of(f) for f in found][-1] == 5 and checkpoints.recorded_seconds(found[-1]) > 0
    resumed = train_classifier(train, val, config, tmp_path / "stopped")
    assert resumed.info is not None and not resumed.info.interrupted and whole.info is not None
    assert resumed.info.epochs_run == whole.info.epochs_run == 3
    # the Trainer logs an epoch's train loss as the mean since its last log, which for the resumed epoch
    # starts at the resume; everything measured on validation must be identical
    val = lambda info: [(r.epoch, r.val_loss, r.val_macro_f1, r.val_accuracy) for r in info.history]  # noqa: E731
    assert val(resumed.info) == val(whole.info)
    assert [r.train_loss for r in resumed.info.history][2] == [r.train_loss for r in whole.info.history][2]
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(("train", "val", "message"), [
    ([example("goal", "sport", 0), example("match", "sport", 1)], [example("goal", "sport", 2)], "only one label"),
    ([example("goal", "sport", 0), example("bank", "money", 1)],
     [example("rain", "weather", 2), example("snow", "weather", 3)], "'weather' never occurs in training"),
    ([example("goal", "sport", 0), example("bank", "money", 1)], [], "validation split is empty"),
])
def test_unusable_splits_are_rejected_before_loading_a_model(train, val, message, tmp_path: Path) -> None:
    # model points nowhere: the splits must be rejected before any model is touched.
    config = ClassifierConfig(model=str(tmp_path / "no-model"))
    with pytest.raises(ClassifierError, match=message):
        train_classifier(train, val, config, tmp_path)


@pytest.mark.slow
def test_minilm_fine_tunes_on_bbc_news(tmp_path: Path) -> None:
    from tunewise.assets import bundled_dataset_path
    from tunewise.data.formats import read_examples

    # one_thread stays on: measured on the 2-core machine while another process kept one core busy, two
    # threads took 154 s and one thread 30 s for the same (bitwise equal) training.
    examples = read_examples(bundled_dataset_path()).examples
    random.Random(0).shuffle(examples)
    train, val, test = examples[:200], examples[200:250], examples[250:350]
    config = ClassifierConfig(model="minilm", epochs=1, learning_rate=3e-4, batch_size=8, max_length=128, seed=0)
    started = time.perf_counter()
    model = train_classifier(train, val, config, tmp_path)
    predicted = model.predict(test)
    elapsed = time.perf_counter() - started
    accuracy = sum(p == e.label for p, e in zip(predicted, test, strict=True)) / len(test)
    print(f"MiniLM on BBC: accuracy {accuracy:.3f}, {elapsed:.1f} s, {model.info.precision_reason}")  # type: ignore[union-attr]
    assert accuracy > 0.8
