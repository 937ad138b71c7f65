"""`tunewise init --from DATA`: a ready experiment for one data file, every value chosen from the data and
commented with why.

A newcomer with a CSV should not have to learn the experiment schema before the first run: this reads the file
as `tunewise check` does (inferring the column mapping of a table), then writes the mapping, the task and its
labels, a split sized to the number of examples, test and training caps that keep a 2-core CPU run to minutes,
metadata columns as classical features and slices, and the default arms. The YAML is validated before it is
written. Knows nothing about running arms; it only writes a file `tunewise run` can take.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunewise.data.check_report import CheckReport, check_file
from tunewise.data.checks import CheckOptions
from tunewise.data.codes import FILE_STOPPERS
from tunewise.data.formats import read_examples
from tunewise.data.infer import SAMPLE, ColumnProfile, mapping_items, profile_columns
from tunewise.data.readers import read_file
from tunewise.data.records import fix_name
from tunewise.data.shapes import ColumnMapping
from tunewise.data.split import find_leakage
from tunewise.data.tokens import TokenCounter

DEFAULT_ARMS = ("zero_shot", "few_shot", "retrieval", "classical")
# On 2 CPU cores the bundled 135M model scores a few test examples a second per prompted arm; 200 keeps each
# arm to minutes while the 95% interval on accuracy stays near +-7 points.
MAX_TEST_CPU = 200
MAX_TRAIN_CPU = 400  # fine-tuning a 135M model on a CPU: a few hundred examples is an epoch in minutes
MAX_SLICE_VALUES = 10
MAX_CATEGORIES = 50


class InitError(ValueError):
    """The data cannot be turned into an experiment as it is; the message says what to fix first."""


@dataclass(frozen=True, slots=True)
class Draft:
    text: str
    report: CheckReport
    notes: list[str]


def _y(value: Any) -> str:
    """One YAML value on one line (quoted where YAML needs it)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True).removesuffix(
        "\n...\n").strip()


def _ci(n: int) -> float:
    return 196 * math.sqrt(0.25 / max(n, 1))


def draft_experiment(data: Path, target: Path, *, task: str | None = None, arms: list[str] | None = None,
                     fmt: str | None = None, mapping: ColumnMapping | None = None, encoding: str | None = None,
                     sheet: str | None = None, held_out: dict[str, Path] | None = None) -> Draft:
    """The experiment YAML for `data`, to be written at `target` (data.path is relative to its folder)."""
    report = check_file(data, task=task, fmt=fmt, mapping=mapping, encoding=encoding, sheet=sheet,
                        counter=TokenCounter(None, None, "words"), options=CheckOptions(scan_pii=False))
    stoppers = [i for i in report.issues if i.code in FILE_STOPPERS]
    if stoppers:
        raise InitError(f"{data}: {stoppers[0].message}. Fix: {stoppers[0].hint}")
    dataset, notes = report.dataset, []
    if len(dataset.examples) < CheckOptions().min_examples:
        raise InitError(f"{data}: only {len(dataset.examples)} valid example(s); an experiment needs at least "
                        f"{CheckOptions().min_examples}. Run `tunewise check {data}` to see why.")
    if report.errors:
        notes.append(f"{len(dataset.error_lines):,} line(s) have errors and `tunewise run` will refuse the file "
                     f"until they are fixed: {_fix_advice(report, data)}")
    records = read_file(data, fmt, encoding=encoding, sheet=sheet).records
    rows = min(len(records), SAMPLE)
    profiles = {p.name: p for p in profile_columns(records)}
    # The columns that became example metadata (never the input or the label, whatever the shape), filled on
    # every sampled row; unique integers are ids (no signal).
    kept = {key for e in dataset.examples[:SAMPLE] for key in e.metadata}
    metadata = [profiles[c] for c in dataset.columns if c in kept and c in profiles
                and profiles[c].filled == rows and not _id_like(profiles[c], rows)]
    proxies = _label_proxies(dataset.examples[:SAMPLE], [p.name for p in metadata])
    if proxies:  # a feature that spells out the answer would score 1.0 and recommend the wrong arm
        metadata = [p for p in metadata if p.name not in proxies]
        notes.append(f"column(s) {', '.join(proxies)} determine the label (one label per value): left out of the "
                     "features and slices, since they give the answer away; a column of label names belongs in "
                     "task.labels as {code: name}")
    lines = ["# Written by `tunewise init --from`; every value says why it was chosen. Change anything, then",
             f"# `tunewise run {target.name}`. Every field is documented in `tunewise init --explain`.",
             f"name: {_y(data.stem)}", ""]
    lines += _data_section(report, target, fmt, encoding, sheet)
    held_lines, own_test = _held_out_lines(report, target, held_out or {}, (fmt, encoding, sheet), notes)
    lines += held_lines
    lines += _task_section(report, given=task is not None)
    lines += _split_section(report, metadata, own_test)
    lines += _evaluation_section(report, metadata)
    lines += _arms_section(report, arms or list(DEFAULT_ARMS), metadata)
    text = "\n".join(lines) + "\n"
    _validate(text)
    return Draft(text, report, notes)


