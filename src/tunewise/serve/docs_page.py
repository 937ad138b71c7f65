"""/docs: the OpenAPI schema as one self-contained HTML page (no scripts, no CDN), so it reads offline.

FastAPI's own /docs loads Swagger UI from a CDN, which is blank on a machine without internet. This page lists
every operation with its summary, description, parameters, request body and responses, and links to
/openapi.json for tools. Knows nothing about how the schema is built.
"""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = ("body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
          "h2{margin-top:2rem;border-bottom:1px solid #ddd}code,.path{font-family:ui-monospace,monospace}"
          ".method{display:inline-block;min-width:4.5rem;font-weight:700}.op{margin:1.2rem 0}"
          "dl{margin:.3rem 0 0 1.5rem}dt{font-weight:600}")


def _reference(schema: dict[str, Any]) -> str:
    """A schema's name (its $ref), or its type, in a word or two."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema or "oneOf" in schema:
        return " | ".join(_reference(s) for s in schema.get("anyOf") or schema.get("oneOf"))
    return str(schema.get("type", "object"))


def _body(operation: dict[str, Any]) -> str:
    content = (operation.get("requestBody") or {}).get("content") or {}
    return ", ".join(f"{escape(kind)}: <code>{escape(_reference(spec.get('schema') or {}))}</code>"
                     for kind, spec in content.items())


def _operation(path: str, method: str, operation: dict[str, Any]) -> str:
    rows = [f'<div class="op"><span class="method">{method.upper()}</span> <span class="path">{escape(path)}</span>'
            f" — {escape(operation.get('summary') or '')}"]
    if operation.get("description"):
        rows.append(f"<p>{escape(operation['description'])}</p>")
    details = []
    for parameter in operation.get("parameters") or []:
        details.append(f"<dt>{escape(parameter.get('in', ''))} <code>{escape(parameter['name'])}</code></dt>"
                       f"<dd>{escape(parameter.get('description') or _reference(parameter.get('schema') or {}))}</dd>")
    if body := _body(operation):
        details.append(f"<dt>body</dt><dd>{body}</dd>")
    responses = ", ".join(f"{escape(code)} {escape(spec.get('description') or '')}"
                          for code, spec in (operation.get("responses") or {}).items())
    details.append(f"<dt>responses</dt><dd>{responses}</dd>")
    rows.append(f"<dl>{''.join(details)}</dl></div>")
    return "".join(rows)


def docs_html(schema: dict[str, Any]) -> str:
    """The page: title, description, then every operation grouped by its first tag."""
    info = schema.get("info") or {}
    groups: dict[str, list[str]] = {}
    for path, methods in (schema.get("paths") or {}).items():
        for method, operation in methods.items():
            if isinstance(operation, dict) and method != "parameters":
                tag = (operation.get("tags") or ["other"])[0]
                groups.setdefault(tag, []).append(_operation(path, method, operation))
    sections = "".join(f"<h2>{escape(tag)}</h2>{''.join(items)}" for tag, items in groups.items())
    return (f"<!doctype html><html lang=en><meta charset=utf-8><title>{escape(info.get('title', 'API'))} API</title>"
            f"<style>{_STYLE}</style><h1>{escape(info.get('title', 'API'))} {escape(str(info.get('version', '')))}"
            f"</h1><p>{escape(info.get('description') or '')}</p><p>Machine-readable: "
            f'<a href="/openapi.json">/openapi.json</a></p>{sections}</html>')
