"""How much faster does tunewise build a retrieval index than sentence-transformers' `encode` with its defaults?

Texts: sentences of the bundled BBC News articles (the rows of bench/scale.py's 40,000-row set), the first
`--n` of them in article order, duplicates included as they occur. Plain: `SentenceTransformer.encode` of the
bundled all-MiniLM-L6-v2 in fp32, batch 32, the texts as given. Ours: `EmbeddingIndex.build` (bf16 where the
CPU multiplies it natively, each distinct text once, longest first across the corpus, no disk cache). Both
interleaved, repeated, medians; prints `ratio embed_index_vs_default_encode` (plain / ours, higher is better)
and the recall@k of our nearest neighbours against plain fp32 cosine neighbours for a sample of queries.

    .venv/bin/python bench/embed_index.py [--n 8000] [--repeats 3] [--k 4]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from typing import Any

import numpy as np


def bbc_sentences(n: int | None = None) -> list[tuple[str, str, str]]:
    """(article id, topic, sentence) for every sentence of at least four words of the bundled BBC articles."""
    from tunewise import assets
    from tunewise.data.formats import read_examples

    rows = []
    for example in read_examples(assets.bundled_dataset_path()).examples:
        for sentence in re.split(r"(?<=[.!?])\s+", example.input):
            if len(sentence.split()) >= 4:
                rows.append((example.id, example.label, sentence.strip()))
                if n is not None and len(rows) >= n:
                    return rows
    return rows


def plain_encode(texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    from tunewise.assets import bundled_embedder_path

    model = SentenceTransformer(str(bundled_embedder_path()), device="cpu")
    vectors = model.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def ours(texts: list[str]) -> Any:
    from tunewise.models.index import EmbeddingIndex

    return EmbeddingIndex.build(texts, None, None)


def compare(texts: list[str], repeats: int, k: int, queries: int = 500) -> dict[str, float]:
    """Median seconds of each, the ratio, and recall@k of ours against plain fp32 neighbours."""
    from tunewise.models.index import _rank

    plain_s, ours_s, plain_vectors, index = [], [], None, None
    for _ in range(repeats):
        start = time.perf_counter()
        plain_vectors = plain_encode(texts)
        plain_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        index = ours(texts)
        ours_s.append(time.perf_counter() - start)
    assert plain_vectors is not None and index is not None
    rng = np.random.default_rng(0)
    sample = rng.choice(len(texts), size=min(queries, len(texts)), replace=False)
    exclude = [{int(i)} for i in sample]  # a sentence is not its own neighbour
    truth = _rank(plain_vectors[sample] @ plain_vectors.T, k, exclude)
    found = _rank(index.vectors[sample] @ index.vectors.T, k, exclude)
    recall = sum(len(set(a) & set(b)) for a, b in zip(truth, found)) / (k * len(sample))
    return {"plain_s": statistics.median(plain_s), "ours_s": statistics.median(ours_s),
            "ratio": statistics.median(plain_s) / statistics.median(ours_s), "recall": recall,
            "distinct": len(set(texts)), "precision": index.precision}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, default=4)
    args = parser.parse_args()
    texts = [sentence for _, _, sentence in bbc_sentences(args.n)]
    result = compare(texts, args.repeats, args.k)
    print(f"{len(texts):,} BBC sentences ({result['distinct']:,} distinct), all-MiniLM-L6-v2, median of "
          f"{args.repeats}: plain encode (fp32, batch 32) {result['plain_s']:.1f} s, ours ({result['precision']}, "
          f"deduplicated, longest first) {result['ours_s']:.1f} s")
    print(f"recall@{args.k} of our neighbours against plain fp32 neighbours: {result['recall']:.4f}")
    print(f"ratio embed_index_vs_default_encode {result['ratio']:.2f}")


if __name__ == "__main__":
    main()
