"""HTTP/1.1 requests that fail before the app sees them still get OpenAI's error envelope.

uvicorn answers a request its parser rejects (a Content-Length that is not a number, two that disagree, a
malformed header or request line) with a plain-text 400 "Invalid HTTP request received." and never calls the
app. `EnvelopeH11Protocol` is uvicorn's h11 protocol with only that answer changed: the same 400 and closed
connection, with the JSON envelope naming the header when h11 says which one is wrong. The server always uses
this protocol (not httptools, even where it is installed), so every client sees the same answers.
Knows nothing about the app, routes or models.
"""

from __future__ import annotations

import json
import sys

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from tunewise.serve.errors import APIError, envelope

_HEADERS = ("Content-Length", "Transfer-Encoding", "Host")


def protocol_error(reason: str) -> APIError:
    """The envelope for a request h11 refused for `reason` (h11's own words, e.g. "bad Content-Length")."""
    param = next((name for name in _HEADERS if name.lower() in reason.lower()), None)
    return APIError(400, f"the request is not valid HTTP/1.1 ({reason or 'unreadable'}). Fix: send well-formed "
                         "headers" + (f"; {param} must be one whole number of bytes matching the body"
                                      if param == "Content-Length" else ""),
                    param=param, code="invalid_request")


class EnvelopeH11Protocol(H11Protocol):
    """uvicorn's h11 protocol whose parser-level 400 carries the JSON envelope instead of plain text."""

    def send_400_response(self, msg: str) -> None:
        # called from uvicorn's `except h11.RemoteProtocolError` block, so the error is the one being handled
        error = sys.exc_info()[1]
        reason = str(error) if isinstance(error, h11.RemoteProtocolError) else ""
        body = json.dumps(envelope(protocol_error(reason))).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        try:
            output = self.conn.send(h11.Response(status_code=400, headers=headers, reason=b"Bad Request"))
            output += self.conn.send(h11.Data(data=body)) + self.conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:  # h11 is past the point of answering on this connection
            output = (b"HTTP/1.1 400 Bad Request\r\n" + b"".join(name + b": " + value + b"\r\n"
                                                                  for name, value in headers) + b"\r\n" + body)
        self.transport.write(output)
        self.transport.close()
