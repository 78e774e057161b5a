"""``/v1/presets``: named prompt templates, negative prompts and default params."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status
from pydantic import BaseModel

from imagemill.api.deps import CurrentOwner, RuntimeDep
from imagemill.api.routing import CheckedRoute
from imagemill.api.schemas import ErrorOut, PresetIn, PresetOut, PresetPatch
from imagemill.boundary import has_words, quoted
from imagemill.errors import InvalidInput
from imagemill.jobs.service import utcnow
from imagemill.jobs.validation import check_params
from imagemill.runtime import Runtime

router = APIRouter(prefix="/v1/presets", tags=["presets"], route_class=CheckedRoute)
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
    422: {"model": ErrorOut},
}


class PresetList(BaseModel):
    data: list[PresetOut]


def _checked(runtime: Runtime, fields: dict[str, Any]) -> dict[str, Any]:
    """Reject a preset its model would refuse: unknown model, params failing its schema, a
    negative prompt for a model that takes none."""
    if fields.get("model"):
        spec = runtime.registry.resolve(fields["model"])[1]
        fields["model"] = spec.id
        check_params(fields.get("params") or {}, spec.params_schema)
        if not spec.limits.negative_prompt and has_words(fields.get("negative_prompt") or ""):
            raise InvalidInput(
                f"model {quoted(spec.id)} takes no negative prompt", field="negative_prompt"
            )
    return fields


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PresetOut, responses=ERRORS)
async def create_preset(body: PresetIn, owner: CurrentOwner, runtime: RuntimeDep) -> PresetOut:
    fields = _checked(runtime, body.model_dump())
    return PresetOut.of(await runtime.accounts.create_preset(owner.id, fields, utcnow()))


@router.get("", response_model=PresetList)
async def list_presets(owner: CurrentOwner, runtime: RuntimeDep) -> PresetList:
    return PresetList(data=[PresetOut.of(p) for p in await runtime.accounts.list_presets(owner.id)])


@router.get("/{preset}", response_model=PresetOut, responses=ERRORS)
async def get_preset(preset: str, owner: CurrentOwner, runtime: RuntimeDep) -> PresetOut:
    """A preset by id or name."""
    return PresetOut.of(await runtime.accounts.get_preset(owner.id, preset))


@router.patch("/{preset}", response_model=PresetOut, responses=ERRORS)
async def update_preset(
    preset: str, body: PresetPatch, owner: CurrentOwner, runtime: RuntimeDep
) -> PresetOut:
    """Change the fields given; the others stay."""
    current = await runtime.accounts.get_preset(owner.id, preset)
    changes = body.model_dump(exclude_unset=True)
    merged = {
        "model": current.model,
        "params": current.params,
        "negative_prompt": current.negative_prompt,
        **changes,
    }
    _checked(runtime, merged)
    changes = {k: merged[k] for k in changes}
    return PresetOut.of(
        await runtime.accounts.update_preset(owner.id, current.id, changes, utcnow())
    )


@router.delete("/{preset}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
async def delete_preset(preset: str, owner: CurrentOwner, runtime: RuntimeDep) -> Response:
    await runtime.accounts.delete_preset(owner.id, preset)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
