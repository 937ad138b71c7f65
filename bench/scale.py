"""Time to verdict on real-sized data: ~40,000 rows of real text, stage by stage, and the classical search
against a plain grid.

Builds a classification set from the bundled BBC News articles: every sentence (3+ words) of an article is a
row labelled with the article's topic, and carries the article as its `group`, so the split keeps an article's
sentences on one side (no article leaks into the test split). Then times each stage as a user's run meets it
(read, check, split, the classical arm's search, the retrieval arm's embedding index over the training pool),
printing seconds and peak resident memory per stage (the high-water mark is reset before each stage).

Then, on the same training rows and the same folds, times (interleaved, repeated) our classical search
(successive halving, features shared across candidates) and scikit-learn's `GridSearchCV` over the same
candidates with the same pipeline, and prints `ratio classical_search_vs_gridsearch` (grid / ours, higher is
better) with the quality check: the grid's cross-validated score of the candidate we chose, the grid's best,
and their difference (the target is <= 0.005).

    .venv/bin/python bench/scale.py [--small] [--repeats 1] [--skip-index]

`--head-to-head` instead runs the whole default head-to-head on the same rows: `tunewise run` with the arms of
examples/bbc-news.yaml (only data.path and the instructions changed), in a child process as a user would, and
prints the wall time of each stage from the run's events.jsonl (data read, check and split before the first arm;
each arm; robustness, evidence and report after the last) and the child's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunewise.assets import bundled_dataset_path, bundled_embedder_path
from tunewise.data.check_report import check_file
from tunewise.data.formats import read_examples
from tunewise.data.split import split_examples
from tunewise.models.index import build_index
from tunewise.pipeline.progress import plain_progress
from tunewise.train.classical import _features, _table, resolve_features, train_classical
from tunewise.train.classical_search import families, search_space
from tunewise.train.settings import ClassicalConfig

SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def sentence_rows(articles_per_label: int | None) -> list[dict[str, str]]:
    """One row per sentence of 3+ words, labelled with its article's topic and grouped by its article."""
    rows: list[dict[str, str]] = []
    taken: dict[str, int] = {}
    with open(bundled_dataset_path(), encoding="utf-8") as handle:
        for line in handle:
            article = json.loads(line)
            label = article["label"]
            if articles_per_label is not None and taken.get(label, 0) >= articles_per_label:
                continue
            taken[label] = taken.get(label, 0) + 1
            for number, sentence in enumerate(SENTENCE_END.split(article["text"])):
                if len(sentence.split()) >= 3:
                    rows.append({"id": f"{article['id']}#{number}", "text": sentence.strip(), "label": label,
                                 "group": article["id"]})
    return rows


def _reset_peak() -> None:
    """Reset the kernel's resident high-water mark (VmHWM) so the next reading is this stage's own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux: the reading below is then the process's peak so far


def _peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage(name: str, work: Callable[[], Any]) -> Any:
    _reset_peak()
    start = time.perf_counter()
    result = work()
    print(f"stage {name:<18} {time.perf_counter() - start:8.1f} s   peak rss {_peak_mb():8.0f} MB", flush=True)
    return result


def index_with_progress(texts: list[str]) -> Any:
    """The retrieval arm's embedding index over the training pool (no disk cache: every run embeds), with the
    plain progress lines a logged run prints."""
    with plain_progress(lambda line: print(line, flush=True)) as factory, \
            factory("retrieval index", len(texts)) as advance:
        done = 0

        def report(now: int, _total: int) -> None:
            nonlocal done
            advance(now - done)
            done = now

        return build_index("embedding", texts, model_path=bundled_embedder_path(), progress=report)


def grid_search(train: list[Any], config: ClassicalConfig) -> Any:
    """The plain alternative: scikit-learn's GridSearchCV over our candidates, on our folds, with the plain
    pipeline (the features refitted for every candidate)."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline

    config = resolve_features(train, config)
    space = search_space(config, families(config, len(train)))
    pipeline = Pipeline([("features", _features(config)), ("clf", space[0]["clf"][0])])
    folds = StratifiedKFold(n_splits=config.cv, shuffle=True, random_state=config.seed)
    search = GridSearchCV(pipeline, space, scoring=config.scoring, cv=folds, n_jobs=config.n_jobs, refit=True)
    search.fit(_table(train, config), [e.label for e in train])
    return search


def grid_score_of(search: Any, model_name: str, params: dict[str, Any]) -> float:
    """The grid's cross-validated score (all rows, same folds) of the candidate our search chose."""
    from tunewise.train.classical import _model_name

    for index, candidate in enumerate(search.cv_results_["params"]):
        clf = candidate["clf"]
        mine = {key.removeprefix("clf__"): value for key, value in candidate.items() if key != "clf"}
        if _model_name(clf) == model_name and mine == params:
            return float(search.cv_results_["mean_test_score"][index])
    raise LookupError(f"{model_name} {params} is not among the grid's candidates")


