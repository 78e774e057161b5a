"""``PiecesResponse``: a large body sent as the pieces it was built from.

An OpenAI-compatible answer is megabytes of base64 between a few bytes of JSON. Joined
into one ``bytes`` and handed to the server in one message, it is held twice while it
goes out: the joined copy, and what the socket could not take at once, copied again
into the transport's buffer until the client reads it. Sent as its pieces, in slices of
``PIECE_BYTES`` (each a small ``bytes`` of its own, as ASGI asks), the server writes one
slice at a time and waits for the socket to drain before the next, so a slow client
holds the answer once.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

PIECE_BYTES = 256 * 1024


class PiecesResponse(Response):
    """A response whose body is ``pieces`` in order, with its ``Content-Length``, never
    joined. It can be sent once: each piece is let go as it goes out."""

    def __init__(
        self,
        pieces: Sequence[bytes],
        *,
        media_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(b"", media_type=media_type, headers=headers)
        self.pieces = _coalesced(pieces)
        length = str(sum(len(piece) for piece in self.pieces))
        self.raw_headers = [
            (name, length.encode() if name == b"content-length" else value)
            for name, value in self.raw_headers
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        while self.pieces:
            piece = self.pieces.pop(0)  # let go of each piece once sent
            for start in range(0, len(piece), PIECE_BYTES):
                chunk = bytes(piece[start : start + PIECE_BYTES])
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _coalesced(pieces: Sequence[bytes]) -> list[bytes]:
    """``pieces`` with each run of small ones joined (a write each would be a packet
    each), the large ones as they are."""
    joined: list[bytes] = []
    small: list[bytes] = []
    for piece in pieces:
        if len(piece) < PIECE_BYTES:
            small.append(piece)
            continue
        if small:
            joined.append(b"".join(small))
            small = []
        joined.append(piece)
    if small:
        joined.append(b"".join(small))
    return [piece for piece in joined if len(piece)]
