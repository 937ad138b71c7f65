"""The experiment's inputs: its data files read (refusing files with errors, bundled data resolved) and its
split frozen in the run folder (or reloaded from it on a resume). Used by the run loop and by arms that read
more data (multi-task). Knows nothing about arms or models.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunewise.data.codes import FILE_STOPPERS
from tunewise.data.formats import Dataset, read_examples
from tunewise.data.infer import mapping_items
from tunewise.data.records import fix_name
from tunewise.data.shapes import ColumnMapping, MappingError
from tunewise.data.split import SplitError, find_leakage, split_examples, write_splits
from tunewise.data.timesplit import TimeSplit, split_around, split_by_time
from tunewise.schema import Example
from tunewise.settings import DataConfig, SplitConfig


class ExperimentError(ValueError):
    """The experiment cannot run as configured (bad data, a mismatched resume); the message says what to do."""


def resolve_data_path(path: Path, field: str = "data.path") -> Path:
    """A data file's real path (`bundled:bbc-news` is the bundled dataset, converted once; `bundled:bbc-headlines`
    the same articles as headline writing)."""
    raw = str(path)
    if raw == "bundled:bbc-news":
        from tunewise.assets import bundled_dataset_path

        return bundled_dataset_path()
    if raw == "bundled:bbc-headlines":  # the same articles, input = body, output = headline (data/headlines.py)
        from tunewise.data.headlines import headlines_dataset_path

        return headlines_dataset_path()
    if raw.startswith("bundled:"):
        raise ExperimentError(f"{field} {raw!r}: the bundled datasets are bundled:bbc-news (topic classification) "
                              "and bundled:bbc-headlines (headline writing). Fix: use one of them or a file path")
    return path


def read_data(path: Path, config: DataConfig, field: str = "data.path", task: str | None = None,
              mapping: ColumnMapping | None = None) -> Dataset:
    """Every example of a data file, refusing a file with errors (`field` names the setting in messages). A table
    without `mapping` (given here, or in the config) gets one inferred for `task`, as `tunewise check` would."""
    mapping = mapping or config_mapping(config)
    if not path.exists():
        raise ExperimentError(f"{field} {path}: no such file")
    data = read_examples(path, fmt=config.format, mapping=mapping, encoding=config.encoding, sheet=config.sheet,
                         task=task)
    stoppers = [i for i in data.issues if i.code in FILE_STOPPERS]
    if stoppers:
        where = {"unknown_column": "data.mapping"}.get(stoppers[0].code, field)
        detail = "; ".join(f"{where}{'.' + i.field if i.field else ''}: {i.message}" for i in stoppers)
        raise ExperimentError(f"{path}: {detail}. Fix: {stoppers[0].hint}")
    if data.error_lines or data.truncated_at or not data.examples:
        first = sorted(data.error_lines)[:5]
        raise ExperimentError(f"{path}: {len(data.error_lines):,} line(s) with errors (first: {first}); run "
                              f"`{check_command(path, config, data)}` to see them, and add "
                              f"`--fix {fix_name(path, data.format)}` to drop them")
    return data


def config_mapping(config: DataConfig) -> ColumnMapping | None:
    if not config.mapping:
        return None
    try:
        return ColumnMapping.parse([f"{k}={v}" for k, v in config.mapping.items()])
    except MappingError as exc:
        raise ExperimentError("data.mapping: " + str(exc).replace("--map", "a mapping entry")) from None


def check_command(path: Path, config: DataConfig, data: Dataset | None = None) -> str:
    """The `tunewise check` command that reads the file exactly as the experiment does (mapping, format,
    encoding, sheet), so what it reports is what the run refused."""
    mapping = data.mapping if data is not None and data.mapping is not None else config_mapping(config)
    parts = ["tunewise", "check", shlex.quote(str(path))]
    parts += [f"--map {shlex.quote(f'{role}={column}')}" for role, column in mapping_items(mapping)]
    for option, value in (("--format", config.format), ("--encoding", config.encoding), ("--sheet", config.sheet)):
        if value:
            parts.append(f"{option} {shlex.quote(value)}")
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class HeldOut:
    """The user's own test and validation examples (data.test, data.val), read and checked before the run."""

    test: list[Example] | None = None
    val: list[Example] | None = None


