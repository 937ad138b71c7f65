"""Gradient checkpointing: chosen by an activation estimate against free memory when `auto`, forced either way
when set, recorded with its reason, and training with it follows the same loss curve as without."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tunewise.schema import Example, Message
from tunewise.train.memory import activation_bytes, available_bytes, decide_checkpointing

SMOLLM2 = SimpleNamespace(num_hidden_layers=30, hidden_size=576, num_attention_heads=9)


def test_the_estimate_follows_the_published_per_layer_count() -> None:
    # 30 layers x (34 s b h + 5 a s^2 b) bytes in 16-bit, doubled for fp32
    s, b = 384, 8
    per_layer = 34 * s * b * 576 + 5 * 9 * s * s * b
    assert activation_bytes(SMOLLM2, b, s, 2) == 30 * per_layer
    assert activation_bytes(SMOLLM2, b, s, 4) == 2 * 30 * per_layer
    assert activation_bytes(SMOLLM2, 2 * b, s, 2) == 2 * 30 * per_layer  # linear in the batch


def test_auto_turns_it_on_only_when_activations_would_crowd_memory() -> None:
    gib = 1024 ** 3
    assert decide_checkpointing("auto", 3 * gib, 20 * gib)[0] is False
    on, why = decide_checkpointing("auto", 12 * gib, 20 * gib)
    assert on and "12.0 GiB, more than half of the 20.0 GiB available" in why
    assert decide_checkpointing(True, 1, 20 * gib) == (True, "training.gradient_checkpointing: true")
    assert decide_checkpointing(False, 100 * gib, gib)[0] is False
    assert decide_checkpointing("auto", 100 * gib, None)[0] is False
    assert (available_bytes() or 0) > 0  # this Linux machine reports MemAvailable


def _examples(n: int) -> list[Example]:
    return [Example(id=f"e{i}", line=i + 1, messages=(Message("user", f"item {i} " + "word " * (i % 5)),
                                                        Message("assistant", ("sport", "tech")[i % 2])))
            for i in range(n)]


def test_checkpointed_training_follows_the_same_losses(tiny_model_dir: Path, tmp_path: Path) -> None:
    from tunewise.train.settings import SFTSettings
    from tunewise.train.sft import train_sft

    data = _examples(16)
    runs = {}
    for on in (False, True):
        settings = SFTSettings(method="lora", max_steps=3, batch_size=4, lora_r=2, lora_alpha=4, precision="fp32",
                               lora_dropout=0.0, gradient_checkpointing=on)
        runs[on] = train_sft(data, data[:4], settings, str(tiny_model_dir), tmp_path / f"run-{on}", resume=False,
                             token_cache=False)
    assert runs[True].info.gradient_checkpointing and not runs[False].info.gradient_checkpointing
    assert runs[True].info.checkpointing_reason == "training.gradient_checkpointing: true"
    losses = {on: [p.train_loss for p in run.info.history if p.train_loss is not None] for on, run in runs.items()}
    assert losses[True] and losses[True] == pytest.approx(losses[False], rel=1e-4)
