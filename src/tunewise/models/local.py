"""A local Hugging Face causal LM behind the three calls the arms need: score label options, generate, and
generate JSON.

Everything that makes local inference fast and fair lives here: the precision the hardware runs fastest
(see `precision.py`), batches grouped by length so little compute is spent on padding, left padding with
explicit positions so a prompt's result does not depend on which other prompts share its batch, and label
scoring with one forward pass per example (see `scoring.py`). This module knows nothing about tasks, arms,
run folders or caching: it takes chat messages and returns numbers and text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch

from tunewise.assets import AssetError, resolve_model
from tunewise.models import constrained, scoring
from tunewise.models.precision import Precision, choose_precision, resolve_device
from tunewise.models.streaming import RowStreamer, TokenCallback
from tunewise.schema import Generation

__all__ = ["LocalLM", "Precision", "choose_precision"]

Messages = list[dict[str, str]]
Progress = Callable[[int], None]

MIN_SHARED_PREFIX = 32
"""Shared prompt starts shorter than this are recomputed per row: reusing them saves less than the cache
copy costs."""


class LocalLM:
    """A causal LM and its tokenizer, loaded once, in eval mode, in the precision chosen for the hardware.

    `model` is a local folder, a hub id already in the local cache, or a bundled alias ("smollm2").
    `threads` sets torch's intra-op thread count for the whole process (torch has no per-model setting).
    Remote code is never trusted: a model that needs it is not a model this class loads.
    `precision.reason` and `json_backend` ("xgrammar <version>" or "repair") belong in run manifests.
    """

    def __init__(self, model: str | Path, *, device: str | torch.device = "auto", precision: str = "auto",
                 threads: int | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its per-load bar would tear through our Rich progress display

        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be at least 1, got {threads}. Fix: omit it to let torch decide.")
            torch.set_num_threads(threads)
        self.name = resolve_model(str(model))
        if Path(self.name).is_dir() and not (Path(self.name) / "config.json").is_file():
            raise AssetError(f"Model folder {self.name} has no config.json. Fix: pass the folder a "
                             "`save_pretrained` wrote (config.json, weights and tokenizer files).")
        self.device = resolve_device(device)
        self.precision: Precision = choose_precision(self.device, precision)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.name)
            self.model = AutoModelForCausalLM.from_pretrained(self.name, dtype=self.precision.dtype)
        except OSError as err:
            raise AssetError(
                f"Could not load model {self.name!r}: {err}. Fix: pass a folder holding config.json, the weights "
                "and the tokenizer files, or a hub id already in the local Hugging Face cache (runs are offline)."
            ) from err
        self.model.to(self.device).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._end_ids = _end_of_turn_ids(self.tokenizer, self.model.generation_config)
        self.json_backend = constrained.backend()
        self._grammars: constrained.JsonGrammars | None = None

    # ------------------------------------------------------------ prompts

    def _has_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def render(self, messages: Messages | str) -> list[int]:
        """The prompt's token ids, ending where the assistant's reply begins; a plain string is raw text
        (a completion prompt the caller formatted itself), tokenized as is without the chat template."""
        if isinstance(messages, str):
            return list(self.tokenizer(messages)["input_ids"])
        if self._has_template():
            return list(self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=False))
        # Base models without a template get a plain transcript; the reply starts after "assistant:".
        text = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
        return list(self.tokenizer(text)["input_ids"])

    def continuation(self, messages: Messages, prompt_ids: list[int], option: str) -> list[int]:
        """The tokens of `option` as the template renders an assistant reply, up to and including the
        end-of-turn token, so "tech" and "technology" both pay for ending the turn and compete fairly.

        Derived from the rendered full conversation rather than by tokenizing the option alone, because
        templates and tokenizers merge and decorate text at that boundary (a leading space, a think block).
        """
        if not self._has_template():
            return list(self.tokenizer(" " + option, add_special_tokens=False)["input_ids"]) + self._end_ids[:1]
        full_messages = [*messages, {"role": "assistant", "content": option}]
        full = list(self.tokenizer.apply_chat_template(full_messages, tokenize=True, return_dict=False))
        if full[:len(prompt_ids)] == prompt_ids:
            tail = full[len(prompt_ids):]
        else:  # the tokenizer merged across the boundary: fall back to the rendered text after the prompt
            prompt_text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            full_text = self.tokenizer.apply_chat_template(full_messages, tokenize=False)
            if not full_text.startswith(prompt_text):
                raise ValueError(f"{self.name}: the chat template renders an assistant reply that does not extend "
                                 "the generation prompt, so options cannot be scored as replies.")
            tail = list(self.tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"])
        ends = [i for i, token in enumerate(tail) if token in self._end_ids]
        return tail[:ends[0] + 1] if ends else tail

    # ------------------------------------------------------------ label scoring

    @torch.inference_mode()
    def score_options(self, prompts: Sequence[Messages], options: Sequence[str], *, batch_size: int = 8,
                      normalize: Literal["sum", "mean"] = "sum",
                      progress: Progress | None = None) -> list[list[float]]:
        """For each prompt, the log-likelihood of each option as the assistant's whole reply.

        One row per prompt, one score per option, in the order given. "sum" is the total log-probability
        (the option's probability as a reply); "mean" divides by the option's token count.
        """
        if normalize not in ("sum", "mean"):
            raise ValueError(f"normalize must be 'sum' or 'mean', got {normalize!r}")
        if not options:
            raise ValueError("score_options needs at least one option")
        rendered = [self.render(list(p)) for p in prompts]
        conts = [[self.continuation(list(p), ids, o) for o in options] for p, ids in zip(prompts, rendered)]
        shared = scoring.shared_prefix_length(rendered)
        if shared < MIN_SHARED_PREFIX:
            shared = 0
        prefix = self._prefix_states(rendered[0][:shared]) if shared else []
        suffixes = [ids[shared:] for ids in rendered]
        lengths = [len(ids) + sum(len(c) for c in cs) for ids, cs in zip(suffixes, conts)]
        results: list[list[float]] = [[] for _ in prompts]
        for batch in _length_batches(lengths, batch_size):
            layout = scoring.layout([suffixes[i] for i in batch], [conts[i] for i in batch],
                                    self.tokenizer.pad_token_id)
            mask = scoring.attention_mask(layout.segments, self.precision.dtype, prefix=shared)
            logits = self.model(input_ids=layout.input_ids.to(self.device),
                                position_ids=(layout.position_ids + shared).to(self.device),
                                attention_mask=mask.to(self.device), logits_to_keep=layout.keep,
                                cache=_expanded(prefix, len(batch), self.model.config) if shared else None,
                                use_cache=bool(shared)).logits
            for i, per_option in zip(batch, scoring.option_logprobs(logits, layout)):
                sums = [sum(lp) for lp in per_option]
                results[i] = sums if normalize == "sum" else [s / len(lp) for s, lp in zip(sums, per_option)]
            if progress is not None:
                progress(len(batch))
        return results

    def _prefix_states(self, prefix: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Keys and values of every layer for the shared prompt start, computed once (batch of one)."""
        output = self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=True, logits_to_keep=1)
        return [(layer.keys, layer.values) for layer in output.cache.layers]

    # ------------------------------------------------------------ generation

    def generate(self, prompts: Sequence[Messages | str], *, max_new_tokens: int = 64, batch_size: int = 8,
                 temperature: float = 0.0, seed: int = 0, progress: Progress | None = None,
                 on_tokens: TokenCallback | None = None) -> list[Generation]:
        """Batched generation: greedy when temperature is 0, else plain temperature sampling (no top-k/top-p)
        from torch's global generator, seeded with `seed` at the start of the call.

        Prompts are grouped by length, left-padded, and answered in input order. `latency_s` is the batch's
        wall time shared equally among its prompts; token counts exclude padding, and the completion count
        includes the end-of-turn token when the model produced one.

        `on_tokens(index, ids, finished)` hears each prompt's new token ids as they are produced (on this
        thread, between decoding steps, so it must be quick); `decode` of all ids a prompt received is its text.
        """
        return self._generate(prompts, max_new_tokens, batch_size, temperature, seed, progress, None, on_tokens)

    def decode(self, completion: Sequence[int]) -> str:
        """The text of completion ids, exactly as `generate` returns it (special tokens dropped)."""
        return self.tokenizer.decode(completion, skip_special_tokens=True)

    def generate_json(self, prompts: Sequence[Messages], schema: dict[str, Any], *, max_new_tokens: int = 128,
                      batch_size: int = 8, progress: Progress | None = None) -> list[Generation]:
        """Greedy generation constrained to a JSON schema; each text is one JSON object.

        With xgrammar installed (`json_backend` says which path runs) every token is masked to keep the
        reply valid for the schema, so the text parses unless `max_new_tokens` cut it short. Without it,
        replies are generated freely and repaired: the first JSON object with the required keys is kept,
        and a reply without one is returned as it was.
        """
        if self.json_backend == "repair":
            return [replace(g, text=constrained.repair(g.text, schema))
                    for g in self.generate(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                           progress=progress)]
        if self._grammars is None:
            self._grammars = constrained.JsonGrammars(self.tokenizer, self.model.config.vocab_size, self._end_ids)
        return self._generate(prompts, max_new_tokens, batch_size, 0.0, 0, progress,
                              self._grammars.processors(schema))

    @torch.inference_mode()
    def _generate(self, prompts: Sequence[Messages | str], max_new_tokens: int, batch_size: int, temperature: float,
                  seed: int, progress: Progress | None,
                  processors: constrained.LogitsProcessors | None,
                  on_tokens: TokenCallback | None = None) -> list[Generation]:
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        torch.manual_seed(seed)
        rendered = [self.render(p if isinstance(p, str) else list(p)) for p in prompts]
        results: list[Generation | None] = [None] * len(prompts)
        sampling: dict[str, Any] = ({"do_sample": True, "temperature": temperature, "top_k": None, "top_p": None}
                                    if temperature > 0 else {"do_sample": False})
        for batch in _length_batches([len(r) for r in rendered], batch_size):
            start = time.perf_counter()
            input_ids, attention, cache = self._generation_inputs([rendered[i] for i in batch])
            output = self.model.generate(
                input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
                cache=cache, max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self._end_ids, logits_processor=processors() if processors else None,
                streamer=RowStreamer(batch, on_tokens, self._end_ids, max_new_tokens) if on_tokens else None,
                **sampling)
            each = (time.perf_counter() - start) / len(batch)
            for i, row in zip(batch, output[:, input_ids.shape[1]:].tolist()):
                ends = [j for j, token in enumerate(row) if token in self._end_ids]
                completion = row[:ends[0] + 1] if ends else row
                text = self.decode(completion)
                results[i] = Generation(text, len(rendered[i]), len(completion), each)
            if progress is not None:
                progress(len(batch))
        return [g for g in results if g is not None]


    def _generation_inputs(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Ids, attention mask and starting cache for one generation batch.

        Rows that start alike (a system prompt, instructions, few-shot exemplars) share that start: it is
        run once, its keys and values are handed to `generate` as the cache of every row, and only the rest
        is left-padded behind it: `[shared start][pads][own tokens]`, the pads masked. `generate` derives
        positions from the mask, so each token keeps the position it has in its own prompt and the answer is
        the one the plain layout gives (up to float rounding); without a long enough shared start (or for a
        single prompt) the plain left-padded layout is used.
        """
        shared = scoring.shared_prefix_length(rows)
        if shared < MIN_SHARED_PREFIX:
            input_ids, attention = left_pad(rows, self.tokenizer.pad_token_id)
            return input_ids, attention, None
        tails, tail_mask = left_pad([row[shared:] for row in rows], self.tokenizer.pad_token_id)
        start = torch.tensor([rows[0][:shared]], dtype=torch.long).expand(len(rows), -1)
        input_ids = torch.cat([start, tails], dim=1)
        attention = torch.cat([torch.ones_like(start), tail_mask], dim=1)
        cache = _expanded(self._prefix_states(rows[0][:shared]), len(rows), self.model.config)
        return input_ids, attention, cache


# ---------------------------------------------------------------- helpers


def _end_of_turn_ids(tokenizer: Any, generation_config: Any) -> list[int]:
    """Every token that ends a reply: the model's configured eos ids first, then the tokenizer's."""
    configured = getattr(generation_config, "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured]
    ids = [i for i in [*ids, tokenizer.eos_token_id] if i is not None]
    return list(dict.fromkeys(ids))


def _expanded(prefix: list[tuple[torch.Tensor, torch.Tensor]], batch: int, config: Any) -> Any:
    """A fresh cache per batch (the forward pass appends to it) holding the shared prefix for every row."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1))
                                        for k, v in prefix], config=config)


def _length_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length (stable sort, so equal lengths keep input order)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def left_pad(rows: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and attention mask with every row aligned to the right, as batched generation needs."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    return ids, mask
