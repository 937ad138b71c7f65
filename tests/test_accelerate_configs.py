"""The shipped `accelerate launch` configs (examples/accelerate/*.yaml) parse as accelerate's own config files,
and every FSDP / DeepSpeed field they set is an option `accelerate launch` knows (a typo would be ignored
silently at launch time). They are not run here: FSDP and DeepSpeed need GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "examples" / "accelerate").glob("*.yaml"))


def test_the_three_launch_modes_ship() -> None:
    assert {p.stem for p in CONFIGS} == {"ddp", "fsdp", "deepspeed_zero2"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_accelerate_parses_every_shipped_config(path: Path) -> None:
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    config = load_config_from_file(str(path))  # unknown top-level fields raise here
    raw = yaml.safe_load(path.read_text())
    assert config.num_processes == raw["num_processes"] >= 2
    assert config.distributed_type.value == {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero2": "DEEPSPEED"}[path.stem]
    options = {action.dest for action in launch_command_parser()._actions}
    nested = list(raw.get("fsdp_config", {})) + list(raw.get("deepspeed_config", {}))
    assert [key for key in nested if key not in options] == []
    assert "NOT RUN" in path.read_text()  # each says plainly that it was never run here
