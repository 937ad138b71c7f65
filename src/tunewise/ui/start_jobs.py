"""Experiments started from the Start page: validated with the project's loader, saved, and run as a background
`tunewise run` in its own process.

Where things go: the YAML is saved verbatim as `<runs dir>/.ui-experiments/<stamp>-<hex>/experiment.yaml`
(a hidden folder, so the runs list and the registry skip it) with the process's output beside it in `log.txt`.
Relative paths: `data.path`, `data.test`, `data.val` and `cost.hardware_price_table` given as relative paths are
resolved against the base folder (the parent of the runs folder, i.e. the project folder `tunewise ui` usually
runs in) and passed to the run as `--set` overrides; `runs_dir` is always the UI's runs folder, so the run
appears on the Live page. An arm's own files (e.g. a multi-task arm's data) must be absolute paths: they
would be looked for beside the saved YAML and the validation says so, naming the field and the line.

The command is always `python -m tunewise.cli run <yaml> --set ...` with this interpreter: nothing from a run
folder or from the YAML is executed. Knows nothing about HTTP.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

EXPERIMENTS = ".ui-experiments"
MAX_YAML_BYTES = 256 * 1024
PATH_FIELDS = (("data", "path"), ("data", "test"), ("data", "val"), ("cost", "hardware_price_table"))
_LINE = re.compile(r"^\s*(?:--set \S+|(?P<file>.+?):(?P<line>\d+)(?::\d+)?): (?P<rest>.*)$")


@dataclass(frozen=True)
class Problem:
    """One validation error as the Start page shows it."""

    line: int | None
    field: str | None
    message: str
    fix: str | None


@dataclass
class StartedRun:
    """A background `tunewise run` started from the UI."""

    name: str
    folder: Path
    process: subprocess.Popen[bytes]
    started_at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%H:%M:%S"))
    run_id: str | None = None

    def state(self) -> str:
        code = self.process.poll()
        return "running" if code is None else ("finished" if code == 0 else f"exited with code {code}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return (self.folder / "log.txt").read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""


def problems_of(message: str, saved: Path) -> list[Problem]:
    """A `ConfigError` message split into one problem per line, with the line number and field pulled out and
    the temporary file name replaced by "line N" wording."""
    found = []
    for raw in message.replace(str(saved), "experiment").splitlines():
        match = _LINE.match(raw)
        if match is None:
            line = raw.strip()
            if line and not line.endswith("problem(s)"):
                found.append(Problem(None, None, line.removeprefix("experiment: "), None))
            continue
        rest = match["rest"]
        field_name, _, text = rest.partition(": ")
        if not text or " " in field_name:
            field_name, text = None, rest
        message_text, _, fix = text.partition(" Fix: ")
        for marker, wording in (("; did you mean ", "did you mean "), ("; known: ", "use one of: ")):
            if not fix and marker in message_text:
                message_text, _, hint = message_text.partition(marker)
                fix = wording + hint
        found.append(Problem(int(match["line"]) if match["line"] else None, field_name, message_text.strip(),
                             fix.strip() or None))
    return [p for p in found if p.message]


def path_overrides(text: str, base: Path, runs_dir: Path) -> list[str]:
    """`--set` assignments: the relative file fields resolved against `base`, and the UI's runs folder."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        raw = None
    overrides = [f"runs_dir={runs_dir.resolve()}"]
    if not isinstance(raw, dict):
        return overrides
    for section, key in PATH_FIELDS:
        value = (raw.get(section) or {}).get(key) if isinstance(raw.get(section), dict) else None
        if isinstance(value, str) and value and not value.startswith("bundled:") and not Path(value).is_absolute():
            overrides.append(f"{section}.{key}={(base / value).resolve()}")
    return overrides


def prepare(text: str, runs_dir: Path) -> tuple[Path, list[str], list[Problem]]:
    """Save the YAML in a new experiment folder and validate it exactly as the run will load it; returns the
    file, the overrides and the problems (none means it can start)."""
    from tunewise.config import ConfigError, load_experiment

    if len(text.encode("utf-8")) > MAX_YAML_BYTES:
        return Path(), [], [Problem(None, None, f"the experiment is over {MAX_YAML_BYTES // 1024} KiB",
                                    "paste the experiment file, not the data")]
    if not text.strip():
        return Path(), [], [Problem(None, None, "the experiment is empty", "paste an experiment YAML or upload one; "
                                                                             "`tunewise init` writes a starting point")]
    folder = runs_dir.resolve() / EXPERIMENTS / f"{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True, exist_ok=False)
    saved = folder / "experiment.yaml"
    saved.write_text(text, encoding="utf-8")
    overrides = path_overrides(text, runs_dir.resolve().parent, runs_dir)
    try:
        experiment = load_experiment(saved, overrides)
    except ConfigError as exc:
        return saved, overrides, problems_of(str(exc), saved)
    return saved, overrides, missing_data(experiment, text)


def missing_data(experiment: Any, text: str) -> list[Problem]:
    """The data files the loader leaves to `tunewise run` to open: checked here so a typo is shown beside its line
    instead of in the log of a run that never started."""
    found = []
    for key in ("path", "test", "val"):
        value = getattr(experiment.data, key)
        if value is None or str(value).startswith("bundled:") or Path(value).is_file():
            continue
        found.append(Problem(yaml_line(text, ["data", key]), f"data.{key}", f"{value} does not exist",
                             "give the file's path, absolute or relative to the folder named above"))
    return found


def yaml_line(text: str, keys: list[str]) -> int | None:
    """The 1-based line of the key at `keys` in the YAML text, if it is there."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            return line
        match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == key), None)
        if match is None:
            return line
        line, node = match[0].start_mark.line + 1, match[1]
    return line


def launch(saved: Path, overrides: list[str]) -> StartedRun:
    """`tunewise run` in the background, output to log.txt beside the YAML."""
    command = [sys.executable, "-m", "tunewise.cli", "run", str(saved)]
    for assignment in overrides:
        command += ["--set", assignment]
    import tunewise

    # the same tunewise as this UI, even when it was imported from a source folder on a relative PYTHONPATH
    source = str(Path(tunewise.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, *filter(None, [os.environ.get("PYTHONPATH")])])}
    with (saved.parent / "log.txt").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=saved.parent, start_new_session=True, env=env)
    return StartedRun(name=saved.parent.name, folder=saved.parent, process=process)


def wait_for_run(job: StartedRun, runs_dir: Path, timeout: float = 60.0) -> str | None:
    """The id of the run folder the job created (its manifest's command names the job's YAML), or None if the
    process ended first or `timeout` passed."""
    from tunewise.store.runs import RunError, open_run

    marker = str(job.folder / "experiment.yaml")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in sorted(runs_dir.iterdir(), reverse=True):
            if entry.name.startswith(".") or not (entry / "manifest.json").is_file():
                continue
            try:
                manifest: dict[str, Any] = open_run(entry).manifest
            except RunError:
                continue
            if marker in (manifest.get("command") or []):
                job.run_id = entry.name
                return entry.name
        if job.process.poll() is not None:
            return None
        time.sleep(0.2)
    return None
