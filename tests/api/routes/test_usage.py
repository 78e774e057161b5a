"""``GET /v1/usage``: images and cost per model and UTC day, per owner, cache hits at 0."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from imagemill.specs import Pricing

WAIT = {"Prefer": "wait=10"}


async def _generate(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"model": "placeholder", "prompt": "usage", "size": "32x32", **fields}
    response = await http.post("/v1/jobs", json=body, headers=WAIT)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def test_usage_sums_images_and_cost_by_model_and_day(
    make_client: Callable[..., Any],
) -> None:
    # The placeholder is free: priced by configuration here, so the sums show.
    async with make_client(prices={"placeholder": Pricing(per_image=0.25)}) as client:
        await _generate(client, n=2, seed=1)
        await _generate(client, n=1, seed=2)
        hit = await _generate(client, n=2, seed=1)  # the same seeded request: a cache hit
        assert hit["cached"] is True

        response = await client.get("/v1/usage")

    assert response.status_code == 200, response.text
    usage = response.json()
    today = datetime.now(UTC).date().isoformat()
    assert usage["data"] == [
        {"day": today, "model": "placeholder", "images": 5, "cached": 2, "cost_usd": 0.75}
    ]
    assert (usage["total_images"], usage["total_cost_usd"]) == (5, 0.75)


async def test_usage_is_filtered_by_dates_and_checks_them(client: httpx.AsyncClient) -> None:
    await _generate(client)
    today = datetime.now(UTC).date()
    tomorrow = (today + timedelta(days=1)).isoformat()

    assert (await client.get("/v1/usage", params={"since": tomorrow})).json()["data"] == []
    within = await client.get(
        "/v1/usage", params={"since": today.isoformat(), "until": today.isoformat()}
    )
    assert within.json()["total_images"] == 1
    backwards = await client.get(
        "/v1/usage", params={"since": tomorrow, "until": today.isoformat()}
    )
    assert backwards.status_code == 422 and backwards.json()["error"]["field"] == "until"
    bad = await client.get("/v1/usage", params={"since": "yesterday"})
    assert bad.status_code == 422


async def test_usage_is_per_owner(owners: Any) -> None:
    await _generate(owners.alice)
    assert (await owners.bob.get("/v1/usage")).json()["total_images"] == 0
    assert (await owners.alice.get("/v1/usage")).json()["total_images"] == 1
    assert (await owners.anonymous.get("/v1/usage")).status_code == 401
