"""Supervised fine-tuning of a causal LM on chat examples: LoRA (peft) or full, on transformers' Trainer.

What this adds to a plain `Trainer(...)` call is what the recurring failures of fine-tuning tools call for:
  - the loss falls only on assistant tokens, rendered by the model's own chat template (`sft_data.py`);
  - batches of similar length padded only to their longest row, in an order that is a pure function of
    (seed, epoch), so a resumed run sees exactly the batches an uninterrupted one would;
  - checkpoints that count only once complete (`checkpoints.py`), so `resume` after kill -9 continues from
    the last durable step and ends with the same weights as a run that was never interrupted;
  - SIGTERM writes a checkpoint and stops cleanly (the caller exits 0), as schedulers and spot VMs expect;
  - early stopping on validation loss with the best checkpoint restored, weight decay, warmup, clipping,
    and a warning when validation loss runs away from training loss;
  - bf16 autocast only where the hardware multiplies bf16 natively (`models/precision.py`).

The batch order, checkpoint sealing, SIGTERM handling, clock, progress and history come from the shared
Trainer scaffold (`scaffold.py`); what is SFT's own is the loss on trained positions, the model (LoRA or
full), its settings and the export. This module knows nothing about tasks, arms or run folders: it takes
chat `Example`s and a folder to work in and returns a trained model it can export. Under `accelerate launch`
/ `torchrun` the same call trains with DDP (the Trainer shards our batches across processes); only process
0 writes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from tunewise.models.precision import Precision, choose_precision, resolve_device
from tunewise.schema import ARM_MARKER, Example
from tunewise.store.atomic import atomic_dir, atomic_write_text
from tunewise.train import checkpoints
from tunewise.train.ranks import launched
from tunewise.train.scaffold import ProgressCallback, fit, fold_log, trainer_base, training_arguments
from tunewise.train.settings import SFTSettings
from tunewise.train.sft_data import IGNORE_INDEX, LengthGroupedBatches, TokenizedExample, collate
from tunewise.train.token_cache import TokenCache


class SFTError(ValueError):
    """The examples, settings or folder cannot be used for fine-tuning; the message names the fix."""


@dataclass(frozen=True, slots=True)
class LossPoint:
    step: int
    epoch: float
    train_loss: float | None = None
    val_loss: float | None = None


@dataclass
class SFTInfo:
    """What happened during training; stored beside the exported model and in the run folder."""

    method: str
    model: str
    seconds: float
    precision: str
    precision_reason: str
    steps: int
    epochs_run: float
    train_examples: int
    val_examples: int
    trained_tokens: int
    tokens: int
    dropped: list[str] = field(default_factory=list)
    truncated: int = 0
    best_step: int | None = None
    best_val_loss: float | None = None
    stopped_early: bool = False
    interrupted: bool = False
    resumed_from: int | None = None
    history: list[LossPoint] = field(default_factory=list)
    gap_warning: str | None = None
    processes: int = 1
    tokenize_seconds: float = 0.0
    tokenized_from_cache: bool = False
    gradient_checkpointing: bool = False
    checkpointing_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------ data


class _Tokenized(torch.utils.data.Dataset):
    """The tokenized training rows; index `len + i` is row i with nothing trained (see LengthGroupedBatches:
    a DDP process with no example left in the epoch's last round still has to run a step)."""

    def __init__(self, items: list[TokenizedExample]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> TokenizedExample:
        if index >= len(self.items):
            item = self.items[index - len(self.items)]
            return TokenizedExample(item.input_ids, [IGNORE_INDEX] * len(item), item.truncated)
        return self.items[index]


def _collator(pad_id: int) -> Callable[[list[TokenizedExample]], dict[str, torch.Tensor]]:
    return lambda batch: collate(batch, pad_id)


def trained_positions_loss(model: Any, inputs: dict[str, torch.Tensor],
                           num_items_in_batch: torch.Tensor | int | None = None) -> tuple[torch.Tensor, Any]:
    """Causal-LM cross-entropy computed only where some row of the batch has a trained next token.

    A model's own loss projects every position onto the vocabulary (49k entries for SmolLM2) and takes a
    softmax there, although the assistant-only mask leaves most positions untrained: for classification
    only the label and end-of-turn tokens are. `logits_to_keep` with those positions skips that work; the
    loss is the same number (a test checks it against the model's own). Sum over trained tokens divided by
    `num_items_in_batch` (the Trainer's count over the accumulated batch), else by this batch's count.
    """
    targets = inputs["labels"][:, 1:]
    keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().flatten()
    outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], logits_to_keep=keep)
    picked = targets[:, keep]
    total = torch.nn.functional.cross_entropy(outputs.logits.float().reshape(-1, outputs.logits.shape[-1]),
                                              picked.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (picked != IGNORE_INDEX).sum().clamp(min=1)
    return total / count, outputs


def _trainer_class() -> type:
    class SFTTrainer(trainer_base()):  # type: ignore[misc]
        """The scaffold's Trainer with the loss on trained positions only."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = True  # our compute_loss normalises by the accumulated token count

        def compute_loss(self, model: Any, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                         num_items_in_batch: torch.Tensor | int | None = None) -> Any:
            loss, outputs = trained_positions_loss(model, inputs, num_items_in_batch)
            if num_items_in_batch is not None and self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes  # DDP averages gradients; the count was global
            return (loss, outputs) if return_outputs else loss

    return SFTTrainer


# ------------------------------------------------------------------------------------------ model


def _load_model(source: str, settings: SFTSettings, init_from: Path | None = None) -> tuple[Any, Any]:
    """The model to train: fresh adapters on `source`, or (init_from) training continued from an earlier
    export: a LoRA adapter folder keeps training its adapter; any other model folder is the new starting
    point (full fine-tuning, or fresh adapters on it)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = init_from is not None and (Path(init_from) / "adapter_config.json").is_file()
    if init_from is not None and not adapter:
        if not (Path(init_from) / "config.json").is_file():
            raise SFTError(f"init_from {init_from}: neither a LoRA adapter folder (adapter_config.json) nor a model "
                           "folder (config.json). Fix: point at adapters/<arm> or adapters/<arm>/merged of a run")
        source = str(init_from)
    if adapter and settings.method != "lora":
        raise SFTError(f"init_from {init_from} is a LoRA adapter; continue it with method lora, or start full "
                       f"fine-tuning from its merged model ({Path(init_from) / 'merged'})")
    tokenizer = AutoTokenizer.from_pretrained(init_from if adapter else source)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    # fp32 master weights; bf16 enters through autocast where it is fast (see precision.py)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(init_from), is_trainable=True)
    elif settings.method == "lora":
        from peft import LoraConfig, get_peft_model

        targets: list[str] | str = settings.target_modules
        where: dict[str, Any] = {}
        if settings.lora_layers:
            depth = model.config.num_hidden_layers
            where = {"layers_to_transform": list(range(max(0, depth - settings.lora_layers), depth))}
            if targets == "all-linear":  # peft takes a layer subset only with module names spelled out
                targets = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                                  if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}"})
        config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                            target_modules=targets, task_type="CAUSAL_LM", bias="none", **where)
        model = get_peft_model(model, config)
        _seeded_lora_init(model, settings.seed)
    return model, tokenizer


