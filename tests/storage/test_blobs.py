"""The blob store: create-only, content-addressed puts on obstore backends."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from obstore.store import LocalStore, MemoryStore

from imagemill.errors import NotFound
from imagemill.storage.blobs import BlobStore, content_key, open_store, sha256_hex


@pytest.fixture(params=["memory", "file"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    url = "memory://" if request.param == "memory" else (tmp_path / "blobs").as_uri()
    return BlobStore.from_url(url)


async def test_put_is_create_only(blobs: BlobStore) -> None:
    assert await blobs.put("a/b", b"first") is True
    assert await blobs.put("a/b", b"second") is False
    assert await blobs.get("a/b") == b"first"
    assert await blobs.exists("a/b")


async def test_put_content_keys_by_sha256(blobs: BlobStore) -> None:
    data = b"\x89PNG not really"
    digest = hashlib.sha256(data).hexdigest()

    assert await blobs.put_content(data) == (digest, f"sha256/{digest[:2]}/{digest}")
    assert await blobs.put_content(data) == (digest, content_key(digest))  # stored once, same key
    assert await blobs.get(content_key(digest)) == data
    thumb_digest, thumb_key = await blobs.put_content(data, namespace="thumbs")
    assert (thumb_digest, thumb_key) == (digest, f"thumbs/{digest[:2]}/{digest}")


async def test_a_missing_blob_is_not_found(blobs: BlobStore) -> None:
    with pytest.raises(NotFound):
        await blobs.get("sha256/00/missing")
    with pytest.raises(NotFound):
        async for _ in blobs.stream("sha256/00/missing"):
            pass
    assert not await blobs.exists("sha256/00/missing")


async def test_stream_yields_the_bytes(blobs: BlobStore) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    _, key = await blobs.put_content(data)

    chunks = [chunk async for chunk in blobs.stream(key)]

    assert all(isinstance(c, bytes) for c in chunks)
    assert b"".join(chunks) == data


def test_sha256_hex() -> None:
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_open_store_for_each_url(tmp_path: Path) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    as_uri = tmp_path / "by-uri"
    assert isinstance(open_store(as_uri.as_uri()), LocalStore)
    assert as_uri.is_dir()
    plain = tmp_path / "plain"
    assert isinstance(open_store(str(plain)), LocalStore)
    assert plain.is_dir()


async def test_a_file_store_writes_under_its_directory(tmp_path: Path) -> None:
    blobs = BlobStore.from_url((tmp_path / "blobs").as_uri())
    digest, key = await blobs.put_content(b"hello")
    assert (tmp_path / "blobs" / key).read_bytes() == b"hello"
    assert BlobStore.from_url(str(tmp_path / "blobs")) is not blobs
    assert await BlobStore.from_url(str(tmp_path / "blobs")).get(key) == b"hello"
    assert digest == sha256_hex(b"hello")
