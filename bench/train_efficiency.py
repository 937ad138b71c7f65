"""How much faster, and in how much less memory, does tunewise fine-tune than a plain HF Trainer + PEFT script?

On the same BBC News articles, rendered as the finetune arm renders them (the classify task's own prompt,
the topic as the assistant reply, the model's chat template), the bundled SmolLM2-135M-Instruct is trained
with the same LoRA (rank, alpha, dropout, every linear layer), optimizer, schedule, precision, torch threads,
examples and number of optimizer steps (one epoch) by three sides:

  ours             `tunewise.train.sft.train_sft`: length-grouped batches padded to their longest row, the
                   loss (and the vocabulary projection) only at positions with a trained next token;
  dynamic_padding  `transformers.Trainer` + peft, `DataCollatorForSeq2Seq` padding each randomly ordered
                   batch to its longest row, the model's own loss over full-vocabulary logits;
  pad512           the same with `padding="max_length", max_length=512`;
  ours_other_precision  ours in the other precision (fp32 when bf16 was chosen, else bf16), for
                   `ratio train_bf16_vs_fp32` (fp32 seconds / bf16 seconds): the measurement behind the default.

Every side trains on the same token ids and loss mask (`sft_data.tokenize_examples`; assistant tokens only),
so the loss being minimised is the same and only the pipeline differs. Useful tokens are the real (non-pad)
tokens of the examples trained in the epoch, counted once and shared by every side; tokens/s = useful
tokens / training seconds. Training seconds run from the Trainer's `on_train_begin` to the end of the last
optimizer step (model loading, tokenization and ours' final checkpoint are outside).

Each side runs in its own fresh process (this script with `--side`), in a rotating order, `--repeats`
times; figures are medians. Peak memory is the process's peak resident set during training: the kernel's
high-water mark (VmHWM) is reset at `on_train_begin` (`/proc/self/clear_refs`) and read after the last step,
so model loading does not count but the weights, activations, logits, gradients and optimizer state do.

Useful training FLOPs per example of n real tokens with k trained next-token positions, per layer summed
over the adapted linear maps W (d_in x d_out) and the attention of width a = heads x head_dim:
  frozen linear   4 d_in d_out n      forward 2, backward 2 (gradient w.r.t. the input only: W is frozen)
  LoRA (rank r)   6 r (d_in + d_out) n  forward 2, input gradient 2, adapter weight gradient 2
  attention       6 a n (n + 1)       causal QK^T and AV forward 2 a n (n + 1), backward twice that
plus the tied LM head 4 h V k (forward and input gradient at trained positions only). Norms, activations,
rotary, softmax and the optimizer are not counted (elementwise, O(n h) work); the input gradient of the
first layer's q/k/v/gate/up, which autograd can skip, is counted (at most 1/layers too much). The same count
is used for every side, so it measures useful work, not the work a side chooses to do. The ceiling is the
best FLOP/s of `torch.matmul` on the model's own shapes (tokens-per-batch x hidden x intermediate, both
ways, and hidden x hidden) in the same precision and thread count, measured in this run between the sides.

    .venv/bin/python bench/train_efficiency.py [--examples 32] [--batch-size 8] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from tunewise.schema import Example  # noqa: E402

SIDES = ("ours", "dynamic_padding", "pad512", "ours_other_precision")
# the processes a side runs in; "ours_other_precision" is `ours` in bf16 if fp32 was chosen, else in fp32
PROCESS_SIDES = SIDES[:3]
OTHER_PRECISION = {"bf16": "fp32", "fp32": "bf16", "fp16": "fp32"}
PAD_TO = 512
INSTRUCTIONS = "Classify the news article by topic."  # as examples/bbc-news.yaml


# ------------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class _TaskOnly:
    """`training_examples` reads only the task from an arm's context."""

    task: Any


