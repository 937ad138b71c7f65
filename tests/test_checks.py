"""Dataset-level checks and statistics, each on a small constructed file."""

from __future__ import annotations

import gc
import random
import re
import string

import pytest
from conftest import chat

from tunewise.data.bulk import collector_paused
from tunewise.data.check_report import check_file
from tunewise.data.checks import CheckOptions, infer_task
from tunewise.data.formats import read_examples
from tunewise.data.stats import distinct_n
from tunewise.data.textnorm import words_of
from tunewise.data.tokens import TokenCounter


def unique_chats(n: int, start: int = 0) -> list[dict]:
    words = "red green blue amber violet teal coral ivory olive plum".split()
    return [chat(f"question {words[i % 10]} {words[(i // 10) % 10]} {words[(i // 100) % 10]} number {i}",
                 f"answer about {words[i % 10]} {words[(i // 10) % 10]} topic") for i in range(start, start + n)]


def codes(report):
    return [(i.line, i.code) for i in report.issues]


def test_clean_file_has_no_issues(write, word_counter):
    report = check_file(write("ok.jsonl", unique_chats(120)), counter=word_counter)
    assert report.issues == [] and report.exit_code == 0
    assert report.task == "generate"


def test_size_thresholds(write, word_counter):
    few = check_file(write("few.jsonl", unique_chats(20)), counter=word_counter)
    assert [i.code for i in few.issues] == ["few_examples"] and few.exit_code == 0
    tiny = check_file(write("tiny.jsonl", unique_chats(3)), counter=word_counter)
    assert [i.code for i in tiny.issues] == ["too_few_examples"] and tiny.exit_code == 2


def test_duplicates_near_duplicates_and_conflicts(write, word_counter):
    rows = unique_chats(120)
    rows.append(rows[5])                                             # line 121: exact copy of line 6
    rows.append(chat(rows[7]["messages"][0]["content"].upper() + "!!", rows[7]["messages"][1]["content"]))
    rows.append(chat(rows[9]["messages"][0]["content"], "a different answer entirely"))
    report = check_file(write("d.jsonl", rows), counter=word_counter)
    assert codes(report) == [(121, "duplicate_example"), (122, "near_duplicate"), (123, "conflicting_labels")]
    assert "line 6" in report.issues[0].message and "line 10" in report.issues[2].message


def test_context_length_uses_the_counter(write):
    counter = TokenCounter(None, 30, "words")
    rows = unique_chats(120)
    rows[3] = chat("word " * 40, "short answer here")
    report = check_file(write("c.jsonl", rows), counter=counter)
    assert [(i.line, i.code) for i in report.issues] == [(4, "over_context_length")]


def test_output_length_outliers_for_generation(write, word_counter):
    rows = unique_chats(120)
    rows[0] = chat("question zero", "ok")
    rows[1] = chat("question one", "long " * 2000)
    report = check_file(write("g.jsonl", rows), counter=word_counter)
    assert codes(report) == [(1, "very_short_output"), (2, "very_long_output")]
    lenient = check_file(write("g.jsonl", rows), counter=word_counter, options=CheckOptions(short_output_tokens=1))
    assert codes(lenient) == [(2, "very_long_output")]


def test_label_checks(write, word_counter):
    rows = [{"text": f"sports story {i}", "label": "sport"} for i in range(300)]
    rows += [{"text": f"politics story {i}", "label": "politics"} for i in range(20)]
    rows += [{"text": "one weather story", "label": "weather"}]
    report = check_file(write("l.jsonl", rows), counter=word_counter)
    assert report.task == "classify"
    found = {i.code: i for i in report.issues}
    assert found["rare_label"].line == 321 and "'weather'" in found["rare_label"].message
    assert "label_imbalance" in found
    assert report.stats["labels"] == {"sport": 300, "politics": 20, "weather": 1}


def test_extraction_outputs_must_be_json_objects(write, word_counter):
    rows = [chat(f"invoice {i}", f'{{"total": {i}}}') for i in range(30)] + [chat("invoice x", "not json")]
    report = check_file(write("x.jsonl", rows), counter=word_counter)
    assert report.task == "extract"
    assert (31, "output_not_json") in codes(report) and report.exit_code == 2


def test_pii_and_secrets_are_masked_in_messages(write, word_counter):
    rows = unique_chats(120)
    rows[2] = chat("reach me at jane.roe@example.org", "noted, thanks a lot")
    rows[3] = chat("key AKIAIOSFODNN7EXAMPLE works", "please rotate that key")
    report = check_file(write("p.jsonl", rows), counter=word_counter)
    found = {i.code: i for i in report.issues}
    assert found["pii_email"].line == 3 and found["pii_email"].field == "messages[0].content"
    assert "jane.roe@example.org" not in found["pii_email"].message
    assert found["secret"].line == 4
    quiet = check_file(write("p.jsonl", rows), counter=word_counter, options=CheckOptions(scan_pii=False))
    assert not quiet.issues