def _fix_advice(report: CheckReport, data: Path) -> str:
    """`--fix` to a file the experiment can point at: a table stays a table, so data.mapping still applies; a
    mapped JSON(L) file is cleaned into the chat shape, which needs no mapping."""
    name = fix_name(data, report.format)
    advice = f"run `tunewise check {data} --fix {name}` and point data.path at {name}"
    if name == "clean.jsonl" and report.dataset.mapping is not None:
        advice += " (it is written as chat messages: remove data.mapping)"
    return advice


def _relative(path: Path, target: Path) -> str:
    try:
        return os.path.relpath(path.resolve(), target.resolve().parent)
    except ValueError:  # another drive (Windows): keep it absolute
        return str(path.resolve())


def _data_section(report: CheckReport, target: Path, fmt: str | None, encoding: str | None,
                  sheet: str | None) -> list[str]:
    dataset = report.dataset
    lines = ["data:", f"  path: {_y(_relative(report.path, target))}   # relative to this file"]
    if fmt:
        lines.append(f"  format: {fmt}")
    if encoding:
        lines.append(f"  encoding: {_y(encoding)}   # as given to init")
    elif dataset.encoding:
        lines.append(f"  # encoding: {dataset.encoding}   # detected and decoded without it; set it to force one")
    if sheet:
        lines.append(f"  sheet: {_y(sheet)}")
    if dataset.mapping is not None:
        inner = ", ".join(f"{role}: {_y(column)}" for role, column in mapping_items(dataset.mapping))
        why = (f"inferred ({dataset.inferred.confidence} confidence): " + "; ".join(dataset.inferred.reasons)
               if dataset.inferred is not None and dataset.inferred.mapping is not None else "as given to init")
        lines += [f"  # {why}", f"  mapping: {{{inner}}}"]
    return lines


def _held_out_lines(report: CheckReport, target: Path, held_out: dict[str, Path],
                    how: tuple[str | None, str | None, str | None], notes: list[str]) -> tuple[list[str], int | None]:
    """data.test / data.val lines (and the size of the own test file); inputs they share with the training file
    are counted now (the run refuses them unless allowed), so the newcomer hears of it before spending compute.
    `how` is (format, encoding, sheet): the held-out files are read as the run will read them, with data.format,
    data.encoding and data.sheet."""
    fmt, encoding, sheet = how
    lines = []
    dataset = report.dataset
    own_test = None
    for name, path in held_out.items():
        part = read_examples(path, fmt=fmt, mapping=dataset.mapping, encoding=encoding, sheet=sheet)
        if name == "test":
            own_test = len(part.examples)
        leaks = find_leakage(dataset.examples, part.examples)
        why = {"test": "your own test file, used instead of a random test split",
               "val": "your own validation file"}[name]
        lines.append(f"  {name}: {_y(_relative(path, target))}   # {why}")
        if leaks:
            where = ", ".join(f"line {leak.b_line} ({leak.kind} of line {leak.a_line})" for leak in leaks[:3])
            notes.append(f"{len(leaks)} input(s) of {path.name} also appear in {report.path.name}: {where}; "
                         "`tunewise run` refuses this until they are removed or data.allow_leakage is true")
            lines.append(f"  allow_leakage: false   # {len(leaks)} input(s) of {path.name} are in the training "
                         f"file ({where}): remove them, or set true to run anyway")
    return lines + [""], own_test


