"""Recognise the shape of raw records and turn each into an `Example`, listing every structural problem.

Shapes: OpenAI chat `messages` (system/user/assistant, optional `weight`), `prompt`/`completion`,
Alpaca `instruction`/`input`/`output`, `input`/`output`, and `text`/`label` for classification, or any
columns named by a `ColumnMapping`. A record with several problems reports all of them. This module
knows nothing about files, bytes or tokenizers.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring as _json_string
from typing import Any

from tunewise.data.codes import issue
from tunewise.data.records import RawRecord
from tunewise.schema import ROLES, Example, Issue, Message

SHAPES: dict[str, tuple[str, ...]] = {
    "chat": ("messages",),
    "prompt_completion": ("prompt", "completion"),
    "alpaca": ("instruction", "output"),
    "input_output": ("input", "output"),
    "text_label": ("text", "label"),
}
MESSAGE_KEYS = frozenset({"role", "content", "weight", "name"})
_SHAPE_LIST = "messages | prompt+completion | instruction+input+output | input+output | text+label"


class MappingError(ValueError):
    """A --map argument that cannot be understood."""


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """Which record fields hold the input and output when the data uses its own column names."""

    input: str
    output: str
    system: str | None = None
    instruction: str | None = None
    id: str | None = None

    @classmethod
    def parse(cls, items: Sequence[str]) -> ColumnMapping:
        """From CLI pairs like ["input=body", "output=category"]."""
        fields: dict[str, str] = {}
        allowed = ("input", "output", "system", "instruction", "id")
        for item in items:
            key, sep, column = item.partition("=")
            key, column = key.strip(), column.strip()
            if not sep or not column or key not in allowed:
                raise MappingError(
                    f"--map {item!r}: expected ROLE=COLUMN with ROLE one of {', '.join(allowed)} (e.g. --map input=body)"
                )
            fields[key] = column
        missing = [k for k in ("input", "output") if k not in fields]
        if missing:
            raise MappingError(f"--map needs {' and '.join(missing)} too (e.g. --map input=body --map output=category)")
        return cls(**fields)

    def used(self) -> set[str]:
        return {c for c in (self.input, self.output, self.system, self.instruction, self.id) if c}


def detect_shape(records: Sequence[RawRecord], sample: int = 1000) -> str | None:
    """The shape most records match (Alpaca wins over input/output when `instruction` is present)."""
    votes: Counter[str] = Counter()
    for record in records[:sample]:
        if isinstance(record.value, dict):
            shape = _shape_of(record.value)
            if shape:
                votes[shape] += 1
    return votes.most_common(1)[0][0] if votes else None


def _shape_of(value: dict[str, Any]) -> str | None:
    for shape, keys in SHAPES.items():
        if all(k in value for k in keys):
            return shape
    return None


_ID_AND_MESSAGES = frozenset({"id", "messages"})


def to_example(record: RawRecord, shape: str | None, mapping: ColumnMapping | None) -> tuple[Example | None, list[Issue]]:
    """Convert one raw record; returns the example (None when any error) and every issue found."""
    line, value = record.line, record.value
    if not isinstance(value, dict):
        kind = "array" if isinstance(value, list) else type(value).__name__
        return None, [issue("data_type", f"record is a JSON {kind}, not an object", line=line)]
    if mapping is not None:
        messages, problems, used = _from_mapping(value, line, mapping)
    elif shape in (None, "chat"):
        messages, problems = _from_chat(value, line)
        used = {"messages"}
    else:
        messages, problems, used = _from_pair(value, line, shape)
    plain_chat = used == {"messages"} and value.keys() <= _ID_AND_MESSAGES  # nothing else: no metadata to gather
    metadata = {} if plain_chat else _metadata(value, used | {"id", "metadata"})
    problems += _surrogates(messages, metadata, line)
    if problems:
        return None, problems
    return Example(id=_id_of(value, messages, mapping), messages=tuple(messages), line=line, metadata=metadata), []


def _from_chat(value: dict[str, Any], line: int) -> tuple[list[Message], list[Issue]]:
    raw = value.get("messages")
    if not isinstance(raw, list) or not raw:
        what = "missing" if "messages" not in value else ("empty" if raw == [] else f"a {type(raw).__name__}, not a list")
        return [], [issue("missing_messages_list", f"`messages` is {what}", line=line, field="messages",
                          hint=f"Add a `messages` list, or use another shape: {_SHAPE_LIST}.")]
    plain = [Message(item["role"], content) for item in raw if type(item) is dict and len(item) == 2
             and item.get("role") in ROLES and type(content := item.get("content")) is str and content
             and content.isascii() and not content.isspace()]
    if len(plain) == len(raw) and any(m.role == "assistant" for m in plain):
        return plain, []  # every message is plain (see `_message`): nothing to report, no call per message
    messages: list[Message] = []
    problems: list[Issue] = []
    for index, item in enumerate(raw):
        message, found = _message(item, index, line)
        problems.extend(found)
        if message:
            messages.append(message)
    if not problems and not any(m.role == "assistant" for m in messages):
        problems.append(issue("example_missing_assistant_message", "no message has role `assistant`", line=line, field="messages"))
    return messages, problems


def _message(item: Any, index: int, line: int) -> tuple[Message | None, list[Issue]]:
    # The common case first: {"role": ..., "content": "ASCII text"} can have none of the problems below (an
    # invisible character is not ASCII), and checking it costs a fifth of the full path on 100k lines.
    if type(item) is dict and len(item) == 2 and item.get("role") in ROLES:
        content = item.get("content")
        if type(content) is str and content.isascii() and not content.isspace() and content:
            return Message(role=item["role"], content=content), []
    where = f"messages[{index}]"
    if not isinstance(item, dict):
        return None, [issue("message_not_object", f"{where} is a {type(item).__name__}", line=line, field=where)]
    problems = [issue("message_missing_key", f"{where} has no `{key}`", line=line, field=f"{where}.{key}")
                for key in ("role", "content") if key not in item]
    problems += [issue("message_unrecognized_key", f"{where} has key `{key}`", line=line, field=f"{where}.{key}")
                 for key in item if key not in MESSAGE_KEYS]
    role, content, weight = item.get("role"), item.get("content"), item.get("weight")
    if isinstance(content, list) and text_parts(content) is not None:
        content = text_parts(content)
    if "role" in item and role not in ROLES:
        problems.append(issue("unrecognized_role", f"{where}.role is {role!r}", line=line, field=f"{where}.role"))
    if "content" in item:
        problems += _text_problems(content, line, f"{where}.content")
    if weight is not None and (weight not in (0, 1) or isinstance(weight, bool) or role != "assistant"):
        problems.append(issue("invalid_weight", f"{where}.weight is {weight!r} on a {role!r} message", line=line,
                              field=f"{where}.weight"))
    if problems:
        return None, problems
    return Message(role=role, content=content, weight=weight), []


# Characters that render as nothing: text made only of these is as empty as "" (and `--fix` strips them).
INVISIBLE = dict.fromkeys(map(ord, "\ufeff\u200b\u200c\u200d\u2060"), None)


def text_parts(value: Any) -> str | None:
    """OpenAI's content-parts form, [{"type": "text", "text": ...}, ...], joined; None if it is not text-only."""
    if isinstance(value, list) and value and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in value
    ):
        return "".join(p["text"] for p in value)
    return None


