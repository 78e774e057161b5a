"""``/v1/batches``: job requests submitted as one, one concurrency limit, one progress."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from api.conftest import JobWaiter

SLOW = {"model": "placeholder", "size": "32x32", "params": {"latency_ms": 400}}


async def _batch(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post("/v1/batches", json=body)
    assert response.status_code == 202, response.text
    batch: dict[str, Any] = response.json()
    return batch


async def _until_done(http: httpx.AsyncClient, batch_id: str) -> list[dict[str, Any]]:
    """Every state of the batch seen, polling, until it ended (60 s at most)."""
    seen = []
    for _ in range(3000):
        batch = (await http.get(f"/v1/batches/{batch_id}")).json()
        seen.append(batch)
        if batch["status"] in ("succeeded", "failed", "canceled"):
            return seen
        await asyncio.sleep(0.02)
    raise AssertionError(f"batch {batch_id} still {seen[-1]['status']}")


async def test_twelve_pages_five_at_a_time(client: httpx.AsyncClient) -> None:
    """A story of 12 pages at most 5 at a time: never more than 5 running, the others
    queued; progress rises to 1 and never goes back; the items are jobs in page order."""
    requests = [
        {**SLOW, "prompt": f"page {page}", "metadata": {"page": page}} for page in range(12)
    ]
    body = {"requests": requests, "concurrency": 5, "metadata": {"story_id": 7}}
    batch = await _batch(client, body)
    assert (batch["total"], batch["concurrency"], batch["metadata"]) == (12, 5, {"story_id": 7})
    assert batch["counts"]["queued"] + batch["counts"]["running"] == 12

    seen = await _until_done(client, batch["id"])

    assert max(b["counts"]["running"] for b in seen) <= 5
    assert any(b["counts"]["running"] == 5 and b["counts"]["queued"] > 0 for b in seen)
    progress = [b["progress"] for b in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert (seen[-1]["status"], seen[-1]["counts"]["succeeded"]) == ("succeeded", 12)
    items = (await client.get("/v1/jobs", params={"batch_id": batch["id"], "limit": 50})).json()
    assert [j["id"] for j in reversed(items["data"])] == batch["job_ids"]
    pages = [j["request"]["metadata"]["page"] for j in reversed(items["data"])]
    assert pages == list(range(12)) and all(j["batch_id"] == batch["id"] for j in items["data"])


async def test_a_failed_item_is_retried_through_the_batch(
    client: httpx.AsyncClient, finished: JobWaiter
) -> None:
    fails = {**SLOW, "prompt": "bad page", "params": {"fail": "permanent"}}
    batch = await _batch(client, {"requests": [{**SLOW, "prompt": "good page"}, fails]})
    ended = (await _until_done(client, batch["id"]))[-1]
    assert (ended["status"], ended["counts"]["failed"], ended["progress"]) == ("failed", 1, 1.0)

    retried = (await client.post(f"/v1/batches/{batch['id']}/retry")).json()

    good, bad = batch["job_ids"]
    assert retried["counts"]["succeeded"] == 1, "the succeeded item is left alone"
    assert retried["progress"] == 1.0, "progress does not go back for a retry"
    assert (await finished(client, bad))["attempt"] == 1
    assert (await client.get(f"/v1/jobs/{good}")).json()["attempt"] == 1


async def test_an_item_that_failed_in_an_outage_succeeds_when_the_batch_is_retried(
    client: httpx.AsyncClient, finished: JobWaiter
) -> None:
    outage_ends = time.time() + 1.0
    down = {"fail": "permanent", "fail_until": outage_ends}  # not retried by itself
    requests = [{**SLOW, "prompt": "page 1"}, {**SLOW, "prompt": "page 2", "params": down}]
    batch = await _batch(client, {"requests": requests, "concurrency": 5})
    ended = (await _until_done(client, batch["id"]))[-1]
    assert (ended["status"], ended["counts"]["failed"]) == ("failed", 1)

    await asyncio.sleep(max(0.0, outage_ends - time.time()))  # past the outage, by the clock
    await client.post(f"/v1/batches/{batch['id']}/retry")
    again = (await _until_done(client, batch["id"]))[-1]

    assert (again["status"], again["counts"]["succeeded"]) == ("succeeded", 2)
    assert (await finished(client, batch["job_ids"][1]))["outputs"]


async def test_a_batch_is_checked_whole_before_anything_is_created(
    client: httpx.AsyncClient,
) -> None:
    requests = [{**SLOW, "prompt": "fine"}, {**SLOW, "prompt": "x", "size": "64x64\n"}]
    response = await client.post("/v1/batches", json={"requests": requests})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "requests.1.size"
    unknown = [{**SLOW, "prompt": "x"}, {**SLOW, "model": "nobody/nothing", "prompt": "y"}]
    response = await client.post("/v1/batches", json={"requests": unknown})
    assert response.json()["error"]["field"] == "requests.1.model"
    assert (await client.get("/v1/jobs")).json()["data"] == [], "nothing was created"
    assert (await client.get("/v1/batches")).json()["data"] == []
    for body, field in (
        ({"requests": []}, "requests"),
        ({"requests": [{**SLOW, "prompt": "x"}], "concurrency": 0}, "concurrency"),
        ({"requests": [{**SLOW, "prompt": "x"}], "concurrency": "5"}, "concurrency"),
        ({"requests": [{**SLOW, "prompt": "x"}], "concurrency": 2.5}, "concurrency"),
        ({"requests": [{"models": ["placeholder"], "prompt": "x"}]}, "requests.0.models"),
    ):
        refused = await client.post("/v1/batches", json=body)
        assert refused.status_code == 422 and refused.json()["error"]["field"] == field


async def test_cancel_stops_what_has_not_finished(client: httpx.AsyncClient) -> None:
    endless = {**SLOW, "params": {"latency_ms": 60_000}}
    batch = await _batch(
        client, {"requests": [{**endless, "prompt": f"p{i}"} for i in range(4)], "concurrency": 1}
    )
    canceled = (await client.post(f"/v1/batches/{batch['id']}/cancel")).json()
    assert (canceled["status"], canceled["counts"]["canceled"]) == ("canceled", 4)
    listed = (await client.get("/v1/batches")).json()["data"]
    assert [b["id"] for b in listed] == [batch["id"]]


async def test_another_owners_batch_is_404(owners: Any) -> None:
    batch = await _batch(owners.alice, {"requests": [{**SLOW, "prompt": "mine"}]})
    for path in (f"/v1/batches/{batch['id']}", "/v1/batches/bat_nope"):
        assert (await owners.bob.get(path)).status_code == 404
    for action in ("cancel", "retry"):
        response = await owners.bob.post(f"/v1/batches/{batch['id']}/{action}")
        assert response.status_code == 404
    assert (await owners.bob.get("/v1/batches")).json()["data"] == []


async def test_the_batch_stream_carries_its_jobs_its_progress_and_one_done(
    client: httpx.AsyncClient,
) -> None:
    quick = {"model": "placeholder", "size": "32x32", "params": {"latency_ms": 200}}
    batch = await _batch(
        client, {"requests": [{**quick, "prompt": f"p{i}"} for i in range(3)], "concurrency": 2}
    )
    frames: list[tuple[str, dict[str, Any], str | None]] = []
    async with aconnect_sse(client, "GET", f"/v1/batches/{batch['id']}/events") as source:
        async for event in source.aiter_sse():
            frames.append((event.event, json.loads(event.data), event.id or None))

    kinds = [kind for kind, _, _ in frames]
    assert kinds[-1] == "done" and kinds.count("done") == 4, "each job's, then the batch's"
    assert frames[-1][1] == {"batch_id": batch["id"], "status": "succeeded"}
    tallies = [data for kind, data, _ in frames if kind == "batch"]
    progress = [t["progress"] for t in tallies]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert max(t["counts"]["running"] for t in tallies) <= 2
    # Stored events have their positions; live progress reports none of their own.
    job_events = [
        (data, frame_id)
        for _, data, frame_id in frames
        if "job_id" in data and not data.get("live")
    ]
    assert {data["job_id"] for data, _ in job_events} == set(batch["job_ids"])
    assert any(data.get("live") for _, data, _ in frames), "progress went live"
    positions = [int(frame_id or 0) for _, frame_id in job_events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)

    # Resumed after the first job event: the rest of the log, then the tally and done.
    resumed: list[tuple[str, dict[str, Any]]] = []
    headers = {"Last-Event-ID": str(positions[0])}
    async with aconnect_sse(
        client, "GET", f"/v1/batches/{batch['id']}/events", headers=headers
    ) as source:
        async for event in source.aiter_sse():
            resumed.append((event.event, json.loads(event.data)))
    again = [data["id"] for _, data in resumed if "job_id" in data and not data.get("live")]
    assert again == positions[1:], "every later job event, once, in order"
    assert [kind for kind, _ in resumed[-2:]] == ["batch", "done"]


async def test_a_concurrency_written_as_json_schema_allows_it_is_taken(
    client: httpx.AsyncClient,
) -> None:
    """`"concurrency": 83.0` is an integer to JSON Schema (the contract run sent it):
    it was a 422."""
    batch = await _batch(client, {"requests": [{**SLOW, "prompt": "x"}], "concurrency": 3.0})
    assert batch["concurrency"] == 3


async def test_the_batch_deadline_is_each_item_deadline_unless_it_gives_its_own(
    client: httpx.AsyncClient,
) -> None:
    own = {**SLOW, "prompt": "mine", "deadline_seconds": 30}
    batch = await _batch(
        client, {"requests": [{**SLOW, "prompt": "theirs"}, own], "deadline_seconds": 120.5}
    )
    assert (batch["deadline_seconds"], batch["webhook_url"], batch["completions"]) == (
        120.5,
        None,
        0,
    )

    theirs, mine = [(await client.get(f"/v1/jobs/{i}")).json() for i in batch["job_ids"]]
    assert theirs["request"]["deadline_seconds"] == 120.5
    assert mine["request"]["deadline_seconds"] == 30
    for job, seconds in ((theirs, 120.5), (mine, 30)):
        created = datetime.fromisoformat(job["created_at"])
        assert datetime.fromisoformat(job["deadline_at"]) - created == timedelta(seconds=seconds)
    ended = (await _until_done(client, batch["id"]))[-1]
    assert (ended["completions"], ended["deadline_seconds"]) == (1, 120.5)
    for deadline in ("60", 0, -1, 86_401, True):
        body = {"requests": [{**SLOW, "prompt": "x"}], "deadline_seconds": deadline}
        refused = await client.post("/v1/batches", json=body)
        assert refused.status_code == 422, deadline
        assert refused.json()["error"]["field"] == "deadline_seconds"
