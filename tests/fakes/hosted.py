"""What the fakes of hosted image APIs that hand out expiring URLs share (OpenAI and
Recraft): counting downloads, expiring URLs, serving, and plugging into a served socket.

A subclass sets ``app``, ``blobs``, ``faults`` and ``base_url`` and routes its file URLs
to ``_download`` (the fault endpoint ``"files"``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from fakes.blobs import BlobStore
from fakes.faults import Faults, inject_fault
from fakes.server import Plug, serve


class ServesImageUrls:
    app: Starlette
    blobs: BlobStore
    faults: Faults
    base_url: str | None

    @property
    def downloads(self) -> Counter[str]:
        return self.blobs.downloads

    def downloads_of(self, url: str) -> int:
        return self.blobs.downloads[self.blobs.blob_id(url)]

    def expire_urls(self) -> None:
        """Every URL issued so far answers 403 from now on."""
        self.blobs.expire_all()

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve on a free port; yields the base URL (the SDK's is ``{url}/v1``)."""
        with serve(self.app) as url:
            self.base_url = url
            yield url

    def plug_into(self, plug: Plug, url: str) -> None:
        """Answer on an already served ``plug`` at ``url``, in place of its last fake."""
        plug.app, self.base_url = self.app, url

    async def _download(self, request: Request) -> Response:
        if (fault := await inject_fault(self.faults, "files", request)) is not None:
            return fault
        return self.blobs.download(request)
