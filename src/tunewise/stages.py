"""Stage entry points shared by the CLI and (later) the experiment runner: short glue composing objects.

Each stage reads its inputs, does one job through the modules that own it, and records what it did in a
run folder, so `tunewise runs` can list it and a later stage can pick it up.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunewise.data.formats import read_examples
from tunewise.data.shapes import ColumnMapping
from tunewise.data.split import Split, split_examples, write_splits
from tunewise.runs import Run, create_run


@dataclass(frozen=True, slots=True)
class SplitOutcome:
    split: Split
    summary: dict[str, Any]
    out_dir: Path
    run: Run | None
    skipped_lines: int


def split_file(
    data: Path,
    *,
    seed: int = 13,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    stratify: bool = True,
    fmt: str | None = None,
    mapping: ColumnMapping | None = None,
    out_dir: Path | None = None,
    runs_root: Path = Path("runs"),
) -> SplitOutcome:
    """Split the valid examples of `data`; into `out_dir` if given, else into a new run's `splits/`.

    Lines with errors are left out (and counted) rather than failing the split: `check` is where they are
    reported in full.
    """
    dataset = read_examples(data, fmt=fmt, mapping=mapping)
    split = split_examples(dataset.examples, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
                           stratify=stratify)
    run = None
    if out_dir is None:
        config = {"stage": "split", "data": str(data), "format": dataset.format, "shape": dataset.shape,
                  "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction, "stratify": stratify,
                  "mapping": mapping.__dict__ if mapping else None}
        run = create_run(runs_root, command=sys.argv, config=config, data_files=[data])
        out_dir = run.subdir("splits")
    summary = write_splits(split, out_dir)
    if run is not None:
        run.update(status="completed", split=summary["counts"])
    return SplitOutcome(split, summary, out_dir, run, len(dataset.error_lines))