def bbc_training_examples(n: int, max_input_words: int = 120, seed: int = 0) -> list[Example]:
    """A seeded, label-stratified sample of BBC News as the finetune arm trains on it (prompt + topic reply)."""
    from tunewise.arms.finetune_local import training_examples
    from tunewise.assets import bundled_dataset_path
    from tunewise.data.formats import read_examples
    from tunewise.data.split import stratified_subset
    from tunewise.tasks.classify import ClassifyTask

    rows = read_examples(bundled_dataset_path()).examples
    task = ClassifyTask(labels=sorted({e.label for e in rows}), instructions=INSTRUCTIONS,
                        max_input_words=max_input_words)
    subset = stratified_subset(rows, n, seed, labelled=True)
    return training_examples(subset, _TaskOnly(task), "default")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ one side


def _proc_status(field: str) -> int | None:
    """A `/proc/self/status` memory field in bytes (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _clock() -> Any:
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        """Training seconds, steps, tokens actually computed and peak memory, the same way for every side."""

        def __init__(self) -> None:
            self.began = self.ended = 0.0
            self.steps = 0
            self.positions = 0  # token positions through the network, padding included
            self.logit_rows = 0  # positions projected onto the vocabulary
            self.rss_begin = self.peak_rss = 0
            self.peak_reset = False

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            def count_positions(module: Any, inputs: Any, output: torch.Tensor) -> None:
                if torch.is_grad_enabled():
                    self.positions += output.shape[0] * output.shape[1]

            def count_logits(module: Any, inputs: Any, output: torch.Tensor) -> None:
                if torch.is_grad_enabled():
                    self.logit_rows += output.numel() // output.shape[-1]

            model.get_input_embeddings().register_forward_hook(count_positions)
            model.get_output_embeddings().register_forward_hook(count_logits)
            self.peak_reset = _reset_peak_rss()
            self.rss_begin = _proc_status("VmRSS") or 0
            self.began = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.ended = time.perf_counter()
            self.steps = state.global_step
            self.peak_rss = (_proc_status("VmHWM") if self.peak_reset else None) or \
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    return Clock()


def _lora_config() -> Any:
    """The LoRA of `SFTSettings`' defaults, written out as a plain peft script would."""
    from peft import LoraConfig

    from tunewise.train.settings import SFTSettings

    d = SFTSettings()
    return LoraConfig(r=d.lora_r, lora_alpha=d.lora_alpha, lora_dropout=d.lora_dropout,
                      target_modules=d.target_modules, task_type="CAUSAL_LM", bias="none")


def _plain_trainer(side: str, examples: list[Example], model_dir: str, batch_size: int, precision: str,
                   out: Path, clock: Any) -> None:
    """What one writes with transformers + peft: tokenized rows, a padding collator, `Trainer.train()`."""
    from peft import get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from tunewise.train.settings import SFTSettings
    from tunewise.train.sft_data import tokenize_examples

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    items, _, _ = tokenize_examples(examples, tokenizer, SFTSettings().max_length)
    rows = [{"input_ids": i.input_ids, "attention_mask": [1] * len(i), "labels": i.labels} for i in items]
    set_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), _lora_config())
    collator = DataCollatorForSeq2Seq(tokenizer, padding="max_length" if side == "pad512" else True,
                                      max_length=PAD_TO if side == "pad512" else None, label_pad_token_id=-100)
    args = TrainingArguments(output_dir=str(out), num_train_epochs=1, per_device_train_batch_size=batch_size,
                             learning_rate=SFTSettings().lr, warmup_steps=SFTSettings().warmup_ratio,
                             lr_scheduler_type="linear", max_grad_norm=SFTSettings().max_grad_norm,
                             weight_decay=0.0, logging_steps=1, save_strategy="no", eval_strategy="no",
                             report_to="none", disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
                             bf16=precision == "bf16", seed=0, data_seed=0, dataloader_num_workers=0)
    Trainer(model=model, args=args, train_dataset=rows, data_collator=collator, callbacks=[clock]).train()


