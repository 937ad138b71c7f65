"""Chat assembly shared by every task: system instructions, exemplar turns, then the query.

Exemplars are rendered as earlier user/assistant turns (the format instruction-tuned models were trained
on), so the same function serves zero-shot (no exemplars), few-shot and retrieval-augmented prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tunewise.schema import Example


def chat_prompt(system: str, example: Example, exemplars: Sequence[Example],
                render_input: Callable[[Example], str], render_output: Callable[[Example], str],
                render_exemplar: Callable[[Example], str] | None = None) -> list[dict[str, str]]:
    """`render_exemplar` renders an exemplar's input (default: as the query's), e.g. cut shorter."""
    messages = [{"role": "system", "content": system}]
    for shot in exemplars:
        messages += [{"role": "user", "content": (render_exemplar or render_input)(shot)},
                     {"role": "assistant", "content": render_output(shot)}]
    messages.append({"role": "user", "content": render_input(example)})
    return messages


def shorten(text: str, max_words: int) -> str:
    """Cut to `max_words` words, marking the cut, so one long input cannot crowd out the exemplars."""
    words = text.split()
    return text.strip() if len(words) <= max_words else " ".join(words[:max_words]) + " …"
