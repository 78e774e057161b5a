"""``/v1/presets``: CRUD, validation against the model, name clashes, ownership."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

POSTER = {
    "name": "poster",
    "description": "flat colour posters",
    "model": "placeholder",
    "prompt_template": "a poster of {prompt}",
    "negative_prompt": "blurry",
    "size": "64x32",
    "params": {"latency_ms": 5},
}


async def create(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await http.post("/v1/presets", json={**POSTER, **fields})
    assert response.status_code == 201, response.text
    preset: dict[str, Any] = response.json()
    return preset


async def own(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The caller's own presets, as listed (the built-in styles follow them)."""
    listed: list[dict[str, Any]] = (await http.get("/v1/presets")).json()["data"]
    return [p for p in listed if not p["builtin"]]


async def test_create_read_update_delete(client: httpx.AsyncClient) -> None:
    created = await create(client)
    assert created["object"] == "preset"
    assert created["id"].startswith("pre_")
    assert {k: created[k] for k in POSTER} == POSTER

    by_id = (await client.get(f"/v1/presets/{created['id']}")).json()
    by_name = (await client.get("/v1/presets/poster")).json()
    assert by_id == by_name == created
    assert [p["id"] for p in await own(client)] == [created["id"]]

    response = await client.patch(
        "/v1/presets/poster", json={"description": "changed", "params": {"latency_ms": 7}}
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["description"] == "changed"
    assert updated["params"] == {"latency_ms": 7}
    assert updated["prompt_template"] == POSTER["prompt_template"], "fields not given stay"
    assert updated["updated_at"] >= created["updated_at"]
    assert (await client.get(f"/v1/presets/{created['id']}")).json() == updated

    renamed = await client.patch(f"/v1/presets/{created['id']}", json={"name": "flyer"})
    assert renamed.json()["name"] == "flyer"
    assert (await client.get("/v1/presets/poster")).status_code == 404

    deleted = await client.delete("/v1/presets/flyer")
    assert deleted.status_code == 204
    assert deleted.content == b""
    after = await client.get(f"/v1/presets/{created['id']}")
    assert after.status_code == 404
    assert after.json()["error"]["code"] == "not_found"
    assert (await client.delete(f"/v1/presets/{created['id']}")).status_code == 404
    assert await own(client) == []


async def test_list_is_sorted_by_name(client: httpx.AsyncClient) -> None:
    for name in ("zebra", "apple", "mango"):
        await create(client, name=name)

    names = [p["name"] for p in await own(client)]

    assert names == ["apple", "mango", "zebra"]


async def test_duplicate_name_is_409(client: httpx.AsyncClient) -> None:
    await create(client)
    await create(client, name="other")

    duplicate = await client.post("/v1/presets", json=POSTER)
    rename = await client.patch("/v1/presets/other", json={"name": "poster"})

    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "conflict"
    assert rename.status_code == 409
    assert rename.json()["error"]["field"] == "name"
    assert (await client.get("/v1/presets/other")).status_code == 200, "the clash changed nothing"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model": "no-such/model"}, "model"),
        ({"params": {"latency_ms": -1}}, "params.latency_ms"),
        ({"params": {"foo": 1}}, "params.foo"),
        ({"size": "abc"}, "size"),
        ({"name": ""}, "name"),
        ({"name": "-starts-with-dash"}, "name"),
        ({"colour": "red"}, "colour"),
        ({"name": "pre_01m8zzzzzzzzzzzzzzzzzzzzzz"}, "name"),  # an id's shape: which is meant?
        ({"size": "64x32\n"}, "size"),
        ({"name": "fox "}, "name"),  # "fox" and "fox " would be two presets no one tells apart
    ],
)
async def test_invalid_preset_is_422(
    client: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    response = await client.post("/v1/presets", json={**POSTER, **change})

    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert await own(client) == []


async def test_invalid_patch_is_422_and_changes_nothing(client: httpx.AsyncClient) -> None:
    created = await create(client)

    bad_params = await client.patch("/v1/presets/poster", json={"params": {"fail": "sometimes"}})
    bad_model = await client.patch("/v1/presets/poster", json={"model": "no-such/model"})

    assert bad_params.status_code == 422
    assert bad_params.json()["error"]["field"] == "params.fail"
    assert bad_model.status_code == 422
    assert bad_model.json()["error"]["field"] == "model"
    assert (await client.get("/v1/presets/poster")).json() == created


@pytest.mark.parametrize("field", ["name", "description", "prompt_template", "params"])
async def test_patch_with_null_for_a_required_field_is_422(
    served: httpx.AsyncClient, field: str
) -> None:
    await create(served)

    response = await served.patch("/v1/presets/poster", json={field: None})

    assert response.status_code == 422, (
        f"PATCH {{{field!r}: null}} must be rejected as invalid input; got "
        f"{response.status_code} {response.text} (PresetPatch accepts null for NOT NULL columns)"
    )
    assert response.json()["error"]["field"] == field
    after = await served.get("/v1/presets/poster")
    assert after.status_code == 200, f"the preset must still be readable; got {after.status_code}"


async def test_a_name_cannot_be_renamed_into_an_ids_shape(client: httpx.AsyncClient) -> None:
    """A preset named like another's id answered for that id once it was deleted."""
    created = await create(client)
    response = await client.patch("/v1/presets/poster", json={"name": created["id"]})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "name"


async def test_a_bad_param_from_a_preset_says_it_came_from_the_preset(
    client: httpx.AsyncClient,
) -> None:
    """A preset with no model keeps params no schema has checked; a job that uses it
    names the param, and says where it came from."""
    await create(client, name="loose", model=None, params={"latency_ms": "slow"})
    body = {"model": "placeholder", "preset": "loose", "prompt": "x"}
    response = await client.post("/v1/jobs", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "params.latency_ms"
    assert "preset 'loose'" in error["message"]


async def test_a_negative_prompt_is_kept_only_for_a_model_that_takes_one(
    client: httpx.AsyncClient,
) -> None:
    """An upscaler's preset kept "blurry" as its negative prompt: every job that used it
    was refused, or ran without it."""
    upscaler = {"model": "local/realesrgan-x2", "size": None, "params": {}}
    refused = await client.post("/v1/presets", json={**POSTER, **upscaler})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["field"] == "negative_prompt"

    await create(client, **upscaler, negative_prompt=None)
    moved = await client.patch("/v1/presets/poster", json={"negative_prompt": "blurry"})
    assert moved.status_code == 422 and moved.json()["error"]["field"] == "negative_prompt"
    await create(client, name="sharp", params={})  # the placeholder takes a negative prompt
    switched = await client.patch("/v1/presets/sharp", json={**upscaler, "size": None})
    assert switched.status_code == 422
    assert switched.json()["error"]["field"] == "negative_prompt"


async def test_patch_unknown_preset_is_404(client: httpx.AsyncClient) -> None:
    response = await client.patch("/v1/presets/nope", json={"description": "x"})

    assert response.status_code == 404


async def test_another_owners_preset_is_404(owners: Any) -> None:
    preset = await create(owners.alice)

    for ref in (preset["id"], preset["name"]):
        assert (await owners.bob.get(f"/v1/presets/{ref}")).status_code == 404
        assert (
            await owners.bob.patch(f"/v1/presets/{ref}", json={"description": "x"})
        ).status_code == 404
        assert (await owners.bob.delete(f"/v1/presets/{ref}")).status_code == 404
    assert await own(owners.bob) == []
    used = await owners.bob.post("/v1/jobs", json={"preset": preset["id"], "prompt": "x"})
    assert used.status_code in (404, 422), "Bob cannot run Alice's preset"
    assert (await owners.anonymous.get("/v1/presets")).status_code == 401
    assert (await owners.alice.get(f"/v1/presets/{preset['id']}")).json() == preset

    bob_preset = await create(owners.bob)
    assert bob_preset["name"] == preset["name"], "names are unique per owner, not globally"
