"""``/v1/models``: every model with its kinds, params JSON Schema, sizes, pricing and
its provider's circuit breaker."""

from __future__ import annotations

from typing import Any

import httpx


async def test_list_contains_the_placeholder_with_schema_kinds_and_pricing(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/models")

    assert response.status_code == 200
    models = {m["id"]: m for m in response.json()["data"]}
    placeholder = models["placeholder"]
    assert placeholder["provider"] == "placeholder"
    assert placeholder["kinds"] == ["image", "caption", "enhance", "describe"]
    assert placeholder["circuit"] == {"state": "closed", "retry_after_seconds": 0.0}
    assert placeholder["available"] is True
    schema = placeholder["params_schema"]
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert {"latency_ms", "fail", "fail_attempts"} <= set(schema["properties"])
    assert schema["properties"]["latency_ms"]["minimum"] == 0
    assert placeholder["pricing"] == {
        "currency": "USD",
        "per_image": 0.0,
        "by_size": {},
        "by_quality": {},
        "per_million_input_tokens": 0.0,
        "per_million_output_tokens": 0.0,
        "configured": False,
    }
    assert placeholder["sizes"]["default"] == "512x512"
    assert placeholder["max_n"] == 10


async def test_list_is_sorted_by_id(client: httpx.AsyncClient) -> None:
    ids = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]

    assert ids == sorted(ids)


async def test_get_one_model(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models/placeholder")

    assert response.status_code == 200
    model: dict[str, Any] = response.json()
    assert model["id"] == "placeholder"
    assert "latency_ms" in model["params_schema"]["properties"]


async def test_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    for model_id in ("nope", "openai/not-a-model"):
        response = await client.get(f"/v1/models/{model_id}")

        assert response.status_code == 404, model_id
        error = response.json()["error"]
        assert error["code"] == "not_found"
        assert model_id in error["message"]


async def test_models_need_a_key_when_keys_are_required(owners: Any) -> None:
    assert (await owners.anonymous.get("/v1/models")).status_code == 401
    assert (await owners.bob.get("/v1/models/placeholder")).status_code == 200
