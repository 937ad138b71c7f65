"""The run folder contract and the SQLite registry that indexes run folders.

A run is `<root>/<run-id>/` holding `manifest.json`: what was run (command, full resolved config), on what
(sha256 of every data file), with what (package versions, git sha, platform) and how it went (status).
Stages write their outputs into subfolders (`splits/`, `predictions/`, ...), so any stage can be re-run
from the folder alone.

The folders are the source of truth. `<root>/registry.sqlite` is only an index for fast listing: it is
rebuilt from the manifests when missing or corrupt, and `list_runs` repairs rows whose manifest changed or
whose folder appeared or vanished. It uses WAL mode and a busy timeout so several processes can create
and update runs at once.

This module knows nothing about what a stage computes; it records, it does not interpret.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shlex
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from tunewise.store.atomic import atomic_write_text

MANIFEST = "manifest.json"
REGISTRY = "registry.sqlite"
STATUSES = frozenset({"created", "running", "completed", "failed", "interrupted"})
DEFAULT_PACKAGES: tuple[str, ...] = ("tunewise", "torch", "transformers")
# Manifest keys fixed at creation; `Run.update` refuses to change them so the folder keeps describing
# the run that made it.
_FROZEN_KEYS = frozenset(
    {"id", "created_at", "command", "config", "versions", "data_files", "data_sha256", "git", "platform"}
)
_BUSY_TIMEOUT_S = 30.0
_SQLITE_CORRUPT_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB
_CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


class RunError(ValueError):
    """A folder that is not a usable run, or a bad request to create or update one; the message says the fix."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One registry row: enough to list runs without opening their manifests."""

    id: str
    created_at: str
    command: str
    status: str
    path: Path
    data_sha256: str | None
    git_sha: str | None


class Run:
    """An open run folder. `manifest` is the parsed `manifest.json`; change it only through `update`."""

    __slots__ = ("path", "manifest")

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest

    @property
    def id(self) -> str:
        return str(self.manifest["id"])

    @property
    def status(self) -> str:
        return str(self.manifest["status"])

    def subdir(self, name: str) -> Path:
        """Create (if needed) and return a folder inside the run, e.g. `splits` or `adapters/lora`."""
        relative = Path(name)
        if relative.is_absolute() or not relative.parts or ".." in relative.parts:
            raise RunError(f"subdir name must be a relative path inside the run without '..', got {name!r}")
        folder = self.path / relative
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def update(self, status: str | None = None, **fields: Any) -> None:
        """Set `status` and/or extra manifest fields, rewrite the manifest atomically, update the registry.

        One writer per run is assumed (the process running it); concurrent updates of one run keep the last.
        """
        frozen = sorted(_FROZEN_KEYS & fields.keys())
        if frozen:
            raise RunError(
                f"cannot change {', '.join(frozen)} of run {self.id}: they are fixed when the run is created"
            )
        if status is not None:
            _check_status(status)
            fields["status"] = status
        manifest = {**self.manifest, **fields, "updated_at": _utc_iso(datetime.now(UTC))}
        _write_manifest(self.path, manifest)
        self.manifest = manifest
        with _registry(self.path.parent) as conn:
            _upsert(conn, self.path, manifest)


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise RunError(f"status must be one of {', '.join(sorted(STATUSES))}; got {status!r}")


# --- ids and time ---------------------------------------------------------------------------------------

_clock_lock = threading.Lock()
_last_time: datetime | None = None


def _now() -> datetime:
    """UTC now, strictly increasing within this process (coarse clocks would otherwise tie rapid runs)."""
    global _last_time
    with _clock_lock:
        now = datetime.now(UTC)
        if _last_time is not None and now <= _last_time:
            now = _last_time + timedelta(microseconds=1)
        _last_time = now
        return now


def _utc_iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_run_id(moment: datetime) -> str:
    """`YYYYMMDD-HHMMSS-mmmrrr`: mmm is the millisecond in hex (000-3e7) so ids sort by creation time to
    the millisecond; rrr is random so two processes in the same millisecond (almost always) differ.
    Uniqueness is finally guaranteed by the exclusive `mkdir` in `create_run`, which retries on a clash."""
    return f"{moment:%Y%m%d-%H%M%S}-{moment.microsecond // 1000:03x}{secrets.token_hex(2)[:3]}"


