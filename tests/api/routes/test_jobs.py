"""``/v1/jobs``: submit, wait, idempotency, caching, validation, history, cancel, failures."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from imagemill.api.app import create_app
from imagemill.config import Settings
from imagemill.providers.placeholder import PlaceholderProvider
from imagemill.providers.registry import Registry
from imagemill.runtime import Runtime
from imagemill.specs import ModelSpec

JobWaiter = Any  # the ``finished`` fixture from tests/api/conftest.py
WAIT = {"Prefer": "wait=10"}


async def submit(http: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = await http.post("/v1/jobs", json=body, headers=headers)
    assert response.status_code in (200, 202), response.text
    job: dict[str, Any] = response.json()
    return job


async def test_submit_answers_202_then_succeeds_with_exact_size_outputs(
    client: httpx.AsyncClient, finished: JobWaiter, decode: Callable[[bytes], Image.Image]
) -> None:
    body = {"model": "placeholder", "prompt": "a red fox", "n": 2, "size": "64x48"}
    response = await client.post("/v1/jobs", json=body)

    assert response.status_code == 202
    accepted = response.json()
    assert accepted["object"] == "job"
    assert accepted["status"] in ("queued", "running")
    assert response.headers["location"] == f"/v1/jobs/{accepted['id']}"

    job = await finished(client, accepted["id"])
    assert job["status"] == "succeeded"
    assert job["progress"] == 1.0
    assert job["error"] is None
    assert len(job["outputs"]) == 2
    assert [o["index"] for o in job["outputs"]] == [0, 1]
    assert len({o["asset_id"] for o in job["outputs"]}) == 2, "two seeds, two different images"
    for output in job["outputs"]:
        assert (output["width"], output["height"]) == (64, 48)
        assert (output["requested_width"], output["requested_height"]) == (64, 48)
        assert output["model"] == "placeholder"
        assert output["cached"] is False
        data = (await client.get(output["url"])).content
        image = decode(data)
        assert image.format == "PNG"
        assert image.size == (64, 48)
        assert output["byte_size"] == len(data)
    assert job["timings"]["total_seconds"] is not None


async def test_prefer_wait_answers_200_with_the_finished_job(client: httpx.AsyncClient) -> None:
    body = {
        "model": "placeholder",
        "prompt": "waited for",
        "size": "64x64",
        "params": {"latency_ms": 100},
    }
    response = await client.post("/v1/jobs", json=body, headers=WAIT)

    assert response.status_code == 200
    assert response.headers["preference-applied"] == "wait=10"
    job = response.json()
    assert job["status"] == "succeeded"
    assert len(job["outputs"]) == 1


async def test_prefer_wait_shorter_than_the_job_still_answers_202(
    client: httpx.AsyncClient,
) -> None:
    body = {
        "model": "placeholder",
        "prompt": "slow",
        "size": "64x64",
        "params": {"latency_ms": 3000},
    }
    response = await client.post("/v1/jobs", json=body, headers={"Prefer": "wait=0.2"})

    assert response.status_code == 202
    job = response.json()
    assert job["status"] in ("queued", "running")
    assert (await client.post(f"/v1/jobs/{job['id']}/cancel")).status_code == 200


async def test_same_idempotency_key_gives_the_same_job(client: httpx.AsyncClient) -> None:
    body = {"model": "placeholder", "prompt": "only once", "size": "64x64"}
    first = await submit(client, body, **{"Idempotency-Key": "order-17"})
    second = await submit(client, body, **{"Idempotency-Key": "order-17", **WAIT})
    other = await submit(client, body, **{"Idempotency-Key": "order-18", **WAIT})

    assert second["id"] == first["id"]
    assert other["id"] != first["id"]
    listed = (await client.get("/v1/jobs", params={"q": "only once"})).json()["data"]
    assert sorted(j["id"] for j in listed) == sorted([first["id"], other["id"]])


async def test_a_bad_header_is_named_as_it_is_sent(client: httpx.AsyncClient) -> None:
    body = {"model": "placeholder", "prompt": "keyed"}
    answer = await client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k" * 256})

    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "Idempotency-Key"


async def test_concurrent_submits_with_one_idempotency_key_make_one_job(
    client: httpx.AsyncClient, finished: JobWaiter
) -> None:
    body = {"model": "placeholder", "prompt": "racing", "size": "64x64"}
    answers = await asyncio.gather(
        *(submit(client, body, **{"Idempotency-Key": "race"}) for _ in range(5))
    )

    assert len({job["id"] for job in answers}) == 1
    await finished(client, answers[0]["id"])
    assert len((await client.get("/v1/jobs")).json()["data"]) == 1


async def test_same_idempotency_key_gives_the_same_group(client: httpx.AsyncClient) -> None:
    body = {"models": ["placeholder"], "prompt": "one group", "size": "64x64"}
    first = await submit(client, body, **{"Idempotency-Key": "group-1"})
    second = await submit(client, body, **{"Idempotency-Key": "group-1", **WAIT})

    assert first["object"] == second["object"] == "group"
    assert [j["id"] for j in second["jobs"]] == [j["id"] for j in first["jobs"]]
    assert second["group_id"] == first["group_id"]


async def test_models_list_makes_a_group_with_a_group_id(
    client: httpx.AsyncClient, finished: JobWaiter
) -> None:
    body = {"models": ["placeholder"], "prompt": "side by side", "size": "64x64"}
    response = await client.post("/v1/jobs", json=body, headers=WAIT)

    assert response.status_code == 200
    group = response.json()
    assert group["object"] == "group"
    assert [j["model"] for j in group["jobs"]] == ["placeholder"]
    assert group["jobs"][0]["status"] == "succeeded"
    assert group["group_id"], (
        "a `models` submission must get a real group id even with one model "
        "(JobService.submit only makes one when len(requests) > 1)"
    )
    assert group["jobs"][0]["group_id"] == group["group_id"]
    listed = (await client.get("/v1/jobs", params={"group_id": group["group_id"]})).json()["data"]
    assert [j["id"] for j in listed] == [group["jobs"][0]["id"]]


async def test_duplicate_models_are_rejected(client: httpx.AsyncClient) -> None:
    body = {"models": ["placeholder", "placeholder"], "prompt": "twice", "size": "64x64"}
    response = await client.post("/v1/jobs", json=body)

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "models.1"


async def test_a_model_may_be_compared_with_itself_under_other_params(
    client: httpx.AsyncClient,
) -> None:
    body = {
        "models": ["placeholder", {"model": "placeholder", "params": {"latency_ms": 1}}],
        "prompt": "twice, differently",
        "size": "64x64",
    }
    group = await submit(client, body)

    assert [j["request"]["params"] for j in group["jobs"]] == [{}, {"latency_ms": 1}]


class TwinProvider(PlaceholderProvider):
    """A second placeholder under another name, so a group can hold two models."""

    name = "twin"

    def models(self) -> list[ModelSpec]:
        spec = super().models()[0]
        return [spec.model_copy(update={"id": "twin/placeholder", "provider": self.name})]


@pytest.fixture
async def two_model_client(tmp_path: Path, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    registry = Registry([PlaceholderProvider(), TwinProvider()])
    twin_settings = settings.model_copy(update={"data_dir": tmp_path / "twin"})
    async with Runtime(twin_settings, registry=registry) as runtime:
        app = create_app(runtime=runtime)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://imagemill.test") as http,
        ):
            yield http


async def test_models_group_runs_one_job_per_model_and_is_idempotent(
    two_model_client: httpx.AsyncClient, finished: JobWaiter
) -> None:
    body = {
        "models": ["placeholder", "twin/placeholder"],
        "prompt": "compare",
        "size": "64x64",
        "seed": 3,
    }
    group = await submit(two_model_client, body, **{"Idempotency-Key": "cmp"})
    again = await submit(two_model_client, body, **{"Idempotency-Key": "cmp"})

    assert group["group_id"]
    assert [j["model"] for j in group["jobs"]] == ["placeholder", "twin/placeholder"]
    assert {j["group_id"] for j in group["jobs"]} == {group["group_id"]}
    assert again["group_id"] == group["group_id"]
    assert sorted(j["id"] for j in again["jobs"]) == sorted(j["id"] for j in group["jobs"])
    for job in group["jobs"]:
        done = await finished(two_model_client, job["id"])
        assert done["status"] == "succeeded"
        assert done["outputs"][0]["model"] == job["model"]
    page = await two_model_client.get("/v1/jobs", params={"group_id": group["group_id"]})
    assert len(page.json()["data"]) == 2


async def test_each_model_of_a_comparison_may_take_params_of_its_own(
    two_model_client: httpx.AsyncClient,
) -> None:
    body = {
        "models": ["placeholder", {"model": "twin/placeholder", "params": {"latency_ms": 20}}],
        "prompt": "compare",
        "size": "64x64",
        "params": {"latency_ms": 10, "fail_attempts": 1},
    }
    group = await submit(two_model_client, body)

    params = {job["model"]: job["request"]["params"] for job in group["jobs"]}
    assert params == {
        "placeholder": {"latency_ms": 10, "fail_attempts": 1},
        "twin/placeholder": {"latency_ms": 20, "fail_attempts": 1},  # its own wins
    }


@pytest.mark.parametrize(
    ("models", "params", "field"),
    [
        (
            ["placeholder", {"model": "twin/placeholder", "params": {"latency_ms": -1}}],
            {},
            "models.1.params.latency_ms",
        ),
        (
            [{"model": "placeholder", "params": {"bogus": 1}}, "twin/placeholder"],
            {},
            "models.0.params.bogus",
        ),
        (
            ["placeholder", {"model": "twin/placeholder", "params": {}}],
            {"latency_ms": -1},
            "params.latency_ms",
        ),  # the request's own, shared by both
        ([{"model": "placeholder"}, "placeholder"], {}, "models.1"),  # the same, twice
    ],
)
async def test_a_comparison_names_the_param_at_fault_where_it_was_given(
    two_model_client: httpx.AsyncClient, models: list[Any], params: dict[str, Any], field: str
) -> None:
    body = {"models": models, "prompt": "compare", "size": "64x64", "params": params}
    response = await two_model_client.post("/v1/jobs", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


async def test_seeded_request_is_served_from_the_cache(client: httpx.AsyncClient) -> None:
    body = {"model": "placeholder", "prompt": "cache me", "size": "64x64", "seed": 42, "n": 2}
    first = await submit(client, body, **WAIT)
    response = await client.post("/v1/jobs", json=body)

    assert response.status_code == 200, "a cache hit is finished at once"
    second = response.json()
    assert second["id"] != first["id"]
    assert second["status"] == "succeeded"
    assert second["cached"] is True
    assert second["cost_usd"] == 0
    assert all(o["cached"] and o["cost_usd"] == 0 for o in second["outputs"])
    assert [o["asset_id"] for o in second["outputs"]] == [o["asset_id"] for o in first["outputs"]]
    assert first["cached"] is False


async def test_unseeded_request_is_not_cached_under_auto(client: httpx.AsyncClient) -> None:
    body = {"model": "placeholder", "prompt": "random", "size": "64x64"}
    await submit(client, body, **WAIT)
    second = await submit(client, body, **WAIT)

    assert second["cached"] is False
    assert second["outputs"][0]["cached"] is False


async def test_cache_use_reuses_an_unseeded_request(client: httpx.AsyncClient) -> None:
    body = {"model": "placeholder", "prompt": "reuse", "size": "64x64"}
    first = await submit(client, body, **WAIT)
    second = await submit(client, {**body, "cache": "use"})

    assert second["status"] == "succeeded"
    assert second["cached"] is True
    assert second["outputs"][0]["asset_id"] == first["outputs"][0]["asset_id"]


async def test_cache_bypass_never_reuses(client: httpx.AsyncClient) -> None:
    body = {"model": "placeholder", "prompt": "fresh", "size": "64x64", "seed": 7}
    first = await submit(client, body, **WAIT)
    second = await submit(client, {**body, "cache": "bypass"}, **WAIT)

    assert second["cached"] is False
    assert second["outputs"][0]["cached"] is False
    assert second["id"] != first["id"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"size": "0x5"}, "size"),
        ({"size": "abc"}, "size"),
        ({"size": "64x99999"}, "size"),
        ({"n": 0}, "n"),
        ({"n": 11}, "n"),
        ({"model": "no-such/model"}, "model"),
        ({"params": {"latency_ms": -1}}, "params.latency_ms"),
        ({"params": {"latency_ms": "slow"}}, "params.latency_ms"),
        ({"params": {"foo": 1}}, "params.foo"),
        ({"params": {"fail": "sometimes"}}, "params.fail"),
        ({"prompt": "   "}, "prompt"),
        ({"aspect_ratio": "wide"}, "aspect_ratio"),
        ({"seed": -1}, "seed"),
        ({"cache": "maybe"}, "cache"),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    client: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    body = {"model": "placeholder", "prompt": "valid", "size": "64x64", **change}
    response = await client.post("/v1/jobs", json=body)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["field"] == field
    assert error["message"]
    assert (await client.get("/v1/jobs")).json()["data"] == [], "nothing was recorded"


async def test_unknown_body_field_is_422(client: httpx.AsyncClient) -> None:
    body = {"model": "placeholder", "prompt": "x", "size": "64x64", "colour": "red"}
    response = await client.post("/v1/jobs", json=body)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "colour"
    assert "colour" in error["message"]


async def test_model_and_models_together_are_422(client: httpx.AsyncClient) -> None:
    body = {"model": "placeholder", "models": ["placeholder"], "prompt": "x"}
    response = await client.post("/v1/jobs", json=body)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"


async def test_metadata_is_returned_as_given(
    client: httpx.AsyncClient, finished: JobWaiter
) -> None:
    metadata = {"order": 17, "tags": ["a", "b"], "nested": {"ok": True, "none": None}, "ü": "ß"}
    body = {"model": "placeholder", "prompt": "meta", "size": "64x64", "metadata": metadata}
    accepted = await submit(client, body)
    done = await finished(client, accepted["id"])

    assert accepted["metadata"] == metadata
    assert done["metadata"] == metadata
    assert done["request"]["metadata"] == metadata


async def test_list_filters_by_status_model_and_text(
    client: httpx.AsyncClient, finished: JobWaiter
) -> None:
    apple = await submit(client, {"model": "placeholder", "prompt": "red apple", "size": "64x64"})
    green = await submit(
        client, {"model": "placeholder", "prompt": "Green Apple pie", "size": "64x64"}
    )
    broken = await submit(
        client,
        {
            "model": "placeholder",
            "prompt": "blue sky",
            "size": "64x64",
            "params": {"fail": "permanent"},
        },
    )
    for job in (apple, green, broken):
        await finished(client, job["id"])

    async def ids(**params: str) -> set[str]:
        response = await client.get("/v1/jobs", params=params)
        assert response.status_code == 200, response.text
        return {j["id"] for j in response.json()["data"]}

    assert await ids() == {apple["id"], green["id"], broken["id"]}
    assert await ids(status="failed") == {broken["id"]}
    assert await ids(status="succeeded") == {apple["id"], green["id"]}
    assert await ids(status="canceled") == set()
    assert await ids(model="placeholder") == {apple["id"], green["id"], broken["id"]}
    assert await ids(model="other/model") == set()
    assert await ids(q="apple") == {apple["id"], green["id"]}, "text search is case-insensitive"
    assert await ids(q="pie") == {green["id"]}, "text search finds words inside the prompt"
    assert await ids(q="red") == {apple["id"]}
    assert await ids(q="%") == set(), "LIKE wildcards are searched literally"
    assert await ids(q="apple", status="failed") == set()
    assert (await client.get("/v1/jobs", params={"status": "bogus"})).status_code == 422


async def test_list_pages_with_a_cursor_without_duplicates_or_gaps(
    client: httpx.AsyncClient,
) -> None:
    created = [
        (
            await submit(
                client, {"model": "placeholder", "prompt": f"page {i}", "size": "64x64"}, **WAIT
            )
        )["id"]
        for i in range(7)
    ]

    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/jobs", params=params)).json()
        pages += 1
        assert len(page["data"]) <= 3
        seen += [j["id"] for j in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "paging does not end"

    assert pages == 3
    assert len(seen) == len(set(seen)) == 7, "no job twice"
    assert set(seen) == set(created), "no job left out"
    assert seen == sorted(seen, reverse=True), "newest (highest id) first"


async def test_get_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/jobs/job_doesnotexist")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_cancel_a_running_job_and_it_stays_canceled(
    client: httpx.AsyncClient, finished: JobWaiter
) -> None:
    # 1 s of simulated work: long enough to cancel mid-run, short enough to outwait.
    body = {
        "model": "placeholder",
        "prompt": "cancel me",
        "size": "64x64",
        "params": {"latency_ms": 1000},
    }
    accepted = await submit(client, body)
    await finished(client, accepted["id"], statuses={"running"})

    response = await client.post(f"/v1/jobs/{accepted['id']}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    await asyncio.sleep(1.3)  # past the time the attempt would have finished
    job = (await client.get(f"/v1/jobs/{accepted['id']}")).json()
    assert job["status"] == "canceled"
    assert job["outputs"] == []
    assert job["finished_at"] is not None


@pytest.fixture
async def one_slot_client(tmp_path: Path, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A server whose worker runs one job at a time, so the next one waits queued."""
    one_slot = settings.model_copy(update={"hosted_concurrency": 1, "data_dir": tmp_path / "one"})
    async with Runtime(one_slot) as runtime:
        app = create_app(runtime=runtime)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://imagemill.test") as http,
        ):
            yield http


