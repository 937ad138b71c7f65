"""How much faster is batched greedy generation than generating one prompt at a time, and is it the same?

On N BBC News articles (seeded sample, each cut to ~150 tokens) asking for a one-sentence summary, with the
bundled SmolLM2 model, times, interleaved and repeated, (a) `LocalLM.generate`: prompts grouped by length,
left-padded, batches of B, and (b) the plain way: `model.generate` on one prompt at a time. Both greedy.
Prints each side's median time, the fraction of prompts whose outputs are identical (in bf16 a padded batch
may round differently and flip a near-tied token; the identity is then re-checked in fp32 on a few prompts,
where it must hold), and `ratio batched_vs_sequential_generate` (sequential time / batched time).

    .venv/bin/python bench/batched_generate.py [--n 32] [--batch-size 16] [--max-new-tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from tunewise.assets import bundled_dataset_path, bundled_model_path  # noqa: E402
from tunewise.models.local import LocalLM  # noqa: E402

INSTRUCTION = "Summarize the news article in one sentence."


def prompts_for(lm: LocalLM, n: int, tokens: int, seed: int = 0) -> list[list[dict[str, str]]]:
    rows = [json.loads(line) for line in bundled_dataset_path().read_text(encoding="utf-8").splitlines()]
    out = []
    for row in random.Random(seed).sample(rows, n):
        text = lm.tokenizer.decode(lm.tokenizer(row["text"], add_special_tokens=False)["input_ids"][:tokens])
        out.append([{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": text}])
    return out


def one_at_a_time(lm: LocalLM, prompts: list[list[dict[str, str]]], max_new_tokens: int) -> list[str]:
    """What one writes without batching: the chat template and `generate` per prompt."""
    texts = []
    with torch.inference_mode():
        for messages in prompts:
            inputs = lm.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                      return_dict=True).to(lm.device)
            output = lm.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                       pad_token_id=lm.tokenizer.pad_token_id)
            texts.append(lm.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
    return texts


def batched(lm: LocalLM, prompts: list[list[dict[str, str]]], max_new_tokens: int, batch_size: int) -> list[str]:
    return [g.text for g in lm.generate(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)]


def identical(a: list[str], b: list[str]) -> float:
    return sum(x == y for x, y in zip(a, b)) / len(a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=150, help="article length cut, in tokens")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--fp32-check", type=int, default=8, help="prompts re-checked for identity in fp32")
    args = parser.parse_args()

    lm = LocalLM(bundled_model_path(), precision=args.precision, threads=args.threads)
    prompts = prompts_for(lm, args.n, args.tokens)
    batched(lm, prompts[:2], 4, args.batch_size)  # warm-up: first-call allocations on both paths
    one_at_a_time(lm, prompts[:2], 4)
    ours, plain = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        fast = batched(lm, prompts, args.max_new_tokens, args.batch_size)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        slow = one_at_a_time(lm, prompts, args.max_new_tokens)
        plain.append(time.perf_counter() - start)

    ours_s, plain_s = statistics.median(ours), statistics.median(plain)
    new_tokens = sum(g.completion_tokens for g in lm.generate(prompts, max_new_tokens=args.max_new_tokens,
                                                              batch_size=args.batch_size))
    print(f"model {lm.name}  precision {lm.precision.name} ({lm.precision.reason})  threads {torch.get_num_threads()}")
    print(f"prompts {args.n}  batch {args.batch_size}  max_new_tokens {args.max_new_tokens}  "
          f"new tokens {new_tokens}  repeats {args.repeats}")
    print(f"batched      median {ours_s:7.2f} s  {new_tokens / ours_s:7.1f} new tokens/s  "
          f"runs {' '.join(f'{t:.2f}' for t in ours)}")
    print(f"one-at-a-time median {plain_s:7.2f} s  {new_tokens / plain_s:7.1f} new tokens/s  "
          f"runs {' '.join(f'{t:.2f}' for t in plain)}")
    print(f"identical outputs ({lm.precision.name}) {identical(fast, slow):.3f}")
    differing = [i for i, (x, y) in enumerate(zip(fast, slow)) if x != y]
    for i in differing[:3]:  # a few examples show what a bf16 divergence looks like
        print(f"  differs at prompt {i}:\n    batched:    {fast[i]!r}\n    sequential: {slow[i]!r}")
    if args.fp32_check:
        exact = lm if lm.precision.dtype == torch.float32 else LocalLM(bundled_model_path(), precision="fp32")
        few = prompts[:args.fp32_check]
        same = identical(batched(exact, few, args.max_new_tokens, args.batch_size),
                         one_at_a_time(exact, few, args.max_new_tokens))
        print(f"identical outputs (fp32, {len(few)} prompts) {same:.3f}")
    print(f"ratio batched_vs_sequential_generate {plain_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
