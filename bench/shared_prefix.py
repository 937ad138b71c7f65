"""How much does computing a shared prompt start once save when scoring few-shot prompts?

Few-shot prompts put the same instructions and k exemplar articles in front of every input, so most of each
prompt is identical. On N BBC News articles with the bundled SmolLM2 model, this times, interleaved and
repeated, `LocalLM.score_options` (a) as shipped: the shared start is run once and its keys and values are
reused by every batch, against (b) the same call with that reuse switched off, so every row recomputes the
whole prompt (what label scoring did before, and what a plain forward per prompt does). Both sides use the
same batches, layout and precision. Prints each side's median time, the largest score difference, whether
the chosen labels agree, and `ratio few_shot_shared_prefix_vs_full_prompt` (full / shared, higher is better).

With `--generate N`, the same prompts are answered by `LocalLM.generate` (greedy, N new tokens) instead, the
shared start run once and handed to `generate` as every row's cache against plain left-padded prompts, and
the ratio is `few_shot_generate_shared_prefix_vs_full_prompt`; the texts of both sides are compared.

    .venv/bin/python bench/shared_prefix.py [--n 32] [--k 4] [--words 120] [--repeats 3] [--batch-size 8]
                                            [--generate 16]
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
from tunewise.models import local  # noqa: E402
from tunewise.models.local import LocalLM  # noqa: E402

LABELS = ["business", "entertainment", "politics", "sports", "tech"]
INSTRUCTION = ("Classify the news article by topic. Answer with exactly one of: business, entertainment, "
               "politics, sports, tech.")


def prompts(n: int, k: int, words: int, seed: int = 0) -> tuple[list[list[dict[str, str]]], list[str]]:
    """k exemplars (one per label in turn) from one part of the data, n queries from the rest."""
    rows = [json.loads(line) for line in bundled_dataset_path().read_text(encoding="utf-8").splitlines()]
    rng = random.Random(seed)
    rng.shuffle(rows)
    cut = lambda text: " ".join(text.split()[:words])  # noqa: E731
    shots: list[dict[str, str]] = [{"role": "system", "content": INSTRUCTION}]
    for label in (LABELS * k)[:k]:
        row = next(r for r in rows if r["label"] == label)
        rows.remove(row)
        shots += [{"role": "user", "content": cut(row["text"])}, {"role": "assistant", "content": label}]
    queries = rows[:n]
    return [[*shots, {"role": "user", "content": cut(r["text"])}] for r in queries], [r["label"] for r in queries]


def score(lm: LocalLM, batch: list[list[dict[str, str]]], batch_size: int, share: bool) -> list[list[float]]:
    saved = local.MIN_SHARED_PREFIX
    local.MIN_SHARED_PREFIX = saved if share else 10**9
    try:
        return lm.score_options(batch, LABELS, batch_size=batch_size)
    finally:
        local.MIN_SHARED_PREFIX = saved


def generate(lm: LocalLM, batch: list[list[dict[str, str]]], batch_size: int, share: bool,
             new_tokens: int) -> list[str]:
    saved = local.MIN_SHARED_PREFIX
    local.MIN_SHARED_PREFIX = saved if share else 10**9
    try:
        return [g.text for g in lm.generate(batch, max_new_tokens=new_tokens, batch_size=batch_size)]
    finally:
        local.MIN_SHARED_PREFIX = saved


def compare_generation(lm: LocalLM, batch: list[list[dict[str, str]]], args: argparse.Namespace) -> None:
    generate(lm, batch[:2], args.batch_size, True, 2)  # warm-up
    generate(lm, batch[:2], args.batch_size, False, 2)
    ours, plain = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        with_prefix = generate(lm, batch, args.batch_size, True, args.generate)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        without = generate(lm, batch, args.batch_size, False, args.generate)
        plain.append(time.perf_counter() - start)
    ours_s, plain_s = statistics.median(ours), statistics.median(plain)
    same = sum(a == b for a, b in zip(with_prefix, without))
    print(f"generate {args.generate} new tokens (greedy)")
    print(f"shared start once  median {ours_s:7.2f} s  {1000 * ours_s / args.n:7.1f} ms/article  "
          f"runs {' '.join(f'{t:.2f}' for t in ours)}")
    print(f"full prompt/row    median {plain_s:7.2f} s  {1000 * plain_s / args.n:7.1f} ms/article  "
          f"runs {' '.join(f'{t:.2f}' for t in plain)}")
    print(f"identical texts {same}/{len(batch)}")
    print(f"ratio few_shot_generate_shared_prefix_vs_full_prompt {plain_s / ours_s:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--words", type=int, default=120, help="words kept per article (the demo keeps 120)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--generate", type=int, default=0, metavar="N",
                        help="time generation of N new tokens instead of label scoring")
    args = parser.parse_args()

    lm = LocalLM(bundled_model_path(), precision=args.precision, threads=args.threads)
    batch, gold = prompts(args.n, args.k, args.words)
    rendered = [lm.render(p) for p in batch]
    from tunewise.models.scoring import shared_prefix_length

    shared = shared_prefix_length(rendered)
    print(f"model {lm.name}  precision {lm.precision.name} ({lm.precision.reason})  threads {torch.get_num_threads()}")
    print(f"articles {args.n}  k {args.k}  words {args.words}  prompt tokens {sum(map(len, rendered)):,} "
          f"(shared start {shared} of a mean {sum(map(len, rendered)) / len(rendered):.0f} per prompt)  "
          f"repeats {args.repeats}  batch {args.batch_size}")
    if args.generate:
        compare_generation(lm, batch, args)
        return
    score(lm, batch[:2], args.batch_size, True)  # warm-up: first-call allocations on both paths
    score(lm, batch[:2], args.batch_size, False)
    ours, plain = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        with_prefix = score(lm, batch, args.batch_size, True)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        without = score(lm, batch, args.batch_size, False)
        plain.append(time.perf_counter() - start)

    pick = lambda rows: [LABELS[max(range(len(LABELS)), key=r.__getitem__)] for r in rows]  # noqa: E731
    diff = max(abs(a - b) for ra, rb in zip(with_prefix, without) for a, b in zip(ra, rb))
    ours_s, plain_s = statistics.median(ours), statistics.median(plain)
    accuracy = sum(p == g for p, g in zip(pick(with_prefix), gold)) / len(gold)
    print(f"shared start once  median {ours_s:7.2f} s  {1000 * ours_s / args.n:7.1f} ms/article  "
          f"runs {' '.join(f'{t:.2f}' for t in ours)}")
    print(f"full prompt/row    median {plain_s:7.2f} s  {1000 * plain_s / args.n:7.1f} ms/article  "
          f"runs {' '.join(f'{t:.2f}' for t in plain)}")
    print(f"largest score difference {diff:.2e}  same labels {pick(with_prefix) == pick(without)}  "
          f"accuracy {accuracy:.3f}")
    print(f"ratio few_shot_shared_prefix_vs_full_prompt {plain_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
