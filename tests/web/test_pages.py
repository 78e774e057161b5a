"""The studio's pages over ASGI: what each renders, sign-in, and that one owner never
sees another's work (the browser tests drive the same pages in Chromium)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from imagemill.api.deps import SESSION_COOKIE
from imagemill.jobs.service import utcnow
from owners import BASE_URL, TwoOwners

SECOND_MODEL = "local/tiny"  # saved by this folder's conftest


async def _finished_job(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    request = {"model": "placeholder", "size": "64x48", "prompt": "a red fox", **body}
    request = {k: v for k, v in request.items() if v is not None}
    response = await http.post("/v1/jobs", json=request, headers={"Prefer": "wait=10"})
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


@asynccontextmanager
async def _signed_in(owners: TwoOwners, key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client (no Authorization header) signed in through the form."""
    transport = httpx.ASGITransport(app=owners.app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        response = await http.post("/signin", data={"key": key, "next": "/gallery"})
        assert response.status_code == 303
        assert response.headers["location"] == "/gallery"
        yield http


async def test_the_generate_page_offers_every_model_and_recent_jobs(
    client: httpx.AsyncClient,
) -> None:
    job = await _finished_job(client, prompt="lighthouse at dusk")

    page = await client.get("/")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'self'
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<form id="generate"' in page.text
    assert 'value="placeholder"' in page.text
    assert f'data-job="{job["id"]}"' in page.text
    assert job["outputs"][0]["thumbnail_url"] in page.text
    # The params form is built in the browser from the model's JSON Schema.
    assert '"latency_ms"' in page.text


async def test_the_generate_page_prefills_an_image_to_edit(client: httpx.AsyncClient) -> None:
    job = await _finished_job(client)
    asset = job["outputs"][0]["asset_id"]

    page = await client.get(f"/?edit={asset}")

    assert f'data-asset="{asset}"' in page.text
    assert '<option value="edit" selected>' in page.text


async def test_pages_without_a_sign_in_send_the_browser_to_sign_in(owners: TwoOwners) -> None:
    for path in [
        "/",
        "/gallery?model=placeholder",
        "/gallery/job_x",
        "/compare/grp_x",
        "/compare",
        "/batches/bat_x",
        "/presets",
        "/collections",
        "/collections/col_x",
    ]:
        response = await owners.anonymous.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/signin?next=")
    assert (
        "next=/gallery%3Fmodel%3Dplaceholder"
        in (await owners.anonymous.get("/gallery?model=placeholder")).headers["location"]
    )


async def test_signing_in_sets_a_cookie_scripts_cannot_read(owners: TwoOwners) -> None:
    response = await owners.anonymous.post("/signin", data={"key": owners.alice_key})

    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Max-Age=2592000" in cookie


async def test_a_wrong_key_is_refused_on_the_form(owners: TwoOwners) -> None:
    response = await owners.anonymous.post("/signin", data={"key": "im_wrong", "next": "/"})

    assert response.status_code == 401
    assert "That key is not valid." in response.text
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("target", ["//elsewhere.example/", "https://elsewhere.example/", ""])
async def test_sign_in_never_sends_the_browser_to_another_site(
    owners: TwoOwners, target: str
) -> None:
    response = await owners.anonymous.post("/signin", data={"key": owners.bob_key, "next": target})

    assert response.headers["location"] == "/"


async def test_the_session_cookie_signs_api_calls_and_event_streams(owners: TwoOwners) -> None:
    async with _signed_in(owners, owners.alice_key) as browser:
        job = await _finished_job(browser)
        assert (await browser.get("/v1/jobs")).json()["data"][0]["id"] == job["id"]
        events = await browser.get(f"/v1/jobs/{job['id']}/events")
        assert events.status_code == 200
        assert "event: done" in events.text

        signed_out = await browser.post("/signout")
        assert signed_out.headers["location"] == "/signin"
        browser.cookies.clear()  # what the browser does with the expired cookie
        assert (await browser.get("/v1/jobs")).status_code == 401


async def test_a_revoked_key_ends_its_session(owners: TwoOwners) -> None:
    async with _signed_in(owners, owners.bob_key) as browser:
        assert (await browser.get("/")).status_code == 200
        await owners.runtime.accounts.revoke_key(owners.bob_key[:10], utcnow())

        assert (await browser.get("/")).status_code == 303
        assert (await browser.get("/v1/jobs")).status_code == 401


async def test_another_owner_sees_none_of_your_work(owners: TwoOwners) -> None:
    alice_job = await _finished_job(owners.alice, models=None)
    group = (
        await owners.alice.post(
            "/v1/jobs",
            json={"models": ["placeholder", SECOND_MODEL], "prompt": "p", "size": "64x64"},
        )
    ).json()
    asset = alice_job["outputs"][0]["asset_id"]
    board = (await owners.alice.post("/v1/collections", json={"name": "heron board"})).json()
    item = {"job_id": alice_job["id"], "index": 0}
    await owners.alice.post(f"/v1/collections/{board['id']}/items", json={"items": [item]})

    async with _signed_in(owners, owners.bob_key) as bob:
        gallery = await bob.get("/gallery")
        generate = await bob.get("/")
        assert gallery.status_code == generate.status_code == 200
        for page in (gallery.text, generate.text):
            assert asset not in page
            assert alice_job["id"] not in page
        assert (await bob.get(f"/v1/assets/{asset}")).status_code == 404
        assert (await bob.get(f"/v1/assets/{asset}/thumbnail")).status_code == 404
        assert (await bob.get(f"/gallery/{alice_job['id']}")).status_code == 404
        assert (await bob.get(f"/compare/{group['group_id']}")).status_code == 404
        assert (await bob.get(f"/collections/{board['id']}")).status_code == 404
        assert "heron board" not in (await bob.get("/collections")).text
        assert "Signed in as <strong>bob</strong>" in (await bob.get("/collections")).text

    async with _signed_in(owners, owners.alice_key) as alice:
        assert asset in (await alice.get("/gallery")).text
        assert asset in (await alice.get(f"/collections/{board['id']}")).text
        assert "heron board" in (await alice.get("/collections")).text
        assert (await alice.get(f"/v1/assets/{asset}")).status_code == 200


async def test_the_gallery_pages_newest_first_as_it_scrolls(client: httpx.AsyncClient) -> None:
    made = [(await _finished_job(client, prompt=f"tile {i}"))["id"] for i in range(27)]

    first = await client.get("/gallery")
    shown = re.findall(r'class="open" href="/gallery/(job_\w+)', first.text)
    assert shown == made[::-1][:24]
    [next_page] = re.findall(r'data-next="([^"]+)"', first.text)
    rest = await client.get(next_page.replace("&amp;", "&"))

    assert "<html" not in rest.text, "only the tiles, for the script to append"
    assert re.findall(r'class="open" href="/gallery/(job_\w+)', rest.text) == made[::-1][24:]
    assert "data-next" not in rest.text


async def test_the_gallery_filters_by_status_text_model_and_date(
    client: httpx.AsyncClient,
) -> None:
    fox = await _finished_job(client, prompt="a fox in snow")
    owl = await _finished_job(client, prompt="an owl at night")
    failed = await _finished_job(client, prompt="a broken one", params={"fail": "permanent"})

    def shown(page: httpx.Response) -> set[str]:
        return set(re.findall(r'href="/gallery/(job_\w+)', page.text))

    assert shown(await client.get("/gallery?status=failed")) == {failed["id"]}
    assert shown(await client.get("/gallery?q=owl")) == {owl["id"]}
    assert shown(await client.get("/gallery?model=placeholder&status=&kind=image&q=")) == {
        fox["id"],
        owl["id"],
        failed["id"],
    }
    today = fox["created_at"][:10]
    assert len(shown(await client.get(f"/gallery?since={today}&until={today}"))) == 3
    none_match = await client.get("/gallery?until=2000-01-01")
    assert shown(none_match) == set()
    assert "Nothing matches these filters" in none_match.text
    assert '<a href="/gallery">Clear filters</a>' in none_match.text
    assert "Generate something" not in none_match.text  # there is something: not here
    assert (await client.get("/gallery?status=bogus")).status_code == 422


async def test_a_job_page_shows_what_made_the_image(client: httpx.AsyncClient) -> None:
    job = await _finished_job(client, prompt="a teapot", seed=42, params={"latency_ms": 10})

    page = await client.get(f"/gallery/{job['id']}")

    assert page.status_code == 200
    text = page.text
    assert "a teapot" in text
    assert ">42<" in text
    assert "latency_ms" in text
    assert job["outputs"][0]["url"] in text
    assert 'width="64" height="48"' in text, "the box is reserved before the image loads"
    for action in ["rerun", "vary", "delete"]:
        assert f'data-action="{action}"' in text


async def test_text_outputs_are_shown_as_text_on_the_job_page_and_in_the_gallery(
    client: httpx.AsyncClient,
) -> None:
    caption = await _finished_job(
        client,
        kind="caption",
        size=None,
        prompt="Linen dress <b>sage</b>",
        params={"tones": ["playful"], "hashtags": 2},
    )
    enhanced = await _finished_job(client, prompt="a fox", enhance={"model": "placeholder"})

    page = (await client.get(f"/gallery/{caption['id']}")).text
    assert '<blockquote class="text" data-tone="playful">[placeholder caption, playful]' in page
    assert "Linen dress &lt;b&gt;sage&lt;/b&gt;" in page  # text, never markup
    assert "#Linen #dress" in page
    assert "?edit=" not in page  # a text is no image to edit
    page = (await client.get(f"/gallery/{enhanced['id']}")).text
    assert "<dt>Enhanced prompt</dt><dd>[placeholder enhancement] a fox, " in page
    gallery = (await client.get("/gallery")).text
    assert '<blockquote class="text">[placeholder caption, playful]' in gallery


async def test_the_comparison_shows_each_model_with_its_time_and_cost(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.post(
        "/v1/jobs",
        json={"models": ["placeholder", SECOND_MODEL], "prompt": "p", "size": "64x64"},
        headers={"Prefer": "wait=60"},
    )
    group = answer.json()
    assert [job["status"] for job in group["jobs"]] == ["succeeded", "succeeded"]

    page = await client.get(f"/compare/{group['group_id']}")

    assert page.status_code == 200
    assert "--columns: 2" in page.text
    for job in group["jobs"]:
        assert f'data-job="{job["id"]}"' in page.text
    assert page.text.count('data-field="cost"') == 2
