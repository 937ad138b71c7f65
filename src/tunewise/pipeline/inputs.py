"""The experiment's inputs: its data files read (refusing files with errors, bundled data resolved) and its
split frozen in the run folder (or reloaded from it on a resume). Used by the run loop and by arms that read
more data (multi-task). Knows nothing about arms or models.
"""

from __future__ import annotations

from pathlib import Path

from tunewise.data.formats import Dataset, read_examples
from tunewise.data.shapes import ColumnMapping
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


def read_data(path: Path, config: DataConfig, field: str = "data.path") -> Dataset:
    """Every example of a data file, refusing a file with errors (`field` names the setting in messages)."""
    mapping = ColumnMapping.parse([f"{k}={v}" for k, v in config.mapping.items()]) if config.mapping else None
    if not path.exists():
        raise ExperimentError(f"{field} {path}: no such file")
    data = read_examples(path, fmt=config.format, mapping=mapping)
    if data.error_lines or data.truncated_at or not data.examples:
        first = sorted(data.error_lines)[:5]
        raise ExperimentError(f"{path}: {len(data.error_lines):,} line(s) with errors (first: {first}); run "
                              f"`tunewise check {path}` to see them, and `--fix clean.jsonl` to drop them")
    return data


def frozen_split(folder: Path, examples: list[Example], cfg: SplitConfig) -> dict[str, list[Example]]:
    """Reload the split in `folder` if it exists (a resume), else make it and write it before anything uses it."""
    if (folder / "split.json").exists():
        return {name: read_examples(folder / f"{name}.jsonl").examples for name in ("train", "val", "test")}
    split = split_examples(examples, seed=cfg.seed, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                           stratify=cfg.stratify)
    write_splits(split, folder)
    return {"train": list(split.train), "val": list(split.val), "test": list(split.test)}