def read_held_out(config: DataConfig, data: Dataset, task: str | None, log: Callable[[str], None]) -> HeldOut:
    """Read data.test and data.val as data.path is read (same mapping, same refusal of errors), then refuse inputs
    shared with the training data (exact or near duplicates) unless data.allow_leakage."""
    # the training file's mapping, inferred or given: a small test file must not have its columns guessed anew
    parts = {name: read_data(path, config, f"data.{name}", task, mapping=data.mapping).examples
             for name, path in (("test", config.test), ("val", config.val)) if path is not None}
    if not parts:
        return HeldOut()
    names = {"data.path": config.path.name, "data.test": getattr(config.test, "name", ""),
             "data.val": getattr(config.val, "name", "")}
    pairs = [("data.path", data.examples, f"data.{name}", part) for name, part in parts.items()]
    if len(parts) == 2:
        pairs.append(("data.val", parts["val"], "data.test", parts["test"]))
    found = []
    for a_name, a, b_name, b in pairs:
        leaks = find_leakage(a, b)
        found += [f"{b_name} ({names[b_name]}) line {leak.b_line} {'=' if leak.kind == 'exact' else '≈'} {a_name} "
                  f"({names[a_name]}) line {leak.a_line} ({leak.kind} duplicate)" for leak in leaks]
    if found:
        listed = "; ".join(found[:5]) + (f"; and {len(found) - 5} more" if len(found) > 5 else "")
        message = f"{len(found)} held-out input(s) also in another file: {listed}"
        if not config.allow_leakage:
            raise ExperimentError(f"{message}. Fix: remove them from one of the files (`tunewise leakage TRAIN TEST` "
                                  "lists them), or set data.allow_leakage: true to run anyway (scores will be optimistic)")
        log(f"warning: {message} (allowed by data.allow_leakage; scores will be optimistic)")
    known = {e.label for e in data.examples}
    for name, part in parts.items():
        unseen = sorted({e.label for e in part} - known)
        if task == "classify" and unseen:
            log(f"warning: data.{name} has label(s) the training data lacks: {unseen[:5]}; no arm can learn them")
    return HeldOut(parts.get("test"), parts.get("val"))


def frozen_split(folder: Path, examples: list[Example], cfg: SplitConfig, held_out: HeldOut | None = None,
                 log: Callable[[str], None] = print) -> dict[str, list[Example]]:
    """Reload the split in `folder` if it exists (a resume), else make it (around the user's own test/val files, by
    time with split.by, else a seeded random draw) and write it before anything uses it."""
    if (folder / "split.json").exists():
        return {name: read_examples(folder / f"{name}.jsonl").examples for name in ("train", "val", "test")}
    try:
        if held_out is not None and (held_out.test is not None or held_out.val is not None):
            if cfg.by:
                log(f"warning: split.by {cfg.by!r} is not used: data.test / data.val are the held-out examples and "
                    "the rest is split at random (remove split.by, or drop the held-out files to split by time)")
            split = split_around(examples, held_out.test, held_out.val, seed=cfg.seed, val_fraction=cfg.val_fraction,
                                 test_fraction=cfg.test_fraction, stratify=cfg.stratify)
        elif cfg.by:
            timed = split_by_time(examples, cfg.by, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction)
            _log_time_split(cfg.by, timed, log)
            split = timed.split
        else:
            split = split_examples(examples, seed=cfg.seed, val_fraction=cfg.val_fraction,
                                   test_fraction=cfg.test_fraction, stratify=cfg.stratify)
    except SplitError as exc:
        raise ExperimentError(str(exc)) from None
    write_splits(split, folder)
    return {"train": list(split.train), "val": list(split.val), "test": list(split.test)}


def _log_time_split(column: str, timed: TimeSplit, log: Callable[[str], None]) -> None:
    spans = ", ".join(f"{name} {low} to {high}" for name, (low, high) in timed.ranges.items())
    log(f"split.by {column}: {spans}")
    if timed.unparseable:
        shown = ", ".join(f"line {line} ({value!r})" for line, value in timed.unparseable[:5])
        log(f"warning: split.by {column}: {len(timed.unparseable)} row(s) have no date that can be read and are left "
            f"out of every split: {shown}{' …' if len(timed.unparseable) > 5 else ''}. Fix: write them as YYYY-MM-DD")


def check_label_names(labels: Any, train: list[Example]) -> None:
    """`task.labels` as {code: name} must name every code of the training split, and only those: a reversed or
    partial mapping would score names against codes and report nonsense without a word."""
    if not isinstance(labels, dict):
        return
    codes = {e.label for e in train}
    missing, unknown = sorted(codes - set(labels)), sorted(set(labels) - codes)
    if missing or unknown:
        problems = ([f"codes without a name: {missing[:10]}"] if missing else []) + (
            [f"keys that are not labels of the data: {unknown[:10]}"] if unknown else [])
        raise ExperimentError(f"task.labels: {'; '.join(problems)}. The data's labels are {sorted(codes)[:10]}. Fix: "
                              "map every label code to one name, code first, e.g. {\"0\": negative, \"1\": positive}")
