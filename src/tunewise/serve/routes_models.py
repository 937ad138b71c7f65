"""GET /v1/models and GET /v1/models/{name}: OpenAI's model objects, with tunewise's own details under `tunewise`.

Knows nothing about answering, caching or how models were loaded.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from tunewise.serve.answering import lookup
from tunewise.serve.models import ServedModel
from tunewise.serve.openapi import answers
from tunewise.serve.responses import ModelCard, ModelList
from tunewise.serve.state import State

router = APIRouter()


def card(served: ServedModel, created: int) -> dict[str, Any]:
    """One model object; `created` is when the server started."""
    return {"id": served.name, "object": "model", "created": created, "owned_by": served.owned_by,
            "tunewise": {"kind": served.kind, "labels": served.labels, "description": served.description,
                         **served.extra}}


@router.get("/v1/models", response_model=None, responses=answers(ModelList))
async def list_models(state: State) -> dict[str, Any]:
    # a copy first: the fine-tuning worker may add a model while this runs
    return {"object": "list", "data": [card(m, int(state.started)) for m in list(state.models.values())]}


@router.get("/v1/models/{name:path}", response_model=None, responses=answers(ModelCard, 404))
async def one_model(name: str, state: State) -> dict[str, Any]:
    return card(lookup(state, name), int(state.started))
