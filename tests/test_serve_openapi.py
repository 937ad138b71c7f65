"""The published OpenAPI schema: served at /openapi.json and /docs behind the API key (unless made public), and
held to what the server does by a bounded schemathesis run: generated requests (valid and invalid) against
every operation, in process (ASGI), must get no 5xx, only documented statuses and content types, and bodies
that match the documented response schemas.

The run is bounded by examples per operation (`EXAMPLES`, derandomized so CI sees the same requests each
time) and covers every route, the model routes included: the tiny model answers a request in milliseconds
and `max_tokens_limit` 4 keeps each generation short, so the whole run takes well under a minute on 2 cores.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tunewise.serve.app import build_state, create_app
from tunewise.serve.config import ServeConfig
from tunewise.serve.models import Loader, build_models

KEY = "schema-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
EXAMPLES = 20  # per operation and generation mode
BUDGET_S = 90  # a wall-clock guard on the whole run (it takes a fraction of this)


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path) -> list:
    return build_models(Loader("fp32", None), model=str(tiny_model_dir))


@pytest.fixture
def app(served, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_KEYS_FOR_TEST", KEY)
    state = build_state(served, ServeConfig(api_keys_env="TUNEWISE_KEYS_FOR_TEST", state_dir=tmp_path / "state",
                                            max_tokens_limit=4, default_max_tokens=4, max_body_bytes=64_000,
                                            max_upload_bytes=64_000, timeout_s=30))
    try:
        yield create_app(state)
    finally:
        state.close()


def test_the_schema_and_docs_need_the_key_unless_made_public(served, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEWISE_KEYS_FOR_TEST", KEY)
    for public in (False, True):
        state = build_state(served, ServeConfig(api_keys_env="TUNEWISE_KEYS_FOR_TEST", public_docs=public))
        try:
            with TestClient(create_app(state)) as http:
                for path in ("/openapi.json", "/docs"):
                    assert http.get(path).status_code == (200 if public else 401), (path, public)
                    assert http.get(path, headers=AUTH).status_code == 200
                assert http.get("/v1/models").status_code == 401  # only the docs became public
                schema = http.get("/openapi.json", headers=AUTH).json()
                page = http.get("/docs", headers=AUTH).text
        finally:
            state.close()
    assert schema["paths"]["/v1/chat/completions"]["post"]["security"] == [{"bearer": []}]
    assert schema["paths"]["/health"]["get"]["security"] == []
    # the page reads offline: every operation listed, nothing fetched from elsewhere, no scripts
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert all(path in page for path in schema["paths"]) and "/openapi.json" in page
    request = schema["components"]["schemas"]["ChatRequest"]
    assert request["properties"]["max_tokens"]["anyOf"][0]["maximum"] == ServeConfig().max_tokens_limit
    assert "refusal" in schema["components"]["schemas"]["AssistantMessage"]["required"]


def seed_objects(app, name: str) -> dict[str, str]:
    """A stored file and a (short) fine-tuning job, so generated requests can hit real ids too."""
    from test_finetune_api import chats, jsonl

    with TestClient(app) as http:
        file_id = http.post("/v1/files", headers=AUTH, data={"purpose": "fine-tune"},
                            files={"file": ("chats.jsonl", jsonl(chats()))}).json()["id"]
        job = http.post("/v1/fine_tuning/jobs", headers=AUTH, json={
            "model": name, "training_file": file_id, "hyperparameters": {"n_epochs": 1, "batch_size": 4}}).json()
    return {"model": name, "name": name, "file_id": file_id, "job_id": job["id"]}


def aim(case, real: dict[str, str], turn: int) -> None:
    """Every other valid case names the served model and the seeded file and job (random names only ever
    reach the 404 path)."""
    if turn % 2:
        return
    if isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = real["model"]
    for key in list(case.path_parameters or {}):
        if key in real:
            case.path_parameters[key] = real[key]


def fuzz(operation, mode, real: dict[str, str], statuses: dict[int, int], checks: list) -> None:
    """`EXAMPLES` generated requests to one operation, each response checked; statuses counted."""
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    turn = iter(range(10**6))

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(mode, headers=AUTH))
    def run(case) -> None:
        if mode == GenerationMode.POSITIVE:
            aim(case, real, next(turn))
        response = case.call_and_validate(headers=AUTH, checks=checks)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    run()


def test_schemathesis_finds_no_5xx_and_no_schema_violations(app, served):
    import schemathesis  # a dev dependency: `make test` installs it
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    real = seed_objects(app, served[0].name)
    started = time.monotonic()
    seen: dict[str, dict[int, int]] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            assert time.monotonic() - started < BUDGET_S, f"the run passed {BUDGET_S} s at {operation.label}"
            try:
                fuzz(operation, mode, real, seen.setdefault(operation.label, {}), checks)
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body): no negative case
                assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
    print(seen)
    # real work was done, not only refusals
    for label in ("POST /v1/chat/completions", "POST /v1/completions", "GET /v1/files/{file_id}",
                  "GET /v1/fine_tuning/jobs/{job_id}", "GET /v1/fine_tuning/jobs/{job_id}/events"):
        assert 200 in seen[label], (label, seen[label])
    with TestClient(app) as http:
        assert http.get("/health").status_code == 200 and http.get("/ready").status_code == 200


def test_options_and_405_list_every_documented_method_of_a_path(app):
    with TestClient(app) as http:
        schema = http.get("/openapi.json", headers=AUTH).json()
        for template, item in schema["paths"].items():
            path = template.replace("{", "x").replace("}", "x")  # any value fits a path parameter
            documented = {method.upper() for method in item}
            served = documented | {"OPTIONS"} | ({"HEAD"} if template in ("/health", "/ready") else set())
            allow = http.options(path, headers=AUTH)
            assert allow.status_code == 204, (path, allow.text)
            assert set(allow.headers["allow"].split(", ")) == served, (path, allow.headers)
            other = next(m for m in ("PUT", "PATCH", "DELETE", "POST") if m not in documented)
            refused = http.request(other, path, headers=AUTH)
            assert refused.status_code == 405 and refused.json()["error"]["code"] == "method_not_allowed"
            assert set(refused.headers["allow"].split(", ")) == served, (path, other)
        assert http.options("/v1/nowhere", headers=AUTH).json()["error"]["code"] == "not_found"
        assert http.options("/v1/files").status_code == 401  # OPTIONS needs the key like the path's methods
