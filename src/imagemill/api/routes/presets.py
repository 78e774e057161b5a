"""``/v1/presets``: named prompt templates, negative prompts and default params: each
owner's own, and the server's built-in styles (``imagemill.styles``), read-only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status
from pydantic import BaseModel

from imagemill.api.deps import CurrentOwner, RuntimeDep
from imagemill.api.routing import CheckedRoute
from imagemill.api.schemas import ErrorOut, PresetCopyIn, PresetIn, PresetOut, PresetPatch
from imagemill.boundary import has_words, quoted
from imagemill.db.accounts import Preset
from imagemill.errors import Forbidden, InvalidInput, NotFound
from imagemill.jobs.params import check_params
from imagemill.jobs.service import utcnow
from imagemill.runtime import Runtime
from imagemill.styles import BUILTIN_STYLES, builtin_style, find_preset

router = APIRouter(prefix="/v1/presets", tags=["presets"], route_class=CheckedRoute)
ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorOut},
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
    """Your presets by name, then the built-in styles by name."""
    own = await runtime.accounts.list_presets(owner.id)
    return PresetList(data=[PresetOut.of(p) for p in (*own, *BUILTIN_STYLES)])


@router.get("/{preset}", response_model=PresetOut, responses=ERRORS)
async def get_preset(preset: str, owner: CurrentOwner, runtime: RuntimeDep) -> PresetOut:
    """A preset by id or name: yours first, then a built-in style."""
    return PresetOut.of(await find_preset(runtime.accounts, owner.id, preset))


@router.post(
    "/{preset}/copy",
    status_code=status.HTTP_201_CREATED,
    response_model=PresetOut,
    responses=ERRORS,
)
async def copy_preset(
    preset: str, owner: CurrentOwner, runtime: RuntimeDep, body: PresetCopyIn | None = None
) -> PresetOut:
    """A copy of a preset (a built-in style, say) as your own, to change as you like;
    409 if you have one of that name already (give another `name`)."""
    original = await find_preset(runtime.accounts, owner.id, preset)
    fields = {
        "name": body.name if body and body.name else original.name,
        "description": original.description,
        "model": original.model,
        "prompt_template": original.prompt_template,
        "negative_prompt": original.negative_prompt,
        "size": original.size,
        "params": original.params,
    }
    return PresetOut.of(await runtime.accounts.create_preset(owner.id, fields, utcnow()))


async def _own(runtime: Runtime, owner_id: str, preset: str) -> Preset:
    """The owner's own preset; a built-in style is read-only (403)."""
    try:
        return await runtime.accounts.get_preset(owner_id, preset)
    except NotFound:
        if (style := builtin_style(preset)) is not None:
            raise Forbidden(
                f"{quoted(style.name)} is a built-in style and read-only; "
                f"POST /v1/presets/{style.id}/copy makes a copy of your own"
            ) from None
        raise


@router.patch("/{preset}", response_model=PresetOut, responses=ERRORS)
async def update_preset(
    preset: str, body: PresetPatch, owner: CurrentOwner, runtime: RuntimeDep
) -> PresetOut:
    """Change the fields given; the others stay. 403 for a built-in style."""
    current = await _own(runtime, owner.id, preset)
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
    """Delete one of your presets; 403 for a built-in style."""
    await runtime.accounts.delete_preset(owner.id, (await _own(runtime, owner.id, preset)).id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
