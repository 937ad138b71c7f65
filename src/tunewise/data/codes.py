"""The catalogue of data issue codes: one place that says how bad each problem is and how to fix it.

Readers and checkers create issues only through `issue()`, so every code has a severity and a fix hint,
and the docs, the Rich table and `--json` agree. Knows nothing about files or tokenizers.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunewise.schema import Issue, Severity

E, W = Severity.ERROR, Severity.WARNING


@dataclass(frozen=True, slots=True)
class Code:
    severity: Severity
    title: str
    hint: str


CODES: dict[str, Code] = {
    # --- errors: the line cannot become an example --------------------------------------------------
    "empty_file": Code(E, "file is empty", "Add examples: one JSON object per line."),
    "unknown_format": Code(E, "file format not recognised", "Use .jsonl, .json, .csv or .parquet, or pass --format."),
    "unreadable_file": Code(E, "file cannot be read", "Check the path and permissions."),
    "invalid_parquet": Code(E, "not a readable Parquet file", "Re-export the file with pandas/pyarrow `to_parquet`."),
    "invalid_csv": Code(E, "CSV row cannot be parsed", "Quote fields containing commas, quotes or newlines; keep one value per column."),
    "unbalanced_quote": Code(E, "a quote that is never closed merged many rows into one field", "Close the quote, or write a quote inside a field as two (\"\"); `--fix` drops the merged lines and says how many."),
    "invalid_utf8": Code(E, "bytes are not valid UTF-8", "Re-save the file as UTF-8, or pass --encoding with the file's encoding (for JSONL, `--fix` re-decodes such lines as Windows-1252)."),
    "invalid_xlsx": Code(E, "not a readable Excel workbook", "Re-save the workbook as .xlsx from Excel or LibreOffice, or export the sheet as CSV."),
    "columns_not_inferred": Code(E, "cannot tell which columns are the input and the answer", "Name them: --map input=COLUMN --map output=COLUMN (in the experiment YAML: data: {mapping: {input: COLUMN, output: COLUMN}})."),
    "unknown_column": Code(E, "the mapping names a column the file does not have", "Map to one of the file's columns (listed in the message)."),
    "invalid_json": Code(E, "line is not valid JSON", "Fix the JSON syntax at the given column (trailing commas and single quotes are not JSON)."),
    "nesting_too_deep": Code(E, "JSON nested too deeply to parse", "Flatten the record; examples need only a few levels."),
    "line_too_long": Code(E, "line or field exceeds the size limit", "Split or shorten the example, or raise --max-line-bytes."),
    "data_type": Code(E, "record is not a JSON object", "Each line must be an object like {\"messages\": [...]}."),
    "missing_messages_list": Code(E, "no `messages` list", "Add \"messages\": [{\"role\": \"user\", ...}, {\"role\": \"assistant\", ...}]."),
    "missing_field": Code(E, "required field missing", "Add the field, or declare a column mapping with --map."),
    "invalid_type": Code(E, "field has the wrong type", "Make the field a string."),
    "message_not_object": Code(E, "message is not an object", "Each message must be {\"role\": ..., \"content\": ...}."),
    "message_missing_key": Code(E, "message lacks a required key", "Every message needs `role` and `content`."),
    "message_unrecognized_key": Code(E, "message has an unrecognised key", "Allowed keys: role, content, weight, name. Move other data to a top-level field."),
    "unrecognized_role": Code(E, "message role not recognised", "Use one of: system, user, assistant."),
    "missing_content": Code(E, "message or field has no text", "Give the message non-empty text content, or drop it."),
    "invalid_weight": Code(E, "message weight is not 0 or 1", "Set weight to 0 (not trained) or 1 (trained), on assistant messages only."),
    "example_missing_assistant_message": Code(E, "no assistant message to learn from", "Add an assistant message with the desired answer."),
    "output_not_json": Code(E, "extraction output is not a JSON object", "For --task extract, the answer must be a JSON object."),
    "too_few_examples": Code(E, "too few valid examples to train or evaluate", "Provide at least 10 valid examples (100+ recommended)."),
    # --- warnings: usable, but worth a look --------------------------------------------------------
    "few_examples": Code(W, "few examples", "Fine-tuning usually needs 100+ examples; prompting may be enough."),
    "blank_line": Code(W, "blank line skipped", "Remove empty lines (`--fix` does)."),
    "utf8_bom": Code(W, "UTF-8 byte-order mark", "Save without BOM (`--fix` strips it)."),
    "crlf_line_ending": Code(W, "Windows line ending (CRLF)", "Use \\n line endings (`--fix` normalises them)."),
    "legacy_encoding": Code(W, "not UTF-8: read in another encoding", "Check a few of these lines read right (else pass --encoding); `--fix` writes the file as UTF-8."),
    "html_entities": Code(W, "HTML entities in text (&#039;, &amp; ...)", "Decode them: `--fix OUT --unescape-html` writes the characters they stand for."),
    "html_markup": Code(W, "HTML markup in text (<br />, <p> ...)", "Strip the tags before training: `--fix OUT --unescape-html` turns <br /> into line breaks and drops other tags."),
    "control_characters": Code(W, "control characters in text", "Remove them (`--fix` does); they are invisible and split tokens oddly."),
    "mojibake": Code(W, "text decoded with the wrong codec (mojibake such as Ã© or â€™)", "Re-export the data as UTF-8, or pass the right --encoding; `--fix` repairs the common cases (ftfy)."),
    "metadata_junk": Code(W, "placeholder or odd values in a metadata column", "Blank them or fix them in the source: in a column of numbers the classical arm takes them as missing (the training median), but a slice report or a categorical feature treats them as a real value."),
    "unparseable_date": Code(W, "a date that cannot be parsed", "Write dates as YYYY-MM-DD (or any one unambiguous format); rows without a date cannot be ordered in time."),
    "format_mismatch": Code(W, "content does not match the file extension", "Rename the file to match its content (.jsonl for one object per line)."),
    "duplicate_example": Code(W, "exact duplicate of an earlier example", "Drop the repeat (`--fix` does); duplicates inflate scores and leak across splits."),
    "near_duplicate": Code(W, "near duplicate of an earlier example (same words)", "Drop or vary it; `split` keeps near duplicates in one split."),
    "conflicting_labels": Code(W, "same input as an earlier example, different output", "Decide the right answer; conflicting targets cap achievable accuracy."),
    "over_context_length": Code(W, "longer than the model's context window", "Shorten the example or choose a model with a longer context; it will be truncated."),
    "very_short_output": Code(W, "very short output", "Check the answer is complete; very short targets teach terse answers."),
    "very_long_output": Code(W, "unusually long output", "Check for concatenated or runaway answers."),
    "rare_label": Code(W, "label has very few examples", "Add examples of this label or merge it; metrics on it will be noisy."),
    "label_imbalance": Code(W, "labels are strongly imbalanced", "Add examples of rare labels, or report macro-F1 rather than accuracy."),
    "tokenizer_unavailable": Code(W, "tokenizer could not be loaded; lengths are word counts", "Pass --model with a local model folder."),
    "pii_email": Code(W, "email address", "Redact personal data before training (`--fix --redact-pii`)."),
    "pii_phone": Code(W, "phone number", "Redact personal data before training (`--fix --redact-pii`)."),
    "pii_credit_card": Code(W, "payment card number (Luhn-valid)", "Remove card numbers (`--fix --redact-pii`)."),
    "pii_iban": Code(W, "IBAN (checksum-valid)", "Remove bank account numbers (`--fix --redact-pii`)."),
    "pii_ip_address": Code(W, "IP address", "Redact addresses if they identify people (`--fix --redact-pii`)."),
    "pii_ssn": Code(W, "US social security number pattern", "Remove it (`--fix --redact-pii`)."),
    "secret": Code(W, "credential or key", "Remove and rotate the secret; never train on credentials (`--fix --redact-pii`)."),
}


# Problems that leave nothing to check or run: dataset-level checks would only add "0 valid examples" to them,
# and `tunewise run` says them in their own words instead of counting lines with errors.
FILE_STOPPERS = frozenset({"empty_file", "columns_not_inferred", "unknown_column"})


def issue(
    code: str,
    message: str,
    *,
    line: int | None = None,
    field: str | None = None,
    column: int | None = None,
    hint: str | None = None,
) -> Issue:
    """Build an Issue from the catalogue; `hint` overrides the catalogue's when a sharper one is known."""
    entry = CODES[code]
    return Issue(
        code=code,
        severity=entry.severity,
        message=message,
        hint=hint or entry.hint,
        line=line,
        field=field,
        column=column,
    )
