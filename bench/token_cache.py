"""How much does the tokenization cache save each time fine-tuning starts on the same data?

On N BBC News articles rendered as the finetune arm renders them (`train_efficiency.bbc_training_examples`),
times, interleaved and repeated, (a) `TokenCache.tokenize` reading an entry written before (what every
optuna trial, learning-curve point, stage and resume after the first pays, fingerprinting the tokenizer
included) and (b) `sft_data.tokenize_examples`, the chat template rendered and tokenized per example (what
each of them paid before). Prints both medians, the seconds saved per training start, and
`ratio tokenize_cached_vs_uncached` (uncached / cached, higher is better).

    .venv/bin/python bench/token_cache.py [--examples 800] [--repeats 3] [--max-length 512]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from train_efficiency import bbc_training_examples  # same folder: the finetune arm's BBC conversations
from transformers import AutoTokenizer

from tunewise.assets import bundled_tokenizer_path
from tunewise.train.sft_data import tokenize_examples
from tunewise.train.token_cache import TokenCache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=800)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--max-input-words", type=int, default=120)
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(bundled_tokenizer_path())
    examples = bbc_training_examples(args.examples, args.max_input_words)
    with tempfile.TemporaryDirectory() as tmp:
        expected = TokenCache(Path(tmp), tokenizer, args.max_length).tokenize(examples)  # writes the entry
        cached, plain = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            cache = TokenCache(Path(tmp), tokenizer, args.max_length)  # a new training start: fingerprint again
            hit = cache.tokenize(examples)
            cached.append(time.perf_counter() - start)
            start = time.perf_counter()
            computed = tokenize_examples(examples, tokenizer, args.max_length)
            plain.append(time.perf_counter() - start)
            assert cache.hits == 1 and hit == computed == expected
    cached_s, plain_s = statistics.median(cached), statistics.median(plain)
    tokens = sum(len(item) for item in expected[0])
    print(f"examples {len(examples)}  tokens {tokens:,}  max_length {args.max_length}  repeats {args.repeats}")
    print(f"cached    median {cached_s:7.3f} s  runs {' '.join(f'{t:.3f}' for t in cached)}")
    print(f"uncached  median {plain_s:7.3f} s  runs {' '.join(f'{t:.3f}' for t in plain)}")
    print(f"saved per training start {plain_s - cached_s:.2f} s")
    print(f"ratio tokenize_cached_vs_uncached {plain_s / cached_s:.1f}")


if __name__ == "__main__":
    main()