def run_side(side: str, examples: list[Example], model_dir: str, batch_size: int, precision: str) -> dict[str, Any]:
    """Train one side once in this process; what the clock saw."""
    from transformers.utils import logging as hf_logging

    from tunewise.train.settings import SFTSettings
    from tunewise.train.sft import train_sft

    hf_logging.set_verbosity_error()
    clock = _clock()
    with tempfile.TemporaryDirectory() as tmp:
        if side == "ours":
            settings = SFTSettings(method="lora", epochs=1, batch_size=batch_size, precision=precision)  # type: ignore[arg-type]
            train_sft(examples, [], settings, model_dir, Path(tmp), resume=False, callbacks=[clock])
        else:
            _plain_trainer(side, examples, model_dir, batch_size, precision, Path(tmp), clock)
    return {"side": side, "seconds": clock.ended - clock.began, "steps": clock.steps, "positions": clock.positions,
            "logit_rows": clock.logit_rows, "rss_begin": clock.rss_begin, "peak_rss": clock.peak_rss,
            "peak_measure": "VmHWM reset at train begin" if clock.peak_reset else "ru_maxrss (whole process)"}


# ------------------------------------------------------------------------------------------ FLOPs


@dataclass(frozen=True)
class Shapes:
    layers: int
    hidden: int
    intermediate: int
    attention: int  # heads x head_dim
    kv: int  # kv heads x head_dim
    vocab: int

    @classmethod
    def of(cls, config: Any) -> Shapes:
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return cls(config.num_hidden_layers, config.hidden_size, config.intermediate_size,
                   config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim, config.vocab_size)

    def linears(self) -> list[tuple[int, int]]:
        """(d_in, d_out) of every linear map in one Llama layer: q, k, v, o, gate, up, down."""
        h, a, kv, i = self.hidden, self.attention, self.kv, self.intermediate
        return [(h, a), (h, kv), (h, kv), (a, h), (h, i), (h, i), (i, h)]


def useful_flops(shapes: Shapes, lengths: list[int], trained: list[int], rank: int) -> float:
    """Training FLOPs the examples need (formula in the module docstring), the same for every side."""
    frozen = sum(4 * d_in * d_out for d_in, d_out in shapes.linears())
    lora = sum(6 * rank * (d_in + d_out) for d_in, d_out in shapes.linears())
    total = 0.0
    for n, k in zip(lengths, trained):
        total += shapes.layers * ((frozen + lora) * n + 6 * shapes.attention * n * (n + 1))
        total += 4 * shapes.hidden * shapes.vocab * k
    return total


