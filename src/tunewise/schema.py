"""The shared vocabulary: examples, messages and data issues.

Every reader, checker, splitter and (later) arm speaks in these types. This module knows nothing about
files, formats, tokenizers or models; it holds plain frozen dataclasses and the few derived views every
stage needs (the prompt text, the reference output, the label).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn. `weight` follows the OpenAI convention: 0 excludes an assistant turn from the loss."""

    role: Role
    content: str
    weight: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.weight is not None:
            out["weight"] = self.weight
        return out


@dataclass(frozen=True, slots=True)
class Example:
    """One training or evaluation example, whatever shape it was read from.

    All input shapes (chat, prompt/completion, input/output, Alpaca, text/label) become a list of messages
    whose last assistant turn is the reference output. `line` points back into the source file so any
    later stage can name where an example came from.
    """

    id: str
    messages: tuple[Message, ...]
    line: int
    metadata: dict[str, Any] = field(default_factory=dict)
    synthetic: bool = False

    @property
    def output(self) -> str:
        """The reference answer: the last assistant turn."""
        for message in reversed(self.messages):
            if message.role == "assistant":
                return message.content
        return ""

    @property
    def prompt_messages(self) -> tuple[Message, ...]:
        """Every turn before the last assistant turn: what a model sees when asked for the output."""
        for index in range(len(self.messages) - 1, -1, -1):
            if self.messages[index].role == "assistant":
                return self.messages[:index]
        return self.messages

    @property
    def input(self) -> str:
        """The text a classical model or a near-duplicate check compares: the non-system prompt turns."""
        return "\n".join(m.content for m in self.prompt_messages if m.role != "system")

    @property
    def label(self) -> str:
        """For classification the reference output is the label."""
        return self.output.strip()

    def to_chat_record(self) -> dict[str, Any]:
        """The canonical on-disk form (OpenAI chat JSONL), used for splits and cleaned files."""
        record: dict[str, Any] = {"id": self.id, "messages": [m.to_dict() for m in self.messages]}
        if self.metadata:
            record["metadata"] = self.metadata
        if self.synthetic:
            record["synthetic"] = True
        return record


class Severity(str, Enum):
    """Errors make an example unusable (and `check` exit 2); warnings are worth a look but not fatal."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found in a data file, precise enough to fix without opening a debugger.

    `line` is 1-based (for Parquet it is the row number); None means the issue is about the whole file.
    `field` is a path into the record such as `messages[2].content`; `hint` says how to fix it.
    """

    code: str
    severity: Severity
    message: str
    hint: str
    line: int | None = None
    field: str | None = None
    column: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass(frozen=True, slots=True)
class Generation:
    """What a model backend returns for one prompt: the text plus what it cost."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cached: bool = False


@dataclass(frozen=True, slots=True)
class Prediction:
    """One arm's answer to one test example: a line of `predictions/<arm>.jsonl`.

    `raw` is what the model said before parsing; `scores` holds per-label scores (log-likelihoods or
    probabilities) when the arm has them; `error` is set, and `prediction` empty, when the call failed.
    `metadata` is the test example's own (a table's other columns: drug, condition, date ...), so a person
    reading predictions/<arm>.jsonl sees which group each answer belongs to.
    """

    id: str
    arm: str
    input: str
    reference: str
    prediction: str
    raw: str
    latency_s: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    scores: dict[str, float] | None = None
    cached: bool = False
    error: str | None = None
    metadata: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


# Written beside every exported fine-tuned model (LoRA adapter, merged or full model): the arm, its task, labels
# and prompt variant, so the model can be served exactly as it was evaluated. One name for the writer
# (train/sft.py) and every reader (arms/finetune_local.py, serve/).
ARM_MARKER = "tunewise-arm.json"
