"""One DDP fine-tuning run for the scale-out test: `python ddp_worker.py MODEL OUT BATCH ACCUM`.

Launched once plainly and once under `torch.distributed.run --nproc_per_node 2` (gloo on the CPU); process 0
writes OUT/final.safetensors (the LoRA weights) and OUT/info.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from safetensors.torch import save_file
from sft_worker import examples

from tunewise.train.settings import SFTSettings
from tunewise.train.sft import train_sft


def main() -> None:
    model, out, batch, accum = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    # no dropout: the processes draw different random masks, so only a deterministic model can match exactly
    settings = SFTSettings(method="lora", epochs=2, batch_size=batch, gradient_accumulation=accum, learning_rate=5e-3,
                           lora_r=4, lora_alpha=8, lora_dropout=0.0, precision="fp32", seed=3, warmup_ratio=0.0)
    result = train_sft(examples(33), examples(8, offset=100), settings, model, out)
    if int(os.environ.get("RANK", "0")) == 0:
        weights = {k: v.detach().clone().contiguous() for k, v in result.model.state_dict().items() if "lora_" in k}
        save_file(weights, str(out / "final.safetensors"))
        (out / "info.json").write_text(json.dumps(result.info.to_dict()), encoding="utf-8")


if __name__ == "__main__":
    main()
