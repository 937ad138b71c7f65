"""Reading run folders for the pages: results.json, the registry row's summary and the predictions of every arm
joined into one table per run.

Everything is cached by the files' (mtime, size), so a page over a 10,000-example run parses the JSONL files once
and later pages only filter lists in memory; a run that is re-run or extended is re-read on the next request.
Bad files become `RunDataError` naming the file, line and what is wrong, which the app shows as a page.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunewise.store.runs import RunRecord

RESULTS = "results.json"
MAX_TABLES = 4  # prediction tables kept in memory, the most recently used runs
PREDICTIONS = "predictions"


class RunDataError(ValueError):
    """A run file that cannot be shown; the message names the file and what to do."""


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def read_json(path: Path) -> Any:
    """A JSON file, or `RunDataError` naming the file and the line of the mistake."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RunDataError(f"{path.name} is not UTF-8 text ({exc}); re-create it with `tunewise report`.") from exc
    except OSError as exc:
        raise RunDataError(f"{path.name} cannot be read: {exc.strerror or exc}.") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunDataError(f"{path.name} line {exc.lineno} column {exc.colno}: invalid JSON ({exc.msg}). The file "
                           "is damaged or was cut short; re-create it with `tunewise report <run folder>`.") from exc


def load_results(folder: Path) -> dict[str, Any]:
    """results.json with the fields the pages rely on checked; a missing file is an error the caller may allow."""
    path = folder / RESULTS
    if not path.is_file():
        raise RunDataError(f"{RESULTS} is missing: the run has not finished its evaluation (or failed before it). "
                           "Resume it with `tunewise run --resume`, or look at its files below.")
    results = read_json(path)
    if not isinstance(results, dict):
        raise RunDataError(f"{RESULTS} must hold a JSON object, got {type(results).__name__}.")
    arms = results.get("arms")
    if not isinstance(arms, dict) or not all(isinstance(a, dict) for a in arms.values()):
        raise RunDataError(f"{RESULTS}: field 'arms' must be an object of arm objects; re-create it with "
                           "`tunewise report`.")
    for name in ("primary_metric", "verdict"):
        if name not in results:
            raise RunDataError(f"{RESULTS}: field {name!r} is missing; re-create it with `tunewise report`.")
    return results


@dataclass(frozen=True)
class RunSummary:
    """One row of the Runs page."""

    id: str
    created_at: str
    status: str
    command: str
    experiment: str
    task: str
    test_examples: int | None
    recommended: str | None
    headline: str
    problem: str | None  # why the results could not be read, when they could not


@dataclass
class PredictionTable:
    """Every test example of a run with each arm's answer, as parallel lists (fast to filter in Python)."""

    arms: list[str]
    ids: list[str]
    inputs: list[str]
    references: list[str]
    answers: dict[str, list[str | None]]
    correct: dict[str, list[bool | None]]
    errors: dict[str, list[str | None]]
    disagree: list[bool]
    _haystack: list[str] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def haystack(self) -> list[str]:
        """Lower-cased id, input, reference and answers per example, for text search. Built on the first search,
        not with the table: it copies every text once more, and most visits never search."""
        if self._haystack is None:
            self._haystack = ["\n".join([self.ids[i], self.inputs[i], self.references[i],
                                          *(self.answers[a][i] or "" for a in self.answers)]).lower()
                              for i in range(len(self.ids))]
        return self._haystack