def _seeded_lora_init(model: Any, seed: int) -> None:
    """Draw the new adapters' A matrices from a generator of their own (peft's distribution; B stays zero).

    peft draws them from torch's global generator, which another thread of the process may reseed at any
    moment: the server's batcher does on every generate call while a fine-tuning job loads its model, so the
    same seed could start two jobs from different weights."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():  # the module tree's fixed order
            if ".lora_A." in name:
                torch.nn.init.kaiming_uniform_(parameter, a=math.sqrt(5), generator=generator)


def _history(log_history: list[dict[str, Any]]) -> list[LossPoint]:
    rows = fold_log(log_history, by="step", fields={"loss": "train_loss", "eval_loss": "val_loss"})
    return [LossPoint(row.at, row.epoch, row.values.get("train_loss"), row.values.get("val_loss")) for row in rows]


def gap_warning(history: Sequence[LossPoint]) -> str | None:
    """A plain-words warning when validation loss ends well above training loss (the model memorises)."""
    train = [p.train_loss for p in history if p.train_loss is not None]
    val = [p.val_loss for p in history if p.val_loss is not None]
    if not train or not val:
        return None
    last_train, last_val, best_val = train[-1], val[-1], min(val)
    if last_val > 1.5 * last_train + 0.1:
        return (f"validation loss {last_val:.3f} is {last_val / max(last_train, 1e-9):.1f}x the training loss "
                f"{last_train:.3f}: the model fits the training examples better than new ones (overfitting). "
                "Fewer epochs, more data, a smaller LoRA rank or more weight decay usually help.")
    if last_val > best_val * 1.1 + 0.05:
        return (f"validation loss rose from its best {best_val:.3f} to {last_val:.3f} by the end; the best "
                "checkpoint was kept, but later epochs overfit.")
    return None


# ------------------------------------------------------------------------------------------ training


@dataclass
class SFTModel:
    """A fine-tuned model (peft-wrapped for LoRA), its tokenizer and what training recorded."""

    model: Any
    tokenizer: Any
    settings: SFTSettings
    base_model: str
    precision: Precision
    info: SFTInfo

    def export(self, folder: Path, *, merged: bool = True, extra: dict[str, Any] | None = None) -> Path:
        """Write the trained weights as safetensors, atomically (all of it or nothing).

        LoRA: `folder/` holds the adapter (`adapter_model.safetensors`, `adapter_config.json`) and, with
        `merged`, `folder/merged/` a standalone model with the adapter folded in, loadable by plain
        transformers and by vLLM. Full: `folder/` is the whole model. The tokenizer (with its chat template)
        goes beside every set of weights, so serving renders prompts exactly as training did; `extra` (the
        arm's prompt template, task, labels) is stored in `tunewise-arm.json`.
        """
        folder = Path(folder)
        meta = {"format": "tunewise-finetune", "version": 1, "method": self.settings.method,
                "base_model": self.base_model, "settings": self.settings.model_dump(),
                "training": self.info.to_dict(), **(extra or {})}
        with atomic_dir(folder) as tmp:
            model = self.model
            model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            if self.settings.method == "lora" and merged:
                import copy

                full = copy.deepcopy(model).merge_and_unload()
                full.save_pretrained(tmp / "merged", safe_serialization=True)
                self.tokenizer.save_pretrained(tmp / "merged")
                (tmp / "merged" / ARM_MARKER).write_text(json.dumps(meta | {"merged": True}, indent=2) + "\n",
                                                         encoding="utf-8")
            (tmp / ARM_MARKER).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return folder


def _token_cache_folder(token_cache: Path | bool) -> Path | None:
    if token_cache is True:
        from tunewise.assets import cache_dir

        return cache_dir() / "tokenized"
    return Path(token_cache) if token_cache else None


def _problems(train: Sequence[Example], val: Sequence[Example]) -> list[str]:
    problems = []
    if not train:
        problems.append("the training split is empty. Fix: give the arm labelled examples")
    for kind, examples in (("training", train), ("validation", val)):
        for e in examples:
            if not any(m.role == "assistant" for m in e.messages):
                problems.append(f"{kind} example {e.id!r} (line {e.line}) has no assistant reply to learn. "
                                "Fix: add the reference output")
                if len(problems) > 10:
                    return problems
    return problems


def _arguments(settings: SFTSettings, root: Path, precision: Precision, device: torch.device, *, evaluate: bool,
               steps_per_epoch: int, recompute: bool = False) -> Any:
    """SFT's TrainingArguments: evaluate and save every epoch (or every `checkpoint_every_steps`), log about
    ten times an epoch, keep the lowest validation loss."""
    every = settings.checkpoint_every_steps
    strategy = "steps" if every else "epoch"
    return training_arguments(
        root, precision=precision, device=device, seed=settings.seed,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        learning_rate=settings.lr,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation,
        weight_decay=settings.weight_decay,
        warmup_steps=settings.warmup_ratio,  # a float below 1 is a ratio of total steps (transformers >= 5)
        max_grad_norm=settings.max_grad_norm,
        lr_scheduler_type="linear",
        eval_strategy=strategy if evaluate else "no",
        save_strategy=strategy,
        eval_steps=every,
        save_steps=every,
        logging_strategy="steps",
        logging_steps=max(1, steps_per_epoch // 10),
        load_best_model_at_end=evaluate,
        metric_for_best_model="eval_loss" if evaluate else None,
        greater_is_better=False if evaluate else None,
        remove_unused_columns=False,  # our collator builds the tensors from TokenizedExample
        report_to=list(settings.report_to) or "none",
        ddp_find_unused_parameters=False,
        # non-reentrant checkpointing needs no input gradients, so it works on a frozen base under LoRA too
        activation_checkpointing=recompute,
        activation_checkpointing_kwargs={"use_reentrant": False} if recompute else None,
    )


def train_sft(train: Sequence[Example], val: Sequence[Example], settings: SFTSettings, model: str,
              output_dir: Path, *, progress: ProgressCallback | None = None, resume: bool = True,
              log: Callable[[str], None] = lambda message: None, callbacks: Sequence[Any] = (),
              init_from: Path | None = None, token_cache: Path | bool = True) -> SFTModel:
    """Fine-tune `model` (folder, hub id or bundled alias) on chat examples; checkpoints in `output_dir`.

    `token_cache`: where tokenized examples are remembered across calls (`token_cache.py`): True for the user
    cache folder, a folder, or False to tokenize every time.

    With `resume` (the default) training continues from the newest complete checkpoint in
    `output_dir/checkpoints`, if any. On SIGTERM a checkpoint is written, training stops and the returned
    info has `interrupted=True`. Raises SFTError listing every problem with the examples before any model
    is loaded.
    """
    if problems := _problems(train, val):
        raise SFTError("Cannot fine-tune:\n- " + "\n- ".join(problems))
    from transformers import EarlyStoppingCallback, set_seed
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-save bars would tear through the caller's progress display

    from tunewise.assets import resolve_model

    source = resolve_model(model)
    device = resolve_device("auto")
    precision = choose_precision(device, settings.precision)
    set_seed(settings.seed)  # before adapters are created: their initialisation is random
    net, tokenizer = _load_model(source, settings, init_from)
    tokenizing = time.perf_counter()
    cache = TokenCache(_token_cache_folder(token_cache), tokenizer, settings.max_length)
    train_items, dropped, truncated = cache.tokenize(train)
    val_items, _, _ = cache.tokenize(val)
    tokenize_seconds = time.perf_counter() - tokenizing
    if not train_items:
        raise SFTError(f"no training example keeps an assistant token within max_length={settings.max_length}. "
                       "Fix: raise max_length or shorten the prompts")
    if dropped:
        log(f"{len(dropped)} training example(s) dropped: nothing left to train within max_length "
            f"{settings.max_length} (first: {dropped[:3]})")

    root = Path(output_dir) / "checkpoints"
    start = checkpoints.latest(root) if resume else None
    evaluate = bool(val_items)
    processes = launched().world  # torchrun / accelerate launch; 1 otherwise
    batches = LengthGroupedBatches([len(i) for i in train_items], settings.batch_size, seed=settings.seed,
                                   processes=processes)
    steps_per_epoch = math.ceil(len(batches) / processes / settings.gradient_accumulation)
    recompute, recompute_reason = _checkpointing(net, settings, precision, device)
    log(f"gradient checkpointing {'on' if recompute else 'off'} ({recompute_reason})")
    args = _arguments(settings, root, precision, device, evaluate=evaluate, steps_per_epoch=steps_per_epoch,
                      recompute=recompute)
    early_stopping = ([EarlyStoppingCallback(early_stopping_patience=settings.early_stopping_patience)]
                      if evaluate else [])
    fitted = fit(_trainer_class(), start=start, progress=progress, callbacks=[*callbacks, *early_stopping], log=log,
                 model=net, args=args, train_dataset=_Tokenized(train_items),
                 eval_dataset=_Tokenized(val_items) if evaluate else None,
                 data_collator=_collator(tokenizer.pad_token_id), processing_class=tokenizer,
                 batches=batches, keep_last=settings.keep_checkpoints)
    trainer, seconds, interrupted = fitted.trainer, fitted.seconds, fitted.interrupted

    state = trainer.state
    history = _history(state.log_history)
    val_losses = [p.val_loss for p in history if p.val_loss is not None]
    best_step = int(Path(state.best_model_checkpoint).name.split("-")[-1]) if state.best_model_checkpoint else None
    planned = settings.max_steps or steps_per_epoch * settings.epochs
    info = SFTInfo(
        method=settings.method, model=str(model), seconds=round(seconds, 3), precision=precision.name,
        precision_reason=precision.reason, steps=state.global_step, epochs_run=round(state.epoch or 0.0, 3),
        train_examples=len(train_items), val_examples=len(val_items),
        trained_tokens=sum(i.trained_tokens for i in train_items), tokens=sum(len(i) for i in train_items),
        dropped=dropped, truncated=truncated, best_step=best_step,
        best_val_loss=min(val_losses) if val_losses else None,
        stopped_early=not interrupted and state.global_step < planned, interrupted=interrupted,
        resumed_from=checkpoints.step_of(start) if start is not None else None, history=history,
        gap_warning=gap_warning(history), processes=args.world_size, tokenize_seconds=round(tokenize_seconds, 3),
        tokenized_from_cache=cache.hits > 0 and cache.misses == 0, gradient_checkpointing=recompute,
        checkpointing_reason=recompute_reason)
    return SFTModel(trainer.model, tokenizer, settings, str(model), precision, info)


def _checkpointing(net: Any, settings: SFTSettings, precision: Precision, device: torch.device) -> tuple[bool, str]:
    from tunewise.train.memory import activation_bytes, available_bytes, decide_checkpointing

    width = 4 if precision.dtype == torch.float32 else 2
    estimate = activation_bytes(net.config, settings.batch_size, settings.max_length, width)
    return decide_checkpointing(settings.gradient_checkpointing, estimate, available_bytes(device))


def write_info(info: SFTInfo, path: Path) -> None:
    atomic_write_text(path, json.dumps(info.to_dict(), indent=2) + "\n")
