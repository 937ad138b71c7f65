"""JSON-schema-constrained decoding for local models, through xgrammar when it is installed.

xgrammar (the `constrained` extra) compiles a JSON schema into a grammar over the model's vocabulary and
masks, at every step, the tokens that would break it, so a reply is valid JSON for the schema by
construction (unless it runs out of `max_new_tokens`). It is optional because on Linux its wheel pulls in
triton, hundreds of megabytes that CPU users never run. Without it, replies are generated freely and then
repaired: the first decodable {...} object in the text is kept. Of the maintained libraries tried with
transformers 5 offline, xgrammar 0.2.8 worked; lm-format-enforcer 0.11.3 does not import (it needs
`transformers.tokenization_utils`, removed in 5.0).

This module knows tokenizers and logits processors, not chat messages, tasks or scoring.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

from tunewise.tasks.jsontext import json_objects

LogitsProcessors = Callable[[], list[Any]]


def backend() -> str:
    """What `generate_json` will do here, for run manifests and cache keys: "xgrammar <version>" or "repair"."""
    try:
        import xgrammar  # noqa: F401
    except ImportError:
        return "repair"
    return f"xgrammar {metadata.version('xgrammar')}"


class JsonGrammars:
    """Compiles schemas for one tokenizer; the tokenizer's vocabulary is indexed once, grammars per schema."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: Sequence[int]) -> None:
        import xgrammar

        self._xgr = xgrammar
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_ids))
        self._compiler = xgrammar.GrammarCompiler(info)

    def processors(self, schema: dict[str, Any]) -> LogitsProcessors:
        """A factory of fresh logits processors (xgrammar's hold per-row state, so one per `generate` call).

        Whitespace is fixed (compact JSON) rather than free: a weak model may otherwise emit spaces and
        newlines until it runs out of tokens.
        """
        from xgrammar.contrib.hf import LogitsProcessor

        compiled = self._compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
        return lambda: [LogitsProcessor(compiled)]


def repair(text: str, schema: dict[str, Any]) -> str:
    """The first decodable JSON object in `text` that has the schema's required keys, re-serialised;
    otherwise `text` unchanged, so the task's parser sees what the model said and can score it as wrong."""
    required = set(schema.get("required", []))
    for value in json_objects(text):
        if required <= value.keys():
            return json.dumps(value, ensure_ascii=False)
    return text