async def test_cancel_a_queued_job_and_it_never_runs(
    one_slot_client: httpx.AsyncClient, finished: JobWaiter
) -> None:
    http = one_slot_client
    busy = {
        "model": "placeholder",
        "prompt": "busy",
        "size": "64x64",
        "params": {"latency_ms": 400},
    }
    first = await submit(http, busy)
    await finished(http, first["id"], statuses={"running"})
    waiting = await submit(http, {"model": "placeholder", "prompt": "waiting", "size": "64x64"})
    assert (await http.get(f"/v1/jobs/{waiting['id']}")).json()["status"] == "queued"

    response = await http.post(f"/v1/jobs/{waiting['id']}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    assert (await finished(http, first["id"]))["status"] == "succeeded"
    await asyncio.sleep(0.2)  # the freed slot would have picked it up by now
    job = (await http.get(f"/v1/jobs/{waiting['id']}")).json()
    assert job["status"] == "canceled"
    assert job["attempt"] == 0, "a canceled job is never claimed"
    assert job["outputs"] == []


async def test_cancel_a_finished_job_is_409(client: httpx.AsyncClient) -> None:
    done = await submit(client, {"model": "placeholder", "prompt": "done", "size": "64x64"}, **WAIT)
    assert done["status"] == "succeeded"

    response = await client.post(f"/v1/jobs/{done['id']}/cancel")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert (await client.get(f"/v1/jobs/{done['id']}")).json()["status"] == "succeeded"


async def test_cancel_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/jobs/job_nope/cancel")).status_code == 404


async def test_transient_failure_is_retried_and_succeeds_on_attempt_two(
    client: httpx.AsyncClient, finished: JobWaiter
) -> None:
    body = {
        "model": "placeholder",
        "prompt": "flaky",
        "size": "64x64",
        "params": {"fail": "transient", "fail_attempts": 1},
    }
    job = await finished(client, (await submit(client, body))["id"])

    assert job["status"] == "succeeded"
    assert job["attempt"] == 2
    assert job["error"] is None
    assert len(job["outputs"]) == 1


async def test_transient_failure_every_time_fails_after_max_attempts(
    client: httpx.AsyncClient, finished: JobWaiter
) -> None:
    body = {
        "model": "placeholder",
        "prompt": "always flaky",
        "size": "64x64",
        "params": {"fail": "transient"},
    }
    job = await finished(client, (await submit(client, body))["id"])

    assert job["status"] == "failed"
    assert job["attempt"] == job["max_attempts"] == 3
    assert job["error"]["code"] == "provider_unavailable"
    assert job["error"]["retryable"] is True


async def test_permanent_failure_fails_with_an_error(
    client: httpx.AsyncClient, finished: JobWaiter
) -> None:
    body = {
        "model": "placeholder",
        "prompt": "doomed",
        "size": "64x64",
        "params": {"fail": "permanent"},
    }
    job = await finished(client, (await submit(client, body))["id"])

    assert job["status"] == "failed"
    assert job["attempt"] == 1, "a permanent failure is not retried"
    assert job["outputs"] == []
    assert set(job["error"]) == {"code", "message", "retryable"}
    assert job["error"]["code"] == "provider_error"
    assert "permanent" in job["error"]["message"]
    assert job["error"]["retryable"] is False


async def test_preset_expands_template_params_and_model(client: httpx.AsyncClient) -> None:
    preset = {
        "name": "poster",
        "model": "placeholder",
        "prompt_template": "a poster of {prompt}, flat colours",
        "negative_prompt": "blurry",
        "size": "64x32",
        "params": {"latency_ms": 10},
    }
    assert (await client.post("/v1/presets", json=preset)).status_code == 201

    job = await submit(client, {"preset": "poster", "prompt": "a cat"}, **WAIT)

    assert job["status"] == "succeeded"
    assert job["model"] == "placeholder"
    assert job["request"]["prompt"] == "a poster of a cat, flat colours"
    assert job["request"]["negative_prompt"] == "blurry"
    assert job["request"]["params"] == {"latency_ms": 10}
    assert job["request"]["size"] == "64x32"
    assert (job["outputs"][0]["width"], job["outputs"][0]["height"]) == (64, 32)

    overridden = await submit(
        client,
        {"preset": "poster", "prompt": "a dog", "size": "48x48", "params": {"latency_ms": 0}},
        **WAIT,
    )
    assert overridden["request"]["params"] == {"latency_ms": 0}, "request params win over defaults"
    assert overridden["request"]["size"] == "48x48"


async def test_preset_template_without_placeholder_is_appended(client: httpx.AsyncClient) -> None:
    preset = {"name": "watercolour", "model": "placeholder", "prompt_template": "in watercolour"}
    assert (await client.post("/v1/presets", json=preset)).status_code == 201

    job = await submit(client, {"preset": "watercolour", "prompt": "a cat"}, **WAIT)

    assert job["request"]["prompt"] == "a cat in watercolour"


async def test_unknown_preset_is_422_naming_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/jobs", json={"preset": "nope", "prompt": "x"})

    assert response.status_code == 422, (
        "a preset the body names but that does not exist is bad input (like input_assets), "
        f"not a missing resource; got {response.status_code}"
    )
    assert response.json()["error"]["field"] == "preset"


# -- two owners ---------------------------------------------------------------------------


async def test_another_owners_job_is_invisible(owners: Any, finished: JobWaiter) -> None:
    body = {
        "model": "placeholder",
        "prompt": "alice's",
        "size": "64x64",
        "params": {"latency_ms": 2000},
    }
    job = await submit(owners.alice, body)
    await finished(owners.alice, job["id"], statuses={"running"})

    assert (await owners.bob.get(f"/v1/jobs/{job['id']}")).status_code == 404
    assert (await owners.bob.post(f"/v1/jobs/{job['id']}/cancel")).status_code == 404
    assert (await owners.bob.get("/v1/jobs")).json()["data"] == []
    assert (await owners.bob.get("/v1/jobs", params={"q": "alice"})).json()["data"] == []
    assert (await owners.anonymous.get(f"/v1/jobs/{job['id']}")).status_code == 401
    assert (await owners.alice.get(f"/v1/jobs/{job['id']}")).json()["status"] == "running", (
        "Bob's cancel must not have touched it"
    )
    assert [j["id"] for j in (await owners.alice.get("/v1/jobs")).json()["data"]] == [job["id"]]
    assert (await owners.alice.post(f"/v1/jobs/{job['id']}/cancel")).status_code == 200


async def test_idempotency_keys_are_per_owner(owners: Any) -> None:
    body = {"model": "placeholder", "prompt": "same key", "size": "64x64"}
    alice = await submit(owners.alice, body, **{"Idempotency-Key": "shared", **WAIT})
    bob = await submit(owners.bob, body, **{"Idempotency-Key": "shared", **WAIT})

    assert bob["id"] != alice["id"]
    assert (await owners.bob.get(f"/v1/jobs/{bob['id']}")).status_code == 200


async def test_the_cache_is_per_owner(owners: Any) -> None:
    body = {"model": "placeholder", "prompt": "mine", "size": "64x64", "seed": 1}
    await submit(owners.alice, body, **WAIT)
    bob = await submit(owners.bob, body, **WAIT)

    assert bob["cached"] is False, "Bob must not be served Alice's cached job"


async def test_delete_a_finished_job_and_its_outputs_go_with_it(
    client: httpx.AsyncClient,
) -> None:
    body = {"model": "placeholder", "prompt": "delete me", "size": "32x32", "seed": 3}
    job = await submit(client, body, **WAIT)
    asset = job["outputs"][0]["asset_id"]
    hit = await submit(client, {**body, "cache": "use"}, **WAIT)  # shares the asset
    assert hit["outputs"][0]["asset_id"] == asset

    response = await client.delete(f"/v1/jobs/{job['id']}")

    assert response.status_code == 204
    assert (await client.get(f"/v1/jobs/{job['id']}")).status_code == 404
    assert (await client.get(f"/v1/jobs/{job['id']}/events")).status_code == 404
    assert (await client.get(f"/v1/assets/{asset}")).status_code == 200, "the cache hit keeps it"
    listed = [j["id"] for j in (await client.get("/v1/jobs")).json()["data"]]
    assert listed == [hit["id"]]

    assert (await client.delete(f"/v1/jobs/{hit['id']}")).status_code == 204
    assert (await client.get(f"/v1/assets/{asset}")).status_code == 404
    assert (await client.get(f"/v1/assets/{asset}/thumbnail")).status_code == 404
    again = await submit(client, body, **WAIT)  # the cache entry went with the job
    assert again["cached"] is False


async def test_a_job_cannot_be_deleted_before_it_finishes(
    client: httpx.AsyncClient, finished: JobWaiter
) -> None:
    body = {"model": "placeholder", "prompt": "p", "size": "16x16", "params": {"latency_ms": 800}}
    job = await submit(client, body)
    await finished(client, job["id"], statuses={"running"})

    response = await client.delete(f"/v1/jobs/{job['id']}")

    assert response.status_code == 409
    assert "cancel it" in response.json()["error"]["message"]
    assert (await client.delete("/v1/jobs/job_unknown")).status_code == 404
    await client.post(f"/v1/jobs/{job['id']}/cancel")
    assert (await client.delete(f"/v1/jobs/{job['id']}")).status_code == 204


async def test_history_filters_by_creation_time(client: httpx.AsyncClient) -> None:
    job = await submit(client, {"model": "placeholder", "prompt": "dated", "size": "16x16"})
    created = job["created_at"]

    async def listed(**query: str) -> list[str]:
        page = await client.get("/v1/jobs", params=query)
        assert page.status_code == 200, page.text
        return [j["id"] for j in page.json()["data"]]

    assert await listed(created_after=created) == [job["id"]]
    assert await listed(created_before=created) == []
    assert await listed(created_after=created[:10], created_before="2999-01-01") == [job["id"]]
    assert await listed(created_after="2999-01-01T00:00:00+00:00") == []
    bad = await client.get("/v1/jobs", params={"created_after": "yesterday"})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "created_after"


# -- what imagemill records can be submitted again -----------------------------------------


async def test_seeds_past_the_top_wrap_and_each_can_be_submitted_again(
    client: httpx.AsyncClient,
) -> None:
    """``seed: 4294967295, n: 2`` once recorded 4294967296 for the second image: a seed no
    request may carry. Seeds wrap to 0, and each output's seed makes that image again."""
    body = {"model": "placeholder", "prompt": "top seed", "size": "32x32", "seed": 2**32 - 1}
    job = await submit(client, {**body, "n": 2}, **WAIT)
    assert [o["seed"] for o in job["outputs"]] == [2**32 - 1, 0]

    for output in job["outputs"]:
        again = await submit(client, {**body, "seed": output["seed"], "cache": "bypass"}, **WAIT)
        assert again["status"] == "succeeded"
        assert again["outputs"][0]["sha256"] == output["sha256"]


async def test_a_recorded_request_can_be_submitted_as_it_is(client: httpx.AsyncClient) -> None:
    first = await submit(
        client,
        {
            "model": "placeholder",
            "prompt": "as recorded",
            "aspect_ratio": "16:9",
            "seed": 5,
            "metadata": {"page": 3, "tags": ["a", "b"]},
        },
        **WAIT,
    )
    again = await submit(client, {**first["request"], "cache": "bypass"}, **WAIT)
    assert again["status"] == "succeeded"
    assert again["request"] == {**first["request"], "cache": "bypass"}
    assert again["outputs"][0]["sha256"] == first["outputs"][0]["sha256"]


async def test_an_idempotency_key_reused_for_another_request_is_422(
    client: httpx.AsyncClient,
) -> None:
    """The IETF Idempotency-Key draft: the same key with another body is an error, and
    the same body gets the first job back."""
    cat = {"model": "placeholder", "prompt": "a cat", "size": "64x64"}
    dog = {"model": "placeholder", "prompt": "a dog", "size": "128x128"}
    first = await submit(client, cat, **{"Idempotency-Key": "pet-1"})

    refused = await client.post("/v1/jobs", json=dog, headers={"Idempotency-Key": "pet-1"})
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "Idempotency-Key"

    # The same request, written differently (defaults spelled out), is the same request.
    same = await submit(client, {**cat, "n": 1, "cache": "auto"}, **{"Idempotency-Key": "pet-1"})
    assert same["id"] == first["id"]
    listed = (await client.get("/v1/jobs")).json()["data"]
    assert [j["id"] for j in listed] == [first["id"]]


async def test_an_upscale_past_the_pixel_limit_is_refused_at_submit_not_after_the_work(
    make_client: Callable[..., Any],
) -> None:
    """300x300 upscaled x2 with a 100,000-pixel limit ran for 26 s and then failed; it is
    refused at once, and within the limit the (trusted, larger) result is stored."""
    picture = io.BytesIO()
    Image.new("RGB", (300, 300), (200, 80, 40)).save(picture, format="PNG")
    body = {"kind": "upscale", "model": "local/realesrgan-x2"}
    async with make_client(max_image_pixels=100_000) as strict:
        uploaded = (await strict.post("/v1/assets", files={"file": picture.getvalue()})).json()
        refused = await strict.post("/v1/jobs", json={**body, "input_assets": [uploaded["id"]]})
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["field"] == "input_assets.0"
        assert "600x600" in error["message"] and "100,000" in error["message"]
        assert (await strict.get("/v1/jobs")).json()["data"] == []
    async with make_client(max_image_pixels=360_000) as enough:
        uploaded = (await enough.post("/v1/assets", files={"file": picture.getvalue()})).json()
        job = await submit(
            enough, {**body, "input_assets": [uploaded["id"]]}, **{"Prefer": "wait=60"}
        )
        assert job["status"] == "succeeded", job["error"]
        assert (job["outputs"][0]["width"], job["outputs"][0]["height"]) == (600, 600)


async def test_a_fallback_covers_a_model_without_credentials(client: httpx.AsyncClient) -> None:
    """Development without an OpenAI key: the chain's placeholder makes the image, marked
    as the fallback's with the reason. It was a 422 on `model`: the chain applied only
    when the key was set and the provider down."""
    body = {"model": "openai/gpt-image-1", "prompt": "a lamp", "size": "1024x1024"}
    alone = await client.post("/v1/jobs", json=body)
    assert alone.status_code == 422, alone.text
    assert alone.json()["error"]["field"] == "model"
    assert "fallback" in alone.json()["error"]["message"]

    response = await client.post(
        "/v1/jobs", json={**body, "fallback": ["placeholder"]}, headers={"Prefer": "wait=10"}
    )
    assert response.status_code == 200, response.text
    job = response.json()
    assert (job["status"], job["model"]) == ("succeeded", "openai/gpt-image-1")
    [output] = job["outputs"]
    assert (output["model"], output["fallback"]) == ("placeholder", True)
    assert output["fallback_reason"] == (
        "openai/gpt-image-1 is unavailable: OPENAI_API_KEY is not set"
    )
    assert (output["width"], output["height"]) == (1024, 1024)

    unavailable_fallback = {**body, "model": "placeholder", "fallback": ["openai/dall-e-3"]}
    refused = await client.post("/v1/jobs", json=unavailable_fallback)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "fallback.0"


async def test_a_canceled_job_retried_runs_as_the_same_job(
    client: httpx.AsyncClient, finished: JobWaiter
) -> None:
    body = {"model": "placeholder", "prompt": "again", "size": "64x64"}
    slow = {**body, "params": {"latency_ms": 60_000}}
    accepted = await submit(client, slow)
    await client.post(f"/v1/jobs/{accepted['id']}/cancel")

    response = await client.post(f"/v1/jobs/{accepted['id']}/retry")

    assert response.status_code == 202, response.text
    retried = response.json()
    assert (retried["id"], retried["status"], retried["attempt"]) == (accepted["id"], "queued", 0)
    assert retried["error"] is None and retried["finished_at"] is None
    await client.post(f"/v1/jobs/{accepted['id']}/cancel")  # 60 s of work: stop it again
    # Its stream from the start goes on past the first end, to the last.
    events = await _event_types(client, accepted["id"])
    assert events.count("done") == 2 and events[-1] == "done"


async def test_a_failed_job_retried_gets_its_attempts_afresh(
    client: httpx.AsyncClient, finished: JobWaiter
) -> None:
    body = {"model": "placeholder", "prompt": "x", "size": "64x64", "params": {"fail": "permanent"}}
    failed = await submit(client, body, **WAIT)
    assert (failed["status"], failed["attempt"]) == ("failed", 1)

    retried = (await client.post(f"/v1/jobs/{failed['id']}/retry")).json()
    assert (retried["status"], retried["attempt"], retried["error"]) == ("queued", 0, None)
    job = await finished(client, failed["id"])
    assert (job["status"], job["attempt"]) == ("failed", 1), "one attempt of its own, again"
    assert job["error"]["code"] == "provider_error"


async def test_only_a_failed_or_canceled_job_is_retried(
    client: httpx.AsyncClient, owners: Any
) -> None:
    done = await submit(client, {"model": "placeholder", "prompt": "ok", "size": "64x64"}, **WAIT)
    response = await client.post(f"/v1/jobs/{done['id']}/retry")
    assert response.status_code == 409
    assert "only a failed or canceled job" in response.json()["error"]["message"]
    assert (await client.post("/v1/jobs/job_nope/retry")).status_code == 404


async def _event_types(client: httpx.AsyncClient, job_id: str) -> list[str]:
    async with client.stream("GET", f"/v1/jobs/{job_id}/events") as r:
        text = "".join([chunk async for chunk in r.aiter_text()])
    return [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event:")]


async def test_history_is_filtered_by_metadata(owners: Any) -> None:
    alice = owners.alice

    async def job(metadata: dict[str, Any]) -> str:
        body = {"model": "placeholder", "prompt": "page", "size": "32x32", "metadata": metadata}
        return str((await submit(alice, body, **WAIT))["id"])

    page_1 = await job({"story_id": 42, "page": "1", "final": False})
    page_2 = await job({"story_id": 42, "page": 2})
    other = await job({"story_id": "43", "page": 1, "nested": {"a": [1, 2]}})
    await job({})

    async def found(http: httpx.AsyncClient = alice, **query: str) -> list[str]:
        response = await http.get("/v1/jobs", params=query)
        assert response.status_code == 200, response.text
        return [j["id"] for j in response.json()["data"]]

    assert await found(**{"metadata.story_id": "42"}) == [page_2, page_1]
    assert await found(**{"metadata.page": "1"}) == [other, page_1], "1 and '1' alike"
    assert await found(**{"metadata.story_id": "42", "metadata.page": "2"}) == [page_2]
    assert await found(**{"metadata.final": "false"}) == [page_1]
    assert await found(**{"metadata.nested": '{"a":[1,2]}'}) == [other]
    assert await found(**{"metadata.story_id": "4"}) == [], "exact, not a prefix"
    assert await found(**{"metadata.story": "42"}) == []
    assert await found(**{"metadata.story_id": "42", "limit": "1"}) == [page_2]
    assert await found(owners.bob, **{"metadata.story_id": "42"}) == [], "never another's"
    assert (await alice.delete(f"/v1/jobs/{page_2}")).status_code == 204
    assert await found(**{"metadata.story_id": "42"}) == [page_1]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("metadata.story_id=1&metadata.story_id=2", "metadata.story_id"),
        ("metadata.=1", "metadata."),
        ("metadata.story_id=%00", "metadata.story_id"),
        ("metadata.story_id=%ff", "metadata.story_id"),
        ("&".join(f"metadata.k{i}=1" for i in range(11)), "metadata"),
    ],
)
async def test_a_bad_metadata_filter_is_422_naming_it(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    response = await client.get(f"/v1/jobs?{query}")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


async def test_a_job_waiting_for_its_provider_is_queued_with_its_place_in_line(
    make_client: Callable[..., Any], finished: JobWaiter
) -> None:
    """Waiting for a provider slot, jobs read `running` at progress 0: no UI could show
    "queued, 2nd in line"."""
    async with make_client(provider_concurrency={"placeholder": 1}) as client:
        body = {"model": "placeholder", "prompt": "slow", "size": "32x32"}
        slow = {**body, "params": {"latency_ms": 60_000}}
        first = await submit(client, slow)
        await finished(client, first["id"], statuses={"running"})
        second, third = await submit(client, body), await submit(client, body)

        async def seen(job: dict[str, Any]) -> dict[str, Any]:
            return dict((await client.get(f"/v1/jobs/{job['id']}")).json())

        for _ in range(3000):  # until both wait in line (30 s at most)
            if (await seen(third))["queue_position"] == 2:
                break
            await asyncio.sleep(0.01)
        assert ((await seen(second))["status"], (await seen(second))["queue_position"]) == (
            "queued",
            1,
        )
        assert ((await seen(third))["status"], (await seen(third))["queue_position"]) == (
            "queued",
            2,
        )
        assert (await seen(first))["queue_position"] is None
        listed = (await client.get("/v1/jobs")).json()["data"]
        assert [j["queue_position"] for j in listed] == [2, 1, None]
        await client.post(f"/v1/jobs/{first['id']}/cancel")
        assert (await finished(client, third["id"]))["status"] == "succeeded"
        assert (await seen(third))["queue_position"] is None