# --- what the manifest records ----------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _data_files(paths: Sequence[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise RunError(f"data file(s) not found: {', '.join(missing)}; pass existing files in data_files")
    return [
        {"path": str(Path(p).resolve()), "bytes": Path(p).stat().st_size, "sha256": _sha256_file(Path(p))}
        for p in paths
    ]


def _combined_sha(files: list[dict[str, Any]]) -> str | None:
    """One file: its own sha256 (easy to compare with `sha256sum`). Several: sha256 of their shas in order."""
    if not files:
        return None
    if len(files) == 1:
        return str(files[0]["sha256"])
    return hashlib.sha256("\n".join(f["sha256"] for f in files).encode("ascii")).hexdigest()


def package_versions(packages: Sequence[str] = ()) -> dict[str, str | None]:
    """Python plus installed versions of `DEFAULT_PACKAGES` and `packages`; None for ones not installed."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in dict.fromkeys([*DEFAULT_PACKAGES, *packages]):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_info() -> dict[str, Any]:
    """The current directory's commit and whether tracked files differ from it; nulls when git or a repo
    is missing. Never raises: provenance is useful, not worth failing a run over."""
    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if sha else None
    return {"sha": sha, "dirty": None if status is None else bool(status)}


def platform_info() -> dict[str, Any]:
    """OS, CPU model, core counts and the CPU flags that decide precision (bf16 is fast only with AVX512_BF16/AMX)."""
    info: dict[str, Any] = {
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "python_implementation": platform.python_implementation(),
        "cpu_model": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "cpu_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_flags": None,
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return info
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            info["cpu_model"] = value.strip()
        elif key.strip() == "flags":
            present = set(value.split())
            info["cpu_flags"] = [flag for flag in _CPU_FLAGS_OF_INTEREST if flag in present]
            break
    return info


# --- the folder -------------------------------------------------------------------------------------------


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2, allow_nan=False) + "\n")


def create_run(
    root: str | os.PathLike[str],
    *,
    command: Sequence[str] | str,
    config: Mapping[str, Any],
    data_files: Sequence[str | os.PathLike[str]] = (),
    packages: Sequence[str] = (),
) -> Run:
    """Create `<root>/<new id>/` with its manifest (status "created") and register it.

    `command` is the argv (joined with shell quoting) or the command line; `config` the full resolved
    config as JSON-able values (for pydantic: `model_dump(mode="json")`); `packages` adds to the versions
    recorded. Raises `RunError` for missing data files or a config JSON cannot hold.
    """
    root = Path(root)
    try:
        config_copy = json.loads(json.dumps(dict(config), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise RunError(
            f"config must hold only JSON values (str, number, bool, null, list, dict; no NaN): {exc}; "
            "for a pydantic model pass model.model_dump(mode='json')"
        ) from exc
    files = _data_files(data_files)
    root.mkdir(parents=True, exist_ok=True)
    while True:
        moment = _now()
        run_id = new_run_id(moment)
        folder = root / run_id
        try:
            folder.mkdir()
            break
        except FileExistsError:
            continue
    manifest: dict[str, Any] = {
        "id": run_id,
        "created_at": _utc_iso(moment),
        "updated_at": _utc_iso(moment),
        "status": "created",
        "command": command if isinstance(command, str) else shlex.join(command),
        "config": config_copy,
        "versions": package_versions(packages),
        "data_files": files,
        "data_sha256": _combined_sha(files),
        "git": git_info(),
        "platform": platform_info(),
    }
    _write_manifest(folder, manifest)
    with _registry(root) as conn:
        _upsert(conn, folder, manifest)
    return Run(folder, manifest)


def _read_manifest(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise RunError(f"{folder} is not a run folder: no such directory")
    file = folder / MANIFEST
    if not file.is_file():
        raise RunError(f"{folder} is not a run folder: it has no {MANIFEST}; create runs with tunewise.store.runs.create_run")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise RunError(f"{file} is not UTF-8 text ({exc}); restore it from a backup or delete the run") from exc
    except json.JSONDecodeError as exc:
        raise RunError(
            f"{file} line {exc.lineno} column {exc.colno}: invalid JSON ({exc.msg}); restore it or delete the run"
        ) from exc
    if not isinstance(manifest, dict):
        raise RunError(f"{file} must hold a JSON object, got {type(manifest).__name__}")
    missing = [key for key in ("id", "created_at", "command", "status") if key not in manifest]
    if missing:
        raise RunError(f"{file} is missing {', '.join(missing)}; it was not written by tunewise or was edited")
    return manifest


def open_run(path: str | os.PathLike[str]) -> Run:
    """Open an existing run folder; `RunError` says why when the folder is not a run."""
    folder = Path(path)
    return Run(folder, _read_manifest(folder))


# --- the registry ---------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    folder TEXT PRIMARY KEY,        -- folder name under root; rows map 1:1 to folders even if copied
    id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    command TEXT NOT NULL,
    status TEXT NOT NULL,
    data_sha256 TEXT,
    git_sha TEXT,
    manifest_mtime_ns INTEGER NOT NULL  -- a manifest newer than its row is re-read by list_runs
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at DESC, id DESC);
"""


