"""`tunewise train` itself under torchrun (2 processes, gloo on the CPU): one run folder, one export, one set
of scored predictions (process 0 writes; process 1 only trains), the same adapter weights as one process
accumulating 2 batches (the same global batch), and an error on process 0 stops process 1 instead of
leaving it waiting."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

pytestmark = pytest.mark.subprocess  # `tunewise train` under torchrun (2 processes) and in one process

ROOT = Path(__file__).resolve().parents[1]
TOPICS = {"goal": "sports", "shares": "business", "software": "tech", "film": "arts"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tunewise(args: list[str], processes: int, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"),
                                                                                 os.environ.get("PYTHONPATH", "")])}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr",
                "127.0.0.1", "--master_port", str(_free_port())] if processes > 1 else [sys.executable]
    return subprocess.run(launcher + ["-m", "tunewise.cli", "train", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _experiment(tmp_path: Path, model: Path) -> Path:
    (tmp_path / "topics.jsonl").write_text("".join(json.dumps({"text": f"note {i}: the {w} again", "label": label})
                                                   + "\n" for i in range(10) for w, label in TOPICS.items()))
    (tmp_path / "moods.jsonl").write_text("".join(json.dumps({"text": f"a {w} day {i}", "label": label}) + "\n"
                                                  for i in range(8) for w, label in (("lovely", "pos"), ("awful", "neg"))))
    # no dropout and no warmup: the processes draw different dropout masks, so only a deterministic model matches
    arm = {"name": "lora", "type": "finetune", "method": "lora", "model": str(model), "precision": "fp32",
           "prompt": "terse", "max_val_examples": 8, "max_train_examples": 16,
           "training": {"epochs": 2, "batch_size": 4, "gradient_accumulation": 1, "learning_rate": 0.005, "lora_r": 4,
                        "lora_alpha": 8, "lora_dropout": 0.0, "warmup_ratio": 0.0, "precision": "fp32",
                        "max_length": 64, "seed": 3},
           "tasks": [{"name": "mood", "data": {"path": "moods.jsonl"}, "task": {"type": "classify"},
                      "prefix": "[mood] ", "max_train_examples": 8}]}
    config = {"name": "ddp", "data": {"path": "topics.jsonl"}, "task": {"type": "classify"}, "split": {"seed": 3},
              "runs_dir": str(tmp_path / "runs"), "threads": 1, "arms": [arm]}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _only_run(runs: Path) -> Path:
    folders = [p for p in runs.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def test_train_under_torchrun_writes_one_run_and_matches_one_process(tiny_model_dir: Path, tmp_path: Path) -> None:
    exp = _experiment(tmp_path, tiny_model_dir)
    ddp = _tunewise([str(exp), "--set", f"runs_dir={tmp_path / 'ddp'}"], processes=2)
    assert ddp.returncode == 0, (ddp.stdout + ddp.stderr)[-4000:]
    one = _tunewise([str(exp), "--set", f"runs_dir={tmp_path / 'one'}",
                     "--set", "arms.0.training.gradient_accumulation=2"], processes=1)
    assert one.returncode == 0, (one.stdout + one.stderr)[-4000:]

    run = _only_run(tmp_path / "ddp")  # every process used the folder process 0 made
    assert json.loads((run / "manifest.json").read_text())["status"] == "completed"
    assert sorted(p.name for p in (run / "adapters").iterdir()) == ["lora"]
    metrics = json.loads((run / "metrics.json").read_text())
    predictions = (run / "predictions" / "lora.jsonl").read_text().splitlines()
    assert len(predictions) == metrics["test_examples"] > 0 and 0 <= metrics["arms"]["lora"]["accuracy"] <= 1
    record = json.loads((run / "training" / "lora.json").read_text())
    # 16 + 8 rows: every batch of 4 full, so the losses match exactly (a short last round, spread over the
    # processes, is covered by test_sft_ddp and test_sft_data)
    assert record["processes"] == 2 and record["train_examples"] == 24
    assert [t["name"] for t in record["tasks"]] == ["(experiment task)", "mood"]
    assert (run / "predictions" / "lora~task-mood.jsonl").is_file()
    printed = " ".join(ddp.stdout.split())
    assert printed.count("(and report.md, results.json)") == 1, printed  # process 0 prints; process 1 is quiet
    assert "internal error" not in ddp.stderr

    single = _only_run(tmp_path / "one")
    solo = json.loads((single / "training" / "lora.json").read_text())
    assert solo["processes"] == 1 and solo["steps"] == record["steps"]
    curve = lambda r: [(p["step"], p["train_loss"]) for p in r["history"] if p["train_loss"] is not None]  # noqa: E731
    assert curve(solo) == curve(record)
    a = load_file(run / "adapters" / "lora" / "adapter_model.safetensors")
    b = load_file(single / "adapters" / "lora" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and a
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4, msg=key)


def test_an_error_on_process_0_stops_the_others(tiny_model_dir: Path, tmp_path: Path) -> None:
    exp = _experiment(tmp_path, tiny_model_dir)
    done = _tunewise([str(exp), "--resume", str(tmp_path / "no-such-run")], processes=2, timeout=180)
    assert done.returncode != 0
    said = " ".join(done.stderr.split())  # Rich wraps long lines
    assert said.count("is not a run folder") == 1, said  # process 0 says it; process 1 stops quietly
    assert "internal error" not in said
