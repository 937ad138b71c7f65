"""How fast the ui's Predictions page answers on a large run: seconds per page kind (first page, filtered, text
search, last page), the median of several requests each, after the one-time load of the predictions files.

The run folder is synthetic but written by the project's own writers (tests/ui_runs.py: create_run, write_splits,
PredictionStore, build_results, write_report), so its files have exactly the formats of a real run. Requests go
through the whole app in-process (FastAPI's TestClient: routing, filtering, template rendering), not a socket.

    python bench/ui_predictions.py [--examples 10000] [--arms 6] [--words 150] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ui_runs import build_run  # noqa: E402

KINDS = ("first page", "filtered", "text search", "last page")


def _arms(count: int) -> list[tuple[str, str, float, float]]:
    kinds = ["zero_shot", "few_shot", "classical", "retrieval"]
    return [(f"arm-{i}", kinds[i % len(kinds)], 0.55 + 0.4 * i / max(count - 1, 1), 0.01) for i in range(count)]


def _timed(client, url: str) -> float:
    start = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise SystemExit(f"{url} answered {response.status_code}: {response.text[:300]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--arms", type=int, default=6)
    parser.add_argument("--words", type=int, default=150, help="words per test input (BBC articles: ~400)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from tunewise.ui.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run = build_run(Path(tmp), test_examples=args.examples, words=args.words, arms=_arms(args.arms),
                        name="bench", resamples=200)
        size = sum(p.stat().st_size for p in (run.path / "predictions").iterdir()) / 1e6
        print(f"built a {args.examples}-example run with {args.arms} arms ({size:.0f} MB of predictions) in "
              f"{time.perf_counter() - start:.1f} s")
        client = TestClient(create_app(Path(tmp)))
        base = f"/runs/{run.id}/predictions"
        cold = _timed(client, base)
        print(f"first request (parses the predictions files once): {cold:.3f} s")
        pages = -(-args.examples // 50)
        urls = {"first page": base, "filtered": f"{base}?arm=arm-0&outcome=wrong&disagree=true&reference=sports",
                "text search": f"{base}?q=goal%20season", "last page": f"{base}?page={pages}"}
        worst = 0.0
        for kind in KINDS:
            times = [_timed(client, urls[kind]) for _ in range(args.repeats)]
            median = statistics.median(times)
            worst = max(worst, median)
            print(f"{kind:12s} median {median:.3f} s  (min {min(times):.3f}, max {max(times):.3f}, {args.repeats} requests)")
        print(f"slowest page kind: {worst:.3f} s ({'under' if worst < 1 else 'OVER'} the 1 s goal)")
        # the plain alternative: read the predictions files again for every request, as the first request does
        print(f"ratio slowest_page_vs_reparse {cold / worst:.1f}")


if __name__ == "__main__":
    main()
