"""POST /v1/classify, tunewise's own endpoint: the label of each input and a probability per label.

A model with fixed labels (a classifier arm, a classical model) answers in its own labels; a plain model takes
the candidates from the request. Knows nothing about chat, streaming or how labels are scored (answering.py).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tunewise.serve.answering import classified, lookup
from tunewise.serve.bodies import read_body
from tunewise.serve.errors import APIError
from tunewise.serve.openapi import answers, json_body
from tunewise.serve.responses import ClassificationList
from tunewise.serve.schemas import ClassifyRequest
from tunewise.serve.state import State

router = APIRouter()


@router.post("/v1/classify", openapi_extra=json_body(ClassifyRequest),
             responses=answers(ClassificationList, 400, 404, 413, 429, 504))
async def classify(request: Request, state: State) -> JSONResponse:
    body = await read_body(request, ClassifyRequest, state.config.max_body_bytes)
    served = lookup(state, body.model)
    if body.labels is not None and served.labels is not None and body.labels != served.labels:
        raise APIError(400, f"model {served.name!r} classifies into its own labels {served.labels}; omit labels "
                            "or send exactly these", param="labels", code="invalid_value")
    if served.labels is None and body.labels is None:
        raise APIError(400, f"model {served.name!r} has no fixed labels; send the candidate labels",
                       param="labels", code="missing_required_parameter")
    texts = [body.input] if isinstance(body.input, str) else body.input
    answers = await asyncio.gather(*(classified(state, served, text, body.labels) for text in texts))
    data = [{"object": "classification", "index": i, "label": a.text, "probabilities": a.probabilities,
             **({"cached": a.cached} if a.cached else {})} for i, a in enumerate(answers)]
    return JSONResponse({"object": "list", "model": served.name, "data": data,
                         "usage": {"prompt_tokens": sum(a.prompt_tokens for a in answers),
                                   "total_tokens": sum(a.prompt_tokens for a in answers)}})