def _id_like(p: ColumnProfile, rows: int) -> bool:
    return p.distinct == rows and all(e.lstrip("-").isdigit() for e in p.examples)


def _task_section(report: CheckReport, given: bool) -> list[str]:
    lines = ["task:", f"  type: {report.task}   # {'as given' if given else 'inferred'}: "
             + {"classify": "a small closed set of short answers",
                "extract": "the answers are JSON objects",
                "generate": "the answers are free text"}[report.task]]
    if report.task == "classify":
        counts = Counter(e.label for e in report.dataset.examples)
        labels = sorted(counts, key=lambda label: (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label))
        shown = ", ".join(f"{label} {n:,}" for label, n in counts.most_common(8))
        lines.append(f"  labels: {_y(labels)}   # every label in the file ({shown})")
        if all(label.lstrip("-").isdigit() for label in labels):
            names = ", ".join(f'"{label}": NAME' for label in labels[:4])
            lines.append(f"  # labels: {{{names}}}   # coded labels: give them names the prompts can use")
    return lines + [""]


def _split_section(report: CheckReport, metadata: list[ColumnProfile], own_test: int | None) -> list[str]:
    n = len(report.dataset.examples)
    # Small data needs a large enough test split for an interval worth reading; big data needs only ~1,000.
    test_fraction = 0.2 if n < 5000 else round(max(0.05, 1000 / n), 3)
    val_fraction = 0.1 if n < 5000 else 0.05
    test_n = round(n * test_fraction) if own_test is None else own_test
    lines = ["split:", "  seed: 13"]
    if own_test is None:
        lines.append(f"  test_fraction: {test_fraction}   # {test_n:,} of {n:,} examples: 95% interval on accuracy "
                     f"about +-{_ci(test_n):.0f} points")
    else:
        lines.append(f"  # test_fraction is not used: data.test holds {test_n:,} examples (95% interval on accuracy "
                     f"about +-{_ci(test_n):.0f} points)")
    lines.append(f"  val_fraction: {val_fraction}   # {round(n * val_fraction):,} for early stopping and tuning")
    dates = [p.name for p in metadata if p.kind == "date"] if own_test is None else []
    if report.task == "classify" and not dates:
        lines.append("  stratify: true   # the same label shares in every split")
    if test_n > MAX_TEST_CPU:
        lines.append(f"  max_test: {MAX_TEST_CPU}   # every arm scored on the same stratified {MAX_TEST_CPU}: minutes "
                     f"per prompted arm on a 2-core CPU (interval +-{_ci(MAX_TEST_CPU):.0f} points); raise it on a GPU")
    if dates:
        lines.append(f"  by: {_y(dates[0])}   # a date column: test on the newest rows, as the model will meet "
                     "data that comes after its training (remove this line for a random split)")
    return lines + [""]


