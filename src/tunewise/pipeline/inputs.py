"""The experiment's inputs: its data files read (refusing files with errors, bundled data resolved) and its
split frozen in the run folder (or reloaded from it on a resume). Used by the run loop and by arms that read
more data (multi-task). Knows nothing about arms or models.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from tunewise.data.codes import FILE_STOPPERS
from tunewise.data.formats import Dataset, read_examples
from tunewise.data.infer import mapping_items
from tunewise.data.shapes import ColumnMapping, MappingError
from tunewise.data.split import split_examples, write_splits
from tunewise.schema import Example
from tunewise.settings import DataConfig, SplitConfig


class ExperimentError(ValueError):
    """The experiment cannot run as configured (bad data, a mismatched resume); the message says what to do."""


def resolve_data_path(path: Path, field: str = "data.path") -> Path:
    """A data file's real path (`bundled:bbc-news` is the bundled dataset, converted once)."""
    raw = str(path)
    if raw == "bundled:bbc-news":
        from tunewise.assets import bundled_dataset_path

        return bundled_dataset_path()
    if raw.startswith("bundled:"):
        raise ExperimentError(f"{field} {raw!r}: the only bundled dataset is bundled:bbc-news")
    return path


def read_data(path: Path, config: DataConfig, field: str = "data.path", task: str | None = None) -> Dataset:
    """Every example of a data file, refusing a file with errors (`field` names the setting in messages). A table
    without `mapping` gets one inferred for `task`, as `tunewise check` would."""
    mapping = config_mapping(config)
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
                              f"`{check_command(path, config, data)}` to see them, and add `--fix clean.jsonl` to "
                              "drop them")
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


def frozen_split(folder: Path, examples: list[Example], cfg: SplitConfig) -> dict[str, list[Example]]:
    """Reload the split in `folder` if it exists (a resume), else make it and write it before anything uses it."""
    if (folder / "split.json").exists():
        return {name: read_examples(folder / f"{name}.jsonl").examples for name in ("train", "val", "test")}
    split = split_examples(examples, seed=cfg.seed, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                           stratify=cfg.stratify)
    write_splits(split, folder)
    return {"train": list(split.train), "val": list(split.val), "test": list(split.test)}