def _text_problems(value: Any, line: int, field: str) -> list[Issue]:
    if value is None or (isinstance(value, str) and not value.translate(INVISIBLE).strip()):
        return [issue("missing_content", f"`{field}` is empty", line=line, field=field)]
    if isinstance(value, list) and text_parts(value) is None:
        return [issue("invalid_type", f"`{field}` is a list of content parts that are not all text", line=line,
                      field=field, hint="Only text parts ({\"type\": \"text\", \"text\": ...}) can be trained on.")]
    if not isinstance(value, (str, list)):
        return [issue("invalid_type", f"`{field}` is a {type(value).__name__}, expected a string", line=line, field=field)]
    return []


def _field_text(value: dict[str, Any], key: str, line: int, *, label: bool = False) -> tuple[str, list[Issue]]:
    if key not in value:
        return "", [issue("missing_field", f"no `{key}` field", line=line, field=key)]
    raw = value[key]
    if label and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raw = str(raw)  # numeric class ids are common in CSV/Parquet
    problems = _text_problems(raw, line, key)
    if not problems and not isinstance(raw, str):
        problems = [issue("invalid_type", f"`{key}` is a {type(raw).__name__}, expected a string", line=line, field=key)]
    return ("" if problems else raw), problems


def _from_pair(value: dict[str, Any], line: int, shape: str) -> tuple[list[Message], list[Issue], set[str]]:
    keys = {"prompt_completion": ("prompt", "completion"), "input_output": ("input", "output"),
            "text_label": ("text", "label"), "alpaca": ("instruction", "output")}[shape]
    prompt, problems = _field_text(value, keys[0], line)
    output, more = _field_text(value, keys[1], line, label=shape == "text_label")
    problems += more
    used = set(keys)
    if shape == "alpaca":
        used.add("input")
        extra = value.get("input")
        if extra not in (None, "") and not isinstance(extra, str):
            problems.append(issue("invalid_type", "`input` is not a string", line=line, field="input"))
        elif extra and extra.strip():
            prompt = f"{prompt}\n\n{extra}"
    return [Message("user", prompt), Message("assistant", output)], problems, used


