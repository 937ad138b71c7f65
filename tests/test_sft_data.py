"""SFT data: the loss mask token by token, truncation, length-grouped batching and padding."""

from __future__ import annotations

import random

import pytest
import torch

from tunewise.schema import Example, Message
from tunewise.train.sft_data import (
    IGNORE_INDEX,
    LengthGroupedBatches,
    TemplateError,
    TokenizedExample,
    collate,
    length_grouped_batches,
    padding_efficiency,
    tokenize_chat,
    tokenize_examples,
)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from tunewise.assets import bundled_tokenizer_path

    return AutoTokenizer.from_pretrained(bundled_tokenizer_path())


def example(*turns: tuple[str, str] | tuple[str, str, int], id: str = "ex") -> Example:
    return Example(id=id, messages=tuple(Message(*turn) for turn in turns), line=1)  # type: ignore[arg-type]


def trained_spans(item: TokenizedExample) -> list[list[int]]:
    """Maximal runs of trained positions, as lists of positions."""
    spans: list[list[int]] = []
    for position, label in enumerate(item.labels):
        if label == IGNORE_INDEX:
            continue
        if spans and spans[-1][-1] == position - 1:
            spans[-1].append(position)
        else:
            spans.append([position])
    return spans


def assert_mask(item: TokenizedExample, tokenizer, expected: list[str]) -> None:
    """Token by token: trained labels equal their input ids, and the trained runs decode to `expected`."""
    assert len(item.labels) == len(item.input_ids)
    for label, token in zip(item.labels, item.input_ids):
        assert label in (IGNORE_INDEX, token)
    decoded = [tokenizer.decode([item.input_ids[p] for p in span]) for span in trained_spans(item)]
    assert decoded == expected


def chat_dicts(ex: Example) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in ex.messages]


def test_mask_system_user_assistant(tokenizer) -> None:
    ex = example(("system", "Answer briefly."), ("user", "Capital of France?"), ("assistant", "Paris."))
    item = tokenize_chat(ex, tokenizer, max_length=512)
    assert item is not None and not item.truncated
    assert item.input_ids == list(tokenizer.apply_chat_template(chat_dicts(ex), tokenize=True, return_dict=False))
    assert_mask(item, tokenizer, ["Paris.<|im_end|>"])
    # Everything else, header included, is untrained; the separator after <|im_end|> too.
    trained = [p for p, label in enumerate(item.labels) if label != IGNORE_INDEX]
    header = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
    assert item.input_ids[trained[0] - len(header):trained[0]] == header
    assert trained[-1] == len(item.input_ids) - 2 and tokenizer.decode(item.input_ids[-1:]) == "\n"


def test_mask_multi_turn_with_weight_zero(tokenizer) -> None:
    ex = example(("system", "You are terse."), ("user", "Capital of Spain?"), ("assistant", "Lisbon.", 0),
                 ("user", "Wrong. Capital of France?"), ("assistant", "Paris."),
                 ("user", "And Italy?"), ("assistant", "Rome.", 1))
    item = tokenize_chat(ex, tokenizer, max_length=512)
    assert item is not None
    assert item.input_ids == list(tokenizer.apply_chat_template(chat_dicts(ex), tokenize=True, return_dict=False))
    assert_mask(item, tokenizer, ["Paris.<|im_end|>", "Rome.<|im_end|>"])
    assert "Lisbon." in tokenizer.decode(item.input_ids)  # weight 0 stays in the context, untrained


def test_default_system_prompt_is_rendered_but_not_trained(tokenizer) -> None:
    ex = example(("user", "Hi"), ("assistant", "Hello!"))
    item = tokenize_chat(ex, tokenizer, max_length=512)
    assert item is not None
    assert "You are a helpful AI assistant named SmolLM" in tokenizer.decode(item.input_ids)
    assert_mask(item, tokenizer, ["Hello!<|im_end|>"])


def test_rendering_matches_inference_prompt(tokenizer) -> None:
    ex = example(("user", "Capital of France?"), ("assistant", "Paris."))
    item = tokenize_chat(ex, tokenizer, max_length=512)
    prompt = list(tokenizer.apply_chat_template(chat_dicts(ex)[:1], add_generation_prompt=True, tokenize=True,
                                                return_dict=False))
    assert item is not None and item.input_ids[:len(prompt)] == prompt
    assert item.labels[:len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert item.labels[len(prompt)] != IGNORE_INDEX


def test_truncation_keeps_start_and_drops_untrainable(tokenizer) -> None:
    ex = example(("user", "Tell me a story."), ("assistant", "Once upon a time there was a small tokenizer."))
    full = tokenize_chat(ex, tokenizer, max_length=512)
    assert full is not None
    prompt_len = full.labels.index(next(label for label in full.labels if label != IGNORE_INDEX))
    cut = tokenize_chat(ex, tokenizer, max_length=prompt_len + 3)
    assert cut is not None and cut.truncated and len(cut) == prompt_len + 3
    assert cut.input_ids == full.input_ids[:prompt_len + 3] and cut.labels == full.labels[:prompt_len + 3]
    assert cut.trained_tokens == 3
    assert tokenize_chat(ex, tokenizer, max_length=prompt_len) is None
    kept, dropped, truncated = tokenize_examples([ex, example(("user", "x"), ("assistant", "y"), id="short")],
                                                 tokenizer, max_length=prompt_len)
    assert dropped == ["ex"] and len(kept) == 1 and truncated == 0


def test_no_trained_turn_is_a_data_error(tokenizer) -> None:
    with pytest.raises(ValueError, match="'lonely' .*line 1.* no assistant turn"):
        tokenize_chat(example(("user", "Hi"), ("assistant", "Hey", 0), id="lonely"), tokenizer, 64)


def test_template_that_rewrites_past_turns_is_refused(tokenizer) -> None:
    # Like reasoning templates that drop past assistant turns' content: rendering is not prefix-stable.
    template = ("{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}<|im_start|>assistant\n"
                "<|im_end|>\n{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}"
                "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    ex = example(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"))
    original = tokenizer.chat_template
    tokenizer.chat_template = template
    try:
        with pytest.raises(TemplateError, match="not prefix-stable"):
            tokenize_chat(ex, tokenizer, 64)
    finally:
        tokenizer.chat_template = original


