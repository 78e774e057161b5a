"""``PiecesResponse``: a body sent as its pieces, never joined, with its length."""

from __future__ import annotations

from typing import Any

from imagemill.api.responses import PIECE_BYTES, PiecesResponse


async def _sent(response: PiecesResponse) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        messages.append(message)

    await response({"type": "http", "method": "POST"}, receive, send)
    return messages


async def test_the_pieces_go_out_in_order_with_their_length_in_slices() -> None:
    large = bytes(range(256)) * (PIECE_BYTES // 256 * 2 + 3)  # two slices and a bit
    pieces = [b'{"data":[', b'{"b64":"', large, b'"}', b"", b"]}"]
    response = PiecesResponse(pieces, media_type="application/json")

    messages = await _sent(response)

    start, *bodies = messages
    headers = dict(start["headers"])
    expected = b"".join(pieces)
    assert headers[b"content-length"] == str(len(expected)).encode()
    assert headers[b"content-type"] == b"application/json"
    assert b"".join(m["body"] for m in bodies) == expected
    assert all(type(m["body"]) is bytes for m in bodies)  # as ASGI asks
    assert [m["more_body"] for m in bodies] == [True] * (len(bodies) - 1) + [False]
    # The small pieces before the large one joined into one write, the large one in
    # slices of PIECE_BYTES, the small ones after it joined again.
    sizes = [len(m["body"]) for m in bodies[:-1]]
    assert sizes == [17, PIECE_BYTES, PIECE_BYTES, len(large) - 2 * PIECE_BYTES, 4]
    assert response.pieces == []  # each piece let go once sent


async def test_headers_given_are_kept_and_the_length_is_the_bodys() -> None:
    response = PiecesResponse(
        [b"ab", b"cd"], media_type="application/json", headers={"Content-Encoding": "identity"}
    )
    start, *bodies = await _sent(response)
    headers = dict(start["headers"])
    assert headers[b"content-encoding"] == b"identity"
    assert headers[b"content-length"] == b"4"
    assert [m["body"] for m in bodies] == [b"abcd", b""]
