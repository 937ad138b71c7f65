"""GET /health (the process is up), GET /ready (it takes traffic; 503 while draining) and GET /metrics.

Which of these need an API key is the gate's business (gate.py), not this router's. Knows nothing about
models beyond their names.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from tunewise.serve.errors import APIError, envelope
from tunewise.serve.openapi import answers
from tunewise.serve.responses import Health, Ready
from tunewise.serve.state import State

router = APIRouter()


@router.get("/health", response_model=None, responses=answers(Health))
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", responses=answers(Ready))
async def ready(state: State) -> Response:
    if state.draining:
        return JSONResponse(envelope(APIError(503, "draining: finishing in-flight requests before shutdown",
                                              code="shutting_down")), status_code=503)
    return JSONResponse({"status": "ready", "models": sorted(state.models)})


@router.get("/metrics", response_class=PlainTextResponse,
            responses=answers(None, media={"text/plain": {"schema": {"type": "string"}}}))
async def metrics(state: State) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


# Uptime checkers and load balancers often probe with HEAD: the probes answer it as GET, without a body (left out
# of the schema, which documents each operation once).
router.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)
router.add_api_route("/ready", ready, methods=["HEAD"], include_in_schema=False)
