"""``/v1/assets``: bytes with immutable caching, thumbnails, dedup, ownership, signed links."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from PIL import Image

from imagemill.storage import images
from imagemill.storage.images import THUMBNAIL_SIDE

WAIT = {"Prefer": "wait=10"}
Decode = Callable[[bytes], Image.Image]


async def generate(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"model": "placeholder", "prompt": "an asset", "size": "64x64", **fields}
    response = await http.post("/v1/jobs", json=body, headers=WAIT)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    assert job["status"] == "succeeded", job
    return job


async def test_asset_bytes_carry_a_sha256_etag_and_immutable_caching(
    client: httpx.AsyncClient, decode: Decode
) -> None:
    output = (await generate(client))["outputs"][0]

    response = await client.get(f"/v1/assets/{output['asset_id']}")

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    sha = hashlib.sha256(response.content).hexdigest()
    assert sha == output["sha256"]
    assert response.headers["etag"] == f'"{sha}"'
    cache_control = response.headers["cache-control"]
    assert "immutable" in cache_control
    assert "max-age=31536000" in cache_control
    assert int(response.headers["content-length"]) == len(response.content) == output["byte_size"]
    assert decode(response.content).size == (64, 64)


async def test_asset_bytes_are_never_gzipped(client: httpx.AsyncClient) -> None:
    output = (await generate(client, size="256x256"))["outputs"][0]

    response = await client.get(output["url"], headers={"Accept-Encoding": "gzip"})

    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert hashlib.sha256(response.content).hexdigest() == output["sha256"]


async def test_if_none_match_answers_304(client: httpx.AsyncClient) -> None:
    output = (await generate(client))["outputs"][0]
    url = f"/v1/assets/{output['asset_id']}"
    etag = (await client.get(url)).headers["etag"]

    response = await client.get(url, headers={"If-None-Match": etag})
    listed = await client.get(url, headers={"If-None-Match": f'"other", {etag}'})
    stale = await client.get(url, headers={"If-None-Match": '"not-the-sha"'})

    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert listed.status_code == 304
    assert stale.status_code == 200
    assert stale.content


@pytest.mark.parametrize("header", ["*", "W/{etag}", '"other" ,W/{etag}'])
async def test_if_none_match_compares_as_rfc_9110_says(
    client: httpx.AsyncClient, header: str
) -> None:
    """``*`` and a weak tag (``W/"…"``, as proxies that compress rewrite ours) match:
    both were answered with the whole body again."""
    output = (await generate(client))["outputs"][0]
    url = f"/v1/assets/{output['asset_id']}"
    etag = (await client.get(url)).headers["etag"]
    response = await client.get(url, headers={"If-None-Match": header.format(etag=etag)})
    assert response.status_code == 304


async def test_thumbnail_is_a_small_webp(client: httpx.AsyncClient, decode: Decode) -> None:
    output = (await generate(client, size="800x400"))["outputs"][0]

    response = await client.get(output["thumbnail_url"])

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/webp"
    assert "immutable" in response.headers["cache-control"]
    thumb = decode(response.content)
    assert thumb.format == "WEBP"
    assert max(thumb.size) == THUMBNAIL_SIDE == 384
    assert thumb.size == (384, 192), "the aspect ratio is kept"
    again = await client.get(output["thumbnail_url"])
    assert again.content == response.content, "made once, then served from storage"
    not_modified = await client.get(
        output["thumbnail_url"], headers={"If-None-Match": response.headers["etag"]}
    )
    assert not_modified.status_code == 304


async def test_thumbnail_of_a_small_image_is_not_enlarged(
    client: httpx.AsyncClient, decode: Decode
) -> None:
    output = (await generate(client, size="64x32"))["outputs"][0]

    thumb = decode((await client.get(output["thumbnail_url"])).content)

    assert thumb.format == "WEBP"
    assert thumb.size == (64, 32)


async def test_identical_bytes_are_stored_once(client: httpx.AsyncClient) -> None:
    first = await generate(client, seed=5, cache="bypass")
    second = await generate(client, seed=5, cache="bypass")
    other = await generate(client, seed=6, cache="bypass")

    assert second["id"] != first["id"]
    assert second["cached"] is False, "bypass ran the model again"
    assert second["outputs"][0]["sha256"] == first["outputs"][0]["sha256"]
    assert second["outputs"][0]["asset_id"] == first["outputs"][0]["asset_id"]
    assert other["outputs"][0]["asset_id"] != first["outputs"][0]["asset_id"]


async def test_unknown_asset_is_404(client: httpx.AsyncClient) -> None:
    for url in (
        "/v1/assets/ast_nope",
        "/v1/assets/ast_nope/thumbnail",
        "/v1/assets/ast_nope?token=abc",
    ):
        response = await client.get(url)
        assert response.status_code == 404, url
        assert response.json()["error"]["code"] == "not_found"


async def test_a_non_ascii_token_is_404_not_500(served: httpx.AsyncClient) -> None:
    output = (await generate(served))["outputs"][0]

    response = await served.get(f"/v1/assets/{output['asset_id']}", params={"token": "é" * 24})

    assert response.status_code == 404, (
        f"a garbage token must be a plain 404; got {response.status_code} {response.text} "
        "(auth.check_asset_token raises TypeError on non-ASCII input)"
    )


# -- two owners ---------------------------------------------------------------------------


async def test_another_owners_asset_and_thumbnail_are_404(owners: Any) -> None:
    output = (await generate(owners.alice))["outputs"][0]
    asset_url = f"/v1/assets/{output['asset_id']}"

    assert (await owners.alice.get(asset_url)).status_code == 200
    assert (await owners.bob.get(asset_url)).status_code == 404
    assert (await owners.bob.get(f"{asset_url}/thumbnail")).status_code == 404
    assert (await owners.anonymous.get(asset_url)).status_code == 401
    assert (await owners.anonymous.get(f"{asset_url}/thumbnail")).status_code == 401


async def test_same_bytes_for_two_owners_are_two_assets(owners: Any) -> None:
    alice = (await generate(owners.alice, seed=9))["outputs"][0]
    bob = (await generate(owners.bob, seed=9))["outputs"][0]

    assert bob["sha256"] == alice["sha256"]
    assert bob["asset_id"] != alice["asset_id"], "an asset row belongs to one owner"
    assert (await owners.bob.get(f"/v1/assets/{bob['asset_id']}")).status_code == 200
    assert (await owners.bob.get(f"/v1/assets/{alice['asset_id']}")).status_code == 404


async def signed_url(owners: Any) -> str:
    body = {"prompt": "linked", "size": "64x64", "response_format": "url"}
    response = await owners.alice.post("/v1/images/generations", json=body)
    assert response.status_code == 200, response.text
    url: str = response.json()["data"][0]["url"]
    return url


async def test_signed_asset_url_opens_without_a_key(owners: Any, decode: Decode) -> None:
    url = await signed_url(owners)

    response = await owners.anonymous.get(url)

    assert response.status_code == 200
    assert decode(response.content).size == (64, 64)
    thumbnail = urlsplit(url)._replace(path=urlsplit(url).path + "/thumbnail").geturl()
    assert (await owners.anonymous.get(thumbnail)).status_code == 200
    assert (await owners.bob.get(url)).status_code == 200, "the link works for whoever holds it"


async def test_tampered_or_misapplied_token_is_404(owners: Any) -> None:
    url = await signed_url(owners)
    parts = urlsplit(url)
    token = parse_qs(parts.query)["token"][0]
    tampered = ("A" if token[0] != "A" else "B") + token[1:]
    other_asset = (await generate(owners.alice, seed=11))["outputs"][0]["asset_id"]

    def with_token(path: str, value: str) -> str:
        return parts._replace(path=path, query=urlencode({"token": value})).geturl()

    assert (await owners.anonymous.get(with_token(parts.path, tampered))).status_code == 404
    assert (await owners.anonymous.get(with_token(parts.path, ""))).status_code == 401
    assert (
        await owners.anonymous.get(with_token(f"/v1/assets/{other_asset}", token))
    ).status_code == 404
    assert (await owners.anonymous.get(with_token(parts.path, token))).status_code == 200


def _png(width: int, height: int, colour: tuple[int, int, int] = (10, 200, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_an_uploaded_image_is_an_asset_of_its_owner(client: httpx.AsyncClient) -> None:
    data = _png(40, 30)

    response = await client.post("/v1/assets", files={"file": ("in.png", data, "image/png")})

    assert response.status_code == 201, response.text
    asset = response.json()
    assert (asset["width"], asset["height"], asset["content_type"]) == (40, 30, "image/png")
    assert asset["sha256"] == hashlib.sha256(data).hexdigest()
    assert (await client.get(f"/v1/assets/{asset['id']}")).content == data
    again = await client.post("/v1/assets", files={"file": ("same.png", data, "image/png")})
    assert again.json()["id"] == asset["id"], "the same bytes are one asset"


async def test_an_upload_can_be_the_input_of_a_job(client: httpx.AsyncClient) -> None:
    uploaded = await client.post(
        "/v1/assets", files={"file": ("in.png", _png(64, 64), "image/png")}
    )
    body = {"kind": "edit", "model": "placeholder", "input_assets": [uploaded.json()["id"]]}

    response = await client.post("/v1/jobs", json={**body, "prompt": "x"})

    # The placeholder makes images only: the edit is refused for the kind, not the input.
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "kind"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"not an image at all", "not an image imagemill can read"),
        (b"<svg></svg>", "not an image imagemill can read"),
    ],
)
async def test_a_bad_upload_is_422_naming_the_file(
    client: httpx.AsyncClient, content: bytes, message: str
) -> None:
    response = await client.post("/v1/assets", files={"file": ("x.bin", content, "image/png")})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "file"
    assert message in response.json()["error"]["message"]


async def test_an_upload_over_the_limit_is_refused(
    make_client: Callable[..., Any],
) -> None:
    async with make_client(max_upload_bytes=1000) as small:
        response = await small.post(
            "/v1/assets", files={"file": ("big.png", _png(300, 300, (1, 2, 3)) + b"\0" * 2000)}
        )
    assert response.status_code == 422
    assert "larger than 1,000 bytes" in response.json()["error"]["message"]


async def test_a_pixel_bomb_is_refused(make_client: Callable[..., Any]) -> None:
    async with make_client(max_image_pixels=100) as strict:
        response = await strict.post("/v1/assets", files={"file": ("b.png", _png(20, 20))})
    assert response.status_code == 422
    assert "20x20" in response.json()["error"]["message"]
    assert "at most 100 pixels" in response.json()["error"]["message"]


async def test_another_owners_upload_is_not_found(owners: Any) -> None:
    uploaded = await owners.alice.post("/v1/assets", files={"file": ("a.png", _png(8, 8))})
    asset_id = uploaded.json()["id"]
    assert (await owners.bob.get(f"/v1/assets/{asset_id}")).status_code == 404
    assert (await owners.alice.get(f"/v1/assets/{asset_id}")).status_code == 200


async def test_assets_are_served_inert(client: httpx.AsyncClient) -> None:
    output = (await generate(client))["outputs"][0]
    response = await client.get(f"/v1/assets/{output['asset_id']}")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]


# -- checked at the door --------------------------------------------------------------------------


def _noisy_png(width: int, height: int) -> bytes:
    image = Image.frombytes("RGB", (width, height), bytes(range(256)) * (width * height * 3 // 256))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_a_png_cut_in_half_is_refused_and_nothing_is_stored(
    served: httpx.AsyncClient, runtime: Any
) -> None:
    """It was stored (201, with a width and height) and its thumbnail answered 500."""
    whole = _noisy_png(128, 128)
    half = whole[: len(whole) // 2]
    response = await served.post("/v1/assets", files={"file": ("cut.png", half)})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "file" and "truncated or corrupt" in error["message"]
    assert "0x" not in error["message"]
    cut = hashlib.sha256(half).hexdigest()
    assert not await runtime.blobs.exists(f"sha256/{cut[:2]}/{cut}")


async def test_a_phones_multi_picture_jpeg_is_a_jpeg(client: httpx.AsyncClient) -> None:
    """Phones save portrait shots as MPO (JPEG with a second picture): it was refused as
    "not a PNG, JPEG, WebP or GIF", which every viewer shows it as."""
    buffer = io.BytesIO()
    first, depth = Image.new("RGB", (40, 30), "red"), Image.new("RGB", (40, 30), "blue")
    first.save(buffer, format="MPO", save_all=True, append_images=[depth])
    response = await client.post("/v1/assets", files={"file": ("p.jpg", buffer.getvalue())})
    assert response.status_code == 201, response.text
    asset = response.json()
    assert (asset["content_type"], asset["width"], asset["height"]) == ("image/jpeg", 40, 30)
    served = await client.get(f"/v1/assets/{asset['id']}")
    assert served.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize("cut", [5, 12])  # into IEND's checksum; the whole IEND chunk
async def test_a_png_without_its_end_is_refused(served: httpx.AsyncClient, cut: int) -> None:
    """Its pixels decode (they come before the end), so it was stored as sent, cut."""
    response = await served.post("/v1/assets", files={"file": ("c.png", _png(8, 8)[:-cut])})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "file"


@pytest.mark.parametrize(
    ("files", "field", "says"),
    [
        ([("file", ("a.png", b"png")), ("purpose", (None, b"edit"))], "purpose", "unknown field"),
        ([("file", ("a.png", b"png")), ("file", ("b.png", b"png"))], "file", "one file"),
        ([("file", (None, b"png"))], "file", "must be a file"),  # a part with no filename
    ],
)
async def test_an_upload_form_is_one_file_and_nothing_else(
    served: httpx.AsyncClient, files: list[tuple[str, Any]], field: str, says: str
) -> None:
    """Other fields were dropped without a word; a part without a filename was answered
    "Expected UploadFile, received: <class 'str'>"."""
    files = [(n, (f[0], _png(8, 8)) if f[1] == b"png" else f) for n, f in files]
    response = await served.post("/v1/assets", files=files)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and says in error["message"]
    assert "<" not in error["message"]


async def test_an_upload_over_the_body_limit_is_a_413_in_the_error_shape(
    make_client: Callable[..., Any],
) -> None:
    """It was a text/plain "Content Too Large" from the framework."""
    async with make_client(max_upload_bytes=1000) as small:
        response = await small.post(
            "/v1/assets", files={"file": ("big.png", b"\0" * 2_000_000, "image/png")}
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


async def test_an_exif_rotated_jpeg_is_stored_upright(
    client: httpx.AsyncClient, decode: Decode
) -> None:
    """Stored 80x40 with Orientation 6, it is 40x80 to every viewer, and so to imagemill."""
    image = Image.new("RGB", (80, 40), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, exif=exif)

    uploaded = (
        await client.post("/v1/assets", files={"file": ("r.jpg", buffer.getvalue())})
    ).json()

    assert (uploaded["width"], uploaded["height"]) == (40, 80)
    stored = decode((await client.get(f"/v1/assets/{uploaded['id']}")).content)
    assert stored.size == (40, 80) and stored.format == "JPEG"
    red = stored.convert("RGB").getpixel((30, 10))  # the red corner, now top right
    assert red[0] > 200 and red[2] < 60
    thumb = decode((await client.get(f"/v1/assets/{uploaded['id']}/thumbnail")).content)
    assert thumb.height > thumb.width


async def test_an_uploads_thumbnail_is_made_at_upload(
    client: httpx.AsyncClient, runtime: Any
) -> None:
    uploaded = (await client.post("/v1/assets", files={"file": ("a.png", _png(500, 250))})).json()
    asset = await runtime.repo.get_asset(uploaded["id"])
    assert asset.thumbnail_key is not None
    thumb = await runtime.blobs.get(asset.thumbnail_key)
    assert (await client.get(f"/v1/assets/{uploaded['id']}/thumbnail")).content == thumb


async def test_requests_at_once_make_an_outputs_thumbnail_once(
    client: httpx.AsyncClient, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = (await generate(client, size="1024x1024"))["outputs"][0]
    made: list[int] = []
    real = images.thumbnail

    def counted(data: bytes, side: int = THUMBNAIL_SIDE, *, blur: bool = False) -> bytes:
        made.append(len(data))
        return real(data, side, blur=blur)

    monkeypatch.setattr(images, "thumbnail", counted)
    answers = await asyncio.gather(
        *(client.get(f"/v1/assets/{output['asset_id']}/thumbnail") for _ in range(4))
    )

    assert all(a.status_code == 200 for a in answers)
    assert len({a.content for a in answers}) == 1
    assert len(made) == 1
    assert runtime.assets.decode_slots.in_use == 0
