"""What the OpenAI-shaped fakes keep of a request, and the bearer token it carries.

Owns ``RecordedCall`` (one request as an endpoint saw it, file bytes left out; a fake's
``calls`` lists them for assertions), ``UploadedFile`` and ``bearer_token``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart request, without its bytes."""

    filename: str | None
    content_type: str | None
    size: int


@dataclass(frozen=True)
class RecordedCall:
    """One request as an endpoint saw it (file bytes left out)."""

    endpoint: str
    fields: dict[str, Any]
    files: dict[str, list[UploadedFile]]
    headers: dict[str, str]

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; ``None`` without one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
