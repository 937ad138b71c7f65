"""Does `torch.compile` (inductor, CPU) make the LoRA training step faster on this machine, and when does it pay?

One process, the bundled model with LoRA as `train_sft` builds it, the finetune arm's BBC conversations (as
bench/train_efficiency.py renders them, batch 8, length-sorted), bf16 autocast where the CPU has it natively and
LoRA dropout off (the defaults). Two copies of the step share the model: eager, and the model compiled with
`dynamic=True` (batches differ in length; without it every new length recompiles). The first compiled steps
pay the compilation, timed apart; after that eager and compiled steps alternate on the same batches. Prints
the compile seconds, the step seconds of each, `ratio lora_step_compiled_vs_eager` (eager / compiled, higher is
better) and the number of steps after which compiling has paid for itself.

    PYTHONPATH=src .venv/bin/python bench/lora_step_compile.py [--batches 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    settings = SFTSettings(method="lora")
    model, tokenizer = _load_model(str(bundled_model_path()), settings)
    items, _, _ = tokenize_examples(bbc_training_examples(8 * args.batches), tokenizer, settings.max_length)
    items.sort(key=len)
    batches = [collate(items[i:i + 8], tokenizer.pad_token_id) for i in range(0, len(items), 8)][:args.batches]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr)
    model.train()
    compiled = torch.compile(model, dynamic=True)
    bf16 = "avx512_bf16" in Path("/proc/cpuinfo").read_text() or "amx_bf16" in Path("/proc/cpuinfo").read_text()

    def step(which: torch.nn.Module, batch: dict[str, torch.Tensor]) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = trained_positions_loss(which, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - start

    step(model, batches[0])  # eager warm-up
    start = time.perf_counter()
    first = [step(compiled, batch) for batch in batches]  # compilation (and any recompiles) happen here
    compile_s = time.perf_counter() - start
    print(f"compiled first pass over {len(batches)} batches: {compile_s:.1f} s ({', '.join(f'{s:.1f}' for s in first)})",
          flush=True)
    eager, fast = [], []
    for round_ in range(args.rounds):
        for index, batch in enumerate(batches):
            pair = [(model, eager), (compiled, fast)]
            for which, into in pair if (round_ + index) % 2 == 0 else pair[::-1]:
                into.append(step(which, batch))
        print(f"round {round_ + 1}: eager {sum(eager):.1f} s, compiled {sum(fast):.1f} s", flush=True)
    eager_s, fast_s = statistics.median(eager), statistics.median(fast)
    print(f"precision {'bf16' if bf16 else 'fp32'}  threads {torch.get_num_threads()}  steps each {len(eager)}")
    print(f"step median: eager {eager_s:.2f} s, compiled {fast_s:.2f} s")
    print(f"ratio lora_step_compiled_vs_eager {eager_s / fast_s:.2f}")
    saved = eager_s - fast_s
    extra = compile_s - len(batches) * fast_s  # what the first pass cost beyond compiled steps
    print("compiling pays after " + (f"{extra / saved:.0f} steps" if saved > 0 else "never (no step is faster)"))


if __name__ == "__main__":
    main()
