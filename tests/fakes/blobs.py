"""Generated files behind signed URLs that expire, as DALL·E's Azure blob links do.

Owns ``BlobStore``: ``put`` stores a file and returns its signed URL, ``download`` answers
a GET on it (counted in ``downloads``) until it expires, then 403 with Azure's
``AuthenticationFailed`` XML; ``expire_all`` ends every URL issued so far. ``Clock`` is the
fakes' notion of time (``time.time`` unless a test passes its own).
"""

from __future__ import annotations

import base64
import hmac
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from fakes.images import CONTENT_TYPES

Clock = Callable[[], float]


@dataclass
class StoredBlob:
    blob_id: str
    data: bytes
    content_type: str
    expires_at: float


class BlobStore:
    """Generated files behind signed URLs that expire, like DALL·E's Azure blob links.

    ``put`` returns ``{base}{prefix}/{id}.{ext}?st=..&se=..&sp=r&...&sig=..``; a GET on it
    answers the file until ``expires_at``, then 403 with Azure's ``AuthenticationFailed``
    XML, as does any URL whose signature does not match.
    """

    def __init__(self, ttl_seconds: float, clock: Clock, prefix: str) -> None:
        self.ttl_seconds = ttl_seconds
        self.prefix = prefix
        self.blobs: dict[str, StoredBlob] = {}
        self.downloads: Counter[str] = Counter()  # blob id -> successful GETs
        self._clock = clock
        self._secret = secrets.token_bytes(32)

    def put(self, data: bytes, fmt: str, base_url: str) -> str:
        blob_id = f"img-{secrets.token_urlsafe(18)}"
        now = self._clock()
        blob = StoredBlob(blob_id, data, CONTENT_TYPES[fmt], now + self.ttl_seconds)
        self.blobs[blob_id] = blob
        path = f"{self.prefix}/{blob_id}.{fmt}"
        start, expiry = _azure_time(now), _azure_time(blob.expires_at)
        query = {
            "st": start,
            "se": expiry,
            "sp": "r",
            "sv": "2021-08-06",
            "sr": "b",
            "rscd": "inline",
            "rsct": blob.content_type,
        }
        query["sig"] = self._sign(path, query)
        return f"{base_url.rstrip('/')}{path}?{urlencode(query)}"

    def expire_all(self) -> None:
        now = self._clock()
        for blob in self.blobs.values():
            blob.expires_at = min(blob.expires_at, now)

    def blob_id(self, url: str) -> str:
        return urlsplit(url).path.rsplit("/", 1)[-1].split(".", 1)[0]

    def download(self, request: Request) -> Response:
        path = request.url.path
        query = {key: values[0] for key, values in parse_qs(request.url.query).items()}
        blob = self.blobs.get(self.blob_id(path))
        if blob is None or not path.startswith(self.prefix + "/"):
            return _azure_error(404, "BlobNotFound", "The specified blob does not exist.")
        signature = query.pop("sig", "")
        if not hmac.compare_digest(self._sign(path, query), signature):
            return _azure_auth_failed("Signature did not match.")
        now = self._clock()
        if now >= blob.expires_at:
            return _azure_auth_failed(
                f"Signed expiry time [{_http_date(blob.expires_at)}] "
                f"must be after signed start time [{_http_date(now)}]"
            )
        self.downloads[blob.blob_id] += 1
        return Response(blob.data, media_type=blob.content_type)

    def _sign(self, path: str, query: dict[str, str]) -> str:
        signed = "\n".join([path, *(f"{key}={query[key]}" for key in sorted(query))])
        return base64.b64encode(hmac.new(self._secret, signed.encode(), "sha256").digest()).decode()


def _azure_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _http_date(epoch: float) -> str:
    return formatdate(epoch, usegmt=True)


def _azure_auth_failed(detail: str) -> Response:
    return _azure_error(
        403,
        "AuthenticationFailed",
        "Server failed to authenticate the request. Make sure the value of Authorization "
        "header is formed correctly including the signature.",
        detail,
    )


def _azure_error(status: int, code: str, message: str, detail: str | None = None) -> Response:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    body = (
        '<?xml version="1.0" encoding="utf-8"?><Error>'
        f"<Code>{code}</Code><Message>{message}\nRequestId:{secrets.token_hex(16)}\n"
        f"Time:{stamp}</Message>"
        + (f"<AuthenticationErrorDetail>{detail}</AuthenticationErrorDetail>" if detail else "")
        + "</Error>"
    )
    return Response(body, status_code=status, media_type="application/xml")
