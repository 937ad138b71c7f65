"""Supervised fine-tuning data: chat examples to token ids, loss masks and length-grouped padded batches.

The conversation is rendered by the tokenizer's own chat template, token for token as inference renders it,
so a model is trained on exactly the text it will be served. Only assistant replies carry loss: the reply's
content and its end-of-turn token (the model must learn to stop), never the header that opens the turn, which
the server writes itself.

This module knows nothing about models, optimizers or files: it maps examples and lengths to tensors.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tunewise.schema import Example

IGNORE_INDEX = -100
"""The label PyTorch's cross-entropy (and every HF causal LM) skips."""

MEGA_BATCHES = 50
"""Batches per shuffled chunk in which lengths are sorted: large enough to find similar lengths, small enough
that the order of examples stays random across an epoch."""


class TemplateError(ValueError):
    """The chat template cannot be split into turns by rendering prefixes, so the loss mask cannot be found."""


@dataclass(frozen=True, slots=True)
class TokenizedExample:
    """One rendered conversation: `labels[i]` is `input_ids[i]` where the token is trained, else -100.

    The labels are not shifted; HF causal LMs shift them inside the loss.
    """

    input_ids: list[int]
    labels: list[int]
    truncated: bool

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    """Token ids exactly as `apply_chat_template` gives them to inference (no extra special tokens)."""
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt,
                                              tokenize=True, return_dict=False))