def _read_predictions(path: Path) -> list[dict[str, Any]]:
    """Every record of a predictions file. A last line without its newline is an answer still being written (the
    run is going on) and is left out, as PredictionStore does; any other bad line is named by its number."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    complete = text[:text.rfind("\n") + 1]  # after the last newline: "" or an unfinished line
    if complete and "\n\n" not in complete and not complete.startswith("\n"):
        # the usual file: one record per line, no blank lines, so the lines joined by commas are one JSON array
        # (one parse of the whole file, several times faster than one json.loads per line)
        try:
            rows = json.loads("[" + complete[:-1].replace("\n", ",") + "]")
        except json.JSONDecodeError:
            rows = None
        if rows is not None and all(isinstance(row, dict) and isinstance(row.get("id"), str) for row in rows):
            return rows
    raw = complete.split("\n")[:-1]
    numbered = [(number, line) for number, line in enumerate(raw, 1) if line and not line.isspace()]
    try:  # one parse of the whole file is much faster than one per line; per line only to name a bad one
        rows = json.loads("[" + ",".join(line for _, line in numbered) + "]")
    except json.JSONDecodeError:
        rows = None
    if rows is not None and all(isinstance(row, dict) and isinstance(row.get("id"), str) for row in rows):
        return rows
    for number, line in numbered:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RunDataError(f"{PREDICTIONS}/{path.name} line {number}: invalid JSON ({exc.msg}); re-run the "
                               "arm to rewrite its predictions.") from exc
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise RunDataError(f"{PREDICTIONS}/{path.name} line {number}: expected an object with a string 'id'; "
                               "re-run the arm to rewrite its predictions.")
    raise RunDataError(f"{PREDICTIONS}/{path.name} is not JSON lines (a line may hold two records); re-run the arm.")


def prediction_files(folder: Path, arms: list[str]) -> dict[str, Path]:
    """`predictions/<arm>.jsonl` of each arm that has one (robustness variants `<arm>~<probe>` are not arms)."""
    files = {arm: folder / PREDICTIONS / f"{arm}.jsonl" for arm in arms}
    return {arm: path for arm, path in files.items() if path.is_file()}


def build_table(files: Mapping[str, Path], same: Callable[[str, str], bool]) -> PredictionTable:
    """Join the arms' predictions by example id, in the first arm's order (later arms add ids it lacks)."""
    per_arm = {arm: {row["id"]: row for row in _read_predictions(path)} for arm, path in files.items()}
    order: dict[str, None] = {}
    for rows in per_arm.values():
        order.update(dict.fromkeys(rows))
    ids = list(order)
    inputs, references = [], []
    for example in ids:
        first = next(rows[example] for rows in per_arm.values() if example in rows)
        inputs.append(str(first.get("input", "")))
        references.append(str(first.get("reference", "")))
    answers: dict[str, list[str | None]] = {}
    correct: dict[str, list[bool | None]] = {}
    errors: dict[str, list[str | None]] = {}
    for arm, rows in per_arm.items():
        got = [rows.get(example) for example in ids]
        answers[arm] = [None if row is None else str(row.get("prediction", "")) for row in got]
        errors[arm] = [None if row is None or not row.get("error") else str(row["error"]) for row in got]
        correct[arm] = [None if answer is None else same(answer, ref) for answer, ref in zip(answers[arm], references)]
    disagree = [len({answers[arm][i] for arm in answers if answers[arm][i] is not None}) > 1 for i in range(len(ids))]
    return PredictionTable(list(per_arm), ids, inputs, references, answers, correct, errors, disagree)


def exact(answer: str, reference: str) -> bool:
    """Correct means the arm's parsed answer equals the reference (labels; exact match for free text)."""
    return answer.strip() == reference.strip()


def task_of(manifest: Mapping[str, Any], results: Mapping[str, Any]) -> Any:
    """The run's task as configured (for its per-example score), labels taken from results.json when implicit."""
    from pydantic import ValidationError

    from tunewise.settings import TaskConfig
    from tunewise.tasks import make_task

    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    try:
        task_config = TaskConfig.model_validate(config.get("task") or {})
    except ValidationError as exc:
        raise RunDataError(f"manifest.json: config.task does not load with this tunewise ({exc.errors()[0]['msg']}); "
                           "it was written by another version.") from None
    if task_config.type == "classify" and not task_config.labels:
        task_config = task_config.model_copy(update={"labels": list(results.get("labels") or [])})
    return make_task(task_config, [])


