"""Reading a `multipart/form-data` body (what `openai.files.create` sends) with the standard library's MIME parser.

Starlette's own form parser needs the optional python-multipart package; the stdlib `email` parser reads the
same format, so uploads work with no extra dependency. The body is read whole, which is why the caller caps
its size first (`max_upload_bytes`). Bytes come back exactly as sent: the parser decodes with surrogate escapes
and `get_payload(decode=True)` restores them, so CRLF and non-UTF-8 lines reach the data checks untouched.
Knows nothing about files on disk or fine-tuning.
"""

from __future__ import annotations

import email.policy
from dataclasses import dataclass, field
from email.parser import BytesParser


class FormError(ValueError):
    """The body is not a readable multipart form; the message says what is wrong."""


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # form name -> (filename, content)


def parse_form(content_type: str, body: bytes) -> Form:
    """The text fields and uploaded files of a multipart/form-data body."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise FormError(f"expected a multipart/form-data body (a file upload), got content type {content_type!r}")
    if "boundary=" not in content_type:
        raise FormError("the multipart content type names no boundary")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts = message.get_payload()
    if not message.is_multipart() or not isinstance(parts, list) or not parts:
        raise FormError("the multipart body holds no parts (is the boundary right?)")
    form = Form()
    for part in parts:
        name = part.get_param("name", header="content-disposition")
        if not name:
            raise FormError("a form part has no name in its Content-Disposition header")
        content = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            form.files[str(name)] = (str(filename), content)
        else:
            try:
                form.fields[str(name)] = content.decode("utf-8")
            except UnicodeDecodeError:
                raise FormError(f"form field {name!r} is not UTF-8 text") from None
    return form