def compare(train: list[Any], config: ClassicalConfig, repeats: int) -> None:
    ours_s, grid_s = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ours = train_classical(train, config)
        ours_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        grid = grid_search(train, config)
        grid_s.append(time.perf_counter() - start)
    chosen = grid_score_of(grid, ours.best_model_name, ours.best_params)
    best = float(grid.best_score_)
    candidates = len(grid.cv_results_["params"])
    print(f"search ours  median {statistics.median(ours_s):8.1f} s  runs {' '.join(f'{t:.1f}' for t in ours_s)}  "
          f"rounds (candidates, rows) {ours.rounds}")
    print(f"search grid  median {statistics.median(grid_s):8.1f} s  runs {' '.join(f'{t:.1f}' for t in grid_s)}  "
          f"{candidates} candidates x {config.cv} folds on {len(train):,} rows")
    print(f"ours chose {ours.best_model_name} {ours.best_params} (its last-round cv {ours.cv_score:.4f}); "
          f"grid chose {grid.best_params_['clf'].__class__.__name__} "
          f"{ {k: v for k, v in grid.best_params_.items() if k != 'clf'} }")
    print(f"cv {config.scoring}: grid best {best:.4f}  ours in the grid {chosen:.4f}  difference {best - chosen:.4f} "
          f"(target <= 0.005)")
    print(f"ratio classical_search_vs_gridsearch {statistics.median(grid_s) / statistics.median(ours_s):.2f}")


def head_to_head(rows: list[dict[str, str]], folder: Path) -> None:
    """`tunewise run` with examples/bbc-news.yaml's arms on the sentence rows; wall time per stage from events."""
    import yaml

    data = folder / "bbc-sentences.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    example = Path(__file__).resolve().parents[1] / "examples" / "bbc-news.yaml"
    config = yaml.safe_load(example.read_text(encoding="utf-8"))
    config["name"] = "bbc-sentences"
    config["data"] = {"path": str(data)}
    config["runs_dir"] = str(folder / "runs")
    config["task"]["instructions"] = "Classify the sentence from a news article by the article's topic."
    config_path = folder / "bbc-sentences.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    runs = folder / "runs"
    start = time.time()
    env = {**os.environ, "TUNEWISE_CACHE": str(folder / "cache")}  # cold: no answer, index or training reused
    child = subprocess.run([sys.executable, "-m", "tunewise.cli", "run", str(config_path)], check=False, env=env)
    wall = time.time() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child's, in MB
    events = [json.loads(line) for line in next(runs.glob("*/events.jsonl")).read_text().splitlines() if line]
    marks = [(e["time"], e["kind"], e.get("arm")) for e in events if e["kind"] in
             ("run_started", "arm_started", "arm_finished", "run_completed", "run_failed")]
    begun = {arm: t for t, kind, arm in marks if kind == "arm_started"}
    arm_times = [(t, arm) for t, kind, arm in marks if kind == "arm_finished"]
    first = min(begun.values()) if begun else marks[-1][0]
    print(f"stage {'data, check, split':<28} {first - marks[0][0]:8.1f} s", flush=True)
    for finished, arm in arm_times:
        print(f"stage arm {arm:<24} {finished - begun[arm]:8.1f} s", flush=True)
    last = max(t for t, _ in arm_times) if arm_times else first
    print(f"stage {'robustness, evidence, report':<28} {marks[-1][0] - last:8.1f} s", flush=True)
    print(f"head-to-head {marks[-1][1]} exit {child.returncode}, wall {wall:.1f} s, peak rss {peak:.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="60 articles per topic (~5,000 rows): a quick check")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats of the search comparison")
    parser.add_argument("--skip-index", action="store_true", help="skip the retrieval index (minutes at full size)")
    parser.add_argument("--head-to-head", action="store_true",
                        help="run examples/bbc-news.yaml's arms on the rows with `tunewise run` (minutes)")
    args = parser.parse_args()
    rows = sentence_rows(60 if args.small else None)
    if args.head_to_head:
        with tempfile.TemporaryDirectory() as tmp:
            head_to_head(rows, Path(tmp))
        return
    config = ClassicalConfig()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bbc-sentences.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        print(f"rows {len(rows):,} from {len({r['group'] for r in rows}):,} articles  file "
              f"{path.stat().st_size / 1e6:.1f} MB", flush=True)
        examples = stage("read", lambda: read_examples(path).examples)
        stage("check", lambda: check_file(path))
        split = stage("split", lambda: split_examples(examples, seed=13))
        train = list(split.train)
        print(f"split train {len(split.train):,}  val {len(split.val):,}  test {len(split.test):,}", flush=True)
        model = stage("classical search", lambda: train_classical(train, config))
        print(f"classical chose {model.best_model_name} {model.best_params} cv {model.cv_score:.4f} "
              f"rounds {model.rounds}", flush=True)
        if not args.skip_index:
            stage("retrieval index", lambda: index_with_progress([e.input for e in train]))
        compare(train, config, args.repeats)


if __name__ == "__main__":
    main()