def scorer(task: Any) -> Callable[[str, str], bool]:
    """Per-example correctness as the evaluation scores it: the task's score is 1 (label, JSON, normalised text)."""

    def same(answer: str, reference: str) -> bool:
        try:
            return task.score(answer, reference) >= 1.0
        except (ValueError, TypeError):  # an answer the task cannot parse is not correct
            return False

    return same


class RunCache:
    """results.json, summaries and prediction tables per run folder, each re-read when its files change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: dict[Path, tuple[Any, dict[str, Any] | RunDataError]] = {}
        self._tables: OrderedDict[Path, tuple[Any, PredictionTable]] = OrderedDict()
        self._memo: dict[tuple[Path, str], tuple[Any, Any]] = {}
        self._building: dict[Path, threading.Lock] = {}

    def memo(self, folder: Path, kind: str, compute: Callable[[], Any]) -> Any:
        """`compute()` once per version of the run's results.json (e.g. the plots drawn from it)."""
        key = _stamp(folder / RESULTS)
        with self._lock:
            cached = self._memo.get((folder, kind))
        if cached is not None and cached[0] == key:
            return cached[1]
        value = compute()
        with self._lock:
            self._memo[(folder, kind)] = (key, value)
        return value

    def results(self, folder: Path) -> dict[str, Any]:
        """results.json of the run (raises `RunDataError`, also cached, when it cannot be used)."""
        key = _stamp(folder / RESULTS)
        with self._lock:
            cached = self._results.get(folder)
        if cached is None or cached[0] != key:
            try:
                value: dict[str, Any] | RunDataError = load_results(folder)
            except RunDataError as exc:
                value = exc
            cached = (key, value)
            with self._lock:
                self._results[folder] = cached
        if isinstance(cached[1], RunDataError):
            raise cached[1]
        return cached[1]

    def summary(self, record: RunRecord, manifest: Mapping[str, Any] | None = None) -> RunSummary:
        config = (manifest or {}).get("config") if isinstance((manifest or {}).get("config"), dict) else {}
        experiment, task, problem = str(config.get("name") or ""), "", None
        test_examples = recommended = None
        headline = ""
        if not (record.path / RESULTS).is_file():
            headline = "no results yet" if record.status in {"created", "running"} else "no results.json"
            return RunSummary(record.id, record.created_at, record.status, record.command, experiment, task,
                              None, None, headline, None)
        try:
            results = self.results(record.path)
        except RunDataError as exc:
            problem = str(exc)
        else:
            experiment = str(results.get("experiment") or experiment)
            task = str(results.get("task") or "")
            test_examples = results.get("test_examples") if isinstance(results.get("test_examples"), int) else None
            verdict = results.get("verdict") if isinstance(results.get("verdict"), dict) else {}
            recommended = verdict.get("recommended")
            headline = str(verdict.get("headline") or "")
        return RunSummary(record.id, record.created_at, record.status, record.command, experiment, task,
                          test_examples, recommended, headline, problem)

    def table(self, folder: Path, arms: list[str], same: Callable[[str, str], bool] = exact) -> PredictionTable:
        """The joined predictions of `arms` (those with a predictions file). One build per run at a time: a
        request arriving while the run page's prefetch is reading the files waits for it instead of reading twice."""
        files = prediction_files(folder, arms)
        key = (tuple(files), tuple(_stamp(path) for path in files.values()))
        with self._lock:
            building = self._building.setdefault(folder, threading.Lock())
        with building:
            with self._lock:
                cached = self._tables.get(folder)
                if cached is not None:
                    self._tables.move_to_end(folder)
            if cached is not None and cached[0] == key:
                return cached[1]
            table = build_table(files, same)
            with self._lock:
                self._tables[folder] = (key, table)
                self._tables.move_to_end(folder)
                while len(self._tables) > MAX_TABLES:  # a 10,000-example table holds tens of MB of text
                    self._tables.popitem(last=False)
            return table
