"""Stage entry points shared by the CLI and (later) the experiment runner: short glue composing objects.

Each stage reads its inputs, does one job through the modules that own it, and records what it did in a
run folder, so `tunewise runs` can list it and a later stage can pick it up.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunewise.data.formats import read_examples
from tunewise.data.shapes import ColumnMapping
from tunewise.data.split import Split, SplitError, split_examples, write_splits
from tunewise.store.runs import Run, create_run


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
    force: bool = False,
    encoding: str | None = None,
    sheet: str | None = None,
) -> SplitOutcome:
    """Split the valid examples of `data`; into `out_dir` if given, else into a new run's `splits/`.

    Lines with errors are left out (and counted) rather than failing the split: `check` is where they are
    reported in full.
    """
    dataset = read_examples(data, fmt=fmt, mapping=mapping, encoding=encoding, sheet=sheet)
    if not dataset.examples:
        raise SplitError(f"{data} has no valid examples ({len(dataset.error_lines):,} line(s) with errors); "
                         f"run `tunewise check {data}` to see why")
    split = split_examples(dataset.examples, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
                           stratify=stratify)
    if out_dir is not None:
        _refuse_to_overwrite(data, Path(out_dir), force)
    run = None
    if out_dir is None:
        config = {"stage": "split", "data": str(data), "format": dataset.format, "shape": dataset.shape,
                  "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction, "stratify": stratify,
                  "mapping": asdict(dataset.mapping) if dataset.mapping else None, "encoding": dataset.encoding}
        run = create_run(runs_root, command=sys.argv, config=config, data_files=[data])
        out_dir = run.subdir("splits")
    try:
        summary = write_splits(split, out_dir)
    except BaseException as exc:
        if run is not None:
            run.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    if run is not None:
        run.update(status="completed", split=summary["counts"])
    return SplitOutcome(split, summary, out_dir, run, len(dataset.error_lines))


def _refuse_to_overwrite(data: Path, out_dir: Path, force: bool) -> None:
    """Never write a split over the user's input, and never silently replace an earlier split."""
    outputs = [out_dir / name for name in ("train.jsonl", "val.jsonl", "test.jsonl", "split.json")]
    if any(path.exists() and path.resolve() == data.resolve() for path in outputs):
        raise SplitError(f"--out {out_dir} would overwrite the input {data}; choose another folder")
    if not force and (out_dir / "split.json").exists():
        raise SplitError(f"{out_dir} already holds a split; pass --force to replace it, or choose another folder")