def _categorical(p: ColumnProfile, n: int) -> bool:
    return p.kind == "text" and 2 <= p.distinct <= min(MAX_CATEGORIES, max(2, n // 5))


def _evaluation_section(report: CheckReport, metadata: list[ColumnProfile]) -> list[str]:
    lines = ["evaluation:"]
    if report.task == "classify":
        counts = Counter(e.label for e in report.dataset.examples)
        skewed = len(counts) > 1 and max(counts.values()) >= 3 * min(counts.values())
        lines.append("  primary_metric: macro_f1   # labels are skewed (3x or more): rare labels count as much"
                     if skewed else "  primary_metric: accuracy   # labels are roughly balanced")
    n = len(report.dataset.examples)
    slices = [p.name for p in metadata if _categorical(p, n) and p.distinct <= MAX_SLICE_VALUES]
    if slices:
        lines.append(f"  slice_by: {_y(slices)}   # metadata columns with at most {MAX_SLICE_VALUES} values: "
                     "quality per group, largest gap flagged")
    return (lines if len(lines) > 1 else ["evaluation: {}"]) + [""]


def _arms_section(report: CheckReport, arms: list[str], metadata: list[ColumnProfile]) -> list[str]:
    n = len(report.dataset.examples)
    lines = ["arms:"]
    blocks = {
        "zero_shot": ["  - name: zero-shot", "    type: zero_shot   # the bundled SmolLM2-135M-Instruct, no examples"],
        "few_shot": ["  - name: few-shot", "    type: few_shot", "    k: 4   # label-balanced exemplars from the "
                     "training split; 4 keeps prompts short for a small model"],
        "retrieval": ["  - name: retrieval", "    type: retrieval", "    k: 4",
                      "    retriever: embedding   # the bundled MiniLM (22M parameters): fast enough on a CPU"],
        "classical": _classical_block(report, metadata, n),
        "finetune": ["  - name: lora", "    type: finetune", "    method: lora",
                     f"    max_train_examples: {min(MAX_TRAIN_CPU, n)}   # a stratified subset: an epoch in minutes "
                     "on a 2-core CPU", "    training: {epochs: 1}"],
    }
    unknown = [a for a in arms if a not in blocks]
    if unknown:
        raise InitError(f"--arms {','.join(unknown)}: choose from {', '.join(blocks)}")
    if report.task != "classify" and "classical" in arms:
        arms = [a for a in arms if a != "classical"]  # a classical model needs labels
        if not arms:
            raise InitError(f"--arms classical: a classical model predicts labels, and this is a {report.task} task. "
                            "Fix: choose from zero_shot, few_shot, retrieval, finetune (or leave out --arms)")
    for arm in arms:
        lines += blocks[arm]
    if "finetune" not in arms:
        lines += ["  # - name: lora             # fine-tuning, when prompting is not enough:",
                  "  #   type: finetune", "  #   method: lora",
                  f"  #   max_train_examples: {min(MAX_TRAIN_CPU, n)}   # sized for a 2-core CPU"]
    return lines


def _label_proxies(examples: list[Any], columns: list[str]) -> list[str]:
    """Metadata columns that are the label under another name: one value per label and one label per value (a
    `label_text` beside `label` codes). Training on them would read the answer off the row. A column that merely
    predicts the label (four drugs, two ratings) is a feature and stays."""
    labels = {e.label for e in examples}
    proxies = []
    for column in columns:
        seen: dict[str, set[str]] = {}
        for example in examples:
            seen.setdefault(str(example.metadata.get(column)), set()).add(example.label)
        if len(labels) > 1 and len(seen) == len(labels) and all(len(v) == 1 for v in seen.values()):
            proxies.append(column)
    return proxies


def _classical_block(report: CheckReport, metadata: list[ColumnProfile], n: int) -> list[str]:
    block = ["  - name: classical", "    type: classical   # TF-IDF + linear models / forest, cross-validated"]
    numeric = [p.name for p in metadata if p.kind == "number" and p.distinct > 2]
    categorical = [p.name for p in metadata if _categorical(p, n)]
    if numeric or categorical:
        block.append("    settings:   # metadata columns every row fills, used as features beside the text")
        if numeric:
            block.append(f"      numeric_features: {_y(numeric)}   # numbers: standard-scaled")
        if categorical:
            block.append(f"      categorical_features: {_y(categorical)}   # few distinct values: one-hot")
    return block


def _validate(text: str) -> None:
    """The draft must load as written; a failure here is a bug in this module, said plainly."""
    from tunewise.config import Experiment

    Experiment.model_validate(yaml.safe_load(text))
