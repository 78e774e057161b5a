"""The blob store on a real S3 server (SeaweedFS): content keys, create-only puts,
reads and streams, missing blobs."""

from __future__ import annotations

import pytest

from imagemill.errors import NotFound
from imagemill.storage.blobs import BlobStore, content_key, sha256_hex


@pytest.fixture
def blobs(s3_bucket: tuple[str, dict[str, object]]) -> BlobStore:
    url, options = s3_bucket
    return BlobStore.from_url(url, options)


async def test_identical_bytes_are_stored_once_under_their_content_key(blobs: BlobStore) -> None:
    data = b"\x89PNG pretend image bytes"

    first = await blobs.put_content(data)
    second = await blobs.put_content(data)

    assert first == second == (sha256_hex(data), content_key(sha256_hex(data)))
    assert await blobs.put(first[1], b"other bytes") is False, "create-only: no overwrite"
    assert await blobs.get(first[1]) == data


async def test_streams_exists_and_missing(blobs: BlobStore) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB, several chunks
    _, key = await blobs.put_content(data)

    assert b"".join([chunk async for chunk in blobs.stream(key)]) == data
    assert await blobs.exists(key)
    assert not await blobs.exists("sha256/00/missing")
    with pytest.raises(NotFound):
        await blobs.get("sha256/00/missing")
