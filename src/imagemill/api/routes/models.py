"""``/v1/models``: every model, with its kinds, params JSON Schema, sizes and pricing."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from imagemill.api.deps import CurrentOwner, RuntimeDep
from imagemill.api.routing import CheckedRoute
from imagemill.api.schemas import ErrorOut
from imagemill.errors import InvalidInput, NotFound
from imagemill.providers.base import Provider
from imagemill.runtime import Runtime
from imagemill.specs import CircuitView, ModelSpec

router = APIRouter(prefix="/v1/models", tags=["models"], route_class=CheckedRoute)


class ModelList(BaseModel):
    data: list[ModelSpec]


@router.get("", response_model=ModelList)
async def list_models(_: CurrentOwner, runtime: RuntimeDep) -> ModelList:
    """Every model this server knows, available or not (with the reason), and the state
    of its provider's circuit breaker."""
    found = [_with_circuit(runtime, p, s) for p, s in runtime.registry.providers_of_models()]
    return ModelList(data=sorted(found, key=lambda m: m.id))


@router.get("/{model_id:path}", response_model=ModelSpec, responses={404: {"model": ErrorOut}})
async def get_model(model_id: str, _: CurrentOwner, runtime: RuntimeDep) -> ModelSpec:
    """One model, by id or alias."""
    try:
        return _with_circuit(runtime, *runtime.registry.resolve(model_id))
    except InvalidInput as exc:
        raise NotFound(exc.message) from exc


def _with_circuit(runtime: Runtime, provider: Provider, spec: ModelSpec) -> ModelSpec:
    """``spec`` with its provider's circuit, where this process runs jobs."""
    if not runtime.run_workers:
        return spec
    state, wait = runtime.worker.circuits.state(provider.name)
    view = CircuitView(state=state.value, retry_after_seconds=round(wait, 3))
    return spec.model_copy(update={"circuit": view})