def end_of_turn_set(tokenizer: Any, end_of_turn_ids: Sequence[int] | None) -> set[int]:
    """The token ids that close an assistant turn: those given, else the tokenizer's eos (if it has one)."""
    if end_of_turn_ids is not None:
        return set(end_of_turn_ids)
    return {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()


def _where(example: Example) -> str:
    return f"example {example.id!r} (line {example.line})"


def _not_prefix(example: Example, index: int, what: str) -> TemplateError:
    return TemplateError(
        f"{_where(example)}: the chat template is not prefix-stable: {what} (message {index}). The loss mask is "
        "found by rendering the conversation turn by turn, so each rendering must extend the previous one; "
        "this template rewrites earlier turns (e.g. it drops past reasoning, or adds a default system prompt "
        "only when the conversation starts with an assistant turn). Fix: use a template that renders turns "
        "independently, or give the examples a leading system/user message.")


def assistant_spans(example: Example, tokenizer: Any,
                    end_of_turn_ids: Sequence[int] | None = None) -> tuple[list[int], list[tuple[int, int]]]:
    """The full rendering's ids and the [start, end) token span of each trained assistant reply.

    For assistant message i, the prompt `messages[:i]` + generation prompt must be a prefix of
    `messages[:i+1]`, which must be a prefix of the whole conversation; the reply is the difference. This
    holds for any template that renders turns independently, whatever its header and separator tokens, so
    nothing here is specific to ChatML. The span stops after the first end-of-turn token (default: the
    tokenizer's eos), so the template's separator after it (ChatML's newline) is not trained: inference
    stops at that token and never generates what follows.
    """
    messages = [{"role": m.role, "content": m.content} for m in example.messages]
    full = _render(tokenizer, messages, generation_prompt=False)
    ends = end_of_turn_set(tokenizer, end_of_turn_ids)
    spans: list[tuple[int, int]] = []
    for index, message in enumerate(example.messages):
        if message.role != "assistant" or message.weight == 0:
            continue
        prompt = _render(tokenizer, messages[:index], generation_prompt=True)
        upto = _render(tokenizer, messages[:index + 1], generation_prompt=False)
        if upto[:len(prompt)] != prompt:
            raise _not_prefix(example, index, "the reply does not extend the generation prompt")
        if full[:len(upto)] != upto:
            raise _not_prefix(example, index, "the conversation so far is rendered differently once later turns "
                                              "follow")
        start, stop = len(prompt), len(upto)
        for position in range(start, stop):
            if full[position] in ends:
                stop = position + 1
                break
        spans.append((start, stop))
    return full, spans


def tokenize_chat(example: Example, tokenizer: Any, max_length: int,
                  end_of_turn_ids: Sequence[int] | None = None) -> TokenizedExample | None:
    """Render `example` with the tokenizer's chat template and mask everything but the assistant replies.

    Trained: each assistant reply's content tokens plus its end-of-turn token. Not trained: system and user
    turns, template headers (`<|im_start|>assistant\\n`), separators, default system prompts the template
    inserts, and assistant turns with `weight: 0` (they stay in the context).

    Longer conversations keep their start and are cut at `max_length` (`truncated=True`); the start holds
    the instructions, and a reply cut short still teaches its first tokens. Returns None when truncation
    leaves no trained token: the example cannot teach anything at this length, and the caller counts and
    reports it (see `tokenize_examples`). Raises ValueError for an example with no trained assistant turn at
    all, which is a data error, and TemplateError when the template cannot be split into turns.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    full, spans = assistant_spans(example, tokenizer, end_of_turn_ids)
    if not spans:
        raise ValueError(f"{_where(example)} has no assistant turn to train (none, or all with weight 0). "
                         "Fix: add the reference reply as an assistant message, or drop the example.")
    labels = [IGNORE_INDEX] * len(full)
    for start, stop in spans:
        labels[start:stop] = full[start:stop]
    truncated = len(full) > max_length
    result = TokenizedExample(full[:max_length], labels[:max_length], truncated)
    return result if result.trained_tokens else None


def tokenize_examples(examples: Sequence[Example], tokenizer: Any, max_length: int,
                      end_of_turn_ids: Sequence[int] | None = None
                      ) -> tuple[list[TokenizedExample], list[str], int]:
    """Tokenize many examples: (kept, ids of those dropped for having nothing trained left, truncated count)."""
    kept: list[TokenizedExample] = []
    dropped: list[str] = []
    for example in examples:
        item = tokenize_chat(example, tokenizer, max_length, end_of_turn_ids)
        if item is None:
            dropped.append(example.id)
        else:
            kept.append(item)
    return kept, dropped, sum(item.truncated for item in kept)


# ---------------------------------------------------------------------------------------------- batching


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                           mega_batches: int = MEGA_BATCHES) -> list[list[int]]:
    """Every index exactly once, in batches of similar length, the same for the same (seed, epoch).

    The indices are shuffled, cut into chunks of `mega_batches * batch_size`, sorted by length inside each
    chunk and cut into batches; the batch order is then shuffled so long and short batches alternate through
    the epoch. The batch holding the longest example goes first, so an out-of-memory error shows at step 1
    rather than hours in. Only the last batch of the epoch's final chunk can be smaller than `batch_size`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if mega_batches < 1:
        raise ValueError(f"mega_batches must be at least 1, got {mega_batches}")
    rng = random.Random(f"tunewise-length-groups:{seed}:{epoch}")  # str seeds hash stably across processes
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * mega_batches
    batches: list[list[int]] = []
    for begin in range(0, len(order), chunk):
        group = sorted(order[begin:begin + chunk], key=lambda i: lengths[i], reverse=True)
        batches.extend(group[at:at + batch_size] for at in range(0, len(group), batch_size))
    rng.shuffle(batches)
    if batches:
        longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
        batches[0], batches[longest] = batches[longest], batches[0]
    return batches


class LengthGroupedBatches:
    """A batch sampler for `DataLoader(batch_sampler=...)`: call `set_epoch` before each epoch.

    Thin state around `length_grouped_batches`, so the order is a pure function of (seed, epoch, processes)
    and a resumed run can rebuild it and skip the batches it has already seen.

    Under DDP accelerate hands batch k to process k % processes. `batches()` therefore returns whole rounds
    of `processes` batches: the examples of an incomplete last round are spread over the processes, and a
    process left without any gets a masked copy (index `len(lengths) + i`: example i with nothing trained, so
    it adds no loss and no gradient). Every example is then trained exactly once per epoch and each
    optimizer step sees the examples one process accumulating `processes` batches would. The sampler has no
    `batch_size` attribute on purpose: with one, accelerate only closes a round on a full-size batch and
    pads the epoch by repeating its first examples.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0,
                 mega_batches: int = MEGA_BATCHES, processes: int = 1) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self.lengths = list(lengths)
        self.size = batch_size
        self.seed = seed
        self.mega_batches = mega_batches
        self.processes = processes
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        order = length_grouped_batches(self.lengths, self.size, self.seed, self.epoch, self.mega_batches)
        spare = len(order) % self.processes
        if not spare:
            return order
        tail = [i for batch in order[-spare:] for i in batch]
        share, extra = divmod(len(tail), self.processes)
        rounds, at = [], 0
        for rank in range(self.processes):
            size = share + (rank < extra)
            rounds.append(tail[at:at + size] or [len(self.lengths) + tail[0]])
            at += size
        return order[:-spare] + rounds

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.lengths) / self.size) / self.processes) * self.processes


def collate(batch: Sequence[TokenizedExample], pad_id: int,
            pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest row: input_ids (pad_id), attention_mask (0 on padding), labels (-100).

    The mask comes from the lengths, never from comparing ids with `pad_id`: SmolLM2 pads with `<|im_end|>`,
    which is also a real, trained token.
    """
    if not batch:
        raise ValueError("collate needs at least one example")
    width = max(len(item) for item in batch)
    if pad_to_multiple_of:
        width = math.ceil(width / pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    for row, item in enumerate(batch):
        size = len(item)
        input_ids[row, :size] = torch.tensor(item.input_ids, dtype=torch.long)
        attention_mask[row, :size] = 1
        labels[row, :size] = torch.tensor(item.labels, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def padding_efficiency(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Useful tokens / tokens computed when each batch is padded to its longest row (1.0 = no padding)."""
    useful = sum(lengths[i] for batch in batches for i in batch)
    padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches if batch)
    return useful / padded if padded else 1.0
