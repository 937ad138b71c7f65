"""Forgetting probe: how much general ability a causal LM keeps after fine-tuning.

Fine-tuning a small model on one narrow task can make it worse at everything else ("catastrophic
forgetting"), which matters whenever the tuned model will also see requests outside that task. Two cheap
probes, run on the model before and after training, measure it:

1. Perplexity on ~40 short paragraphs of plain general-knowledge English shipped with the package
   (`tunewise/probes/general_english.txt`, written for this purpose): the token-weighted mean negative
   log-likelihood, exponentiated. Lower is better.
2. Instruction following on ~20 prompts whose constraints a rule can check (`probes/instructions.yaml`):
   "answer in one word", "reply in uppercase", "list three items", "answer with a number" ... Greedy
   replies; an item passes when all its checks pass; the score is the share of items passing.

`retention(before, after)` turns two results into ratios (1.0 = nothing lost) and raises an alarm below
0.90. The model can be a plain Hugging Face folder, a peft LoRA adapter folder (its base is loaded from the
adapter's config, or from `base=`), a `LocalLM`, or a model object with its tokenizer. This module knows
nothing about tasks, arms or run folders.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

ALARM_BELOW = 0.90
_WORD = re.compile(r"[A-Za-z0-9']+")
_NUMBER = re.compile(r"^[-+]?\d+(?:[.,]\d+)?$")
_ITEM = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+\S")
CHECKS = ("one_word", "uppercase", "lowercase", "number", "items", "include", "exclude", "max_words",
          "starts_with", "yes_no", "json_object")


class ProbeError(ValueError):
    """The model or the probe data cannot be used; the message says what and the fix."""


@dataclass(frozen=True)
class ProbeResult:
    """`perplexity` on the general text (lower is better); `instruction_score` in [0, 1] (higher is better).
    `details` holds the counts and each instruction item's reply and outcome."""

    perplexity: float
    instruction_score: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"perplexity": self.perplexity, "instruction_score": self.instruction_score, "details": self.details}


# ---------------------------------------------------------------- probe data


def general_text() -> list[str]:
    """The shipped paragraphs of general English, in file order."""
    text = files("tunewise.probes").joinpath("general_english.txt").read_text(encoding="utf-8")
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def instruction_items() -> list[dict[str, Any]]:
    """The shipped instruction prompts with their checks, validated so a bad edit fails loudly here."""
    name = "probes/instructions.yaml"
    items = yaml.safe_load(files("tunewise.probes").joinpath("instructions.yaml").read_text(encoding="utf-8"))
    problems = []
    for i, item in enumerate(items or []):
        if not isinstance(item, dict) or not isinstance(item.get("prompt"), str) or not item.get("checks"):
            problems.append(f"item {i}: needs a `prompt` string and a non-empty `checks` list")
            continue
        problems += [f"item {i}: unknown check {c.get('check')!r}; known: {', '.join(CHECKS)}"
                     for c in item["checks"] if c.get("check") not in CHECKS]
    if problems or not items:
        raise ProbeError(f"{name}: " + ("; ".join(problems) or "no items") + ". Fix the file.")
    return items


# ---------------------------------------------------------------- rules


def passes(reply: str, check: dict[str, Any]) -> bool:
    """Whether `reply` satisfies one rule. Rules are lenient about surrounding spaces and a final full stop,
    strict about the constraint itself."""
    text = reply.strip()
    bare = text.rstrip(".!").strip()
    words = _WORD.findall(text.lower())
    kind, value = check["check"], check.get("value")
    if kind == "one_word":
        return len(bare.split()) == 1 and bool(words)
    if kind == "uppercase":
        return any(c.isalpha() for c in text) and text == text.upper()
    if kind == "lowercase":
        return any(c.isalpha() for c in text) and text == text.lower()
    if kind == "number":
        if not _NUMBER.match(bare):
            return False
        return value is None or float(bare.replace(",", ".")) == float(value)
    if kind == "items":
        return sum(bool(_ITEM.match(line)) for line in text.splitlines()) == int(value)
    if kind == "include":
        return str(value).lower() in words
    if kind == "exclude":
        return str(value).lower() not in words
    if kind == "max_words":
        return 0 < len(words) <= int(value)
    if kind == "starts_with":
        return bool(words) and words[0] == str(value).lower()
    if kind == "yes_no":
        return bare.lower() in ("yes", "no")
    if kind == "json_object":
        from tunewise.tasks.jsontext import json_objects

        return next(json_objects(text), None) is not None
    raise ProbeError(f"unknown check {kind!r}; known: {', '.join(CHECKS)}")


# ---------------------------------------------------------------- loading


def load(model: Any, tokenizer: Any = None, *, base: str | Path | None = None,
         precision: str = "auto") -> tuple[Any, Any, str]:
    """(model, tokenizer, description) from a folder, an adapter folder, a LocalLM or a model object."""
    from tunewise.models.local import LocalLM

    if isinstance(model, LocalLM):
        return model.model, model.tokenizer, f"LocalLM {model.name} ({model.precision.name})"
    if not isinstance(model, (str, Path)):
        if tokenizer is None:
            raise ProbeError("probe() got a model object without its tokenizer. Fix: pass tokenizer=...")
        return model, tokenizer, type(model).__name__
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from tunewise.assets import resolve_model

    hf_logging.disable_progress_bar()  # as LocalLM does: a load bar would tear through the caller's Rich display
    from tunewise.models.precision import choose_precision, resolve_device

    folder = Path(resolve_model(str(model)))
    device = resolve_device("auto")
    chosen = choose_precision(device, precision)
    dtype = chosen.dtype
    adapter = folder / "adapter_config.json"
    if adapter.is_file():
        from peft import PeftModel

        config = json.loads(adapter.read_text(encoding="utf-8"))
        base_name = str(base) if base is not None else config.get("base_model_name_or_path")
        if not base_name:
            raise ProbeError(f"{adapter}: base_model_name_or_path is empty. Fix: pass base=<the base model folder>.")
        base_path = resolve_model(base_name)
        built = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype), folder)
        has_tokenizer = any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
        tok = tokenizer or AutoTokenizer.from_pretrained(folder if has_tokenizer else base_path)
        return built.to(device).eval(), tok, f"{base_path} + adapter {folder} ({chosen.reason})"
    if not (folder / "config.json").is_file():
        raise ProbeError(f"{folder}: neither a model folder (config.json) nor a peft adapter folder "
                         "(adapter_config.json). Fix: pass the folder save_pretrained wrote.")
    built = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    return built.to(device).eval(), tokenizer or AutoTokenizer.from_pretrained(folder), f"{folder} ({chosen.reason})"


