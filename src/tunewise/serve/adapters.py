"""Which LoRA adapter folders may be served: only real folders inside the configured root, safetensors only.

An adapter is code-free data only if it is loaded as safetensors; a `.bin` or other pickle file can run
arbitrary code when loaded, so a folder holding one is refused outright (not merely skipped over). Folders
are discovered once, at start-up: a request's `model` name is looked up among the discovered names and never
joined onto a path, so a name like `../../etc` cannot reach outside the root. Symlinks are resolved, and any
folder or file whose real location is outside the root is refused.

The fine-tuning stage writes `RUN/adapters/<arm>/` with `adapter_config.json`, `adapter_model.safetensors`,
tokenizer files and `tunewise-arm.json` (`{"arm", "type": "finetune", "method": "lora", "base_model",
"task", "labels", "prompt_variant"}`); folders without `tunewise-arm.json` are plain chat adapters whose base
is the adapter config's `base_model_name_or_path`. Knows nothing about loading weights.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunewise.schema import ARM_MARKER

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@~-]*$")  # ~ for learning-curve points such as `ft~lc50`
# Formats that unpickle (run code) on load.
UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")


class AdapterError(ValueError):
    """An adapter folder cannot be served; the message names the folder, the problem and the fix."""


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    folder: Path
    base_model: str
    content_sha256: str  # of the adapter weights and config: part of every cache key
    arm: dict[str, Any] | None  # tunewise-arm.json, when the fine-tuning stage wrote one


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_folder(root: Path, folder: Path) -> list[str]:
    """Every reason the model folder `folder` (a child of `root`) must not be loaded: a bad name, a link
    leading outside the root, a pickle-based file. Empty when it is safe to read."""
    real_root = root.resolve()
    problems = []
    if not NAME.fullmatch(folder.name):
        problems.append(f"{folder}: the name must be letters, digits, _ . @ ~ - (it becomes the model name)")
    if not _inside(folder.resolve(), real_root):
        problems.append(f"{folder}: links outside the adapter root {real_root} (to {folder.resolve()})")
        return problems
    for file in sorted(folder.rglob("*")):
        if not _inside(file.resolve(), real_root):
            problems.append(f"{file}: links outside the adapter root {real_root}")
        elif file.suffix.lower() in UNSAFE_SUFFIXES:
            problems.append(f"{file}: pickle-based weights can run code when loaded; only safetensors are served "
                            "(re-save with `save_pretrained(..., safe_serialization=True)` and delete this file)")
    return problems


def check_adapter(root: Path, folder: Path) -> list[str]:
    """Every reason `folder` (a child of `root`) must not be served as a LoRA adapter; empty when it is safe."""
    problems = check_folder(root, folder)
    if not _inside(folder.resolve(), root.resolve()):
        return problems
    for required in ("adapter_config.json", "adapter_model.safetensors"):
        if not (folder / required).is_file():
            problems.append(f"{folder}: no {required} (a peft `save_pretrained` folder has both)")
    return problems


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise AdapterError(f"{path}: not readable JSON ({err}). Fix: re-save the adapter.") from None
    if not isinstance(value, dict):
        raise AdapterError(f"{path}: must hold a JSON object. Fix: re-save the adapter.")
    return value


def _content_sha256(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        with open(folder / name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def read_adapter(root: Path, folder: Path) -> AdapterSpec:
    problems = check_adapter(root, folder)
    if problems:
        raise AdapterError("refusing to serve adapter:\n  " + "\n  ".join(problems))
    config = read_json(folder / "adapter_config.json")
    arm = read_json(folder / ARM_MARKER) if (folder / ARM_MARKER).is_file() else None
    if config.get("peft_type") not in (None, "LORA"):
        raise AdapterError(f"{folder / 'adapter_config.json'}: peft_type {config.get('peft_type')!r}; only LoRA "
                           "adapters are served. Fix: train a LoRA adapter.")
    base = (arm or {}).get("base_model") or config.get("base_model_name_or_path")
    if not base:
        raise AdapterError(f"{folder}: no base model named ({ARM_MARKER} base_model or adapter_config.json "
                           "base_model_name_or_path). Fix: add one, or pass --model BASE.")
    return AdapterSpec(folder.name, folder, str(base), _content_sha256(folder), arm)


def discover(root: Path) -> list[AdapterSpec]:
    """Every adapter folder directly under `root`, all checked; every problem is reported at once."""
    root = Path(root)
    if not root.is_dir():
        raise AdapterError(f"adapter root {root} is not a folder. Fix: pass the folder that holds one sub-folder "
                           "per adapter.")
    specs, problems = [], []
    for folder in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        if not folder.is_dir():
            if folder.is_symlink():
                problems.append(f"{folder}: a link to {folder.resolve()}, not an adapter folder")
            continue
        try:
            specs.append(read_adapter(root, folder))
        except AdapterError as err:
            problems.append(str(err))
    if problems:
        raise AdapterError(f"{len(problems)} adapter problem(s) under {root}:\n" + "\n".join(problems))
    return specs
