"""Which device and floating-point precision a local model runs in, and why.

bf16 halves memory everywhere, but it is only *faster* where the hardware multiplies bf16 natively: CUDA
GPUs from Ampere on, and CPUs with AVX512_BF16 or AMX (about 4x fp32 on the machines this project targets).
On other CPUs PyTorch emulates bf16 and it is slower than fp32, so the choice follows the hardware, not a
fixed default. The reason string is printed and stored in run manifests, so a reader of a result can see
why a run used the precision it did. This module knows nothing about models or tokenizers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

PRECISIONS: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}
_FAST_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Precision:
    """The dtype a model is loaded in, and one sentence saying why it was chosen."""

    dtype: torch.dtype
    reason: str

    @property
    def name(self) -> str:
        """The short name ("bf16", "fp32", "fp16") used in configs and manifests."""
        return next(name for name, dtype in PRECISIONS.items() if dtype == self.dtype)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" is the first CUDA GPU when there is one, else the CPU; anything else is taken as given."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports; empty where /proc/cpuinfo does not exist (macOS, Windows)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def _fast_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether bf16 matmuls run natively on this device, with the evidence in words."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{torch.cuda.get_device_name(device)} supports bf16 natively"
        return False, f"{torch.cuda.get_device_name(device)} has no native bf16"
    if device.type == "cpu":
        found = sorted(set(_FAST_BF16_CPU_FLAGS) & _cpu_flags())
        if found:
            return True, f"the CPU has {' and '.join(found)}"
        return False, f"the CPU lacks {' and '.join(_FAST_BF16_CPU_FLAGS)} (bf16 would be emulated, slower)"
    return False, f"fast bf16 on {device.type} is not detected by tunewise"


def choose_precision(device: str | torch.device = "auto", requested: str = "auto") -> Precision:
    """bf16 where the hardware does it fast, else fp32; `requested` ("bf16", "fp32", "fp16") overrides.

    A forced choice is honoured even where it is slow, and the reason says so.
    """
    key = requested.strip().lower()
    if key != "auto" and key not in PRECISIONS:
        raise ValueError(f"precision {requested!r} is not one of auto, {', '.join(PRECISIONS)}. "
                         "Fix: use 'auto' to let the hardware decide.")
    resolved = resolve_device(device)
    fast, evidence = _fast_bf16(resolved)
    if key == "auto":
        if fast:
            return Precision(torch.bfloat16, f"bf16 chosen automatically: {evidence}")
        return Precision(torch.float32, f"fp32 chosen automatically: {evidence}")
    reason = f"{key} requested"
    if key == "bf16" and not fast:
        reason += f", although {evidence}"
    elif key == "fp16" and resolved.type == "cpu":
        reason += "; fp16 on a CPU is emulated and slow (bf16 or fp32 are the CPU choices)"
    return Precision(PRECISIONS[key], reason)