# ---------------------------------------------------------------- measuring


def perplexity(model: Any, tokenizer: Any, paragraphs: list[str], batch_size: int = 8) -> tuple[float, int]:
    """exp(mean NLL per predicted token) over `paragraphs`, each scored on its own; (perplexity, tokens)."""
    import torch

    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    rows = [tokenizer(p)["input_ids"] for p in paragraphs]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            width = max(len(r) for r in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, row in enumerate(batch):  # right padding: positions of real tokens match an unpadded pass
                ids[i, :len(row)] = torch.tensor(row)
                mask[i, :len(row)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
            targets = ids[:, 1:].to(device)
            picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            keep = mask[:, 1:].to(device).bool()
            total_nll -= float(picked[keep].sum())
            total_tokens += int(keep.sum())
    return math.exp(total_nll / max(total_tokens, 1)), total_tokens


def replies(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, batch_size: int = 8) -> list[str]:
    """Greedy replies to single user messages (through the chat template when the tokenizer has one), in
    left-padded batches: on a CPU, 20 prompts one by one take several times longer than in batches of 8."""
    import torch

    from tunewise.models.local import left_pad

    device = next(model.parameters()).device
    rendered = []
    for prompt in prompts:
        if getattr(tokenizer, "chat_template", None):
            rendered.append(list(tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                               add_generation_prompt=True, tokenize=True,
                                                               return_dict=False)))
        else:
            rendered.append(list(tokenizer(f"user: {prompt}\nassistant:")["input_ids"]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(rendered), batch_size):
            ids, mask = left_pad(rendered[start:start + batch_size], pad)
            width = ids.shape[1]
            generated = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                       max_new_tokens=max_new_tokens, pad_token_id=pad)
            out += [tokenizer.decode(row, skip_special_tokens=True) for row in generated[:, width:]]
    return out


def probe(model: Any, max_items: int | None = None, *, tokenizer: Any = None, base: str | Path | None = None,
          precision: str = "auto", max_new_tokens: int = 48) -> ProbeResult:
    """Perplexity on the shipped general text and the instruction-following score of `model`.

    `model`: a model folder, a peft adapter folder (base from its config or `base=`), a LocalLM, or a
    model object (then pass `tokenizer=`). `max_items` keeps the first N paragraphs and N prompts (quick
    checks); compare before and after with the same value.
    """
    built, tok, description = load(model, tokenizer, base=base, precision=precision)
    paragraphs = general_text()[:max_items]
    items = instruction_items()[:max_items]
    ppl, tokens = perplexity(built, tok, paragraphs)
    outcomes = []
    for item, answer in zip(items, replies(built, tok, [item["prompt"] for item in items], max_new_tokens)):
        failed = [c["check"] for c in item["checks"] if not passes(answer, c)]
        outcomes.append({"prompt": item["prompt"], "reply": answer, "passed": not failed, "failed": failed})
    score = sum(o["passed"] for o in outcomes) / len(outcomes)
    return ProbeResult(ppl, score, {"model": description, "paragraphs": len(paragraphs), "tokens": tokens,
                                    "instructions": len(items), "items": outcomes})


def retention(before: ProbeResult, after: ProbeResult, alarm_below: float = ALARM_BELOW) -> dict[str, Any]:
    """How much of the general ability survived: 1.0 = all of it, below `alarm_below` = alarm.

    perplexity_ratio = before / after (a fine-tuned model that got more perplexed on plain English scores
    below 1); instruction_ratio = after / before (None when the model passed no instruction item before:
    there was nothing to lose). `retention` is the smaller ratio, capped at 1 so gains on one probe cannot
    hide losses on the other.
    """
    perplexity_ratio = before.perplexity / after.perplexity
    instruction_ratio = (after.instruction_score / before.instruction_score) if before.instruction_score > 0 else None
    ratios = [r for r in (perplexity_ratio, instruction_ratio) if r is not None]
    kept = min(1.0, *ratios)
    reasons = []
    if perplexity_ratio < alarm_below:
        reasons.append(f"perplexity on general English rose from {before.perplexity:.2f} to {after.perplexity:.2f}")
    if instruction_ratio is not None and instruction_ratio < alarm_below:
        reasons.append(f"instruction following fell from {before.instruction_score:.0%} to "
                       f"{after.instruction_score:.0%}")
    return {"perplexity_before": before.perplexity, "perplexity_after": after.perplexity,
            "perplexity_ratio": perplexity_ratio, "instruction_before": before.instruction_score,
            "instruction_after": after.instruction_score, "instruction_ratio": instruction_ratio,
            "retention": kept, "alarm": kept < alarm_below, "threshold": alarm_below, "reasons": reasons}
