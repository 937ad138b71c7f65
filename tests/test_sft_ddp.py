"""Scale-out: the same fine-tuning call under `torchrun` (2 processes, gloo on the CPU) reaches the same
weights, loss curve and validation loss as 1 process at the same global batch (batch 4 x 2 processes = batch 4
x 2 accumulated): our length-grouped batches are sharded across processes in the order one process sees them,
a short last round included."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.subprocess  # two torchrun processes and a single-process run of the same training

TESTS = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]


def test_two_processes_match_one_process_at_the_same_global_batch(tiny_model_dir: Path, tmp_path: Path) -> None:
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    _run([sys.executable, str(TESTS / "ddp_worker.py"), str(tiny_model_dir), str(single), "4", "2"])
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
          "--master_port", str(_free_port()), str(TESTS / "ddp_worker.py"), str(tiny_model_dir), str(ddp), "4", "1"])
    one, two = (json.loads((p / "info.json").read_text()) for p in (single, ddp))
    assert one["processes"] == 1 and two["processes"] == 2
    # 33 examples in batches of 4: 9 batches an epoch, the last holding 1 example. One process accumulates it
    # alone; under DDP process 0 trains it and process 1 runs a masked copy, so nothing repeats or is skipped
    assert one["steps"] == two["steps"] == 10 and one["train_examples"] == two["train_examples"] == 33
    curve = lambda info: [(p["step"], p["train_loss"]) for p in info["history"] if p["train_loss"] is not None]  # noqa: E731
    # the short last round is summed in another order (one row on each process, one masked): float rounding
    assert [s for s, _ in curve(one)] == [s for s, _ in curve(two)]
    assert [loss for _, loss in curve(one)] == pytest.approx([loss for _, loss in curve(two)], rel=1e-6)
    # validation loss is a mean of per-batch means, and 2 processes group the 8 validation examples differently
    assert abs(one["best_val_loss"] - two["best_val_loss"]) < 1e-2, (one["best_val_loss"], two["best_val_loss"])
    a, b = load_file(single / "final.safetensors"), load_file(ddp / "final.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4, msg=key)
