"""Whether LoRA/full training should recompute activations (gradient checkpointing) to fit in memory.

Checkpointing keeps only each layer's input during the forward pass and recomputes the rest in the backward
pass: about a third more compute for a fraction of the activation memory. It pays only when activations would
not fit, so `auto` turns it on when the estimate exceeds half the memory available now (the other half is left
for the weights, the optimizer state and everything else running). The estimate is the per-layer activation
count of a transformer block from Korthikanti et al., "Reducing Activation Recomputation in Large Transformer
Models" (2022): 34·s·b·h + 5·a·s²·b bytes per layer in 16-bit precision (s tokens, b batch, h hidden size,
a attention heads), doubled for fp32. The figure is deliberately rough: it decides on/off, nothing finer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SHARE_OF_AVAILABLE = 0.5


def activation_bytes(model_config: Any, batch_size: int, max_length: int, bytes_per_value: int) -> int:
    """Activation memory of one training step without checkpointing (see the module docstring)."""
    layers = int(getattr(model_config, "num_hidden_layers", 0) or 0)
    hidden = int(getattr(model_config, "hidden_size", 0) or 0)
    heads = int(getattr(model_config, "num_attention_heads", 0) or 0)
    s, b = max_length, batch_size
    per_layer_16bit = 34 * s * b * hidden + 5 * heads * s * s * b
    return int(layers * per_layer_16bit * bytes_per_value / 2)


def available_bytes(device: Any = None) -> int | None:
    """Free memory of the device training runs on: a CUDA device's free memory, else the system's
    MemAvailable (Linux). None when it cannot be read."""
    if device is not None and getattr(device, "type", "cpu") == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def decide_checkpointing(setting: bool | str, estimate: int, available: int | None) -> tuple[bool, str]:
    """(on, why) for `training.gradient_checkpointing` = True, False or "auto"."""
    gib = 1024 ** 3
    if setting is True or setting is False:
        return bool(setting), f"training.gradient_checkpointing: {str(setting).lower()}"
    if available is None:
        return False, "auto: available memory unknown, so activations are kept (faster)"
    if estimate > SHARE_OF_AVAILABLE * available:
        return True, (f"auto: activations need about {estimate / gib:.1f} GiB, more than half of the "
                      f"{available / gib:.1f} GiB available, so they are recomputed in the backward pass")
    return False, (f"auto: activations need about {estimate / gib:.1f} GiB of the {available / gib:.1f} GiB "
                   "available, so they are kept (faster)")