def matmul_ceiling(shapes: Shapes, rows: int, dtype: torch.dtype, repeats: int = 5) -> float:
    """Best FLOP/s of torch.matmul on the model's main shapes at `rows` tokens, in `dtype`, current threads."""
    best = 0.0
    for k, n in ((shapes.hidden, shapes.intermediate), (shapes.intermediate, shapes.hidden),
                 (shapes.hidden, shapes.hidden)):
        a, b = torch.randn(rows, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        torch.matmul(a, b)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.matmul(a, b)
            times.append(time.perf_counter() - start)
        best = max(best, 2 * rows * k * n / min(times))
    return best


# ------------------------------------------------------------------------------------------ driver


def _child(side: str, args: argparse.Namespace, precision: str) -> dict[str, Any]:
    if side == "ours_other_precision":
        side, precision = "ours", OTHER_PRECISION[precision]
    command = [sys.executable, __file__, "--side", side, "--examples", str(args.examples), "--batch-size",
               str(args.batch_size), "--threads", str(args.threads), "--precision", precision,
               "--max-input-words", str(args.max_input_words)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"side {side} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _load() -> str:
    try:
        return os.getloadavg().__repr__()
    except OSError:
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=32, help="BBC articles asked for (one epoch; the stratified "
                        "sample rounds per topic); 32 makes 4 steps at batch 8")
    parser.add_argument("--batch-size", type=int, default=8, help="the batch of the LoRA arm in examples/bbc-news.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--precision", default="auto", help="auto: bf16 where the CPU multiplies it natively")
    parser.add_argument("--max-input-words", type=int, default=120, help="the task's article cut, as in "
                        "examples/bbc-news.yaml")
    parser.add_argument("--side", choices=PROCESS_SIDES, help=argparse.SUPPRESS)  # internal: one side in this process
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from tunewise.assets import bundled_model_path

    model_dir = str(bundled_model_path())
    examples = bbc_training_examples(args.examples, args.max_input_words)
    if args.side:
        print(json.dumps(run_side(args.side, examples, model_dir, args.batch_size, args.precision)))
        return

    from transformers import AutoConfig, AutoTokenizer

    from tunewise.models.precision import choose_precision, resolve_device
    from tunewise.train.settings import SFTSettings
    from tunewise.train.sft_data import tokenize_examples

    chosen = choose_precision(resolve_device("auto"), args.precision)
    items, _, _ = tokenize_examples(examples, AutoTokenizer.from_pretrained(model_dir), SFTSettings().max_length)
    lengths, trained = [len(i) for i in items], [i.trained_tokens for i in items]
    useful = sum(lengths)
    shapes = Shapes.of(AutoConfig.from_pretrained(model_dir))
    flops = useful_flops(shapes, lengths, trained, SFTSettings().lora_r)
    rows = args.batch_size * round(statistics.median(lengths))

    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    ceilings, loads = [], []
    for repeat in range(args.repeats):
        order = SIDES[repeat % len(SIDES):] + SIDES[:repeat % len(SIDES)]
        for side in order:
            runs[side].append(_child(side, args, chosen.name))
        ceilings.append(matmul_ceiling(shapes, rows, chosen.dtype))
        loads.append(_load())
        print(f"repeat {repeat + 1}: " + "  ".join(f"{s} {runs[s][-1]['seconds']:.1f} s" for s in SIDES)
              + f"  matmul {ceilings[-1] / 1e9:.1f} GFLOP/s  load {loads[-1]}", flush=True)

    seconds = {side: statistics.median(r["seconds"] for r in runs[side]) for side in SIDES}
    peak = {side: statistics.median(r["peak_rss"] for r in runs[side]) for side in SIDES}
    begin = {side: statistics.median(r["rss_begin"] for r in runs[side]) for side in SIDES}
    ceiling = statistics.median(ceilings)
    steps = {runs[side][0]["steps"] for side in SIDES}
    print(f"model {Path(model_dir).name}  precision {chosen.name} ({chosen.reason})  threads {args.threads}")
    print(f"examples {len(items)}  batch {args.batch_size}  optimizer steps {sorted(steps)}  useful tokens {useful:,} "
          f"(lengths {min(lengths)}-{max(lengths)}, median {statistics.median(lengths):.0f})  trained tokens "
          f"{sum(trained):,}  useful FLOPs {flops / 1e12:.2f} T  peak memory: {runs['ours'][0]['peak_measure']}")
    for side in SIDES:
        r = runs[side][0]
        each = " ".join(f"{x['seconds']:.1f}" for x in runs[side])
        print(f"{side:16s} median {seconds[side]:7.2f} s  {useful / seconds[side]:7.1f} useful tokens/s  "
              f"{flops / seconds[side] / 1e9:6.1f} useful GFLOP/s  positions computed {r['positions']:,} "
              f"(useful {useful / r['positions']:.0%})  logit rows {r['logit_rows']:,}  peak RSS "
              f"{peak[side] / 2**20:,.0f} MiB (+{(peak[side] - begin[side]) / 2**20:,.0f} over train start)  "
              f"runs {each}")
    print(f"matmul ceiling median {ceiling / 1e9:.1f} GFLOP/s ({rows} x {shapes.hidden} x {shapes.intermediate} "
          f"and friends)  runs {' '.join(f'{c / 1e9:.1f}' for c in ceilings)}")
    print(f"ratio train_vs_pad512 {seconds['pad512'] / seconds['ours']:.2f}")
    print(f"ratio train_vs_dynamic_padding {seconds['dynamic_padding'] / seconds['ours']:.2f}")
    print(f"ratio train_memory_saving_vs_dynamic_padding {peak['dynamic_padding'] / peak['ours']:.2f}")
    print(f"ratio train_flops_vs_matmul_ceiling {flops / seconds['ours'] / ceiling:.2f}")
    other = OTHER_PRECISION[chosen.name]
    by_precision = {chosen.name: seconds["ours"], other: seconds["ours_other_precision"]}
    if "bf16" in by_precision and "fp32" in by_precision:  # above 1: bf16 trains faster than fp32 here
        print(f"ratio train_bf16_vs_fp32 {by_precision['fp32'] / by_precision['bf16']:.2f}")


if __name__ == "__main__":
    main()
