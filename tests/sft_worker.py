"""A fine-tuning process for the resume and SIGTERM tests: `python sft_worker.py MODEL OUT [max_steps]`.

Kept as a script so the tests can kill it like a user's shell would (kill -9, SIGTERM) mid-training.
Exit 0 after training (interrupted or not); writes OUT/final.safetensors with the trained weights.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors.torch import save_file

from tunewise.schema import Example, Message
from tunewise.train.settings import SFTSettings
from tunewise.train.sft import train_sft

LABELS = ("sport", "tech", "politics")


def examples(n: int, offset: int = 0) -> list[Example]:
    return [Example(id=f"e{i}", line=i + 1, messages=(
        Message("user", f"Topic of: item {i} " + "word " * (i % 7) + f"about {LABELS[i % 3]}"),
        Message("assistant", LABELS[i % 3]))) for i in range(offset, offset + n)]


def settings(max_steps: int | None = None) -> SFTSettings:
    # dropout on, several epochs, checkpoints every step: resume must restore RNG, data order and optimizer
    return SFTSettings(method="lora", epochs=4, max_steps=max_steps, batch_size=4, learning_rate=5e-3,
                       lora_r=4, lora_alpha=8, lora_dropout=0.1, checkpoint_every_steps=1, keep_checkpoints=2,
                       early_stopping_patience=1000,
                       precision="fp32", seed=7)


def main() -> None:
    model, out = sys.argv[1], Path(sys.argv[2])
    max_steps = int(sys.argv[3]) if len(sys.argv) > 3 else None
    result = train_sft(examples(36), examples(6, offset=100), settings(max_steps), model, out)
    state = {k: v.detach().clone().contiguous() for k, v in result.model.state_dict().items() if "lora_" in k}
    save_file(state, str(out / "final.safetensors"))
    (out / "info.json").write_text(json.dumps(result.info.to_dict()), encoding="utf-8")


if __name__ == "__main__":
    main()