# ---------------------------------------------------------------------------------------------- batching


def skewed_lengths(n: int = 2000) -> list[int]:
    rng = random.Random(7)
    return [max(1, min(2048, int(rng.lognormvariate(4.5, 0.9)))) for _ in range(n)]


def test_batches_cover_each_index_once_deterministically() -> None:
    lengths = skewed_lengths(1003)
    batches = length_grouped_batches(lengths, batch_size=8, seed=3, epoch=0)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(1003))
    assert sorted(len(batch) for batch in batches)[1:] == [8] * (len(batches) - 1)  # one short batch at most
    assert batches == length_grouped_batches(lengths, batch_size=8, seed=3, epoch=0)
    assert batches != length_grouped_batches(lengths, batch_size=8, seed=3, epoch=1)
    assert batches != length_grouped_batches(lengths, batch_size=8, seed=4, epoch=0)
    assert max(lengths[i] for i in batches[0]) == max(lengths)  # the largest batch comes first
    assert length_grouped_batches([], batch_size=4, seed=0, epoch=0) == []


def test_sampler_follows_epochs() -> None:
    lengths = skewed_lengths(100)
    sampler = LengthGroupedBatches(lengths, batch_size=16, seed=1)
    assert len(sampler) == 7 and list(sampler) == length_grouped_batches(lengths, 16, 1, 0)
    sampler.set_epoch(2)
    assert list(sampler) == length_grouped_batches(lengths, 16, 1, 2)


@pytest.mark.parametrize(("n", "batch_size", "processes"), [(33, 4, 2), (30, 4, 2), (10, 4, 3), (1, 4, 2), (7, 1, 3),
                                                           (1003, 8, 3), (16, 4, 1)])
def test_sharded_by_accelerate_every_example_is_trained_once(n: int, batch_size: int, processes: int) -> None:
    """What each DDP process gets from accelerate's own sharding of our sampler: every example exactly once per
    epoch (no repeats, none skipped, even around a short batch), the same number of batches on every
    process, and a masked copy (index >= n) only where a process would otherwise have nothing."""
    from accelerate.data_loader import BatchSamplerShard

    sampler = LengthGroupedBatches(skewed_lengths(n), batch_size=batch_size, seed=5, processes=processes)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        shards = [list(BatchSamplerShard(sampler, processes, rank, split_batches=False, even_batches=True))
                  for rank in range(processes)]
        assert {len(shard) for shard in shards} == {len(sampler) // processes}
        assert all(len(BatchSamplerShard(sampler, processes, rank)) == len(shards[rank]) for rank in range(processes))
        trained = sorted(i for shard in shards for batch in shard for i in batch if i < n)
        assert trained == list(range(n))
        masked = [batch for shard in shards for batch in shard if all(i >= n for i in batch)]
        assert len(masked) == max(0, processes - sum(len(b) for b in sampler.batches()[-processes:] if b[0] < n))
        assert all(batch for shard in shards for batch in shard)
        # each optimizer step (one batch per process) holds what one process accumulating `processes` batches
        # of the plain order holds, the last, redistributed round included
        plain = length_grouped_batches(skewed_lengths(n), batch_size, 5, epoch)
        for step in range(len(sampler) // processes):
            ours = sorted(i for shard in shards for i in shard[step] if i < n)
            assert ours == sorted(i for batch in plain[step * processes:(step + 1) * processes] for i in batch)


def test_grouped_batches_waste_less_padding_than_random() -> None:
    lengths = skewed_lengths()
    grouped = padding_efficiency(lengths, length_grouped_batches(lengths, batch_size=16, seed=0, epoch=0))
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    plain = padding_efficiency(lengths, [order[i:i + 16] for i in range(0, len(order), 16)])
    assert grouped > 0.75 and grouped > 2 * plain  # about 0.85 vs 0.27 on this long tail
    assert padding_efficiency([5, 5], [[0, 1]]) == 1.0


def test_collate_pads_right() -> None:
    rows = [TokenizedExample([5, 6, 7], [IGNORE_INDEX, 6, 7], False), TokenizedExample([8], [8], True)]
    batch = collate(rows, pad_id=7)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 7, 7]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]  # pad id 7 is also a real token
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert all(t.dtype == torch.long for t in batch.values())
    assert collate(rows, pad_id=0, pad_to_multiple_of=4)["input_ids"].shape == (2, 4)