def _from_mapping(value: dict[str, Any], line: int, mapping: ColumnMapping) -> tuple[list[Message], list[Issue], set[str]]:
    prompt, problems = _field_text(value, mapping.input, line)
    output, more = _field_text(value, mapping.output, line, label=True)
    problems += more
    messages: list[Message] = []
    for column, role in ((mapping.system, "system"), (mapping.instruction, "instruction")):
        if column:
            text, found = _field_text(value, column, line)
            problems += found
            if role == "system":
                messages.append(Message("system", text))
            else:
                prompt = f"{text}\n\n{prompt}"
    messages += [Message("user", prompt), Message("assistant", output)]
    return messages, problems, mapping.used()


def _metadata(value: dict[str, Any], used: set[str]) -> dict[str, Any]:
    extra = value.get("metadata")
    meta: dict[str, Any] = dict(extra) if isinstance(extra, dict) else {}
    meta.update({k: v for k, v in value.items() if k not in used})
    return meta


_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogates(messages: list[Message], metadata: dict[str, Any], line: int) -> list[Issue]:
    """A JSON escape such as \\ud800 alone decodes to half a UTF-16 pair: no character, and no UTF-8 for it, so
    every later write of the text would fail. One error per field that holds one."""
    if all(m.content.isascii() for m in messages) and not metadata:  # the common case: no surrogate possible
        return []
    fields = [(f"messages[{i}].content", m.content) for i, m in enumerate(messages)]
    fields += [(f"metadata.{key}", value) for key, value in metadata.items() if isinstance(value, str)]
    return [issue("invalid_utf8", f"`{field}` holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff "
                  "escape), which is not a character", line=line, field=field,
                  hint="Remove or pair the escape; `--fix` drops the line.")
            for field, text in fields if isinstance(text, str) and _SURROGATE.search(text)]


_ROLE_JSON = {role: _json_string(role) for role in ROLES}


def _id_of(value: dict[str, Any], messages: list[Message], mapping: ColumnMapping | None) -> str:
    """The record's own id when it has one, else a content hash (stable across re-orderings)."""
    raw = value.get(mapping.id if mapping and mapping.id else "id")
    if isinstance(raw, (str, int)) and not isinstance(raw, bool) and str(raw).strip():
        return str(raw)
    if all(m.weight is None for m in messages):  # json.dumps's exact output, built without its per-call set-up
        canonical = "[" + ", ".join([f'{{"content": {_json_string(m.content)}, "role": {_ROLE_JSON[m.role]}}}'
                                     for m in messages]) + "]"
    else:
        canonical = json.dumps([m.to_dict() for m in messages], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]
