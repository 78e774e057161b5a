"""``/v1/models``: every model, with its kinds, params JSON Schema, sizes and pricing."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from imagemill.api.deps import CurrentOwner, RuntimeDep
from imagemill.api.routing import CheckedRoute
from imagemill.api.schemas import ErrorOut
from imagemill.domain import ModelSpec
from imagemill.errors import InvalidInput, NotFound

router = APIRouter(prefix="/v1/models", tags=["models"], route_class=CheckedRoute)


class ModelList(BaseModel):
    data: list[ModelSpec]


@router.get("", response_model=ModelList)
async def list_models(_: CurrentOwner, runtime: RuntimeDep) -> ModelList:
    """Every model this server knows, available or not (with the reason)."""
    return ModelList(data=sorted(runtime.registry.models(), key=lambda m: m.id))


@router.get("/{model_id:path}", response_model=ModelSpec, responses={404: {"model": ErrorOut}})
async def get_model(model_id: str, _: CurrentOwner, runtime: RuntimeDep) -> ModelSpec:
    """One model, by id or alias."""
    try:
        return runtime.registry.resolve(model_id)[1]
    except InvalidInput as exc:
        raise NotFound(exc.message) from exc
