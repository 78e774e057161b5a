"""The blob store: content-addressed, create-only, on any obstore backend.

Keys are derived from the bytes (``sha256/ab/abcdef…``), so identical bytes are stored
once and a retried write of the same output is a no-op, never a second copy.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import obstore
from obstore.exceptions import AlreadyExistsError, NotFoundError
from obstore.store import LocalStore, MemoryStore, ObjectStore, from_url

from imagemill.errors import NotFound

# Options of the HTTP client rather than of the store (obstore takes them apart).
CLIENT_OPTIONS = ("allow_http", "allow_invalid_certificates", "timeout", "connect_timeout")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_key(sha256: str, namespace: str = "sha256") -> str:
    return f"{namespace}/{sha256[:2]}/{sha256}"


def open_store(url: str, options: Mapping[str, Any] | None = None) -> ObjectStore:
    """An obstore store for ``file:///dir``, a plain path, ``memory://`` or ``s3://bucket``
    (``gs://``, ``az://`` too). ``options`` configure a cloud store (``endpoint``,
    ``access_key_id``, ``region``, …); the standard ``AWS_*`` variables work as well."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme else url)
        path.mkdir(parents=True, exist_ok=True)
        return LocalStore(path)
    if parsed.scheme == "memory":
        return MemoryStore()
    config = dict(options or {})
    client = {k: config.pop(k) for k in CLIENT_OPTIONS if k in config}
    return from_url(url, config=cast(Any, config or None), client_options=cast(Any, client or None))


class BlobStore:
    def __init__(
        self, store: ObjectStore, on_written: Callable[[int], object] | None = None
    ) -> None:
        """``on_written`` is told the size of each blob written (the metrics)."""
        self.store = store
        self.on_written = on_written

    @classmethod
    def from_url(
        cls,
        url: str,
        options: Mapping[str, Any] | None = None,
        on_written: Callable[[int], object] | None = None,
    ) -> BlobStore:
        return cls(open_store(url, options), on_written)

    async def put(self, key: str, data: bytes) -> bool:
        """Write ``data`` under ``key`` unless something is there already. True if written."""
        try:
            await obstore.put_async(self.store, key, data, mode="create")
        except AlreadyExistsError:
            return False
        if self.on_written is not None:
            self.on_written(len(data))
        return True

    async def put_content(self, data: bytes, namespace: str = "sha256") -> tuple[str, str]:
        """Store ``data`` under its content key; returns ``(sha256, key)``."""
        digest = sha256_hex(data)
        key = content_key(digest, namespace)
        await self.put(key, data)
        return digest, key

    async def get(self, key: str) -> bytes:
        try:
            result = await obstore.get_async(self.store, key)
            return bytes(await result.bytes_async())
        except (NotFoundError, FileNotFoundError) as exc:
            raise NotFound(f"blob {key!r} is missing from storage") from exc

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        """The blob's bytes in chunks, without holding it all in memory."""
        try:
            result = await obstore.get_async(self.store, key)
        except (NotFoundError, FileNotFoundError) as exc:
            raise NotFound(f"blob {key!r} is missing from storage") from exc
        async for chunk in result.stream():
            yield bytes(chunk)

    async def exists(self, key: str) -> bool:
        try:
            await obstore.head_async(self.store, key)
        except (NotFoundError, FileNotFoundError):
            return False
        return True