def test_issue_fields_name_the_users_columns(write, word_counter):
    rows = [{"text": f"story {i}", "label": "a" if i % 2 else "b"} for i in range(120)]
    rows.append({"text": "mail me: bob.smith@example.com", "label": "a"})
    report = check_file(write("t.jsonl", rows), counter=word_counter)
    (pii,) = [i for i in report.issues if i.code == "pii_email"]
    assert pii.field == "text"


def test_statistics(write, word_counter):
    report = check_file(write("s.jsonl", unique_chats(120)), counter=word_counter)
    stats = report.stats
    assert stats["examples"] == 120
    assert stats["tokens"]["total"]["p50"] <= stats["tokens"]["total"]["p99"] <= stats["tokens"]["total"]["max"]
    assert stats["vocabulary_size"] > 10
    assert 0 < stats["diversity"]["output_distinct_2"] <= 1


def test_distinct_n_reference_values():
    assert distinct_n(["a b a b"], 1) == 0.5
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3, abs=1e-4)
    assert distinct_n([], 2) == 0.0


@pytest.mark.parametrize("outputs,shape,task", [
    (["pos", "neg"] * 20, "chat", "classify"),
    (['{"a": 1}'] * 2 + [f'{{"a": {i}}}' for i in range(30)], "chat", "extract"),
    ([f"free text number {i}" for i in range(40)], "chat", "generate"),
    (["anything"], "text_label", "classify"),
])
def test_task_inference(write, outputs, shape, task):
    rows = [chat(f"q{i}", o) for i, o in enumerate(outputs)]
    examples = read_examples(write("t.jsonl", rows)).examples
    assert infer_task(examples, shape) == task


def test_unknown_task_is_a_clear_error(write):
    with pytest.raises(ValueError, match="--task 'summarise'"):
        check_file(write("x.jsonl", unique_chats(12)), task="summarise")


def test_real_tokenizer_counts_the_chat_template(write):
    """The bundled tokenizer: total = contents + the template's own tokens (exactly, for SmolLM2)."""
    from tunewise.data.tokens import load_counter

    counter, fallback = load_counter(None)
    assert fallback is None and counter.exact and counter.context_length == 8192
    rows = [chat("What is the capital of France?", "Paris.")]
    example = read_examples(write("r.jsonl", rows)).examples[0]
    lengths = counter.lengths([example])
    rendered = counter.tokenizer.apply_chat_template([m.to_dict() for m in example.messages], tokenize=False)
    assert lengths.total[0] == len(counter.tokenizer(rendered, add_special_tokens=False)["input_ids"])
    assert lengths.output[0] == len(counter.tokenizer("Paris.", add_special_tokens=False)["input_ids"])


def test_the_ascii_shortcuts_equal_the_unicode_normaliser_on_every_ascii_character() -> None:
    """ASCII text takes a byte-table path to its near-duplicate key, also when built from the statistics' words:
    both must give exactly the keys of the full Unicode normaliser."""
    from tunewise.data.textnorm import normalise, normalise_from_words, unicode_normalise

    rng = random.Random(0)
    texts = ["".join(rng.choices([chr(c) for c in range(128)], k=rng.randint(0, 40))) for _ in range(5000)]
    texts += ["Hello,  World_x\n\tfoo--BAR", "", "   ", "a_b", "\x00\x1fZ", "don&#039;t<br />stop", "café Ünïcode"]
    expected = [unicode_normalise(t) for t in texts]
    assert [normalise(t) for t in texts] == expected
    assert [normalise_from_words(t, words_of(t)) for t in texts] == expected


@pytest.mark.parametrize("objects,task", [(54, "extract"), (53, "generate")])
def test_extraction_needs_nine_in_ten_outputs_to_be_objects(write, objects, task):
    outputs = [f'{{"a": {i}}}' for i in range(objects)] + [f"prose answer {i}" for i in range(60 - objects)]
    rows = [chat(f"q{i}", o) for i, o in enumerate(outputs)]
    examples = read_examples(write("t.jsonl", rows)).examples
    assert infer_task(examples, "chat") == task


def test_words_of_splits_like_the_word_regex():
    """ASCII text takes a translate-and-split shortcut; it must find exactly the words `\\w+` finds."""
    rng = random.Random(3)
    alphabet = string.printable + "_\x00\x1c\x1f\x7fé€"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(20_000)]
    assert [words_of(t) for t in texts] == [re.findall(r"\w+", t.lower()) for t in texts]


def test_the_collector_pause_restores_the_callers_setting():
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_one_pass_diversity_equals_distinct_n():
    from tunewise.data.stats import _distinct, _distinct_1_2

    rng = random.Random(5)
    texts = [[rng.choice("abcdefg") for _ in range(rng.randint(0, 6))] for _ in range(500)] + [[], ["a"], ["a", "a"]]
    assert _distinct_1_2(texts) == (_distinct(texts, 1), _distinct(texts, 2))
    assert _distinct_1_2([[], ["solo"]]) == (1.0, 0.0)
