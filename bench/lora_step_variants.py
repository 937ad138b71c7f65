"""Which LoRA step settings are faster on this machine: bf16 autocast or fp32, LoRA dropout or none?

One process, one model, the same batches: the finetune arm's BBC conversations (as bench/train_efficiency.py
renders them, batch 8, length-sorted), each step run as `train_sft` runs it (loss on trained positions only,
AdamW), the four variants alternated step by step in a rotating order, so a machine shared with other work
loads every variant alike. Prints the summed step seconds per variant after each batch round and the ratios.
The weights move on between steps; only the time is compared.

    PYTHONPATH=src .venv/bin/python bench/lora_step_variants.py [--batches 2] [--rounds 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_efficiency import bbc_training_examples  # noqa: E402

from tunewise.assets import bundled_model_path  # noqa: E402
from tunewise.train.settings import SFTSettings  # noqa: E402
from tunewise.train.sft import _load_model, trained_positions_loss  # noqa: E402
from tunewise.train.sft_data import collate, tokenize_examples  # noqa: E402

VARIANTS = (("bf16", True), ("fp32", True), ("bf16", False), ("fp32", False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = SFTSettings(method="lora")
    model, tokenizer = _load_model(str(bundled_model_path()), settings)
    holders = [m.lora_dropout for m in model.modules() if hasattr(m, "lora_dropout")]
    dropouts = [holder["default"] for holder in holders]
    items, _, _ = tokenize_examples(bbc_training_examples(8 * args.batches), tokenizer, settings.max_length)
    items.sort(key=len)
    batches = [collate(items[i:i + 8], tokenizer.pad_token_id) for i in range(0, len(items), 8)][:args.batches]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr)
    model.train()

    def step(batch: dict[str, torch.Tensor], precision: str, dropout: bool) -> None:
        for holder, module in zip(holders, dropouts):
            holder["default"] = module if dropout else torch.nn.Identity()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss, _ = trained_positions_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    for precision in ("bf16", "fp32"):  # warm-up: first-call allocations and kernel selection
        step(batches[0], precision, True)
    seconds = {variant: 0.0 for variant in VARIANTS}
    for round_ in range(args.rounds):
        for index, batch in enumerate(batches):
            shift = (round_ + index) % len(VARIANTS)
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                start = time.perf_counter()
                step(batch, *variant)
                seconds[variant] += time.perf_counter() - start
            print(json.dumps({f"{p} dropout {'on' if d else 'off'}": round(s, 1) for (p, d), s in seconds.items()}),
                  flush=True)
    print(f"lora_dropout {settings.lora_dropout}  steps per variant {args.rounds * len(batches)}  threads {args.threads}")
    print(f"ratio lora_step_bf16_vs_fp32 {seconds[('fp32', True)] / seconds[('bf16', True)]:.2f}")
    print(f"ratio lora_step_no_dropout_vs_dropout_bf16 {seconds[('bf16', True)] / seconds[('bf16', False)]:.2f}")
    print(f"ratio lora_step_no_dropout_vs_dropout_fp32 {seconds[('fp32', True)] / seconds[('fp32', False)]:.2f}")


if __name__ == "__main__":
    main()
