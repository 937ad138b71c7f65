"""How fast is `tunewise check` compared with the least a reader must do: a bare `json.loads` loop?

Generates 100k valid chat lines (the same generator as the corrupted-corpus test), then times, interleaved
and repeated, (a) `json.loads` over every line and (b) the full `check_file` with the bundled tokenizer and
the PII/secret scan. Prints lines/s for each and `ratio check_vs_json_loads` (ours / bare loop, higher is
better; below 1 by construction, since check does everything the loop does and much more).

    .venv/bin/python bench/check_throughput.py [--lines 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import corrupt  # noqa: E402

from tunewise.data.check_report import check_file  # noqa: E402
from tunewise.data.tokens import load_counter  # noqa: E402


def bare_loop(path: Path) -> int:
    count = 0
    with open(path, "rb") as handle:
        for line in handle:
            json.loads(line)
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(0)
    counter, fallback = load_counter(None)
    if fallback:
        sys.exit(f"bundled tokenizer unavailable: {fallback}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "valid.jsonl"
        path.write_bytes(b"".join(corrupt.valid_line(i, rng) for i in range(args.lines)))
        check_file(path, counter=counter)  # warm-up: imports, presidio and detect-secrets set-up
        ours, plain = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            bare_loop(path)
            plain.append(time.perf_counter() - start)
            start = time.perf_counter()
            report = check_file(path, counter=counter)
            ours.append(time.perf_counter() - start)
            assert len(report.dataset.examples) == args.lines
        size_mb = path.stat().st_size / 1e6
    ours_s, plain_s = statistics.median(ours), statistics.median(plain)
    print(f"lines {args.lines:,}  repeats {args.repeats}  file {size_mb:.1f} MB")
    print(f"check      median {ours_s:7.2f} s   {args.lines / ours_s:12,.0f} lines/s")
    print(f"json.loads median {plain_s:7.2f} s   {args.lines / plain_s:12,.0f} lines/s")
    print(f"ratio check_vs_json_loads {plain_s / ours_s:.4f}")


if __name__ == "__main__":
    main()
