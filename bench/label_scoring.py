"""How much faster is classifying by label scoring than generating an answer and parsing it?

On N BBC News articles (a seeded sample across the five topics, each cut to ~200 tokens) with the bundled
SmolLM2 model, times, interleaved and repeated, (a) `LocalLM.score_options`: batched, one forward pass per
example, the label with the highest log-likelihood wins, and (b) the plain way: `model.generate` one prompt
at a time (greedy), then the first label name in the reply. Prints each side's median time and accuracy,
how often they agree, and `ratio label_scoring_vs_generate` (generate time / scoring time, higher is better).

The generation budget matters: SmolLM2 answers in a sentence ("This article is about ..."), so with 8 new
tokens 47 of 48 replies named no label at all. The default of 32 is the budget a generate-and-parse
pipeline needs to get an answer out of this model; `--max-new-tokens 8` shows the floor (about 2.5x here,
where both sides are dominated by reading the prompt).

    .venv/bin/python bench/label_scoring.py [--n 48] [--repeats 3] [--batch-size 8] [--precision auto]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from batched_generate import one_at_a_time  # noqa: E402  (same folder: the plain per-prompt HF loop)

from tunewise.assets import bundled_dataset_path, bundled_model_path  # noqa: E402
from tunewise.models.local import LocalLM  # noqa: E402

LABELS = ["business", "entertainment", "politics", "sports", "tech"]
INSTRUCTION = ("Classify the news article into one of: business, entertainment, politics, sports, tech. "
               "Answer with the label only.")


def articles(n: int, seed: int = 0) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in bundled_dataset_path().read_text(encoding="utf-8").splitlines()]
    return random.Random(seed).sample(rows, n)


def first_label(text: str) -> str | None:
    """The label named earliest in the reply (whole words, any case); None when it names none."""
    found = [(m.start(), label) for label in LABELS for m in [re.search(rf"\b{label}\b", text, re.I)] if m]
    return min(found)[1] if found else None


def generate_and_parse(lm: LocalLM, prompts: list[list[dict[str, str]]], max_new_tokens: int) -> list[str | None]:
    """What one writes without a scoring API: the chat template, `generate` per example, a regex."""
    return [first_label(reply) for reply in one_at_a_time(lm, prompts, max_new_tokens)]


def score_and_pick(lm: LocalLM, prompts: list[list[dict[str, str]]], batch_size: int) -> list[str]:
    scores = lm.score_options(prompts, LABELS, batch_size=batch_size)
    return [LABELS[max(range(len(LABELS)), key=row.__getitem__)] for row in scores]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=200, help="article length cut, in tokens")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    lm = LocalLM(bundled_model_path(), precision=args.precision, threads=args.threads)
    rows = articles(args.n)
    cut = [lm.tokenizer.decode(lm.tokenizer(r["text"], add_special_tokens=False)["input_ids"][:args.tokens])
           for r in rows]
    prompts = [[{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": text}] for text in cut]
    gold = [r["label"] for r in rows]
    prompt_tokens = sum(len(lm.render(p)) for p in prompts)

    score_and_pick(lm, prompts[:2], args.batch_size)  # warm-up: first-call allocations on both paths
    generate_and_parse(lm, prompts[:2], args.max_new_tokens)
    ours, plain = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        scored = score_and_pick(lm, prompts, args.batch_size)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        generated = generate_and_parse(lm, prompts, args.max_new_tokens)
        plain.append(time.perf_counter() - start)

    def accuracy(predicted: list[str | None]) -> float:
        return sum(p == g for p, g in zip(predicted, gold)) / len(gold)

    ours_s, plain_s = statistics.median(ours), statistics.median(plain)
    agree = sum(a == b for a, b in zip(scored, generated)) / len(gold)
    unparsed = sum(p is None for p in generated)
    print(f"model {lm.name}  precision {lm.precision.name} ({lm.precision.reason})  threads {torch.get_num_threads()}")
    print(f"articles {args.n}  prompt tokens {prompt_tokens:,}  repeats {args.repeats}  batch {args.batch_size}  "
          f"max_new_tokens {args.max_new_tokens}")
    print(f"label scoring     median {ours_s:7.2f} s  {1000 * ours_s / args.n:7.1f} ms/article  "
          f"accuracy {accuracy(scored):.3f}  runs {' '.join(f'{t:.2f}' for t in ours)}")
    print(f"generate + parse  median {plain_s:7.2f} s  {1000 * plain_s / args.n:7.1f} ms/article  "
          f"accuracy {accuracy(generated):.3f}  runs {' '.join(f'{t:.2f}' for t in plain)}  "
          f"no label in reply {unparsed}/{args.n}")
    print(f"agreement {agree:.3f}")
    print(f"ratio label_scoring_vs_generate {plain_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
