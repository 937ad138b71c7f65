"""Run folders and the registry: manifest contents, ids, listing, WAL, repair, errors, concurrent writers."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import re
import shutil
import sqlite3
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

import tunewise
from tunewise.store.runs import REGISTRY, RunError, create_run, list_runs, open_run

CONFIG = {"task": "classify", "arms": ["zero_shot", "classical"], "seed": 13, "nested": {"lr": 0.0002}}


def _registry_rows(root: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(root / REGISTRY) as conn:
        return conn.execute("SELECT id, status FROM runs ORDER BY id").fetchall()


def test_manifest_contents(tmp_path: Path) -> None:
    data = tmp_path / "tickets.jsonl"
    data.write_text('{"text": "hi", "label": "a"}\n', encoding="utf-8")
    run = create_run(
        tmp_path / "runs", command=["tunewise", "run", "my config.yaml"], config=CONFIG, data_files=[data],
        packages=["numpy", "surely-not-installed-pkg"],
    )
    manifest = json.loads((run.path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest == run.manifest
    assert manifest["id"] == run.id == run.path.name
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", run.id)
    assert manifest["created_at"].endswith("Z")
    created = datetime.fromisoformat(manifest["created_at"])
    assert created.utcoffset() is not None and created.utcoffset().total_seconds() == 0
    assert manifest["command"] == "tunewise run 'my config.yaml'"
    assert manifest["config"] == CONFIG
    assert manifest["status"] == "created"
    versions = manifest["versions"]
    assert versions["tunewise"] == tunewise.__version__
    assert versions["python"].count(".") == 2
    assert {"torch", "transformers", "numpy"} <= versions.keys()
    assert versions["surely-not-installed-pkg"] is None
    sha = hashlib.sha256(data.read_bytes()).hexdigest()
    assert manifest["data_files"] == [{"path": str(data.resolve()), "bytes": data.stat().st_size, "sha256": sha}]
    assert manifest["data_sha256"] == sha
    assert set(manifest["git"]) == {"sha", "dirty"}
    assert manifest["platform"]["cpu_count"] >= 1 and manifest["platform"]["system"]


def test_git_sha_recorded_in_a_repo_and_null_outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # tmp_path is not inside a repo
    assert create_run(tmp_path / "runs", command="x", config={}).manifest["git"] == {"sha": None, "dirty": None}

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    try:
        subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
        (repo / "f.txt").write_text("x", encoding="utf-8")
        subprocess.run([*git, "add", "f.txt"], cwd=repo, check=True)
        subprocess.run([*git, "commit", "-qm", "c"], cwd=repo, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not usable here")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(repo)
    assert create_run(tmp_path / "runs", command="x", config={}).manifest["git"] == {"sha": head, "dirty": False}

    monkeypatch.setenv("PATH", "")  # git missing: recorded as null, never an error
    assert create_run(tmp_path / "runs", command="x", config={}).manifest["git"]["sha"] is None


def test_several_data_files_get_a_combined_sha(tmp_path: Path) -> None:
    files = []
    for name in ("a.jsonl", "b.jsonl"):
        files.append(tmp_path / name)
        files[-1].write_text(name, encoding="utf-8")
    manifest = create_run(tmp_path / "runs", command="x", config={}, data_files=files).manifest
    shas = [f["sha256"] for f in manifest["data_files"]]
    assert manifest["data_sha256"] == hashlib.sha256("\n".join(shas).encode()).hexdigest()
    assert create_run(tmp_path / "runs", command="x", config={}).manifest["data_sha256"] is None


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"data file\(s\) not found: .*missing.jsonl"):
        create_run(tmp_path, command="x", config={}, data_files=[tmp_path / "missing.jsonl"])
    with pytest.raises(RunError, match="config must hold only JSON values.*model_dump"):
        create_run(tmp_path, command="x", config={"when": datetime.now()})
    with pytest.raises(RunError, match="no NaN"):
        create_run(tmp_path, command="x", config={"lr": float("nan")})
    assert list(tmp_path.iterdir()) == []  # nothing half-made


def test_ids_unique_and_sorted_under_rapid_creation(tmp_path: Path) -> None:
    runs = [create_run(tmp_path, command="x", config={}) for _ in range(60)]
    ids = [run.id for run in runs]
    assert len(set(ids)) == len(ids)
    assert [r.created_at for r in list_runs(tmp_path)] == sorted((r.manifest["created_at"] for r in runs), reverse=True)
    # The id sorts by time to the millisecond (YYYYMMDD-HHMMSS-mmm); the last three chars are random.
    assert [i[:19] for i in ids] == sorted(i[:19] for i in ids)


def test_subdir_update_and_open_run(tmp_path: Path) -> None:
    run = create_run(tmp_path, command="x", config=CONFIG)
    splits = run.subdir("splits")
    assert splits == run.path / "splits" and splits.is_dir()
    assert run.subdir("adapters/lora").is_dir()
    for bad in ("../escape", "/abs", ""):
        with pytest.raises(RunError, match="subdir name must be a relative path"):
            run.subdir(bad)

    run.update(status="running", arms_done=["zero_shot"])
    reopened = open_run(run.path)
    assert reopened.status == "running" and reopened.manifest["arms_done"] == ["zero_shot"]
    assert reopened.manifest["config"] == CONFIG
    assert reopened.manifest["updated_at"] >= reopened.manifest["created_at"]
    assert [r.status for r in list_runs(tmp_path)] == ["running"]
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]

    with pytest.raises(RunError, match="status must be one of"):
        run.update(status="done-ish")
    with pytest.raises(RunError, match="cannot change config, id"):
        run.update(id="other", config={})


def test_open_run_on_non_run_folder_errors_clearly(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="is not a run folder: no such directory"):
        open_run(tmp_path / "nope")
    with pytest.raises(RunError, match=r"is not a run folder: it has no manifest\.json"):
        open_run(tmp_path)
    (tmp_path / "manifest.json").write_text('{"id": "x",\n "oops"}', encoding="utf-8")
    with pytest.raises(RunError, match=r"manifest\.json line 2 column \d+: invalid JSON"):
        open_run(tmp_path)
    (tmp_path / "manifest.json").write_text('{"id": "x"}', encoding="utf-8")
    with pytest.raises(RunError, match="is missing created_at, command, status"):
        open_run(tmp_path)


def test_registry_lists_newest_first_in_wal_mode(tmp_path: Path) -> None:
    made = [create_run(tmp_path, command=f"cmd {i}", config={}) for i in range(5)]
    records = list_runs(tmp_path)
    assert [r.id for r in records] == [run.id for run in reversed(made)]
    assert records[0].command == "cmd 4" and records[0].path == made[-1].path and records[0].status == "created"
    with sqlite3.connect(tmp_path / REGISTRY) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert list_runs(tmp_path / "no-such-root") == []


def test_list_runs_rebuilds_missing_registry_and_repairs_drift(tmp_path: Path) -> None:
    made = [create_run(tmp_path, command=f"cmd {i}", config={}) for i in range(4)]
    made[1].update(status="completed")
    (tmp_path / "not-a-run").mkdir()  # ignored: no manifest
    before = list_runs(tmp_path)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / REGISTRY}{suffix}").unlink(missing_ok=True)
    assert list_runs(tmp_path) == before

    # Drift: a folder removed by hand and a manifest edited behind the registry's back.
    shutil.rmtree(made[0].path)
    manifest = json.loads((made[2].path / "manifest.json").read_text(encoding="utf-8"))
    manifest["status"] = "failed"
    (made[2].path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    statuses = {r.id: r.status for r in list_runs(tmp_path)}
    assert statuses == {made[1].id: "completed", made[2].id: "failed", made[3].id: "created"}


def test_corrupt_registry_is_rebuilt(tmp_path: Path) -> None:
    run = create_run(tmp_path, command="x", config={})
    (tmp_path / REGISTRY).write_bytes(b"this is not a database" * 100)
    assert [r.id for r in list_runs(tmp_path)] == [run.id]


def _create_many(root: str, count: int, tag: str) -> None:
    for i in range(count):
        run = create_run(root, command=f"{tag} {i}", config={"worker": tag})
        run.update(status="completed")


def test_concurrent_creation_from_two_processes_loses_nothing(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_create_many, args=(str(tmp_path), 25, tag)) for tag in ("p1", "p2")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    rows = _registry_rows(tmp_path)  # read directly: no repair by list_runs has happened yet
    assert len(rows) == 50 and {status for _, status in rows} == {"completed"}
    folders = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert [run_id for run_id, _ in rows] == folders
    assert len(list_runs(tmp_path)) == 50