def _set_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL, retrying while another process holds the lock: changing the journal mode needs an
    exclusive lock, and SQLite can report "locked" at once there instead of calling the busy handler."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit mode; writes use explicit BEGIN IMMEDIATE so the write lock is taken up front and waited
    # for under the busy timeout (a deferred transaction that upgrades to a write can fail at once).
    conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        _set_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")  # durable enough in WAL; manifests are the truth anyway
        conn.executescript(_SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def _registry(root: Path) -> Iterator[sqlite3.Connection]:
    """Open the registry, replacing a corrupt file (it is only an index, rebuilt from the manifests)."""
    path = root / REGISTRY
    try:
        conn = _connect(path)
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", None) not in _SQLITE_CORRUPT_CODES:
            raise
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        conn = _connect(path)
    with closing(conn):
        yield conn


def _row(folder: Path, manifest: Mapping[str, Any]) -> tuple[Any, ...]:
    git = manifest.get("git") if isinstance(manifest.get("git"), dict) else {}
    return (
        folder.name,
        str(manifest["id"]),
        str(manifest["created_at"]),
        str(manifest["command"]),
        str(manifest["status"]),
        manifest.get("data_sha256"),
        git.get("sha"),
        (folder / MANIFEST).stat().st_mtime_ns,
    )


def _upsert(conn: sqlite3.Connection, folder: Path, manifest: Mapping[str, Any]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _row(folder, manifest))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _sync(conn: sqlite3.Connection, root: Path) -> None:
    """Make the rows match the folders. Holding the write lock while scanning means a run registered by
    another process is also visible as a folder here (it writes its manifest before its row)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        known = dict(conn.execute("SELECT folder, manifest_mtime_ns FROM runs"))
        present: set[str] = set()
        with os.scandir(root) as entries:
            folders = [entry for entry in entries if not entry.name.startswith(".") and entry.is_dir()]
        for entry in folders:
            folder = Path(entry.path)
            try:
                mtime = (folder / MANIFEST).stat().st_mtime_ns
            except FileNotFoundError:
                continue  # not a run, or one being created right now
            present.add(entry.name)
            if known.get(entry.name) == mtime:
                continue
            try:
                manifest = _read_manifest(folder)
            except RunError:
                continue  # a broken folder should not hide every other run; open_run explains it
            conn.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _row(folder, manifest))
        gone = [(name,) for name in known if name not in present]
        conn.executemany("DELETE FROM runs WHERE folder = ?", gone)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def list_runs(root: str | os.PathLike[str]) -> list[RunRecord]:
    """All runs under `root`, newest first, after repairing the registry from the run folders."""
    root = Path(root)
    if not root.is_dir():
        return []
    with _registry(root) as conn:
        _sync(conn, root)
        rows = conn.execute(
            "SELECT id, created_at, command, status, folder, data_sha256, git_sha FROM runs "
            "ORDER BY created_at DESC, id DESC"
        ).fetchall()
    return [RunRecord(r[0], r[1], r[2], r[3], root / r[4], r[5], r[6]) for r in rows]
