"""Favourites, ``/v1/collections`` and ``POST /v1/archives``: marking and filing outputs,
what deleting a job or a collection takes with it, zips named from prompts and seeds,
and owners who never touch each other's."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import httpx
from PIL import Image

from owners import TwoOwners

WAIT = {"Prefer": "wait=20"}


async def _made(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    request = {"model": "placeholder", "prompt": "a red fox", "size": "64x48", **body}
    response = await http.post("/v1/jobs", json=request, headers=WAIT)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def test_a_favourite_is_marked_listed_and_unmarked(client: httpx.AsyncClient) -> None:
    job = await _made(client, n=2)
    plain = await _made(client, prompt="not a favourite")

    marked = await client.put(f"/v1/jobs/{job['id']}/outputs/1/favourite")
    again = await client.put(f"/v1/jobs/{job['id']}/outputs/1/favourite")

    assert (marked.status_code, again.status_code) == (204, 204)
    outputs = (await client.get(f"/v1/jobs/{job['id']}")).json()["outputs"]
    assert [o["favourite"] for o in outputs] == [False, True]
    listed = (await client.get("/v1/jobs", params={"favourite": "true"})).json()["data"]
    assert [j["id"] for j in listed] == [job["id"]]
    assert plain["outputs"][0]["favourite"] is False

    assert (await client.delete(f"/v1/jobs/{job['id']}/outputs/1/favourite")).status_code == 204
    assert (await client.get("/v1/jobs", params={"favourite": "true"})).json()["data"] == []
    missing = await client.put(f"/v1/jobs/{job['id']}/outputs/5/favourite")
    assert missing.status_code == 404


async def test_a_collection_files_outputs_newest_first_and_keeps_them_once(
    client: httpx.AsyncClient,
) -> None:
    first = await _made(client, prompt="first")
    second = await _made(client, prompt="second", n=2)
    created = await client.post("/v1/collections", json={"name": "Spring shoot"})
    assert created.status_code == 201, created.text
    board = created.json()
    assert (board["object"], board["name"], board["size"]) == ("collection", "Spring shoot", 0)

    items = [{"job_id": first["id"], "index": 0}, {"job_id": second["id"], "index": 1}]
    filed = await client.post(f"/v1/collections/{board['id']}/items", json={"items": items})
    await client.post(f"/v1/collections/{board['id']}/items", json={"items": items[:1]})

    assert filed.status_code == 200, filed.text
    shown = (await client.get(f"/v1/collections/{board['id']}")).json()
    assert shown["size"] == 2
    assert {(i["job_id"], i["output"]["index"]) for i in shown["items"]} == {
        (first["id"], 0),
        (second["id"], 1),
    }
    assert {i["prompt"] for i in shown["items"]} == {"first", "second"}
    assert shown["items"][0]["output"]["url"].endswith(shown["items"][0]["output"]["asset_id"])
    in_it = (await client.get("/v1/jobs", params={"collection_id": board["id"]})).json()["data"]
    assert {j["id"] for j in in_it} == {first["id"], second["id"]}

    listed = (await client.get("/v1/collections")).json()["data"]
    assert [(c["name"], c["size"]) for c in listed] == [("Spring shoot", 2)]


async def test_names_clash_and_bad_items_are_named(client: httpx.AsyncClient) -> None:
    job = await _made(client)
    board = (await client.post("/v1/collections", json={"name": "a"})).json()

    clash = await client.post("/v1/collections", json={"name": "a"})
    blank = await client.post("/v1/collections", json={"name": "   "})
    renamed = await client.patch(f"/v1/collections/{board['id']}", json={"name": "b"})
    bad = await client.post(
        f"/v1/collections/{board['id']}/items",
        json={"items": [{"job_id": job["id"], "index": 0}, {"job_id": job["id"], "index": 3}]},
    )

    assert (clash.status_code, clash.json()["error"]["field"]) == (409, "name")
    assert (blank.status_code, blank.json()["error"]["field"]) == (422, "name")
    assert renamed.json()["name"] == "b"
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "items.1")
    assert (await client.get(f"/v1/collections/{board['id']}")).json()["size"] == 0  # all or none


async def test_deleting_a_job_takes_it_out_and_deleting_a_collection_keeps_the_images(
    client: httpx.AsyncClient,
) -> None:
    kept = await _made(client, prompt="kept")
    gone = await _made(client, prompt="gone")
    board = (await client.post("/v1/collections", json={"name": "board"})).json()
    items = [{"job_id": kept["id"], "index": 0}, {"job_id": gone["id"], "index": 0}]
    await client.post(f"/v1/collections/{board['id']}/items", json={"items": items})

    assert (await client.delete(f"/v1/jobs/{gone['id']}")).status_code == 204
    shown = (await client.get(f"/v1/collections/{board['id']}")).json()
    assert [i["job_id"] for i in shown["items"]] == [kept["id"]]
    removed = await client.delete(f"/v1/collections/{board['id']}/items/{kept['id']}/0")
    assert removed.status_code == 204
    assert (await client.get(f"/v1/collections/{board['id']}")).json()["size"] == 0

    await client.post(f"/v1/collections/{board['id']}/items", json={"items": items[:1]})
    assert (await client.delete(f"/v1/collections/{board['id']}")).status_code == 204
    assert (await client.get(f"/v1/collections/{board['id']}")).status_code == 404
    assert (await client.get(kept["outputs"][0]["url"])).status_code == 200


async def test_an_archive_zips_the_outputs_named_from_prompt_and_seed(
    client: httpx.AsyncClient,
) -> None:
    fox = await _made(client, prompt="A red fox, in snow!", seed=7)
    same = await _made(client, prompt="a red fox in snow", seed=7, cache="bypass")
    pair = await _made(client, prompt="two owls", n=2)
    items = [
        {"job_id": fox["id"], "index": 0},
        {"job_id": same["id"], "index": 0},
        {"job_id": pair["id"], "index": 1},
    ]

    response = await client.post("/v1/archives", json={"items": items})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].startswith("attachment")
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
        seed = pair["outputs"][1]["seed"]
        assert names == [
            "a-red-fox-in-snow-seed-7.png",
            "a-red-fox-in-snow-seed-7-2.png",
            f"two-owls-seed-{seed}.png",
        ]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        owls = await client.get(pair["outputs"][1]["url"])
        assert archive.read(names[2]) == owls.content
        assert Image.open(io.BytesIO(archive.read(names[0]))).size == (64, 48)

    missing = await client.post(
        "/v1/archives", json={"items": [*items, {"job_id": "job_nope", "index": 0}]}
    )
    assert (missing.status_code, missing.json()["error"]["field"]) == (422, "items.3")


async def test_nobody_marks_files_or_zips_another_owners_outputs(owners: TwoOwners) -> None:
    job = await _made(owners.alice, prompt="alice's")
    ref = {"job_id": job["id"], "index": 0}
    bobs = (await owners.bob.post("/v1/collections", json={"name": "mine"})).json()
    alices = (await owners.alice.post("/v1/collections", json={"name": "mine"})).json()

    assert (await owners.bob.put(f"/v1/jobs/{job['id']}/outputs/0/favourite")).status_code == 404
    filed = await owners.bob.post(f"/v1/collections/{bobs['id']}/items", json={"items": [ref]})
    assert (filed.status_code, filed.json()["error"]["field"]) == (422, "items.0")
    assert (await owners.bob.get(f"/v1/collections/{alices['id']}")).status_code == 404
    assert (await owners.bob.delete(f"/v1/collections/{alices['id']}")).status_code == 404
    zipped = await owners.bob.post("/v1/archives", json={"items": [ref]})
    assert zipped.status_code == 422
    assert [c["id"] for c in (await owners.bob.get("/v1/collections")).json()["data"]] == [
        bobs["id"]
    ]
    assert (await owners.anonymous.get("/v1/collections")).status_code == 401


async def test_an_output_is_named_with_strict_types(client: httpx.AsyncClient) -> None:
    job = await _made(client)
    board = (await client.post("/v1/collections", json={"name": "strict"})).json()
    for body in (
        {"items": [{"job_id": job["id"], "index": False}]},
        {"items": [{"job_id": job["id"], "index": "0"}]},
    ):
        for path in ("/v1/archives", f"/v1/collections/{board['id']}/items"):
            refused = await client.post(path, json=body)
            assert refused.status_code == 422, (path, body)
            assert refused.json()["error"]["field"] == "items.0.index"
    assert (await client.post("/v1/collections", json={"name": 7})).status_code == 422
